"""The JSON-RPC client: against in-memory twisted.web resources (StubTreq) on a Clock, and once on loopback.

Each resource records what reached it, so tests can prove both what the
backend saw (exact body, headers) and what it never saw (requests refused by
the queue bound or the open circuit).  Resources that return NOT_DONE_YET stand
for a backend that is still thinking; ``StubTreq.flush()`` moves whatever they
write later (and connection aborts) across the in-memory connection.

The in-memory test classes run twice: through treq's ``post`` (StubTreq, as
any treq-like client is driven) and through the lean path of
:class:`GatewayHTTPClient` (over treq.testing's ``RequestTraversalAgent``),
which production uses.
"""
import gzip
import json
import tracemalloc
import zlib

from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet import defer, error as neterror
from twisted.internet.defer import CancelledError, fail, inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import URI
from twisted.web.error import SchemeNotSupported
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from fmspy_gateway.bridge.rpc import (BackendError, BreakerState, Endpoint, GatewayHTTPClient, HTTPStatusError,
                                      JSONRPCClient, RPCError, _CachingEndpointFactory, make_connection_pool,
                                      make_http_client)

from ..sites import TrackingSite

URL = "http://backend.test/rpc"
OTHER_URL = "http://other.test/rpc"
LOGGER = "fmspy_gateway.bridge.rpc"


# -- backends ------------------------------------------------------------------------------------

def jsonrpc_reply(message, **fields):
    return json.dumps({"jsonrpc": "2.0", **fields, "id": message.get("id")}).encode()


class Backend(Resource):
    """A JSON-RPC backend whose answer is a function of the request; remembers every request.

    ``answer(message, request)`` returns the body bytes (after setting the
    status if it likes) or NOT_DONE_YET to keep the request pending.
    """
    isLeaf = True

    def __init__(self, answer=None):
        super().__init__()
        self.answer = answer or self.echo
        self.seen = []          # (method, host, path, headers {lowercase name: [values]}, body bytes)
        self.pending = []       # requests kept open with NOT_DONE_YET
        self.lost = []          # pending requests whose connection went away

    def render(self, request):
        body = request.content.read()
        headers = {name.decode().lower(): [v.decode() for v in values]
                   for name, values in request.requestHeaders.getAllRawHeaders()}
        self.seen.append((request.method, request.getRequestHostname().decode(), request.path, headers, body))
        try:
            message = json.loads(body)
        except ValueError:
            message = {}
        return self.answer(message, request)

    @staticmethod
    def echo(message, request):
        request.setHeader("Content-Type", "application/json")
        return jsonrpc_reply(message, result={"method": message.get("method"), "params": message.get("params")})

    def hang(self, message, request):
        self.pending.append((message, request))
        request.notifyFinish().addErrback(lambda _: self.lost.append(request))
        return NOT_DONE_YET

    def finish_pending(self, index=0):
        """Answer the index-th pending request with an echo."""
        message, request = self.pending.pop(index)
        request.write(self.echo(message, request))
        request.finish()

    def params_seen(self):
        return [json.loads(body)["params"] for _, _, _, _, body in self.seen]


