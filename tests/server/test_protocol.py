"""The server glue on a StringTransport and a Clock: timers, connect replies, errors closing one connection."""
import dataclasses

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.app.notification import Notification
from fmspy_gateway.config import RTMPConfig
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.rtmp.events import (ChunkSizeChanged, CommandReceived, HandshakeCompleted, MediaReceived,
                                       PeerBandwidthSet, UserControlReceived, WindowAcknowledgementSizeChanged)
from fmspy_gateway.rtmp.limits import Limits
from fmspy_gateway.rtmp.messages import MessageType, UserControl
from fmspy_gateway.server.protocol import RTMPServerFactory

from .glue import connected, exchange

# connectTimeout is long here so that the timer tests of a connection that never connects see only their timer.
CONFIG = RTMPConfig(handshake_timeout=5, ping_interval=10, keepalive_timeout=25, connect_timeout=100, close_linger=3)


class ServerGlueTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.factory = RTMPServerFactory({"echotest": EchoApplication("echotest")}, CONFIG, reactor=self.clock)

    def connect_transport(self, factory=None):
        factory = factory or self.factory
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def handshaken(self):
        protocol, transport = self.connect_transport()
        client = Connection(Role.CLIENT)
        events = exchange(client, protocol, transport)
        self.assertIsInstance(events[0], HandshakeCompleted)
        return protocol, transport, client

    def test_handshake_timeout_closes(self):
        protocol, transport = self.connect_transport()
        self.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_completed_handshake_is_not_timed_out(self):
        protocol, transport, client = self.handshaken()
        self.clock.advance(5.1)
        self.assertFalse(transport.disconnecting)

    def test_ping_after_silence_then_keepalive_close(self):
        protocol, transport, client = self.handshaken()
        self.clock.advance(9.9)
        self.assertEqual(transport.value(), b"")
        self.clock.advance(0.2)
        pings = [e for e in client.receive_data(transport.value())
                 if isinstance(e, UserControlReceived) and e.event_type == UserControl.PING_REQUEST]
        self.assertEqual(len(pings), 1)
        transport.clear()
        # No answer: closed keepAliveTimeout after the last byte received.
        self.clock.advance(14.7)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.4)
        self.assertTrue(transport.disconnecting)

    def test_answered_ping_keeps_the_connection(self):
        protocol, transport, client = self.handshaken()
        for _ in range(5):
            self.clock.advance(10.1)
            client.receive_data(transport.value())   # queues the PingResponse
            transport.clear()
            protocol.dataReceived(client.data_to_send())
        self.assertFalse(transport.disconnecting)
        self.assertGreater(self.clock.seconds(), CONFIG.keepalive_timeout * 2)

    def connect(self, app, byte_by_byte=False, **params):
        protocol, transport, client = self.handshaken()
        client.send_command("connect", 1, {"app": app, "tcUrl": f"rtmp://localhost/{app}", **params})
        return transport, exchange(client, protocol, transport, byte_by_byte)

    def test_connect_success_reply_shape(self):
        for byte_by_byte in (False, True):
            transport, events = self.connect("echotest", byte_by_byte, objectEncoding=3)
            kinds = [type(e) for e in events]
            self.assertEqual(kinds[:4], [WindowAcknowledgementSizeChanged, PeerBandwidthSet,
                                         UserControlReceived, ChunkSizeChanged])
            self.assertEqual(events[2].event_type, UserControl.STREAM_BEGIN)
            result = events[4]
            self.assertIsInstance(result, CommandReceived)
            self.assertEqual((result.name, result.transaction_id, result.amf3), ("_result", 1, False))
            self.assertEqual(result.command_object["capabilities"], 31)
            self.assertTrue(result.command_object["fmsVer"].startswith("FMS/"))
            info = result.arguments[0]
            self.assertEqual(list(info)[:3], ["level", "code", "description"])
            self.assertEqual((info["level"], info["code"], info["objectEncoding"]),
                             ("status", "NetConnection.Connect.Success", 3))
            self.assertFalse(transport.disconnecting)

    def test_connect_to_unknown_application_is_refused_and_closed(self):
        transport, events = self.connect("nosuchapp")
        (error,) = [e for e in events if isinstance(e, CommandReceived)]
        self.assertEqual(error.name, "_error")
        self.assertEqual(error.arguments[0]["code"], "NetConnection.Connect.InvalidApp")
        self.assertEqual(error.arguments[0]["level"], "error")
        self.assertTrue(transport.disconnecting)

    def test_garbage_closes_only_that_connection(self):
        good, good_transport, _ = self.handshaken()
        bad, bad_transport = self.connect_transport()
        bad.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(bad_transport.disconnecting)
        self.assertFalse(good_transport.disconnecting)
        self.assertEqual(self.factory.connections, {good, bad})   # until the reactor reports the loss

    def test_limit_closes_connection(self):
        factory = RTMPServerFactory({}, RTMPConfig(limits=Limits(max_message_size=1000)), reactor=self.clock)
        protocol, transport = self.connect_transport(factory)
        client = Connection(Role.CLIENT)
        exchange(client, protocol, transport)
        protocol.dataReceived(bytes.fromhex("04 000000 0f0000 09 01000000"))
        self.assertTrue(transport.disconnecting)

    def test_call_before_connect_closes(self):
        protocol, transport, client = self.handshaken()
        client.send_command("echo", 2, None, ["x"])
        exchange(client, protocol, transport)
        self.assertTrue(transport.disconnecting)

    def test_echo_call_answers_in_the_callers_encoding(self):
        protocol, transport, client = self.handshaken()
        client.send_command("connect", 1, {"app": "echotest", "objectEncoding": 3})
        exchange(client, protocol, transport)
        client.send_command("echo", 2, None, [{"a": [1, 2.5, "x"]}], amf3=True)
        client.send_command("nosuch", 3, None, [], amf3=False)
        client.send_command("echo", 0, None, ["no reply wanted"])
        events = [e for e in exchange(client, protocol, transport) if isinstance(e, CommandReceived)]
        self.assertEqual([(e.name, e.transaction_id, e.amf3) for e in events],
                         [("_result", 2, True), ("_error", 3, False)])
        self.assertEqual(events[0].arguments, ({"a": [1, 2.5, "x"]},))
        self.assertEqual(events[1].arguments[0]["code"], "NetConnection.Call.Failed")
        self.assertIn("nosuch", events[1].arguments[0]["description"])


