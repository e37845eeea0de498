"""The bundled HTTP site's request bounds (issue 8, item 6), driven byte by byte over a StringTransport.

What is proved here is what happens *before* a resource runs: a request the
guard of its path refuses, or whose declared body is over ``max_body``, is
answered at once, after the headers alone, and its body is never stored (the
request has no content file) nor handed to a resource; what the client still
sends is dropped, and the connection cut, and that logged, after ``max_body``
more bytes or ``close-linger`` seconds.
"""
import json

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from fmspy_gateway.config import HTTPConfig
from fmspy_gateway.server.http import BoundedSite, build_site

MAX_BODY = 1000
LOGGER = "fmspy_gateway.server.http"


class HalfClosableTransport(StringTransport):
    """A StringTransport that records a half-close, as a TCP transport performs it."""

    write_closed = False

    def loseWriteConnection(self):
        self.write_closed = True


class Recorder(Resource):
    """The resource behind the guard: remembers every request that reached it, with its body."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.bodies = []

    def render_POST(self, request):
        self.bodies.append(request.content.read())
        return b"ok"


def token_guard(headers, length):
    if headers.getRawHeaders(b"authorization") == [b"Bearer t"]:
        return None
    return 401, [(b"Content-Type", b"application/json"), (b"WWW-Authenticate", b"Bearer")], b'{"error": "no"}'


class SiteTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.recorder = Recorder()
        root = Resource()
        root.putChild(b"rpc", self.recorder)
        root.putChild(b"other", Recorder())
        self.site = BoundedSite(root, max_body=MAX_BODY, guards={b"rpc": token_guard}, reactor=self.clock)
        self.site.startFactory()
        self.addCleanup(self.site.stopFactory)

    def connect(self):
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        transport = HalfClosableTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        channel.makeConnection(transport)
        return channel, transport

    def post(self, path=b"/rpc", length=10 ** 9, token=None, extra=b"", chunked=False):
        """A channel that has received the headers of a POST (no body yet), and its transport."""
        channel, transport = self.connect()
        head = b"POST " + path + b" HTTP/1.1\r\nHost: h\r\n"
        head += b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % length
        if token is not None:
            head += b"Authorization: Bearer " + token + b"\r\n"
        for byte in range(len(head + extra + b"\r\n")):      # byte by byte: nothing depends on packet edges
            channel.dataReceived((head + extra + b"\r\n")[byte:byte + 1])
        return channel, transport

    def assert_refused_at_once(self, channel, transport, status):
        answer = transport.value()
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 %d " % status), answer)
        self.assertIn(b"Connection: close", head)
        self.assertIn(b"Content-Length: %d" % len(body), head)
        self.assertTrue(transport.write_closed)
        self.assertIsNone(channel.requests[-1].content)       # no body stored, not even a temporary file
        return head, body

    def test_a_guard_refuses_on_the_headers_and_the_body_is_dropped_never_stored(self):
        with self.assertNoLogs(LOGGER, "WARNING"):      # the guard logs its own refusals
            channel, transport = self.post()
        head, body = self.assert_refused_at_once(channel, transport, 401)
        self.assertIn(b"WWW-Authenticate: Bearer", head)
        self.assertEqual(json.loads(body), {"error": "no"})
        before = transport.value()
        for _ in range(MAX_BODY // 100):
            channel.dataReceived(b"x" * 100)
        self.assertEqual(transport.value(), before)          # nothing more answered
        self.assertFalse(transport.disconnecting)
        self.assertIsNone(channel.requests[-1].content)
        with self.assertLogs(LOGGER, "WARNING") as logged:
            channel.dataReceived(b"x")                       # past max_body dropped: enough, cut it
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.recorder.bodies, [])
        self.assertIn(f"127.0.0.1:50000: sent more than {MAX_BODY} bytes after its request was refused "
                      f"(push-max-body): cut, {MAX_BODY + 1} bytes dropped", logged.output[0])

    def test_a_refused_client_that_keeps_the_connection_open_is_cut_after_the_linger(self):
        # README, Push API: "read and dropped until it stops, for at most 2 s" (close-linger): the figure
        # written there, not the default's name, which a change would carry along.
        channel, transport = self.post()
        channel.dataReceived(b"x" * 10)
        self.clock.advance(2.0 - 0.1)
        self.assertFalse(transport.disconnected)
        with self.assertLogs(LOGGER, "WARNING") as logged:
            self.clock.advance(0.1)
        self.assertTrue(transport.disconnected)
        self.assertIn("127.0.0.1:50000: still connected 2 s after its request was refused (close-linger): cut, 10 "
                      "bytes dropped", logged.output[0])

    def test_the_linger_is_the_sites(self):
        self.site.linger = 0.5
        channel, transport = self.post()
        with self.assertLogs(LOGGER, "WARNING"):
            self.clock.advance(0.5)
        self.assertTrue(transport.disconnected)

    def test_a_refused_client_that_goes_leaves_no_timer(self):
        channel, transport = self.post()
        linger = [call for call in self.clock.getDelayedCalls() if call.getTime() == HTTPConfig.close_linger]
        self.assertEqual(len(linger), 1)
        channel.connectionLost(None)
        self.assertTrue(linger[0].cancelled)

    def test_the_guard_sees_the_path_as_traversal_will(self):
        for path in (b"/rpc", b"/rpc/", b"/rpc?x=1", b"/%72pc", b"/rpc/deeper"):
            channel, transport = self.post(path)
            self.assert_refused_at_once(channel, transport, 401)

    def test_100_continue_is_not_sent_to_a_refused_request(self):
        channel, transport = self.post(extra=b"Expect: 100-continue\r\n")
        self.assertNotIn(b"100 Continue", transport.value())
        self.assert_refused_at_once(channel, transport, 401)

    def test_a_declared_length_over_max_body_is_413_at_once_on_any_path(self):
        for path, token in ((b"/rpc", b"t"), (b"/other", None), (b"/", None)):
            with self.assertLogs(LOGGER, "WARNING") as logs:
                channel, transport = self.post(path, length=MAX_BODY + 1, token=token)
                self.site.limit_log._kinds.clear()      # next case logs again
            _, body = self.assert_refused_at_once(channel, transport, 413)
            self.assertIn(f"larger than {MAX_BODY} bytes (push-max-body)", json.loads(body)["error"])
            self.assertIn("push-max-body", logs.output[0])
        self.assertEqual(self.site.limit_log.counts["push-max-body"], 3)

    def test_a_413_client_that_sends_on_is_cut_and_that_logged_beside_its_refusal(self):
        """The cut has a kind of its own: the 413 just logged under push-max-body does not silence it."""
        with self.assertLogs(LOGGER, "WARNING") as logs:
            channel, transport = self.post(length=MAX_BODY + 1, token=b"t")
            channel.dataReceived(b"x" * (MAX_BODY + 1))
        self.assertTrue(transport.disconnected)
        self.assertEqual(len(logs.output), 2)
        self.assertIn("its body is larger than", logs.output[0])
        self.assertIn(f"sent more than {MAX_BODY} bytes after its request was refused (push-max-body): cut",
                      logs.output[1])
        # The cut took the linger's timer with it.
        self.assertEqual([call for call in self.clock.getDelayedCalls() if call.active()
                          and call.getTime() == HTTPConfig.close_linger], [])

    def test_a_site_names_its_own_options(self):
        """The RTMPS port's site (server/rtmpt.py) is bounded by RTMP's options and names them."""
        site = BoundedSite(Resource(), max_body=MAX_BODY, reactor=self.clock, linger=0.5,
                           body_option="maxRequestBytes", linger_option="closeLinger")
        site.startFactory()
        self.addCleanup(site.stopFactory)
        self.site = site
        with self.assertLogs(LOGGER, "WARNING") as logs:
            channel, transport = self.post(length=MAX_BODY + 1)
            self.clock.advance(0.5)
        _, body = self.assert_refused_at_once(channel, transport, 413)
        self.assertIn(f"larger than {MAX_BODY} bytes (maxRequestBytes)", json.loads(body)["error"])
        self.assertIn("(maxRequestBytes)", logs.output[0])
        self.assertIn("still connected 0.5 s after its request was refused (closeLinger): cut", logs.output[1])

    def test_a_chunked_body_is_refused_as_soon_as_it_crosses_max_body(self):
        channel, transport = self.post(token=b"t", chunked=True)
        self.assertEqual(transport.value(), b"")
        chunk = b"%x\r\n%s\r\n" % (400, b"y" * 400)
        channel.dataReceived(chunk + chunk)
        self.assertEqual(transport.value(), b"")
        with self.assertLogs(LOGGER, "WARNING"):
            channel.dataReceived(chunk + b"0\r\n\r\n")      # 1200 > 1000, and the request ends in the same data
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertIsNone(channel.requests[-1].content)
        self.assertEqual(self.recorder.bodies, [])            # never handed to the resource

    def test_an_accepted_request_is_served_as_usual(self):
        channel, transport = self.post(length=MAX_BODY, token=b"t")
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(b"z" * MAX_BODY)
        self.assertEqual(self.recorder.bodies, [b"z" * MAX_BODY])
        self.assertIn(b"HTTP/1.1 200 OK", transport.value())
        self.assertFalse(transport.write_closed)

    def test_a_request_without_a_body_is_left_to_the_resource(self):
        # Nothing to protect from: the resource answers (the push API checks its token again there).
        channel, transport = self.post(length=0)
        self.assertEqual(self.recorder.bodies, [b""])
        self.assertIn(b"HTTP/1.1 200 OK", transport.value())

    def test_refusals_are_logged_rate_limited(self):
        with self.assertLogs(LOGGER, "WARNING") as logs:
            for _ in range(5):
                self.post(b"/other", length=MAX_BODY + 1)
        self.assertEqual(len(logs.output), 1)
        self.assertEqual(self.site.limit_log.counts["push-max-body"], 5)


class BuildSiteTests(SynchronousTestCase):
    def test_the_site_takes_its_bound_from_the_config_and_the_guard_from_the_push_api(self):
        class Push(Resource):
            isLeaf = True

            def refuse_early(self, headers, length):
                return None

        push = Push()
        site = build_site(HTTPConfig(push_max_body=12345, close_linger=0.5), {}, push, reactor=Clock())
        self.assertIsInstance(site, BoundedSite)
        self.assertEqual((site.max_body, site.linger), (12345, 0.5))
        self.assertEqual(site.guards, {b"rpc": push.refuse_early})
        self.assertEqual(build_site(HTTPConfig(), {}, None, reactor=Clock()).guards, {})