def gzip_bomb(megabytes: int) -> bytes:
    """``megabytes`` MB of zeros, gzip-compressed (about 1000 times smaller)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    return b"".join(compressor.compress(zeros) for _ in range(megabytes)) + compressor.flush()


def constant(body: bytes, status: int = 200, headers=None):
    def answer(message, request):
        request.setResponseCode(status)
        for name, value in (headers or {}).items():
            request.setHeader(name, value)
        return body
    return answer


def fields(**reply):
    """A JSON-RPC reply with these top-level members and our id."""
    return lambda message, request: jsonrpc_reply(message, **reply)


class FakeHTTP:
    """A treq-like client whose POSTs fail with a given connection error (StubTreq cannot refuse)."""

    def __init__(self, exception):
        self.exception = exception
        self.posts = 0

    def post(self, url, **kwargs):
        self.posts += 1
        return fail(self.exception)


class RPCTestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()

    def client_for(self, backend, **options):
        self.stub = StubTreq(backend)
        return JSONRPCClient(self.stub, self.clock, **options)

    def backend_failure(self, d, kind):
        """The BackendError of a failed Deferred, checked for kind and for not leaking internals."""
        error = self.failureResultOf(d, BackendError).value
        self.assertEqual(error.kind, kind, error.description)
        self.assertNotIn("Traceback", error.description)
        self.assertNotIn("Failure", error.description)
        self.assertNotIn("\n", error.description)
        return error

    def assert_no_timers(self):
        self.assertEqual(self.clock.getDelayedCalls(), [])


# -- requests ------------------------------------------------------------------------------------

class RequestTests(RPCTestCase):
    def test_body_is_compact_json_rpc_with_increasing_ids(self):
        backend = Backend()
        client = self.client_for(backend)
        self.successResultOf(client.call(URL, "users.get", [42, "x\u00e9", None], timeout=5))
        self.successResultOf(client.call(URL, "users.list", [], timeout=5))
        bodies = [body for *_, body in backend.seen]
        self.assertEqual(bodies, [
            b'{"jsonrpc":"2.0","method":"users.get","params":[42,"x\\u00e9",null],"id":1}',
            b'{"jsonrpc":"2.0","method":"users.list","params":[],"id":2}',
        ])

    def test_post_to_the_url_with_json_content_type_and_caller_headers(self):
        backend = Backend()
        client = self.client_for(backend, user_agent="gw/1")
        self.successResultOf(client.call(URL, "m", [1], timeout=5, headers={
            "X-RTMP-Client-Id": "c-17", "X-RTMP-Room": "lobby", "Content-Type": "text/plain"}))
        [(method, host, path, headers, _)] = backend.seen
        self.assertEqual((method, host, path), (b"POST", "backend.test", b"/rpc"))
        self.assertEqual(headers["content-type"], ["application/json"])   # the caller cannot change it
        self.assertEqual(headers["user-agent"], ["gw/1"])
        self.assertEqual(headers["x-rtmp-client-id"], ["c-17"])
        self.assertEqual(headers["x-rtmp-room"], ["lobby"])
        self.assertNotIn("cookie", headers)

    def test_header_fields_made_once_are_sent_as_they_are_on_every_request(self):
        backend = Backend()
        client = self.client_for(backend, user_agent="gw/1")
        fields = client.header_fields({"X-RTMP-Room": "a\nb", "Content-Type": "text/plain"})
        self.assertEqual(list(fields), [(b"User-Agent", b"gw/1"), (b"Accept", b"application/json"),
                                        (b"X-RTMP-Room", b"a b"), (b"Content-Type", b"application/json")])
        self.successResultOf(client.call(URL, "m", [1], timeout=5, headers=fields))
        self.successResultOf(client.notify(URL, "n", [], timeout=5, headers=fields))
        for *_, headers, _ in backend.seen:
            self.assertEqual((headers["x-rtmp-room"], headers["content-type"]), (["a b"], ["application/json"]))
        with self.assertRaises(ValueError):
            client.header_fields({"Content-Length": "1"})

    def test_result_is_what_the_backend_answered(self):
        client = self.client_for(Backend())
        self.assertEqual(self.successResultOf(client.call(URL, "m", [1, {"a": [2]}], timeout=5)),
                         {"method": "m", "params": [1, {"a": [2]}]})

    def test_falsy_results_are_results(self):
        for result in (None, False, 0, "", [], {}):
            client = self.client_for(Backend(fields(result=result)))
            self.assertEqual(self.successResultOf(client.call(URL, "m", [], timeout=5)), result)

    def test_notification_has_no_id_and_fires_with_none(self):
        backend = Backend(constant(b"", status=204))
        client = self.client_for(backend)
        self.assertIsNone(self.successResultOf(client.notify(URL, "rooms.left", ["lobby"], timeout=5,
                                                             headers={"X-RTMP-Client-Id": "c-1"})))
        [(_, _, _, headers, body)] = backend.seen
        self.assertEqual(body, b'{"jsonrpc":"2.0","method":"rooms.left","params":["lobby"]}')
        self.assertEqual(headers["x-rtmp-client-id"], ["c-1"])
        self.assert_no_timers()

    def test_notification_ignores_whatever_body_comes_back(self):
        client = self.client_for(Backend(constant(b"not json at all")))
        self.assertIsNone(self.successResultOf(client.notify(URL, "m", [], timeout=5)))

    def test_notification_fails_on_http_errors(self):
        client = self.client_for(Backend(constant(b"", status=503)))
        error = self.backend_failure(client.notify(URL, "m", [], timeout=5), "http")
        self.assertIn("HTTP 503", error.description)

    def test_params_json_cannot_carry_raise_before_anything_is_sent(self):
        backend = Backend()
        client = self.client_for(backend)
        self.assertRaises(ValueError, client.call, URL, "m", [float("nan")], timeout=5)
        self.assertRaises(TypeError, client.call, URL, "m", [object()], timeout=5)
        self.assertRaises(TypeError, client.call, URL, "m", "not a list", timeout=5)
        self.assertRaises(ValueError, client.call, URL, "m", [], timeout=0)
        self.assertRaises(ValueError, client.call, "ftp://backend.test/rpc", "m", [], timeout=5)
        self.assertEqual(backend.seen, [])
        self.assertEqual(client.outstanding, 0)
        self.assert_no_timers()

    def test_descriptions_hide_credentials_and_query(self):
        client = self.client_for(Backend(constant(b"", status=500)))
        error = self.backend_failure(client.call("http://user:secret@backend.test:8080/rpc?key=k3y", "m", [],
                                                 timeout=5), "http")
        self.assertEqual(error.description, "backend http://backend.test:8080/rpc answered HTTP 500")


# -- responses -----------------------------------------------------------------------------------

class ResponseTests(RPCTestCase):
    def call(self, answer, **options):
        client = self.client_for(Backend(answer), **options)
        d = client.call(URL, "m", [], timeout=5)
        self.assert_no_timers()
        return d

    def test_error_object_becomes_rpc_error(self):
        error = self.failureResultOf(self.call(fields(error={"code": -32601, "message": "Method not found",
                                                              "data": {"method": "m"}})), RPCError).value
        self.assertEqual((error.code, error.message, error.data), (-32601, "Method not found", {"method": "m"}))
        self.assertEqual((error.kind, error.description), ("rpc-error", "Method not found"))

    def test_error_without_data(self):
        error = self.failureResultOf(self.call(fields(error={"code": 7, "message": "no"})), RPCError).value
        self.assertIsNone(error.data)

    def test_error_with_null_id_is_an_rpc_error(self):
        # JSON-RPC 2.0: a request the backend could not parse is answered with id null.
        answer = constant(b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}')
        self.assertEqual(self.failureResultOf(self.call(answer), RPCError).value.code, -32700)

    def test_malformed_error_objects_are_bad_responses(self):
        for bad in ("oops", {"code": "7", "message": "no"}, {"code": 7}, {"code": True, "message": "no"},
                    {"code": 7, "message": 8}, None):
            error = self.backend_failure(self.call(fields(error=bad)), "bad-response")
            self.assertIn("malformed JSON-RPC error object", error.description)

    def test_not_json(self):
        for body in (b"<html>Bad Gateway</html>", b"", b"\xff\xfe{", b"[" * 100000):
            error = self.backend_failure(self.call(constant(body)), "bad-response")
            self.assertIn("not JSON", error.description)

    def test_not_a_json_rpc_response_object(self):
        for body in (b"42", b'"result"', b'{"result":1,"id":1}', b'{"jsonrpc":"1.0","result":1,"id":1}',
                     b'{"jsonrpc":"2.0","id":1}', b'{"jsonrpc":"2.0","result":1,"error":{"code":1,"message":"x"},'
                                                   b'"id":1}'):
            self.backend_failure(self.call(constant(body)), "bad-response")

    def test_batch_response_is_a_bad_response(self):
        self.backend_failure(self.call(constant(b'[{"jsonrpc":"2.0","result":1,"id":1}]')), "bad-response")

    def test_wrong_id(self):
        for reply_id in (2, "1", True, 1.5, None):
            body = json.dumps({"jsonrpc": "2.0", "result": "x", "id": reply_id}).encode()
            error = self.backend_failure(self.call(constant(body)), "bad-response")
            self.assertIn("wrong id (sent 1, got ", error.description)
        error = self.backend_failure(self.call(constant(b'{"jsonrpc":"2.0","result":"x"}')), "bad-response")
        self.assertIn("wrong id (sent 1, got no id)", error.description)

    def test_http_status_errors(self):
        for status in (500, 503, 404, 400):
            error = self.failureResultOf(self.call(constant(b'{"detail":"x"}', status=status)),
                                         HTTPStatusError).value
            self.assertEqual((error.kind, error.status), ("http", status))
            self.assertEqual(error.description, f"backend {URL} answered HTTP {status}")

    def test_redirects_are_not_followed(self):
        backend = Backend(constant(b"", status=302, headers={"Location": "http://elsewhere.test/rpc"}))
        client = self.client_for(backend)
        error = self.failureResultOf(client.call(URL, "m", [], timeout=5), HTTPStatusError).value
        self.assertEqual(error.status, 302)
        self.assertEqual(len(backend.seen), 1)

    def test_declared_content_length_over_the_limit(self):
        big = jsonrpc_reply({"id": 1}, result="x" * 200)
        error = self.backend_failure(self.call(constant(big), max_response_bytes=100), "bad-response")
        self.assertIn(f"response of {len(big)} bytes is larger than the limit of 100 bytes", error.description)

    def test_body_exactly_at_the_limit_is_fine(self):
        body = jsonrpc_reply({"id": 1}, result="x" * 50)
        self.assertEqual(self.successResultOf(self.call(constant(body), max_response_bytes=len(body))), "x" * 50)
        error = self.backend_failure(self.call(constant(body), max_response_bytes=len(body) - 1), "bad-response")
        self.assertIn("larger than the limit", error.description)

    def test_streamed_body_over_the_limit_stops_reading_and_hangs_up(self):
        backend = Backend()
        backend.answer = backend.hang
        client = self.client_for(backend, max_response_bytes=100)
        d = client.call(URL, "m", [], timeout=5)
        [(_, request)] = backend.pending
        request.write(b'{"jsonrpc":"2.0","result":"' + b"x" * 60)     # no Content-Length: chunked
        self.stub.flush()
        self.assertNoResult(d)
        request.write(b"x" * 60)
        self.stub.flush()
        error = self.backend_failure(d, "bad-response")
        self.assertIn("larger than the limit of 100 bytes", error.description)
        self.stub.flush()
        self.assertEqual(backend.lost, [request])     # the client closed the connection mid-body
        self.assertEqual(client.endpoint(URL).in_flight, 0)
        self.assert_no_timers()

    def test_gzip_bomb_is_bounded_by_the_decoded_size(self):
        import gzip
        body = gzip.compress(jsonrpc_reply({"id": 1}, result="0" * 100000))
        self.assertLess(len(body), 1000)
        error = self.backend_failure(self.call(constant(body, headers={"Content-Encoding": "gzip"}),
                                               max_response_bytes=10000), "bad-response")
        self.assertIn("larger than the limit of 10000 bytes", error.description)

    def test_gzip_bomb_is_inflated_no_further_than_the_limit(self):
        # 64 MB of zeros in 64 KB of gzip: decoded whole (as Twisted's GzipDecoder does) it
        # would need 64 MB at once; counted as it is decoded, about the limit.
        body = gzip_bomb(64)
        tracemalloc.start()
        try:
            d = self.call(constant(body, headers={"Content-Encoding": "gzip"}), max_response_bytes=2 * len(body))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertLess(peak, 16 * len(body))
        error = self.backend_failure(d, "bad-response")
        self.assertIn(f"larger than the limit of {2 * len(body)} bytes once decompressed", error.description)

    def test_stacked_encodings_are_refused_before_decoding(self):
        # gzip of gzip: 1.8 KB that once inflated to 1 GiB.
        body = gzip.compress(gzip.compress(jsonrpc_reply({"id": 1}, result="ok")))
        for header in ("gzip, gzip", "gzip,x-gzip"):
            error = self.backend_failure(self.call(constant(body, headers={"Content-Encoding": header})),
                                         "bad-encoding")
            self.assertIn("is stacked; one gzip layer at most is accepted", error.description)
            self.assertIn(f"backend {URL} sent a response the gateway cannot decode", error.description)

    def test_unknown_encodings_are_refused(self):
        for header in ("br", "deflate", "gzip, br", "x" * 500):
            error = self.backend_failure(self.call(constant(b"{}", headers={"Content-Encoding": header})),
                                         "bad-encoding")
            self.assertIn("unsupported Content-Encoding", error.description)
            self.assertLess(len(error.description), 200)

    def test_gzip_identity_and_their_spellings_are_decoded(self):
        reply = jsonrpc_reply({"id": 1}, result="ok")
        for header, body in (("gzip", gzip.compress(reply)), ("GZIP", gzip.compress(reply)),
                             ("x-gzip", gzip.compress(reply)), ("identity", reply), ("identity, gzip",
                                                                                     gzip.compress(reply))):
            self.assertEqual(self.successResultOf(self.call(constant(body, headers={"Content-Encoding": header}))),
                             "ok", header)

    def test_decoded_size_exactly_at_the_limit_is_fine(self):
        reply = jsonrpc_reply({"id": 1}, result="x" * 500)
        body = gzip.compress(reply)
        answer = constant(body, headers={"Content-Encoding": "gzip"})
        self.assertEqual(self.successResultOf(self.call(answer, max_response_bytes=len(reply))), "x" * 500)
        error = self.backend_failure(self.call(answer, max_response_bytes=len(reply) - 1), "bad-response")
        self.assertIn("once decompressed", error.description)

    def test_broken_and_truncated_gzip_are_bad_responses(self):
        body = gzip.compress(jsonrpc_reply({"id": 1}, result="x" * 500))
        error = self.backend_failure(self.call(constant(b"not gzip at all", headers={"Content-Encoding": "gzip"})),
                                     "bad-response")
        self.assertIn("not valid gzip", error.description)
        error = self.backend_failure(self.call(constant(body[:len(body) // 2], headers={"Content-Encoding": "gzip"})),
                                     "bad-response")
        self.assertIn("ends before its gzip stream does", error.description)

    def test_connection_closed_without_an_answer(self):
        def hang_up(message, request):
            request.channel.transport.abortConnection()
            return NOT_DONE_YET
        client = self.client_for(Backend(hang_up))
        d = client.call(URL, "m", [], timeout=5)
        self.stub.flush()
        error = self.backend_failure(d, "refused")
        self.assertEqual(error.description, f"backend {URL} closed the connection without answering")
        self.assert_no_timers()

    def test_connection_errors_are_refused_with_a_short_description(self):
        cases = [
            (neterror.ConnectionRefusedError("Connection refused"), f"backend {URL} refused the connection"),
            (neterror.DNSLookupError("backend.test"), f"backend {URL}: host not found"),
            (neterror.TCPTimedOutError(), f"backend {URL}: connection attempt timed out"),
            (neterror.NoRouteError(), f"could not connect to backend {URL}"),
        ]
        for exception, description in cases:
            http = FakeHTTP(exception)
            client = JSONRPCClient(http, self.clock)
            error = self.backend_failure(client.call(URL, "m", [], timeout=5), "refused")
            self.assertEqual(error.description, description)
            self.assertEqual(client.endpoint(URL).in_flight, 0)
        self.assert_no_timers()

    def test_unexpected_exceptions_are_logged_and_described_briefly(self):
        client = JSONRPCClient(FakeHTTP(RuntimeError("kaboom")), self.clock)
        with self.assertLogs(LOGGER, "WARNING") as logs:
            error = self.backend_failure(client.call(URL, "m", [], timeout=5), "refused")
        self.assertEqual(error.description, f"could not reach backend {URL}")
        self.assertIn("kaboom", "\n".join(logs.output))


# -- timeouts and cancellation -------------------------------------------------------------------

class TimeoutTests(RPCTestCase):
    def setUp(self):
        super().setUp()
        self.backend = Backend()
        self.backend.answer = self.backend.hang

    def test_timeout_cancels_the_request(self):
        client = self.client_for(self.backend)
        d = client.call(URL, "m", [], timeout=5)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        error = self.backend_failure(d, "timeout")
        self.assertEqual(error.description, f"backend {URL} timed out after 5 s")
        self.stub.flush()
        self.assertEqual(len(self.backend.lost), 1)       # the HTTP request was cancelled, not abandoned
        self.assertEqual(client.endpoint(URL).in_flight, 0)
        self.assertEqual(client.outstanding, 0)
        self.assert_no_timers()

    def test_fractional_timeouts_are_described_exactly(self):
        client = self.client_for(self.backend)
        d = client.call(URL, "m", [], timeout=2.5)
        self.clock.advance(2.5)
        self.assertIn("timed out after 2.5 s", self.backend_failure(d, "timeout").description)

    def test_timeout_covers_reading_the_body(self):
        client = self.client_for(self.backend)
        d = client.call(URL, "m", [], timeout=5)
        [(_, request)] = self.backend.pending
        request.write(b'{"jsonrpc":"2.0",')          # headers and part of the body, then silence
        self.stub.flush()
        self.clock.advance(5)
        self.backend_failure(d, "timeout")
        self.stub.flush()
        self.assertEqual(self.backend.lost, [request])
        self.assert_no_timers()

    def test_no_timer_left_after_success_or_failure(self):
        client = self.client_for(Backend())
        self.successResultOf(client.call(URL, "m", [], timeout=5))
        self.assert_no_timers()
        client = self.client_for(Backend(constant(b"", status=500)))
        self.failureResultOf(client.call(URL, "m", [], timeout=5))
        self.assert_no_timers()

    def test_late_answer_after_timeout_is_ignored(self):
        client = self.client_for(self.backend)
        d = client.call(URL, "m", [], timeout=5)
        self.clock.advance(5)
        self.backend_failure(d, "timeout")
        self.backend.finish_pending()     # the server never noticed (no flush yet) and answers anyway
        self.stub.flush()
        self.assertEqual(client.outstanding, 0)

    def test_timeout_includes_time_spent_queued(self):
        client = self.client_for(self.backend, max_concurrent=1)
        first = client.call(URL, "m", ["first"], timeout=10)
        second = client.call(URL, "m", ["second"], timeout=3)
        ep = client.endpoint(URL)
        self.assertEqual((ep.in_flight, ep.queued), (1, 1))
        self.clock.advance(3)
        self.backend_failure(second, "timeout")
        self.assertEqual((ep.in_flight, ep.queued), (1, 0))    # it left the queue
        self.assertEqual(ep.breaker.failures, 0)     # the backend never saw it: not the backend's fault
        self.assertEqual(self.backend.params_seen(), [["first"]])
        self.backend.finish_pending()
        self.stub.flush()
        self.successResultOf(first)
        self.assertEqual(self.backend.params_seen(), [["first"]])   # the timed-out one was never sent
        self.assert_no_timers()


class CancellationTests(RPCTestCase):
    def setUp(self):
        super().setUp()
        self.backend = Backend()
        self.backend.answer = self.backend.hang

    def test_cancelling_a_sent_request_frees_its_slot_for_the_next(self):
        client = self.client_for(self.backend, max_concurrent=1)
        first = client.call(URL, "m", ["first"], timeout=10)
        second = client.call(URL, "m", ["second"], timeout=10)
        ep = client.endpoint(URL)
        self.assertEqual(self.backend.params_seen(), [["first"]])
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertEqual(self.backend.params_seen(), [["first"], ["second"]])   # the next one started
        self.assertEqual((ep.in_flight, ep.queued), (1, 0))
        self.stub.flush()
        self.assertEqual(len(self.backend.lost), 1)          # the first HTTP request was aborted
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)   # only the second one's timer
        self.backend.finish_pending(-1)
        self.stub.flush()
        self.assertEqual(self.successResultOf(second)["params"], ["second"])
        self.assertEqual(ep.in_flight, 0)
        self.assertEqual(ep.breaker.failures, 0)
        self.assert_no_timers()

    def test_cancelling_a_queued_request_removes_it_from_the_queue(self):
        client = self.client_for(self.backend, max_concurrent=1)
        first = client.call(URL, "m", ["first"], timeout=10)
        second = client.call(URL, "m", ["second"], timeout=10)
        third = client.call(URL, "m", ["third"], timeout=10)
        second.cancel()
        self.failureResultOf(second, CancelledError)
        self.assertEqual(client.endpoint(URL).queued, 1)
        self.backend.finish_pending()
        self.stub.flush()
        self.successResultOf(first)
        self.assertEqual(self.backend.params_seen(), [["first"], ["third"]])
        self.backend.finish_pending()
        self.stub.flush()
        self.successResultOf(third)
        self.assert_no_timers()

    def test_cancelling_while_the_body_is_being_read(self):
        client = self.client_for(self.backend)
        d = client.call(URL, "m", [], timeout=10)
        [(_, request)] = self.backend.pending
        request.write(b'{"jsonrpc":')
        self.stub.flush()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.stub.flush()
        self.assertEqual(self.backend.lost, [request])
        self.assertEqual(client.endpoint(URL).in_flight, 0)
        self.assert_no_timers()

    def test_when_idle_fires_once_nothing_is_queued_or_in_flight(self):
        client = self.client_for(self.backend, max_concurrent=1)
        self.successResultOf(client.when_idle())
        calls = [client.notify(URL, "m", [i], timeout=10) for i in range(2)]
        idle = client.when_idle()
        self.backend.finish_pending()
        self.stub.flush()
        self.successResultOf(calls[0])
        self.assertNoResult(idle)
        self.clock.advance(10)
        self.backend_failure(calls[1], "timeout")
        self.successResultOf(idle)

    def test_close_fails_everything_outstanding_and_refuses_new_calls(self):
        client = self.client_for(self.backend, max_concurrent=1)
        sent, queued = client.call(URL, "m", [], timeout=10), client.call(URL, "m", [], timeout=10)
        client.close("shutting down")
        for d in (sent, queued):
            self.assertIn("shutting down", self.backend_failure(d, "cancelled").description)
        self.backend_failure(client.call(URL, "m", [], timeout=10), "cancelled")
        self.assertEqual(len(self.backend.seen), 1)
        self.assertEqual(client.outstanding, 0)
        self.assert_no_timers()


# -- the concurrency bound -----------------------------------------------------------------------

class ConcurrencyTests(RPCTestCase):
    def setUp(self):
        super().setUp()
        self.backend = Backend()
        self.backend.answer = self.backend.hang
        self.client = self.client_for(self.backend, max_concurrent=2, max_queued=2)

    def call(self, tag, url=URL):
        return self.client.call(url, "m", [tag], timeout=30)

    def test_in_flight_bound_queue_and_overload(self):
        calls = [self.call(i) for i in range(4)]
        ep = self.client.endpoint(URL)
        self.assertEqual((ep.in_flight, ep.queued), (2, 2))
        self.assertEqual(self.backend.params_seen(), [[0], [1]])
        error = self.backend_failure(self.call(4), "overloaded")
        self.assertEqual(error.description, f"backend {URL} is overloaded: 2 requests waiting")
        self.assertEqual(len(self.backend.seen), 2)
        # One answer frees a slot: the oldest queued request goes next (FIFO), before the answer's
        # callbacks run, so a call made from one of them finds room in the queue.
        late = []
        calls[0].addCallback(lambda result: late.append(self.call("late")) or result)
        self.backend.finish_pending(0)
        self.stub.flush()
        self.assertEqual(self.successResultOf(calls[0])["params"], [0])
        self.assertEqual(self.backend.params_seen(), [[0], [1], [2]])
        self.assertNoResult(late[0])
        self.assertEqual((ep.in_flight, ep.queued), (2, 2))
        calls.append(late[0])
        for _ in range(4):
            self.backend.finish_pending(0)
            self.stub.flush()
        self.assertEqual([self.successResultOf(d)["params"] for d in calls[1:]], [[1], [2], [3], ["late"]])
        self.assertEqual(self.backend.params_seen(), [[0], [1], [2], [3], ["late"]])
        self.assertEqual((ep.in_flight, ep.queued), (0, 0))
        self.assert_no_timers()

    def test_newcomers_do_not_overtake_the_queue(self):
        # The first request hangs, the others are answered at once: when the first is answered
        # the queue drains synchronously, and a call made from an answer's callback finds a
        # free slot while older requests still wait.  It must go behind them.
        def answer(message, request):
            if message["params"] == ["A"]:
                return self.backend.hang(message, request)
            return Backend.echo(message, request)
        self.backend.answer = answer
        client = self.client_for(self.backend, max_concurrent=1)
        client.call(URL, "m", ["A"], timeout=30)
        b = client.call(URL, "m", ["B"], timeout=30)
        c = client.call(URL, "m", ["C"], timeout=30)
        late = []
        b.addCallback(lambda _: late.append(client.call(URL, "m", ["late"], timeout=30)))
        self.backend.finish_pending()
        self.stub.flush()
        self.successResultOf(c)
        self.successResultOf(late[0])
        self.assertEqual(self.backend.params_seen(), [["A"], ["B"], ["C"], ["late"]])

    def test_zero_queue_refuses_as_soon_as_all_slots_are_busy(self):
        client = self.client_for(self.backend, max_concurrent=1, max_queued=0)
        client.call(URL, "m", [], timeout=5)
        self.assertIn("0 requests waiting", self.backend_failure(client.call(URL, "m", [], timeout=5),
                                                                  "overloaded").description)

    def test_endpoints_have_their_own_bounds(self):
        for i in range(4):
            self.call(i)
        self.backend_failure(self.call("more"), "overloaded")
        self.call("other", OTHER_URL)
        self.assertEqual(self.client.endpoint(OTHER_URL).in_flight, 1)
        self.assertEqual(self.backend.seen[-1][1:3], ("other.test", b"/rpc"))

    def test_many_queued_requests_answered_synchronously_do_not_recurse(self):
        client = self.client_for(Backend(), max_concurrent=1, max_queued=5000)
        calls = [client.call(URL, "m", [i], timeout=5) for i in range(3000)]
        self.assertEqual([self.successResultOf(d)["params"] for d in calls], [[i] for i in range(3000)])


# -- the circuit breaker -------------------------------------------------------------------------

class Switchable:
    """A backend answer that can be changed between calls: 'ok', 'down' (500) or 'hang'."""

    def __init__(self, backend):
        self.backend = backend
        self.mode = "ok"

    def __call__(self, message, request):
        if self.mode == "down":
            request.setResponseCode(500)
            return b"Internal Server Error"
        if self.mode == "hang":
            return self.backend.hang(message, request)
        if self.mode == "rpc-error":
            return jsonrpc_reply(message, error={"code": 1, "message": "no such user"})
        if self.mode == "404":
            request.setResponseCode(404)
            return b""
        return Backend.echo(message, request)


class BreakerTests(RPCTestCase):
    def setUp(self):
        super().setUp()
        self.backend = Backend()
        self.answer = self.backend.answer = Switchable(self.backend)
        self.client = self.client_for(self.backend, breaker_threshold=3, breaker_reset=10)
        self.ep = self.client.endpoint(URL)

    def call(self, url=URL):
        return self.client.call(url, "m", [], timeout=5)

    def fail_times(self, n, url=URL):
        self.answer.mode = "down"
        for _ in range(n):
            self.backend_failure(self.call(url), "http")

    def open_circuit(self):
        with self.assertLogs(LOGGER, "WARNING") as logs:
            self.fail_times(3)
        self.assertIn("circuit open after 3 consecutive failures", logs.output[-1])
        self.assertEqual(self.ep.breaker.state, BreakerState.OPEN)

    def test_opens_after_threshold_and_fails_fast_without_the_network(self):
        self.fail_times(2)
        self.assertEqual(self.ep.breaker.state, BreakerState.CLOSED)
        with self.assertLogs(LOGGER, "WARNING") as logs:
            self.fail_times(1)
        self.assertEqual(logs.output, [f"WARNING:{LOGGER}:backend {URL}: circuit open after 3 consecutive "
                                       f"failures; retrying in 10 s"])
        self.assertEqual(self.ep.breaker.state, BreakerState.OPEN)
        self.answer.mode = "ok"
        seen = len(self.backend.seen)
        error = self.backend_failure(self.call(), "unavailable")
        self.assertEqual(error.description,
                         f"backend {URL} unavailable (circuit open after 3 failures); retrying in 10 s")
        self.clock.advance(4)
        self.assertIn("retrying in 6 s", self.backend_failure(self.call(), "unavailable").description)
        self.assertEqual(len(self.backend.seen), seen)
        self.assert_no_timers()

    def test_json_rpc_errors_and_4xx_mean_the_backend_is_alive(self):
        for alive, kind in (("rpc-error", "rpc-error"), ("404", "http")):
            self.fail_times(2)
            self.answer.mode = alive
            self.backend_failure(self.call(), kind)
            self.assertEqual(self.ep.breaker.failures, 0)
        self.fail_times(2)
        self.answer.mode = "ok"
        self.successResultOf(self.call())
        self.assertEqual(self.ep.breaker.failures, 0)
        self.fail_times(2)
        self.assertEqual(self.ep.breaker.state, BreakerState.CLOSED)

    def test_bad_responses_timeouts_and_refusals_count(self):
        self.answer.mode = "hang"
        d = self.call()
        self.clock.advance(5)
        self.backend_failure(d, "timeout")
        self.backend.answer = constant(b"garbage")
        self.backend_failure(self.call(), "bad-response")
        self.assertEqual(self.ep.breaker.failures, 2)
        client = JSONRPCClient(FakeHTTP(neterror.ConnectionRefusedError()), self.clock, breaker_threshold=2)
        for _ in range(2):
            self.backend_failure(client.call(URL, "m", [], timeout=5), "refused")
        self.backend_failure(client.call(URL, "m", [], timeout=5), "unavailable")
        self.assertEqual(client._http.posts, 2)

    def test_half_open_lets_exactly_one_probe_through_and_success_closes(self):
        self.open_circuit()
        self.clock.advance(10)
        self.answer.mode = "hang"
        seen = len(self.backend.seen)
        with self.assertLogs(LOGGER, "INFO") as logs:
            probe = self.call()
            self.assertEqual(self.ep.breaker.state, BreakerState.HALF_OPEN)
            self.assertIn("retrying now", self.backend_failure(self.call(), "unavailable").description)
            self.assertEqual(len(self.backend.seen), seen + 1)
            self.backend.finish_pending()
            self.stub.flush()
            self.successResultOf(probe)
        self.assertIn("circuit closed", logs.output[-1])
        self.assertEqual(self.ep.breaker.state, BreakerState.CLOSED)
        self.answer.mode = "ok"
        self.successResultOf(self.call())
        self.successResultOf(self.call())

    def test_failed_probe_reopens_for_another_reset_period(self):
        self.open_circuit()
        self.clock.advance(10)
        with self.assertLogs(LOGGER, "WARNING"):
            self.backend_failure(self.call(), "http")        # the probe
        self.assertEqual(self.ep.breaker.state, BreakerState.OPEN)
        self.assertIn("after 4 failures); retrying in 10 s",
                      self.backend_failure(self.call(), "unavailable").description)
        self.clock.advance(9.9)
        self.backend_failure(self.call(), "unavailable")
        self.clock.advance(0.1)
        self.answer.mode = "ok"
        self.successResultOf(self.call())
        self.assertEqual(self.ep.breaker.state, BreakerState.CLOSED)

    def test_cancelled_probe_lets_the_next_request_probe(self):
        self.open_circuit()
        self.clock.advance(10)
        self.answer.mode = "hang"
        probe = self.call()
        probe.cancel()
        self.failureResultOf(probe, CancelledError)
        self.assertEqual(self.ep.breaker.state, BreakerState.HALF_OPEN)
        self.answer.mode = "ok"
        self.successResultOf(self.call())
        self.assertEqual(self.ep.breaker.state, BreakerState.CLOSED)

    def test_only_one_of_simultaneous_calls_probes(self):
        self.open_circuit()
        self.clock.advance(10)
        self.answer.mode = "hang"
        seen = len(self.backend.seen)
        calls = [self.call() for _ in range(3)]
        self.assertNoResult(calls[0])
        for d in calls[1:]:
            self.backend_failure(d, "unavailable")
        self.assertEqual(len(self.backend.seen), seen + 1)
        self.clock.advance(5)                    # the probe times out: open again
        self.backend_failure(calls[0], "timeout")
        self.assertEqual(self.ep.breaker.state, BreakerState.OPEN)
        self.assert_no_timers()

    def test_requests_waiting_when_the_circuit_opens_are_not_sent(self):
        client = self.client_for(self.backend, max_concurrent=1, breaker_threshold=1)
        self.answer.mode = "hang"
        first = client.call(URL, "m", ["first"], timeout=5)
        waiting = client.call(URL, "m", ["waiting"], timeout=30)
        self.clock.advance(5)             # the first times out and opens the circuit
        self.backend_failure(first, "timeout")
        self.backend_failure(waiting, "unavailable")
        self.assertEqual(self.backend.params_seen(), [["first"]])
        self.assert_no_timers()

    def test_answers_to_requests_sent_before_the_circuit_opened_are_ignored(self):
        client = self.client_for(self.backend, breaker_threshold=1)
        breaker = client.endpoint(URL).breaker
        self.answer.mode = "hang"
        early = client.call(URL, "m", ["early"], timeout=30)
        self.answer.mode = "down"
        with self.assertLogs(LOGGER, "WARNING"):
            self.backend_failure(client.call(URL, "m", [], timeout=30), "http")
        self.backend.finish_pending()
        self.stub.flush()
        self.successResultOf(early)
        self.assertEqual(breaker.state, BreakerState.OPEN)     # it says nothing about the backend now
        self.clock.advance(10)
        self.answer.mode = "hang"
        probe = client.call(URL, "m", ["probe"], timeout=30)
        self.assertEqual(breaker.state, BreakerState.HALF_OPEN)
        self.answer.mode = "down"
        self.backend_failure(client.call(URL, "m", [], timeout=30), "unavailable")
        probe.cancel()
        self.failureResultOf(probe, CancelledError)

    def test_other_endpoints_are_unaffected(self):
        self.open_circuit()
        self.answer.mode = "ok"
        self.backend_failure(self.call(), "unavailable")
        self.successResultOf(self.call(OTHER_URL))
        self.assertEqual(self.client.endpoint(OTHER_URL).breaker.state, BreakerState.CLOSED)


# -- the same through the lean path of GatewayHTTPClient ---------------------------------------------

class LeanPath:
    """Runs a test class through ``GatewayHTTPClient.post_body`` instead of treq's ``post``."""

    def client_for(self, backend, **options):
        self.stub = RequestTraversalAgent(backend)      # flush() like StubTreq's
        http = GatewayHTTPClient(self.stub)
        client = JSONRPCClient(http, self.clock, **options)
        self.assertIs(client._lean, http)
        return client