class HalfClosingTransport(StringTransport):
    """A transport that, like TCP, can shut only its writing side."""

    write_closed = aborted = False

    def loseWriteConnection(self):
        self.write_closed = True

    def abortConnection(self):
        self.aborted = True


class ClosingTests(SynchronousTestCase):
    def closed_by_the_server(self):
        """A connection on a half-closing transport that the server has just closed, and its clock."""
        clock = Clock()
        protocol = RTMPServerFactory({}, CONFIG, reactor=clock).buildProtocol(None)
        transport = HalfClosingTransport()
        protocol.makeConnection(transport)
        protocol.close("test")
        return protocol, transport, clock

    def test_close_shuts_writing_first_then_cuts_a_peer_that_never_goes(self):
        protocol, transport, clock = self.closed_by_the_server()
        self.assertTrue(transport.write_closed)
        self.assertFalse(transport.aborted)
        protocol.dataReceived(b"late bytes are read and dropped")
        clock.advance(CONFIG.close_linger - 0.1)
        self.assertFalse(transport.aborted)
        with self.assertLogs("fmspy_gateway", "WARNING") as logged:
            clock.advance(0.2)
        self.assertTrue(transport.aborted)
        [line] = logged.output
        self.assertIn("closed (test), but the client did not go within 3 s (closeLinger), 0 bytes unsent: cut", line)

    def test_a_peer_that_goes_within_the_linger_is_not_cut(self):
        protocol, transport, clock = self.closed_by_the_server()
        protocol.connectionLost(Failure(ConnectionDone()))
        clock.advance(CONFIG.close_linger + 1)
        self.assertFalse(transport.aborted)
        self.assertEqual(clock.getDelayedCalls(), [])


class CountingTransport(StringTransport):
    """A StringTransport that names its reactor (as TCP transports do) and counts its writes."""

    def __init__(self, reactor):
        super().__init__()
        self.reactor = reactor
        self.writes = 0

    def write(self, data):
        self.writes += 1
        super().write(data)


def queue_media(protocol, count, start=0):
    """``count`` audio messages for the client, numbered from ``start``, each flushed as live media is."""
    for n in range(start, start + count):
        protocol.session.send_media(MessageType.AUDIO, 1, n * 20, b"\xaf\x01" + bytes([n]))
        protocol.session.flush_media()


