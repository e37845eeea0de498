"""What one connection may cost the others, on a StringTransport and a Clock (issue 8, items 3, 4 and 9).

Junk messages (``maxIgnoredMessages``), the output budget (``maxOutgoingBytes``
then ``slowPlayerTimeout``), the connect deadline (``connectTimeout``) and
the connection counts (``maxConnections``, ``maxConnectionsPerAddress``).
"""
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.chat import ChatApplication
from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.config import RTMPConfig
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.rtmp.events import CommandReceived, HandshakeCompleted
from fmspy_gateway.rtmp.messages import MessageType
from fmspy_gateway.server import protocol as protocol_module
from fmspy_gateway.server.protocol import READ_SLICE, RTMPServerFactory

LOGGER = "fmspy_gateway"

#: A type the core does not know: every message of it is ignored.
UNKNOWN_TYPE = 0x30


def one_byte_junk(count: int, type_id: int = UNKNOWN_TYPE, chunk_stream: int = 9) -> bytes:
    """``count`` one-byte messages: one full header, then two bytes a message (format 3 headers)."""
    first = bytes([chunk_stream]) + b"\0\0\0" + b"\0\0\x01" + bytes([type_id]) + b"\0\0\0\0" + b"x"
    return first + (bytes([0xC0 | chunk_stream]) + b"x") * (count - 1)


class CountingConnection(Connection):
    """The core, counting the bytes the glue feeds it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fed = 0

    def receive_data(self, data, now=None):
        self.fed += len(data)
        return super().receive_data(data, now)


class SlowTransport(StringTransport):
    """A transport whose peer reads only when the test says so.

    Everything written stays queued (``queued_bytes``, as
    ``DirectWriteServer`` reports it) until ``drain()``; like Twisted's
    transports it pauses its producer past ``buffer_size`` and resumes it
    once its buffer is empty.
    """

    buffer_size = 65536

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.producer_paused = False

    @property
    def queued_bytes(self) -> int:
        return len(self.value())

    def write(self, data):
        super().write(data)
        if self.producer is not None and not self.producer_paused and self.queued_bytes > self.buffer_size:
            self.producer_paused = True
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        data = self.value()
        self.clear()
        if self.producer_paused:
            self.producer_paused = False
            self.producer.resumeProducing()
        return data


class GlueCase(SynchronousTestCase):
    config = RTMPConfig()

    def setUp(self):
        self.clock = Clock()
        self.factory = RTMPServerFactory({"echotest": EchoApplication("echotest"), "chat": ChatApplication("chat")},
                                         self.config, reactor=self.clock)

    def open(self, host="10.0.0.1", port=40000, transport_class=SlowTransport):
        protocol = self.factory.buildProtocol(IPv4Address("TCP", host, port))
        if protocol is None:
            return None, None
        transport = transport_class(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        return protocol, transport

    def exchange(self, client, protocol, transport):
        """Move bytes both ways until neither side has more; returns the client's events."""
        events = []
        while True:
            out = client.data_to_send()
            if out:
                protocol.dataReceived(out)
            back = transport.drain() if isinstance(transport, SlowTransport) else transport.value()
            if not isinstance(transport, SlowTransport):
                transport.clear()
            if back:
                events.extend(client.receive_data(back))
            if not out and not back:
                return events

    def handshaken(self, **kwargs):
        protocol, transport = self.open(**kwargs)
        client = Connection(Role.CLIENT)
        events = self.exchange(client, protocol, transport)
        self.assertIsInstance(events[0], HandshakeCompleted)
        return protocol, transport, client

    def connected(self, app="echotest", **kwargs):
        protocol, transport, client = self.handshaken(**kwargs)
        client.send_command("connect", 1, {"app": app, "tcUrl": f"rtmp://localhost/{app}"})
        events = self.exchange(client, protocol, transport)
        result = [e for e in events if isinstance(e, CommandReceived)][0]
        self.assertEqual(result.name, "_result")
        return protocol, transport, client


# -- item 3: junk -----------------------------------------------------------------------------