class LeanRequestTests(LeanPath, RequestTests):
    pass


class LeanResponseTests(LeanPath, ResponseTests):
    pass


class LeanTimeoutTests(LeanPath, TimeoutTests):
    pass


class LeanCancellationTests(LeanPath, CancellationTests):
    pass


class LeanConcurrencyTests(LeanPath, ConcurrencyTests):
    pass


class LeanBreakerTests(LeanPath, BreakerTests):
    pass


class LeanPathPartsTests(SynchronousTestCase):
    def test_the_url_is_encoded_once_the_way_treq_encodes_it(self):
        ep = Endpoint("http://b\u00e4ckend.test:8080/rpc/\u00e9?x=\u00fc", Clock(), max_concurrent=1,
                      max_queued=0, breaker_threshold=1, breaker_reset=1)
        self.assertEqual(ep.request_url, b"http://xn--bckend-bua.test:8080/rpc/%C3%A9?x=%C3%BC")
        self.assertIs(ep.request_url, ep.request_url)

    def test_a_response_that_breaks_its_reader_fails_the_request_at_once_and_frees_its_slot(self):
        class BrokenHeaders:
            def getRawHeaders(self, name, default=None):
                raise RuntimeError("headers gone")

        class Response:
            code, length, headers = 200, 2, BrokenHeaders()

        class AnswersLater(GatewayHTTPClient):
            receiver = None

            def post_body(self, url, body, fields, receiver):
                self.receiver = receiver
                return self

            def cancel(self):
                raise AssertionError("a finished request is not cancelled")

        clock = Clock()
        http = AnswersLater(None)
        client = JSONRPCClient(http, clock)
        d = client.call(URL, "m", [], timeout=5)
        self.assertNoResult(d)
        with self.assertLogs("fmspy_gateway.bridge.rpc", "WARNING"):
            http.receiver.response_received(Response())     # as a connection's read delivers it
        error = self.failureResultOf(d, BackendError).value
        self.assertEqual(error.kind, "refused")
        self.assertEqual((client.outstanding, client.endpoint(URL).in_flight), (0, 0))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_treq_like_client_is_driven_through_post(self):
        self.assertIsNone(JSONRPCClient(FakeHTTP(RuntimeError()), Clock())._lean)

    def test_make_http_client_keeps_the_treq_api(self):
        http = make_http_client(Clock(), pool=make_connection_pool(Clock()))
        self.assertIsInstance(http, HTTPClient)
        self.assertIsInstance(http, GatewayHTTPClient)

    def test_one_endpoint_per_scheme_host_and_port(self):
        factory = _CachingEndpointFactory(Clock())
        first = factory.endpointForURI(URI.fromBytes(b"http://backend.test:8080/rpc"))
        self.assertIs(factory.endpointForURI(URI.fromBytes(b"http://backend.test:8080/other")), first)
        self.assertIsNot(factory.endpointForURI(URI.fromBytes(b"http://backend.test:8081/rpc")), first)
        tls = factory.endpointForURI(URI.fromBytes(b"https://backend.test:8080/rpc"))
        self.assertIsNot(tls, first)
        self.assertIs(factory.endpointForURI(URI.fromBytes(b"https://backend.test:8080/rpc")), tls)

    def test_the_endpoint_cache_is_bounded(self):
        factory = _CachingEndpointFactory(Clock(), max_cached=2)
        a = factory.endpointForURI(URI.fromBytes(b"http://a.test/"))
        factory.endpointForURI(URI.fromBytes(b"http://b.test/"))
        factory.endpointForURI(URI.fromBytes(b"http://a.test/"))          # a is the most recently used
        factory.endpointForURI(URI.fromBytes(b"http://c.test/"))          # b goes
        self.assertIs(factory.endpointForURI(URI.fromBytes(b"http://a.test/")), a)
        self.assertEqual(len(factory._endpoints), 2)

    def test_other_schemes_are_not_supported(self):
        factory = _CachingEndpointFactory(Clock())
        self.assertRaises(SchemeNotSupported, factory.endpointForURI, URI.fromBytes(b"ftp://a.test/"))