def media_written(client, transport) -> list:
    """The numbers (third payload byte) of the media messages written to ``transport`` since it was cleared."""
    events = client.receive_data(transport.value())
    transport.clear()
    return [e.payload[2] for e in events if isinstance(e, MediaReceived)]


class ConnectedOverTurns:
    """An echotest client connected through ``self.factory`` on a CountingTransport run by ``self.turns``."""

    def connected(self):
        transport = CountingTransport(self.turns)
        protocol, client = connected(self.factory, transport)
        return protocol, transport, client


class MediaFlushIntervalTests(ConnectedOverTurns, SynchronousTestCase):
    """``RTMPServerProtocol.flush_media`` with ``mediaFlushInterval``: live media written once per interval."""

    interval = 0.1

    def setUp(self):
        self.clock = Clock()
        self.turns = Clock()
        config = dataclasses.replace(CONFIG, media_flush_interval=self.interval)
        self.factory = RTMPServerFactory({"echotest": EchoApplication("echotest")}, config, reactor=self.clock)

    def test_media_flushed_within_an_interval_is_written_once_at_its_end(self):
        protocol, transport, client = self.connected()
        self.assertTrue(protocol.media_waits)       # the live fan-out batches its media (app/live.py)
        before = transport.writes
        queue_media(protocol, 5)
        self.turns.advance(0)                       # the end of the turn: media waits on
        self.assertEqual(transport.writes, before)
        self.turns.advance(self.interval / 2)
        queue_media(protocol, 3, start=5)            # later reads add to the same write
        self.turns.advance(self.interval / 2)
        self.assertEqual(transport.writes, before + 1)
        self.assertEqual(media_written(client, transport), list(range(8)))
        queue_media(protocol, 1, start=8)            # the next interval starts with the next media
        self.turns.advance(self.interval)
        self.assertEqual(transport.writes, before + 2)
        self.assertEqual(media_written(client, transport), [8])

    def test_anything_else_flushed_meanwhile_takes_the_media_queued_before_it(self):
        protocol, transport, client = self.connected()
        before = transport.writes
        queue_media(protocol, 2)
        protocol.session.notify_client(Notification("ping", [1]))     # a broadcast: end of the turn, as always
        self.turns.advance(0)
        self.assertEqual(transport.writes, before + 1)
        events = client.receive_data(transport.value())
        transport.clear()
        self.assertEqual([type(e).__name__ for e in events], ["MediaReceived", "MediaReceived", "CommandReceived"])
        self.turns.advance(self.interval)           # the media's own turn finds nothing left
        self.assertEqual(transport.writes, before + 1)

    def test_a_connection_closed_meanwhile_is_not_written_to(self):
        protocol, transport, client = self.connected()
        queue_media(protocol, 2)
        protocol.close("test")                      # close writes what is queued, at once
        writes = transport.writes
        self.turns.advance(self.interval)
        self.assertEqual(transport.writes, writes)

    def test_a_connection_lost_meanwhile_leaves_no_call_scheduled(self):
        protocol, transport, client = self.connected()
        queue_media(protocol, 2)
        self.assertEqual(len(self.turns.getDelayedCalls()), 1)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.turns.getDelayedCalls(), [])     # a stopped server leaves nothing behind

    def test_a_transport_that_names_no_reactor_gets_media_at_once(self):
        # TLS and RTMPT: the glue knows no reactor turn of theirs, so nothing waits, whatever the interval.
        turns, self.turns = self.turns, None         # CountingTransport(None): a transport with no reactor
        protocol, transport, client = self.connected()
        self.assertFalse(protocol.media_waits)
        before = transport.writes
        queue_media(protocol, 2)
        self.assertEqual(transport.writes, before + 2)
        self.assertEqual(media_written(client, transport), [0, 1])
        self.assertEqual(turns.getDelayedCalls(), [])

    def test_without_an_interval_media_is_written_at_the_end_of_the_turn(self):
        self.factory = RTMPServerFactory({"echotest": EchoApplication("echotest")}, CONFIG, reactor=self.clock)
        protocol, transport, client = self.connected()
        self.assertFalse(protocol.media_waits)
        before = transport.writes
        queue_media(protocol, 3)
        self.turns.advance(0)
        self.assertEqual(transport.writes, before + 1)
        self.assertEqual(media_written(client, transport), [0, 1, 2])