class JunkTests(GlueCase):
    config = RTMPConfig(max_ignored_messages=50)

    def test_a_flood_of_ignored_messages_before_connect_is_closed_with_few_log_lines(self):
        for byte_by_byte in (False, True):
            protocol, transport, client = self.handshaken(port=40000 + byte_by_byte)
            junk = one_byte_junk(2000)
            with self.assertLogs(LOGGER, "WARNING") as logs:
                if byte_by_byte:
                    for i in range(len(junk)):
                        protocol.dataReceived(junk[i:i + 1])
                else:
                    protocol.dataReceived(junk)
                protocol.connectionLost(Failure(ConnectionDone()))
            self.assertTrue(transport.disconnecting)
            # One line when the first was ignored, one when the limit was hit, one with the count not logged.
            self.assertLessEqual(len(logs.output), 3, logs.output)
            self.assertTrue(any("maxIgnoredMessages" in line and "limit hit" in line for line in logs.output),
                            logs.output)
            self.assertTrue(any("50 more of ignored message not logged" in line for line in logs.output),
                            logs.output)

    def test_the_rest_of_a_read_is_not_parsed_once_the_connection_is_closed(self):
        self.patch(protocol_module, "Connection", CountingConnection)
        protocol, transport, client = self.handshaken()
        before = protocol.connection.fed
        with self.assertLogs(LOGGER, "WARNING"):
            protocol.dataReceived(one_byte_junk(32768))       # one 64 KB read, as Twisted reads
        self.assertTrue(transport.disconnecting)
        # Closed after 51 messages: the core was not made to parse the other 32,000 first.
        self.assertLessEqual(protocol.connection.fed - before, READ_SLICE)

    def test_media_and_data_before_connect_are_junk(self):
        protocol, transport, client = self.handshaken()
        with self.assertLogs(LOGGER, "WARNING") as logs:
            for n in range(51):
                client.send_media(MessageType.AUDIO, 1, n, b"\xaf\x01x")
                client.send_data(["onMetaData", {}], stream_id=1)
            protocol.dataReceived(client.data_to_send())
        self.assertTrue(transport.disconnecting)
        self.assertTrue(any("before connect" in line for line in logs.output), logs.output)

    def test_an_accepted_command_resets_the_count(self):
        protocol, transport, client = self.connected()
        for n in range(5):
            protocol.dataReceived(one_byte_junk(50))
            client.send_command("echo", 2 + n, None, ["still here"])
            events = self.exchange(client, protocol, transport)
            self.assertEqual([e.name for e in events if isinstance(e, CommandReceived)], ["_result"])
        self.assertFalse(transport.disconnecting)

    def test_media_after_connect_is_not_junk(self):
        protocol, transport, client = self.connected()
        for n in range(200):
            client.send_media(MessageType.AUDIO, 1, n, b"\xaf\x01x")
        protocol.dataReceived(client.data_to_send())
        self.assertFalse(transport.disconnecting)


# -- item 4: the output budget ------------------------------------------------------------------

class OutputBudgetTests(GlueCase):
    config = RTMPConfig(max_outgoing_bytes=100_000, slow_player_timeout=10)

    def fill(self, protocol, client, calls=30, size=10_000):
        """Echo calls whose replies the client does not read."""
        for n in range(calls):
            client.send_command("echo", 10 + n, None, ["x" * size])
        protocol.dataReceived(client.data_to_send())

    def test_a_client_over_budget_is_not_read_then_disconnected_after_slow_player_timeout(self):
        protocol, transport, client = self.connected()
        with self.assertLogs(LOGGER, "WARNING") as logs:
            self.fill(protocol, client)
        self.assertTrue(protocol.over_budget)
        self.assertEqual(transport.producerState, "paused")      # its socket is not read
        self.assertTrue(any("maxOutgoingBytes" in line for line in logs.output), logs.output)
        self.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        with self.assertLogs(LOGGER, "WARNING") as logs:
            self.clock.advance(0.2)
        self.assertTrue(transport.disconnected)                  # aborted: the queue would never drain
        self.assertTrue(any("limit hit" in line and "maxOutgoingBytes" in line and "slowPlayerTimeout" in line
                            for line in logs.output), logs.output)

    def test_a_client_that_drains_in_time_is_read_again_and_kept(self):
        protocol, transport, client = self.connected()
        with self.assertLogs(LOGGER, "WARNING"):
            self.fill(protocol, client)
        self.clock.advance(5)
        events = client.receive_data(transport.drain())
        self.assertEqual(len([e for e in events if isinstance(e, CommandReceived)]), 30)
        self.assertFalse(protocol.over_budget)
        self.assertEqual(transport.producerState, "producing")
        self.clock.advance(10)
        self.assertFalse(transport.disconnecting)
        client.send_command("echo", 99, None, ["again"])
        events = self.exchange(client, protocol, transport)
        self.assertEqual([(e.name, e.arguments) for e in events if isinstance(e, CommandReceived)],
                         [("_result", ("again",))])

    def test_broadcasts_to_a_listener_over_budget_are_dropped_and_counted(self):
        listener, listener_transport, listener_client = self.connected("chat", port=40001)
        talker, talker_transport, talker_client = self.connected("chat", port=40002)
        for client, protocol, transport, name in ((listener_client, listener, listener_transport, "listener"),
                                                  (talker_client, talker, talker_transport, "talker")):
            client.send_command("identify", 2, None, [name])
            self.exchange(client, protocol, transport)
        listener_client.receive_data(listener_transport.drain())
        text = "y" * 10_000
        with self.assertLogs(LOGGER, "WARNING") as logs:
            for n in range(100):           # 1 MB said; the listener never reads
                talker_client.send_command("say", 0, None, [text])
                heard = self.exchange(talker_client, talker, talker_transport)
                self.assertEqual(len([e for e in heard if isinstance(e, CommandReceived)]), 1)
        self.assertTrue(listener.over_budget)
        # What was queued before it went over, and one message more; the rest was dropped.
        self.assertLess(listener_transport.queued_bytes, 100_000 + 2 * len(text))
        session = listener.session
        self.assertGreater(session.limit_log.counts["dropped while over maxOutgoingBytes"], 80)
        dropped = [line for line in logs.output if "dropped" in line]
        self.assertEqual(len(dropped), 1, logs.output)          # counted, logged once per interval
        self.assertIn("maxOutgoingBytes", dropped[0])
        self.assertFalse(talker_transport.disconnecting)

    def test_calls_to_a_client_over_budget_fail_at_once(self):
        protocol, transport, client = self.connected()
        with self.assertLogs(LOGGER, "WARNING"):
            self.fill(protocol, client)
        with self.assertLogs(LOGGER, "WARNING"):
            failure = self.failureResultOf(protocol.session.client.call("ping"))
        self.assertIn("maxOutgoingBytes", failure.getErrorMessage())


