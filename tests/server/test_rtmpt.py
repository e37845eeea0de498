"""RTMPT sessions on a fake clock: the commands, the polling byte, the caps, the limits and the reaping."""
import io

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import UnsupportedMethod
from twisted.web.test.requesthelper import DummyRequest

from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.config import RTMPConfig, RTMPTConfig
from fmspy_gateway.rtmp.connection import Connection, Role, State
from fmspy_gateway.rtmp.events import CommandReceived
from fmspy_gateway.server.protocol import RTMPServerFactory
from fmspy_gateway.server.rtmpt import RTMPTSessions, mount

RTMP = RTMPConfig(handshake_timeout=30.0, ping_interval=60.0, keepalive_timeout=180.0, close_linger=5.0)


class RTMPTTests(SynchronousTestCase):
    rtmpt = RTMPTConfig(enabled=True, max_sessions=5, max_sessions_per_address=3, max_pending_bytes=200_000,
                        max_response_bytes=1000)

    def setUp(self):
        self.clock = Clock()
        self.factory = RTMPServerFactory({"echotest": EchoApplication("echotest")}, RTMP, reactor=self.clock)
        self.sessions = RTMPTSessions(self.factory, self.rtmpt, reactor=self.clock)
        self.root = mount(Resource(), self.sessions)

    def post(self, path: str, body: bytes = b"\x00", host="10.0.0.1", method=b"POST"):
        segments = path.strip("/").encode().split(b"/")
        request = DummyRequest(segments[1:])
        request.client = IPv4Address("TCP", host, 4000)
        request.method = method
        request.content = io.BytesIO(body)
        resource = self.root.children[segments[0]]
        try:
            body = resource.render(request)
        except UnsupportedMethod as e:
            return type(e).__name__, b"", request
        return request.responseCode or 200, body, request

    def open(self, host="10.0.0.1") -> str:
        status, body, request = self.post("/open/1", host=host)
        self.assertEqual(status, 200, body)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"application/x-fcs"])
        self.assertTrue(body.endswith(b"\n"))       # librtmp drops the last byte of the id
        return body[:-1].decode()

    def connected_client(self):
        """A session through handshake and connect, with our own sans-I/O client on the other end."""
        sid = self.open()
        client = Connection(Role.CLIENT, digest=False)
        seq = iter(range(1000))

        def exchange(command="send"):
            data = client.data_to_send() if command == "send" else b"\x00"
            status, body, _ = self.post(f"/{command}/{sid}/{next(seq)}", data)
            self.assertEqual(status, 200, body)
            return body[0], client.receive_data(body[1:])
        exchange()
        while client.state is State.HANDSHAKING:       # S0+S1+S2 comes 1000 bytes per answer
            exchange("idle")
        client.send_command("connect", 1, {"app": "echotest", "tcUrl": "rtmpt://h/echotest"}, [])
        for _ in range(5):
            exchange()
        return sid, client, exchange

    def test_open_then_handshake_connect_and_echo(self):
        sid, client, exchange = self.connected_client()
        [protocol] = self.factory.connections
        self.assertEqual(protocol.transport_name, "rtmpt")
        self.assertTrue(protocol.session.connected)
        client.send_command("echo", 2, None, ["through http"])
        events = []
        for _ in range(5):
            events += exchange()[1]
        results = [e for e in events if isinstance(e, CommandReceived) and e.name == "_result"]
        self.assertIn(("through http",), [tuple(e.arguments) for e in results if e.transaction_id == 2])

    def test_polling_byte_backs_off_while_idle_and_resets_on_data(self):
        sid = self.open()
        bytes_seen = [self.post(f"/idle/{sid}/{n}")[1][0] for n in range(16)]
        self.assertEqual(bytes_seen, [1] * 10 + [3, 5, 9, 17, 33, 33])
        # C0+C1: the answer carries S0+S1+S2 and the byte is 1 again.
        status, body, _ = self.post(f"/send/{sid}/16", Connection(Role.CLIENT, digest=False).data_to_send())
        self.assertEqual(body[0], 1)

    def test_answers_are_capped_at_max_response_bytes(self):
        sid = self.open()
        status, body, _ = self.post(f"/send/{sid}/0", Connection(Role.CLIENT, digest=False).data_to_send())
        # S0+S1+S2 is 3073 bytes: 1000 at a time.
        sizes = [len(body) - 1]
        while True:
            body = self.post(f"/idle/{sid}/1")[1]
            if len(body) == 1:
                break
            sizes.append(len(body) - 1)
        self.assertEqual(sizes, [1000, 1000, 1000, 73])

    def test_unknown_session_and_wrong_paths(self):
        for path in ("/send/nope/1", "/idle/nope/1", "/close/nope/1"):
            status, body, _ = self.post(path)
            self.assertEqual(status, 400, path)
        self.assertEqual(self.post("/open/2")[0], 404)
        self.assertEqual(self.post("/open/1", method=b"GET")[0], "UnsupportedMethod")
        self.assertEqual(self.sessions.sessions, {})

    def test_sessions_per_address_and_in_total(self):
        for _ in range(3):
            self.open("10.0.0.1")
        self.assertEqual(self.post("/open/1", host="10.0.0.1")[0], 503)
        self.open("10.0.0.2")
        self.open("10.0.0.3")
        self.assertEqual(self.post("/open/1", host="10.0.0.4")[0], 503)
        self.assertEqual(len(self.sessions.sessions), 5)
        self.assertEqual(len(self.factory.connections), 5)

    def test_close_ends_the_session(self):
        sid, client, exchange = self.connected_client()
        status, body, _ = self.post(f"/close/{sid}/9")
        self.assertEqual((status, body), (200, b"\x00"))
        self.assertEqual(self.sessions.sessions, {})
        self.clock.advance(0)                  # connectionLost comes in the next turn, as over TCP
        self.assertEqual(self.factory.connections, set())
        self.assertEqual(self.post(f"/idle/{sid}/10")[0], 400)

    def test_abandoned_session_goes_at_the_handshake_deadline(self):
        self.open()
        self.clock.advance(RTMP.handshake_timeout + 0.1)
        self.assertEqual(self.sessions.sessions, {})
        self.clock.advance(0)                  # connectionLost comes in the next turn, as over TCP
        self.assertEqual(self.factory.connections, set())
        self.assertEqual(self.sessions.per_address, {})

    def test_session_without_requests_is_reaped_after_keepalive_timeout(self):
        sid, client, exchange = self.connected_client()
        # Pings go unanswered (nobody polls): the session goes at keepAliveTimeout whatever else happens.
        self.clock.advance(RTMP.keepalive_timeout - 1)
        self.assertIn(sid, self.sessions.sessions)
        self.clock.advance(RTMP.close_linger + 2)
        self.assertEqual(self.sessions.sessions, {})
        self.clock.advance(0)                  # connectionLost comes in the next turn, as over TCP
        self.assertEqual(self.factory.connections, set())

    def test_polls_keep_a_session_alive(self):
        sid, client, exchange = self.connected_client()
        for _ in range(40):
            self.clock.advance(10)
            exchange("idle")
            exchange()                  # what the client has to say: its answers to pings
        self.assertIn(sid, self.sessions.sessions)

    def test_pending_bytes_are_bounded(self):
        sid, client, exchange = self.connected_client()
        [protocol] = self.factory.connections
        protocol.transport.write(b"x" * (self.rtmpt.max_pending_bytes + 1))
        self.assertEqual(self.sessions.sessions, {})
        self.clock.advance(0)                  # connectionLost comes in the next turn, as over TCP
        self.assertEqual(self.factory.connections, set())

    def test_producer_is_paused_above_high_water_and_resumed_once_polled(self):
        sid, client, exchange = self.connected_client()
        [protocol] = self.factory.connections
        transport = protocol.transport
        paused = []
        protocol.pauseProducing = lambda: paused.append(True)
        protocol.resumeProducing = lambda: paused.append(False)
        transport.write(b"x" * (transport.high_water + 1))
        self.assertEqual(paused, [True])
        while len(self.post(f"/idle/{sid}/1")[1]) > 1:
            pass
        self.assertEqual(paused, [True, False])

    def test_posts_wait_while_the_protocol_does_not_read(self):
        sid, client, exchange = self.connected_client()
        [protocol] = self.factory.connections
        protocol.transport.pauseProducing()
        received = []
        protocol.dataReceived = received.append
        self.post(f"/send/{sid}/5", b"abc")
        self.assertEqual(received, [])
        protocol.transport.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(received, [b"abc"])
        # And what waits is bounded too.
        protocol.transport.pauseProducing()
        self.post(f"/send/{sid}/6", b"y" * (self.rtmpt.max_pending_bytes + 1))
        self.assertEqual(self.sessions.sessions, {})

    def test_server_close_delivers_what_is_pending_with_polling_byte_zero(self):
        sid, client, exchange = self.connected_client()
        [protocol] = self.factory.connections
        protocol.transport.write(b"bye")
        protocol.close("test")
        self.assertIn(sid, self.sessions.sessions)       # its last bytes wait for a poll
        status, body, _ = self.post(f"/idle/{sid}/7")
        self.assertEqual(body, b"\x00bye")
        self.assertEqual(self.sessions.sessions, {})

    def test_closing_session_not_polled_goes_after_the_linger_and_says_so(self):
        sid, client, exchange = self.connected_client()
        [protocol] = self.factory.connections
        protocol.transport.write(b"unread")
        protocol.close("test")
        self.clock.advance(RTMP.close_linger - 0.1)          # the configured closeLinger, not a default
        self.assertIn(sid, self.sessions.sessions)
        with self.assertLogs("fmspy_gateway.server.rtmpt", "WARNING") as logged:
            self.clock.advance(0.2)
        self.assertEqual(self.sessions.sessions, {})
        [line] = logged.output
        self.assertIn(f"session {sid}: closed (test), but no poll took its last 6 bytes", line)
        self.assertIn("within 5 s (closeLinger)", line)

    def test_graceful_stop_closes_rtmpt_sessions(self):
        self.open()
        d = self.factory.close_all()
        self.clock.advance(RTMP.close_linger + 0.1)
        self.successResultOf(d)
        self.assertEqual(self.sessions.sessions, {})