# -- on a real socket -----------------------------------------------------------------------------

class LoopbackTests(TestCase):
    """The real HTTP client on 127.0.0.1: connection reuse, no cookie jar, a refused connection."""

    def setUp(self):
        from twisted.internet import reactor
        self.reactor = reactor
        self.pool = make_connection_pool(reactor)
        self.client = JSONRPCClient(make_http_client(reactor, pool=self.pool), reactor)

    @inlineCallbacks
    def tearDown(self):
        yield self.pool.closeCachedConnections()

    def serve(self, resource):
        site = TrackingSite(resource)
        site.timeOut = None
        port = self.reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(lambda: defer.gatherResults(list(site.closed)))
        self.addCleanup(port.stopListening)
        return site, f"http://127.0.0.1:{port.getHost().port}/rpc"

    @inlineCallbacks
    def test_sequential_calls_share_one_connection_and_no_cookies(self):
        def answer(message, request):
            request.addCookie("session", "user-a")
            return Backend.echo(message, request)
        backend = Backend(answer)
        site, url = self.serve(backend)
        first = yield self.client.call(url, "a", [1], timeout=5, headers={"X-RTMP-Client-Id": "c1"})
        second = yield self.client.call(url, "b", [2], timeout=5)
        self.assertEqual((first, second), ({"method": "a", "params": [1]}, {"method": "b", "params": [2]}))
        self.assertEqual(site.connections, 1)
        self.assertEqual(backend.seen[0][3]["x-rtmp-client-id"], ["c1"])
        self.assertNotIn("cookie", backend.seen[1][3])   # one user's Set-Cookie must not reach the next call
        self.assertEqual(backend.seen[1][3]["accept-encoding"], ["gzip"])
        self.assertEqual(self.client.endpoint(url).in_flight, 0)

    @inlineCallbacks
    def test_closed_port_is_refused(self):
        port = self.reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        url = f"http://127.0.0.1:{number}/rpc"
        error = yield self.assertFailure(self.client.call(url, "m", [], timeout=5), BackendError)
        self.assertEqual((error.kind, error.description), ("refused", f"backend {url} refused the connection"))
