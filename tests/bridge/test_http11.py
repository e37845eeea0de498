"""The lean HTTP/1.1 path (bridge/http11.py) on real loopback sockets, as the JSON-RPC client drives it.

The backend here is a raw TCP server that answers each request with bytes the test scripts, so that
every framing (Content-Length, chunked with extensions and trailers, read to the close, 1xx first) and
every fault (closed before answering, cut in the body, garbage, an oversized head) is exactly what the
test says.  What a caller sees must be what it saw through Twisted's Agent: same results, same
one-line descriptions and kinds; what the pool does is seen from the server (connections made, lost).
"""
import json
import socket

from twisted.internet import defer, reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fmspy_gateway.bridge.http11 import LeanConnectionPool
from fmspy_gateway.bridge.rpc import BackendError, JSONRPCClient, make_connection_pool, make_http_client

WAIT = 10.0     # seconds: generous bound on waiting for an event, never a measured time


def answer(body: bytes, head: bytes = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n") -> bytes:
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def result_for(request_id: int, value) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "result": value, "id": request_id}).encode()


class ScriptedServer(Protocol):
    """Reads requests (Content-Length bodies); answers each with ``factory.script(request)`` (bytes or a list)."""

    def connectionMade(self):
        self.factory.made += 1
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
            length = int(fields[b"Content-Length"])
            if len(rest) < length:
                return
            body, self.buffer = rest[:length], rest[length:]
            request = {"head": head, "fields": fields, "message": json.loads(body), "transport": self.transport}
            self.factory.requests.append(request)
            reply = self.factory.script(request)
            for part in (reply if isinstance(reply, list) else [reply]):
                if part is None:
                    self.transport.loseConnection()
                else:
                    self.transport.write(part)

    def connectionLost(self, reason):
        self.factory.lost += 1
        waiters, self.factory.lost_waiters = self.factory.lost_waiters, []
        for d in waiters:
            d.callback(None)


class ScriptedFactory(Factory):
    protocol = ScriptedServer

    def __init__(self, script):
        self.script = script
        self.requests = []
        self.made = self.lost = 0
        self.lost_waiters = []

    def next_lost(self):
        d = defer.Deferred()
        self.lost_waiters.append(d)
        return d.addTimeout(WAIT, reactor)