# -- item 9: connect deadline and connection counts --------------------------------------------

class ConnectTimeoutTests(GlueCase):
    config = RTMPConfig(connect_timeout=20, ping_interval=60, keepalive_timeout=180)

    def test_bytes_without_connect_do_not_keep_a_connection(self):
        protocol, transport, client = self.handshaken()
        with self.assertLogs(LOGGER, "WARNING") as logs:
            for _ in range(4):
                self.clock.advance(4.9)
                client.send_user_control(6, 0)      # a PingRequest: a byte now and then, never connect
                self.exchange(client, protocol, transport)
            self.assertFalse(transport.disconnecting)
            self.clock.advance(0.5)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(any("connectTimeout" in line for line in logs.output), logs.output)

    def test_a_connected_client_is_not_timed_out(self):
        protocol, transport, client = self.connected()
        self.clock.advance(25)
        self.assertFalse(transport.disconnecting)

    def test_the_deadline_counts_from_the_end_of_the_handshake(self):
        protocol, transport = self.open()
        self.clock.advance(15)          # a slow handshake (within handshakeTimeout)
        client = Connection(Role.CLIENT)
        self.exchange(client, protocol, transport)
        self.clock.advance(19)
        self.assertFalse(transport.disconnecting)
        with self.assertLogs(LOGGER, "WARNING"):
            self.clock.advance(2)
        self.assertTrue(transport.disconnecting)


class ConnectionCountTests(GlueCase):
    config = RTMPConfig(max_connections=5, max_connections_per_address=2)

    def test_per_address_limit_refuses_at_once_and_frees_on_close(self):
        first, _ = self.open("10.0.0.1", 1)
        second, _ = self.open("10.0.0.1", 2)
        with self.assertLogs(LOGGER, "WARNING") as logs:
            for port in range(3, 50):
                self.assertEqual(self.open("10.0.0.1", port), (None, None))
        self.assertEqual(len(logs.output), 1, logs.output)    # 47 refusals, one line per interval
        self.assertIn("maxConnectionsPerAddress", logs.output[0])
        self.assertEqual(self.factory.refusals.counts["maxConnectionsPerAddress"], 47)
        other, _ = self.open("10.0.0.2", 1)
        self.assertIsNotNone(other)
        first.connectionLost(Failure(ConnectionDone()))
        again, _ = self.open("10.0.0.1", 60)
        self.assertIsNotNone(again)

    def test_total_limit(self):
        for n in range(5):
            self.assertIsNotNone(self.open(f"10.0.1.{n}", 1)[0])
        with self.assertLogs(LOGGER, "WARNING") as logs:
            self.assertEqual(self.open("10.0.2.1", 1), (None, None))
        self.assertIn("maxConnections", logs.output[0])

    def test_zero_means_unlimited(self):
        self.factory.config = RTMPConfig()
        for n in range(20):
            self.assertIsNotNone(self.open("10.0.0.1", n)[0])
