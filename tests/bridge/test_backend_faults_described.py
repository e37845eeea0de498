"""The JSON-RPC client's faults, as a caller and an operator see them (README, "Behaviour", Errors and
HTTP client): each has a one-line description naming the backend and the fault, never a traceback.

Faults here are those the other rpc tests leave out: a connection lost in the middle of the body, an
HTTP stack that raises instead of failing its Deferred or reports a cancel of its own, a wrong id that
is a whole array, a backend at an IPv6 address; and what the shared HTTP client promises applications
that use its treq API for their own requests (no cookies kept or sent: one client serves every user).
"""
from treq.testing import RequestTraversalAgent
from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI
from twisted.web.server import NOT_DONE_YET

from fmspy_gateway.bridge.rpc import (BackendError, GatewayHTTPClient, JSONRPCClient, RPCError, _NoCookies,
                                      make_http_client)

from .test_rpc import LOGGER, URL, Backend, FakeHTTP, RPCTestCase, constant


class Raising:
    """A treq-like client whose post raises (a bug in it, or an argument it refuses) instead of failing."""

    def post(self, url, **kwargs):
        raise TypeError("post() got an unexpected keyword argument")


class BodyFaultTests(RPCTestCase):
    def test_a_connection_lost_in_the_middle_of_the_body_is_a_broken_response(self):
        def half_then_gone(message, request):
            request.setHeader("Content-Type", "application/json")
            request.write(b'{"jsonrpc":"2.0","res')
            request.channel.transport.abortConnection()
            return NOT_DONE_YET
        client = self.client_for(Backend(half_then_gone))
        d = client.call(URL, "m", [], timeout=5)
        self.stub.flush()
        error = self.backend_failure(d, "bad-response")
        self.assertEqual(error.description, f"backend {URL} sent a broken HTTP response")
        self.assertEqual(client.endpoint(URL).breaker.failures, 1)     # an unreadable answer counts as a failure
        self.assert_no_timers()

    def test_a_wrong_id_that_is_a_container_is_named_by_its_size(self):
        client = self.client_for(Backend(lambda m, r: b'{"jsonrpc":"2.0","result":1,"id":[1,2,3]}'))
        error = self.backend_failure(client.call(URL, "m", [], timeout=5), "bad-response")
        self.assertTrue(error.description.endswith("wrong id (sent 1, got an array of 3)"), error.description)


class HTTPStackFaultTests(RPCTestCase):
    def test_a_client_that_raises_is_a_failed_call_not_an_exception(self):
        client = JSONRPCClient(Raising(), self.clock)
        with self.assertLogs(LOGGER, "WARNING") as logs:
            d = client.call(URL, "m", [], timeout=5)       # must not raise
        error = self.backend_failure(d, "refused")
        self.assertEqual(error.description, f"could not reach backend {URL}")
        self.assertIn("unexpected keyword argument", "\n".join(logs.output))
        self.assertEqual((client.endpoint(URL).in_flight, client.outstanding), (0, 0))
        self.assert_no_timers()

    def test_a_cancel_reported_by_the_stack_is_a_cancelled_call(self):
        client = JSONRPCClient(FakeHTTP(CancelledError()), self.clock)
        error = self.backend_failure(client.call(URL, "m", [], timeout=5), "cancelled")
        self.assertEqual(error.description, f"request to backend {URL} was cancelled")
        self.assertEqual(client.endpoint(URL).breaker.failures, 0)     # nothing the backend did

    def test_an_ipv6_backend_is_named_with_brackets(self):
        client = JSONRPCClient(FakeHTTP(neterror.ConnectionRefusedError()), self.clock)
        url = "http://user:secret@[::1]:8080/rpc?token=t"
        error = self.backend_failure(client.call(url, "m", [], timeout=5), "refused")
        self.assertEqual(error.description, "backend http://[::1]:8080/rpc refused the connection")