class LeanPathTests(TestCase):
    def setUp(self):
        self.pool = make_connection_pool(reactor)
        self.assertIsInstance(self.pool, LeanConnectionPool)
        self.client = JSONRPCClient(make_http_client(reactor, pool=self.pool), reactor)
        self.assertIsNotNone(self.client._lean)

    @inlineCallbacks
    def tearDown(self):
        self.client.close()
        yield self.pool.closeCachedConnections()

    def serve(self, script):
        factory = ScriptedFactory(script)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.url = f"http://127.0.0.1:{port.getHost().port}/rpc"
        return factory

    def call(self, *params, timeout=WAIT, headers=None):
        return self.client.call(self.url, "m", list(params), timeout=timeout, headers=headers)

    @inlineCallbacks
    def failure_of(self, d, kind):
        error = yield self.assertFailure(d, BackendError)
        self.assertEqual(error.kind, kind, error.description)
        return error.description

    # -- framings ------------------------------------------------------------------------

    @inlineCallbacks
    def test_a_content_length_body_sent_a_byte_at_a_time_and_the_connection_reused(self):
        def script(request):
            return list(bytes([b]) for b in answer(result_for(request["message"]["id"], request["message"]["params"])))
        server = self.serve(script)
        first = yield self.call(1)
        second = yield self.call(2)
        self.assertEqual((first, second), ([1], [2]))
        self.assertEqual(server.made, 1)
        head = server.requests[0]["head"]
        self.assertTrue(head.startswith(b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1:"), head)
        self.assertEqual(server.requests[0]["fields"][b"Content-Type"], b"application/json")
        self.assertEqual(server.requests[0]["fields"][b"Accept-Encoding"], b"gzip")

    @inlineCallbacks
    def test_a_request_on_an_idle_connection_reaches_the_backend_before_the_next_reactor_turn(self):
        server = self.serve(lambda request: answer(result_for(request["message"]["id"], "ok")))
        yield self.call(1)      # the connection is made, answered and idle in the pool
        backend_socket = server.requests[0]["transport"].socket
        d = self.call(2)
        # No reactor turn since call(): Twisted's buffered write would still hold the request.  Peeked, so
        # the backend's own read still gets it.
        backend_socket.setblocking(True)
        backend_socket.settimeout(WAIT)
        try:
            waiting = backend_socket.recv(65536, socket.MSG_PEEK)
        finally:
            backend_socket.setblocking(False)
        self.assertTrue(waiting.startswith(b"POST /rpc HTTP/1.1\r\n"), waiting[:40])
        self.assertEqual((yield d), "ok")
        self.assertEqual(server.made, 1)

    @inlineCallbacks
    def test_a_chunked_body_with_extensions_and_trailers(self):
        def script(request):
            body = result_for(request["message"]["id"], "chunked")
            return [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                    b"%x;ext=1\r\n%s\r\n" % (5, body[:5]), b"%X\r\n%s\r\n" % (len(body) - 5, body[5:]),
                    b"0\r\nX-Trailer: yes\r\n\r\n"]
        server = self.serve(script)
        self.assertEqual((yield self.call()), "chunked")
        self.assertEqual((yield self.call()), "chunked")
        self.assertEqual(server.made, 1)            # a chunked answer leaves the connection reusable

    @inlineCallbacks
    def test_a_body_without_length_is_read_to_the_close_and_the_connection_not_reused(self):
        def script(request):
            return [b"HTTP/1.0 200 OK\r\n\r\n" + result_for(request["message"]["id"], "old"), None]
        server = self.serve(script)
        self.assertEqual((yield self.call()), "old")
        self.assertEqual((yield self.call()), "old")
        self.assertEqual(server.made, 2)

    @inlineCallbacks
    def test_connection_close_is_honoured(self):
        self.pool.cachedConnectionTimeout = 600     # only the header can close it within the test
        server = self.serve(lambda r: answer(result_for(r["message"]["id"], 1),
                                             b"HTTP/1.1 200 OK\r\nConnection: close\r\n"))
        lost = server.next_lost()
        self.assertEqual((yield self.call()), 1)
        yield lost                                  # we hung up, as asked
        self.assertEqual((yield self.call()), 1)
        self.assertEqual(server.made, 2)

    @inlineCallbacks
    def test_an_informational_answer_is_skipped(self):
        self.serve(lambda r: [b"HTTP/1.1 100 Continue\r\n\r\n", answer(result_for(r["message"]["id"], "after"))])
        self.assertEqual((yield self.call()), "after")

    # -- faults, described as before ------------------------------------------------------

    @inlineCallbacks
    def test_closed_before_any_byte_of_the_answer(self):
        self.serve(lambda r: None)
        description = yield self.failure_of(self.call(), "refused")
        self.assertEqual(description, f"backend {self.url} closed the connection without answering")

    @inlineCallbacks
    def test_cut_in_the_middle_of_the_body(self):
        self.serve(lambda r: [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"", None])
        description = yield self.failure_of(self.call(), "bad-response")
        self.assertEqual(description, f"backend {self.url} sent a broken HTTP response")

    @inlineCallbacks
    def test_cut_in_the_middle_of_the_head(self):
        self.serve(lambda r: [b"HTTP/1.1 200 OK\r\nContent-Le", None])
        description = yield self.failure_of(self.call(), "bad-response")
        self.assertEqual(description, f"backend {self.url} sent a broken HTTP response")

    @inlineCallbacks
    def test_garbage_instead_of_a_status_line(self):
        self.serve(lambda r: b"SSH-2.0-OpenSSH\r\n\r\n")
        yield self.failure_of(self.call(), "bad-response")

    @inlineCallbacks
    def test_invalid_chunk_size_and_conflicting_lengths(self):
        replies = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                   b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"]
        self.serve(lambda r: replies.pop(0))
        for _ in range(2):
            yield self.failure_of(self.call(), "bad-response")

    @inlineCallbacks
    def test_a_head_over_the_limit_is_refused_and_the_connection_dropped(self):
        self.pool.max_head_bytes = 1024
        server = self.serve(lambda r: [b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"p" * 4096 + b"\r\n"])
        lost = server.next_lost()
        yield self.failure_of(self.call(), "bad-response")
        yield lost

    @inlineCallbacks
    def test_http_status_and_size_limit_still_apply(self):
        replies = [answer(b"oops", b"HTTP/1.1 503 Busy\r\n"), answer(b"x" * 100)]
        self.client.max_response_bytes = 50
        self.serve(lambda r: replies.pop(0))
        description = yield self.failure_of(self.call(), "http")
        self.assertEqual(description, f"backend {self.url} answered HTTP 503")
        description = yield self.failure_of(self.call(), "bad-response")
        self.assertIn("larger than the limit of 50 bytes", description)

    @inlineCallbacks
    def test_a_timed_out_request_aborts_its_connection(self):
        server = self.serve(lambda r: [])           # never answers
        lost = server.next_lost()
        yield self.failure_of(self.call(timeout=0.05), "timeout")
        yield lost
        self.assertEqual(self.client.outstanding, 0)

    @inlineCallbacks
    def test_calls_on_a_reused_connection_schedule_no_delayed_call(self):
        # A call's timeout and its connection's idle timeout share one queue, which is never empty between
        # calls: its one DelayedCall stays put instead of being cancelled and scheduled again on each call.
        self.pool.cachedConnectionTimeout = WAIT * 2      # no idle timeout falls due meanwhile, however slow
        self.serve(lambda r: answer(result_for(r["message"]["id"], r["message"]["params"])))
        yield self.call(0)          # the connection is made, and the queue's call armed
        scheduled = []
        real_call_later = reactor.callLater

        def counting_call_later(delay, f, *args, **kwargs):
            scheduled.append(f)
            return real_call_later(delay, f, *args, **kwargs)

        self.patch(reactor, "callLater", counting_call_later)
        for n in range(1, 6):
            self.assertEqual((yield self.call(n)), [n])
        self.assertEqual(scheduled, [])

    @inlineCallbacks
    def test_a_client_on_another_clock_times_out_on_its_own_clock(self):
        server = self.serve(lambda r: [])           # never answers
        clock = Clock()
        client = JSONRPCClient(make_http_client(reactor, pool=self.pool), clock)
        self.assertIsNot(client._timeouts, self.pool.lean_timeouts)
        d = client.call(self.url, "m", [], timeout=30)
        for _ in range(int(WAIT / 0.01)):           # sent on the real reactor
            if server.requests:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(len(server.requests), 1)
        clock.advance(29.9)
        self.assertFalse(d.called)
        clock.advance(0.1)
        yield self.failure_of(d, "timeout")

    @inlineCallbacks
    def test_two_clients_on_one_pool_keep_their_own_requests(self):
        # Each application has its own client; they share the pool, and with it its timeout queue.
        held = []

        def script(request):
            held.append(request)
            return [] if request["message"]["params"] == ["held"] else answer(result_for(
                request["message"]["id"], request["message"]["params"]))

        self.serve(script)
        other = JSONRPCClient(make_http_client(reactor, pool=self.pool), reactor)
        self.assertIs(other._timeouts, self.client._timeouts)
        waiting = other.call(self.url, "m", ["held"], timeout=WAIT)
        self.assertEqual((yield self.call("first")), ["first"])
        other.close()                               # fails its own request only
        yield self.failure_of(waiting, "cancelled")
        self.assertEqual((yield self.call("second")), ["second"])
        self.assertEqual((other.outstanding, self.client.outstanding), (0, 0))

    # -- the pool --------------------------------------------------------------------------

    @inlineCallbacks
    def test_at_most_max_persistent_idle_connections_are_kept(self):
        self.pool.maxPersistentPerHost = 1
        held = []

        def script(request):
            # The first waits for the second, so that both are in flight at once, on two connections.
            held.append(request)
            if len(held) == 2:
                for waiting in held:
                    waiting["transport"].write(answer(result_for(waiting["message"]["id"], "ok")))
            return []

        server = self.serve(script)
        lost = server.next_lost()
        self.assertEqual((yield defer.gatherResults([self.call(), self.call()])), ["ok", "ok"])
        self.assertEqual(server.made, 2)
        yield lost                                   # the one over the bound is closed after use
        server.script = lambda r: answer(result_for(r["message"]["id"], "again"))
        self.assertEqual((yield self.call()), "again")
        self.assertEqual(server.made, 2)             # the kept one is reused

    @inlineCallbacks
    def test_idle_connections_close_after_the_idle_timeout(self):
        self.pool.cachedConnectionTimeout = 0.01
        server = self.serve(lambda r: answer(result_for(r["message"]["id"], 1)))
        lost = server.next_lost()
        self.assertEqual((yield self.call()), 1)
        yield lost
        self.assertEqual((yield self.call()), 1)
        self.assertEqual(server.made, 2)

    @inlineCallbacks
    def test_close_cached_connections_closes_idle_lean_connections(self):
        server = self.serve(lambda r: answer(result_for(r["message"]["id"], 1)))
        self.assertEqual((yield self.call()), 1)
        lost = server.next_lost()
        yield self.pool.closeCachedConnections()
        yield lost
        self.assertEqual(server.lost, 1)

    # -- request headers ---------------------------------------------------------------------

    @inlineCallbacks
    def test_caller_headers_lose_line_breaks_and_cannot_change_the_framing(self):
        server = self.serve(lambda r: answer(result_for(r["message"]["id"], 1)))
        yield self.call(headers={"X-RTMP-Room": "a\r\nInjected: yes", "Content-Type": "text/plain"})
        fields = server.requests[0]["fields"]
        self.assertEqual(fields[b"X-RTMP-Room"], b"a Injected: yes")
        self.assertNotIn(b"Injected", fields)
        self.assertEqual(fields[b"Content-Type"], b"application/json")
        for name in ("Content-Length", "Host", "Bad Name"):
            self.assertRaises(ValueError, self.call, headers={name: "1"})


class Receiver:
    """What ``lean_request`` tells of a request, as the JSON-RPC client's exchange hears it."""

    def __init__(self):
        self.heard = []

    def response_received(self, response):
        self.heard.append(("response", response.code))

    def request_failed(self, failure):
        self.heard.append(("failed", failure.type))


class PendingEndpoint:
    """An endpoint whose connection attempt waits until the test settles it."""

    def __init__(self):
        self.attempts = []
        self.cancelled = 0
        #: A connection the attempt delivers when cancelled: one that succeeded just as the cancel came.
        self.made_anyway = None

    def connect(self, factory):
        d = defer.Deferred(self._cancelled)
        self.attempts.append((d, factory))
        return d

    def _cancelled(self, d):
        self.cancelled += 1
        if self.made_anyway is not None:
            d.callback(self.made_anyway)


class LeanRequestWhileConnectingTests(SynchronousTestCase):
    def setUp(self):
        self.pool = LeanConnectionPool(Clock())
        self.endpoint = PendingEndpoint()
        self.receiver = Receiver()
        self.request = self.pool.lean_request(("http", b"b", 80), self.endpoint, b"POST / HTTP/1.1\r\n\r\n",
                                              self.receiver)

    def test_a_request_cancelled_while_connecting_gives_up_the_attempt_and_tells_nobody(self):
        self.request.cancel()
        self.assertEqual(self.endpoint.cancelled, 1)
        self.assertEqual(self.receiver.heard, [])
        self.request.cancel()
        self.assertEqual(self.endpoint.cancelled, 1)

    def test_a_connection_made_after_the_cancel_is_dropped(self):
        (_, factory), = self.endpoint.attempts
        connection = self.endpoint.made_anyway = factory.buildProtocol(None)
        transport = StringTransport()
        connection.makeConnection(transport)
        self.request.cancel()
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.receiver.heard, [])

    def test_a_failed_attempt_is_the_receivers_news(self):
        (attempt, _), = self.endpoint.attempts
        attempt.errback(ConnectionRefusedError())
        self.assertEqual(self.receiver.heard, [("failed", ConnectionRefusedError)])

    def test_the_request_goes_out_on_the_new_connection_and_its_answer_to_the_receiver(self):
        (attempt, factory), = self.endpoint.attempts
        connection = factory.buildProtocol(None)
        transport = StringTransport()
        connection.makeConnection(transport)
        attempt.callback(connection)
        self.assertEqual(transport.value(), b"POST / HTTP/1.1\r\n\r\n")
        connection.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(self.receiver.heard, [("response", 204)])