class MergedReadsTests(ConnectedOverTurns, SynchronousTestCase):
    """``mergedReads``: after a read that carried media, the socket is read again at the next media write."""

    interval = 0.1

    def setUp(self):
        self.clock = Clock()
        self.turns = Clock()
        config = dataclasses.replace(CONFIG, media_flush_interval=self.interval, merged_reads=True)
        self.factory = RTMPServerFactory({"echotest": EchoApplication("echotest")}, config, reactor=self.clock)

    class Transport(CountingTransport):
        """Also a TCP transport's read size (``bufferSize``), and what was done to it, in order."""

        bufferSize = 65536

        def __init__(self, reactor):
            super().__init__(reactor)
            self.done = []

        def write(self, data):
            self.done.append("write")
            super().write(data)

        def resumeProducing(self):
            self.done.append("read again")
            super().resumeProducing()
            if self.on_read is not None:
                self.reactor.callLater(0, self.on_read)     # what the reactor reads at its next poll

        on_read = None

    def connected(self):
        transport = self.Transport(self.turns)
        protocol, client = connected(self.factory, transport)
        return protocol, transport, client

    def publish(self, protocol, client, count=1, start=0):
        """``count`` audio messages from the client in one read; returns the read's bytes."""
        for n in range(start, start + count):
            client.send_media(MessageType.AUDIO, 1, n * 20, b"\xaf\x01" + bytes([n]))
        data = client.data_to_send()
        protocol.dataReceived(data)
        return data

    def test_a_read_with_media_waits_for_the_next_media_write_which_comes_a_turn_after_it(self):
        protocol, transport, client = self.connected()
        self.publish(protocol, client)
        self.assertEqual(transport.producerState, "paused")
        self.turns.advance(self.interval / 2)
        self.assertEqual(transport.producerState, "paused")
        self.media_for(protocol, 7)                 # waiting for the interval
        transport.on_read = lambda: self.media_for(protocol, 8)     # what the reads let in bring (a publisher's)
        transport.clear()
        transport.done.clear()
        self.turns.advance(self.interval / 2)       # the media write: the reads first, the write a turn later
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(transport.done, ["read again", "write"])
        self.assertEqual(media_written(client, transport), [7, 8])
        transport.on_read = None
        self.publish(protocol, client, start=1)     # and the next read waits for the next interval
        self.assertEqual(transport.producerState, "paused")
        self.turns.advance(self.interval)
        self.assertEqual(transport.producerState, "producing")

    def media_for(self, protocol, n):
        """Media for this client, as a publisher's read would bring it (the live fan-out is not here)."""
        queue_media(protocol, 1, start=n)

    def audio_bytes(self, client, n, size):
        client.send_media(MessageType.AUDIO, 1, n * 20, b"\xaf\x01" + bytes(size))
        return client.data_to_send()

    def publisher_and_player(self):
        """Two connections whose transports log into one list: the publisher's reads, the player's writes."""
        publisher, publisher_transport, publisher_client = self.connected()
        player, player_transport, player_client = self.connected()
        player_transport.done = publisher_transport.done
        self.publish(publisher, publisher_client)
        self.media_for(player, 7)                   # waiting for the interval
        player_transport.clear()
        publisher_transport.done.clear()
        return publisher, publisher_transport, publisher_client, player, player_transport, player_client

    def test_the_write_waits_while_a_read_let_in_fills_the_buffer(self):
        # Twisted reads a buffer (64 KB) a turn: a keyframe can leave more in the kernel than one read takes.
        publisher, transport, client, player, player_transport, player_client = self.publisher_and_player()
        full, short = self.audio_bytes(client, 1, 100), self.audio_bytes(client, 2, 3)
        transport.bufferSize = len(full)

        def first_read():
            transport.done.append("read")
            publisher.dataReceived(full)
            self.media_for(player, 8)
            transport.on_read = None
            self.turns.callLater(0, second_read)     # the kernel still holds the rest: the next poll reads it

        def second_read():
            transport.done.append("read")
            publisher.dataReceived(short)
            self.media_for(player, 9)

        transport.on_read = first_read
        self.turns.advance(self.interval)
        self.assertEqual(transport.done, ["read again", "read", "read", "write"])
        self.assertEqual(media_written(player_client, player_transport), [7, 8, 9])
        self.assertEqual(transport.producerState, "paused")     # the short read: until the next interval

    def full_reads(self, publisher, transport, client, count=40):
        """From now on every read fills the buffer, ``count`` of them: a publisher sending faster than it is read."""
        reads = iter(range(count))

        def full_read():
            if next(reads, None) is not None:
                transport.done.append("read")
                publisher.dataReceived(self.audio_bytes(client, 1, 10))
                self.turns.callLater(0, full_read)

        transport.bufferSize = 1
        transport.on_read = full_read

    def test_the_write_waits_for_full_reads_a_bounded_number_of_turns_and_logs_the_limit(self):
        publisher, transport, client, player, player_transport, player_client = self.publisher_and_player()
        self.full_reads(publisher, transport, client)
        turns = self.factory.config.merged_read_turns
        self.assertEqual(turns, 16)
        with self.assertLogs("fmspy_gateway.app.session", "WARNING") as logged:
            self.turns.advance(self.interval)
        self.assertEqual(transport.done[:turns + 2], ["read again"] + ["read"] * turns + ["write"])
        self.assertEqual(media_written(player_client, player_transport), [7])
        self.assertEqual(transport.producerState, "producing")  # read on as it comes
        [line] = logged.output
        self.assertIn(f"{publisher.address}: the players' media write waited for 16 reads", line)
        self.assertIn("(mergedReadTurns)", line)

    def drained_with(self, turns):
        """What a publisher that always fills the buffer sees of one media write, with ``mergedReadTurns``."""
        config = dataclasses.replace(self.factory.config, merged_read_turns=turns)
        self.factory = RTMPServerFactory({"echotest": EchoApplication("echotest")}, config, reactor=self.clock)
        publisher, transport, client, player, player_transport, player_client = self.publisher_and_player()
        self.full_reads(publisher, transport, client)
        with self.assertLogs("fmspy_gateway.app.session", "WARNING"):
            self.turns.advance(self.interval)
        return transport.done

    def test_the_bound_is_merged_read_turns(self):
        self.assertEqual(self.drained_with(3)[:5], ["read again", "read", "read", "read", "write"])

    def test_one_read_is_the_first_only(self):
        self.assertEqual(self.drained_with(1)[:3], ["read again", "read", "write"])

    def test_a_drain_whose_turn_left_with_the_last_player_holds_no_later_write(self):
        publisher, transport, client, player, player_transport, player_client = self.publisher_and_player()

        def full_read():
            if next(reads, None) is not None:
                transport.done.append("read")
                publisher.dataReceived(self.audio_bytes(client, 1, 10))
                self.turns.callLater(0, full_read)

        def first_read():
            transport.on_read = None
            full_read()
            player.connectionLost(Failure(ConnectionDone()))   # the last one waiting: the drain's turn goes

        transport.bufferSize = 1
        transport.on_read = first_read
        reads = iter(range(3))
        self.turns.advance(self.interval)
        self.assertEqual(transport.done, ["read again", "read", "read", "read"])
        # Later the publisher reads on as fast as it can (never paused: every read fills the buffer), and a
        # new player's media is due: it is written in its turn, not held as if the drain were still on.
        reads = iter(range(40))
        self.turns.callLater(self.interval, full_read)
        other, other_transport, other_client = self.connected()
        other_transport.done = transport.done
        self.media_for(other, 3)
        transport.done.clear()
        with self.assertNoLogs("fmspy_gateway.app.session", "WARNING"):
            self.turns.advance(self.interval)
        self.assertEqual(transport.done[:2], ["read", "write"])
        self.assertEqual(media_written(other_client, other_transport), [3])

    def test_a_drain_within_the_bound_logs_nothing(self):
        publisher, transport, client, player, player_transport, player_client = self.publisher_and_player()
        self.full_reads(publisher, transport, client, count=3)
        with self.assertNoLogs("fmspy_gateway.app.session", "WARNING"):
            self.turns.advance(self.interval)
        self.assertEqual(transport.done[:5], ["read again", "read", "read", "read", "write"])

    def test_a_publisher_paused_again_by_the_read_the_write_let_in_is_read_at_the_next_interval(self):
        protocol, transport, client = self.connected()
        self.publish(protocol, client)
        transport.on_read = lambda: self.publish(protocol, client, start=1)
        self.turns.advance(self.interval)
        self.assertEqual(transport.done.count("read again"), 1)
        self.assertEqual(transport.producerState, "paused")
        transport.on_read = None
        self.turns.advance(self.interval)
        self.assertEqual(transport.producerState, "producing")

    def test_a_player_lost_meanwhile_leaves_the_call_for_a_waiting_publisher(self):
        publisher, publisher_transport, publisher_client = self.connected()
        player, player_transport, player_client = self.connected()
        self.publish(publisher, publisher_client)
        self.media_for(player, 1)
        player.connectionLost(Failure(ConnectionDone()))
        self.turns.advance(self.interval)
        self.assertEqual(publisher_transport.producerState, "producing")

    def test_reads_without_media_never_wait(self):
        protocol, transport, client = self.connected()
        client.send_command("echo", 5, None, [1])
        exchange(client, protocol, transport)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(self.turns.getDelayedCalls(), [])

    def test_a_read_that_filled_the_buffer_is_followed_at_once(self):
        # A publisher faster than a buffer per interval: the kernel may hold more, so reading goes on.
        protocol, transport, client = self.connected()
        client.send_media(MessageType.VIDEO, 1, 0, b"\x17\x01" + bytes(3000))
        data = client.data_to_send()
        transport.bufferSize = len(data)
        protocol.dataReceived(data)
        self.assertEqual(transport.producerState, "producing")

    def test_off_by_default(self):
        self.factory = RTMPServerFactory({"echotest": EchoApplication("echotest")},
                                         dataclasses.replace(CONFIG, media_flush_interval=self.interval),
                                         reactor=self.clock)
        protocol, transport, client = self.connected()
        self.publish(protocol, client)
        self.assertEqual(transport.producerState, "producing")

    def test_a_client_over_its_budget_stays_unread_until_both_let_it(self):
        protocol, transport, client = self.connected()
        self.publish(protocol, client)
        protocol._enter_budget()
        self.turns.advance(self.interval)           # the media write does not read a client over its budget
        self.assertEqual(transport.producerState, "paused")
        protocol._leave_budget()
        self.assertEqual(transport.producerState, "producing")
        self.publish(protocol, client, start=1)
        protocol._enter_budget()
        protocol._leave_budget()                    # the budget lets it go, the interval not yet
        self.assertEqual(transport.producerState, "paused")
        self.turns.advance(self.interval)
        self.assertEqual(transport.producerState, "producing")

    def test_closing_reads_again(self):
        protocol, transport, client = self.connected()
        self.publish(protocol, client)
        protocol.close("test")                      # what the peer still sends is read and dropped
        self.assertEqual(transport.producerState, "producing")

    def test_a_lost_connection_leaves_no_call(self):
        protocol, transport, client = self.connected()
        self.publish(protocol, client)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([c for c in self.turns.getDelayedCalls() if c.active()], [])