class ClientAPITests(RPCTestCase):
    def test_tuple_params_are_sent_as_a_json_array(self):
        backend = Backend()
        client = self.client_for(backend)
        self.assertEqual(self.successResultOf(client.call(URL, "m", (1, "two"), timeout=5)),
                         {"method": "m", "params": [1, "two"]})
        self.assertEqual(backend.params_seen(), [[1, "two"]])

    def test_bounds_that_cannot_work_are_refused_when_the_client_is_made(self):
        for option, value, message in (("max_concurrent", 0, "max_concurrent must be at least 1"),
                                       ("max_queued", -1, "max_queued must not be negative"),
                                       ("breaker_threshold", 0, "breaker_threshold must be at least 1"),
                                       ("breaker_reset", 0, "breaker_reset must be positive"),
                                       ("max_response_bytes", 0, "max_response_bytes must be positive")):
            with self.assertRaises(ValueError) as raised:
                JSONRPCClient(FakeHTTP(RuntimeError()), self.clock, **{option: value})
            self.assertEqual(str(raised.exception), message)

    def test_every_endpoint_used_is_listed_for_the_status_page(self):
        client = self.client_for(Backend())
        other = "http://other.test/rpc"
        client.call(URL, "m", [], timeout=5)
        client.call(other, "m", [], timeout=5)
        endpoints = client.endpoints
        self.assertEqual(sorted(endpoints), sorted([other, URL]))
        endpoints.clear()                                   # a copy: the caller cannot drop the client's state
        self.assertEqual(sorted(client.endpoints), sorted([other, URL]))

    def test_errors_show_their_kind_and_fields_in_logs(self):
        self.assertEqual(repr(BackendError("backend x timed out", "timeout")),
                         "BackendError('backend x timed out', kind='timeout')")
        self.assertEqual(repr(RPCError(4, "no", {"a": 1})), "RPCError(code=4, message='no', data={'a': 1})")
        with self.assertRaises(ValueError):
            BackendError("x", "no-such-kind")


class NoCookiesTests(SynchronousTestCase):
    """Applications may use the shared client's treq API; one user's cookie must never ride on another's."""

    def setUp(self):
        def answer(message, request):
            request.addCookie("session", "user-a", path="/")
            return Backend.echo(message, request)
        self.backend = Backend(answer)
        self.agent = RequestTraversalAgent(self.backend)
        self.http = GatewayHTTPClient(self.agent)

    def get(self):
        d = self.http.get("http://backend.test/rpc")
        self.agent.flush()
        response = self.successResultOf(d)
        self.successResultOf(response.content())
        return response

    def test_a_set_cookie_is_not_kept(self):
        self.assertEqual(self.get().headers.getRawHeaders("set-cookie"), ["session=user-a; Path=/"])
        self.get()
        self.assertNotIn("cookie", self.backend.seen[1][3])

    def test_the_policy_refuses_every_cookie_whatever_the_jar_asks(self):
        policy = _NoCookies()
        self.assertEqual([policy.set_ok(None, None), policy.return_ok(None, None),
                          policy.domain_return_ok("backend.test", None), policy.path_return_ok("/", None)],
                         [False] * 4)


class EndpointFactoryTests(SynchronousTestCase):
    def test_a_non_ascii_url_is_refused_before_an_endpoint_is_made(self):
        # Why _CachingEndpointFactory decodes the host without a guard: a URL with raw non-ASCII
        # bytes never becomes a URI (our lean path sends Endpoint.request_url, IDNA-encoded).
        with self.assertRaises(UnicodeDecodeError):
            URI.fromBytes("http://b\u00e4ckend.test/".encode())

    def test_make_http_client_makes_its_own_pool_when_given_none(self):
        self.assertIsInstance(make_http_client(Clock(), max_persistent_per_host=4), GatewayHTTPClient)


class RefusedEncodingTests(RPCTestCase):
    """README: stacked or unknown Content-Encoding answers are "refused, unread": the gateway hangs up
    rather than drain (or keep open) a body nobody will decode."""

    def test_the_connection_of_a_refused_encoding_is_dropped_while_the_body_still_streams(self):
        backend = Backend()

        def brotli_forever(message, request):
            request.setHeader("Content-Encoding", "br")
            request.write(b"\x8b" * 1000)         # headers and a first part; the rest would follow
            return backend.hang(message, request)
        backend.answer = brotli_forever
        client = self.client_for(backend)
        d = client.call(URL, "m", [], timeout=5)
        self.stub.flush()
        self.backend_failure(d, "bad-encoding")
        self.assertEqual(len(backend.lost), 1)
        self.assert_no_timers()

    def test_refused_encodings_count_towards_opening_the_circuit(self):
        # README, Circuit breaker: "... unreadable answers and refused encodings count as failures".
        backend = Backend(constant(b"{}", headers={"Content-Encoding": "br"}))
        client = self.client_for(backend, breaker_threshold=2)
        for _ in range(2):
            self.backend_failure(client.call(URL, "m", [], timeout=5), "bad-encoding")
        self.backend_failure(client.call(URL, "m", [], timeout=5), "unavailable")
        self.assertEqual(len(backend.seen), 2)


class BodyProducerTests(SynchronousTestCase):
    def test_the_lean_request_body_is_a_complete_body_producer(self):
        # Twisted may call pauseProducing/resumeProducing/stopProducing on any IBodyProducer; ours writes
        # everything in startProducing, so they have nothing to do, but they must exist.
        from zope.interface.verify import verifyObject
        from twisted.web.iweb import IBodyProducer
        from fmspy_gateway.bridge.rpc import _BytesProducer
        producer = _BytesProducer(b'{"jsonrpc":"2.0"}')
        self.assertTrue(verifyObject(IBodyProducer, producer))
        self.assertEqual(producer.length, 17)