class OneWritePerTurnTests(ConnectedOverTurns, SynchronousTestCase):
    """``RTMPServerProtocol.flush``: at the end of a read, or once at the end of the reactor turn."""

    def setUp(self):
        self.clock = Clock()
        self.turns = Clock()        # the reactor that runs the sockets: advance(0) ends its turn
        self.factory = RTMPServerFactory({"echotest": EchoApplication("echotest")}, CONFIG, reactor=self.clock)

    def test_calls_answered_in_one_read_are_written_once(self):
        protocol, transport, client = self.connected()
        for n in range(5):
            client.send_command("echo", 10 + n, None, [n])
        before = transport.writes
        protocol.dataReceived(client.data_to_send())     # each answer flushes: the read writes them once
        self.assertEqual(transport.writes, before + 1)
        answers = [e for e in client.receive_data(transport.value()) if isinstance(e, CommandReceived)]
        self.assertEqual([(e.name, e.transaction_id, e.arguments) for e in answers],
                         [("_result", 10 + n, (n,)) for n in range(5)])

    def test_flushes_outside_a_read_wait_for_the_end_of_the_turn_and_write_once(self):
        protocol, transport, client = self.connected()
        before = transport.writes
        for n in range(3):          # what a hub broadcast or a late Deferred does: send, then flush
            protocol.session.notify_client(Notification("ping", [n]))
        self.assertEqual(transport.writes, before)
        self.turns.advance(0)
        self.assertEqual(transport.writes, before + 1)
        names = [e.arguments for e in client.receive_data(transport.value()) if isinstance(e, CommandReceived)]
        self.assertEqual(names, [(0,), (1,), (2,)])
        self.turns.advance(0)
        self.assertEqual(transport.writes, before + 1)

    def test_close_writes_at_once_and_a_pending_turn_writes_nothing_after_it(self):
        protocol, transport, client = self.connected()
        protocol.session.notify_client(Notification("bye", []))
        protocol.close("test")
        self.assertIn(b"bye", transport.value())
        writes = transport.writes
        self.turns.advance(0)
        self.assertEqual(transport.writes, writes)
