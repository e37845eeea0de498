"""The core's deadlines with explicit ``now`` values: no clock, no reactor (rtmp/timers.py).

Every deadline (handshakeTimeout, connectTimeout, pingInterval,
keepAliveTimeout), what moves each one (bytes move the silence deadlines,
never the handshake or connect ones), and ``handle_timer`` called early,
late, or again.
"""
import unittest

from fmspy_gateway.rtmp.connection import Connection, Role, State
from fmspy_gateway.rtmp.errors import RemoteProtocolError
from fmspy_gateway.rtmp.events import HandshakeCompleted, TimedOut, UserControlReceived
from fmspy_gateway.rtmp.messages import UserControl
from fmspy_gateway.rtmp.timers import NO_TIMEOUTS, PING, Timeouts, Timers

START = 1000.0
TIMEOUTS = Timeouts(handshake_timeout=5, connect_timeout=20, ping_interval=10, keepalive_timeout=25)


def pings(events):
    return [e.value for e in events if isinstance(e, UserControlReceived) and e.event_type == UserControl.PING_REQUEST]


class Pair:
    """A server with deadlines and a plain client; bytes move only when a test says when."""

    def __init__(self, timeouts=TIMEOUTS, role=Role.SERVER, now=START):
        self.core = Connection(role, timeouts=timeouts, now=now)
        self.peer = Connection(Role.CLIENT if role is Role.SERVER else Role.SERVER)

    def to_core(self, now):
        """Everything the peer has queued, received by the core at ``now``; returns the core's events."""
        return self.core.receive_data(self.peer.data_to_send(), now=now)

    def to_peer(self):
        return self.peer.receive_data(self.core.data_to_send())

    def handshake(self, now):
        """Run the handshake, the core receiving at ``now``; the HandshakeCompleted is on the core's side."""
        events = []
        for _ in range(4):
            events += self.to_core(now)
            self.to_peer()
        assert self.core.state is State.OPEN and self.peer.state is State.OPEN
        assert any(isinstance(e, HandshakeCompleted) for e in events)
        return events


class HandshakeDeadlineTests(unittest.TestCase):
    def test_the_first_deadline_is_the_handshake_counted_from_the_start(self):
        pair = Pair()
        self.assertEqual(pair.core.get_timer(), START + 5)

    def test_early_does_nothing_then_the_deadline_times_out(self):
        pair = Pair()
        self.assertEqual(pair.core.handle_timer(START + 4.999), [])
        (event,) = pair.core.handle_timer(START + 5)
        self.assertEqual(event, TimedOut("handshakeTimeout", 5,
                                         "handshake not completed within 5 s (handshakeTimeout)"))
        self.assertIsNone(pair.core.get_timer())            # no deadline after a TimedOut
        self.assertEqual(pair.core.handle_timer(START + 100), [])   # and never a second one

    def test_bytes_do_not_move_the_handshake_deadline(self):
        pair = Pair()
        pair.core.receive_data(bytes([3]), now=START + 4)    # C0 alone: a slow client
        self.assertEqual(pair.core.get_timer(), START + 5)
        (event,) = pair.core.handle_timer(START + 5)
        self.assertEqual(event.limit, "handshakeTimeout")

    def test_a_timed_out_connection_keeps_its_state_for_the_last_flush(self):
        pair = Pair()
        pair.core.handle_timer(START + 5)
        self.assertIs(pair.core.state, State.HANDSHAKING)

    def test_without_timeouts_there_is_no_deadline(self):
        core = Connection(Role.SERVER)
        self.assertIsNone(core.get_timer())
        self.assertEqual(core.handle_timer(10 ** 9), [])
        self.assertIs(NO_TIMEOUTS, Timers().timeouts)


class ConnectDeadlineTests(unittest.TestCase):
    def test_counted_from_the_end_of_the_handshake(self):
        pair = Pair()
        pair.handshake(START + 3)
        # Connect at +23, first ping at +13: the ping comes first.
        self.assertEqual(pair.core.get_timer(), START + 13)
        self.assertEqual(pair.core.handle_timer(START + 13), [])
        self.assertEqual(pings(pair.to_peer()), [13000])
        pair.to_peer()
        # The ping is answered: bytes move the silence deadlines, not the connect one.
        pair.to_core(START + 13.5)
        self.assertEqual(pair.core.get_timer(), START + 23)
        self.assertEqual(pair.core.handle_timer(START + 22.9), [])
        (event,) = pair.core.handle_timer(START + 23)
        self.assertEqual(event, TimedOut("connectTimeout", 20,
                                         "no connect accepted within 20 s of the handshake (connectTimeout)"))
        self.assertIsNone(pair.core.get_timer())

    def test_bytes_now_and_then_do_not_keep_a_connection_that_never_connects(self):
        pair = Pair()
        pair.handshake(START)
        for n in range(1, 5):
            pair.peer.send_user_control(UserControl.PING_REQUEST, 0)
            pair.to_core(START + 4.9 * n)
            self.assertEqual(pair.core.handle_timer(START + 4.9 * n), [])
        self.assertEqual(pair.core.get_timer(), START + 20)
        (event,) = pair.core.handle_timer(START + 20)
        self.assertEqual(event.limit, "connectTimeout")

    def test_an_accepted_connect_removes_the_deadline(self):
        pair = Pair(Timeouts(connect_timeout=20))
        pair.handshake(START)
        self.assertEqual(pair.core.get_timer(), START + 20)
        pair.core.connect_accepted()
        self.assertIsNone(pair.core.get_timer())
        self.assertEqual(pair.core.handle_timer(START + 1000), [])

    def test_accepted_before_the_handshake_ends_there_is_no_connect_deadline(self):
        pair = Pair(Timeouts(connect_timeout=20))
        pair.core.connect_accepted()
        pair.handshake(START)
        self.assertIsNone(pair.core.get_timer())


class KeepAliveTests(unittest.TestCase):
    def setUp(self):
        self.pair = Pair(Timeouts(handshake_timeout=5, ping_interval=10, keepalive_timeout=25))
        self.pair.handshake(START)

    def test_ping_after_silence_then_close(self):
        core = self.pair.core
        self.assertEqual(core.get_timer(), START + 10)
        self.assertEqual(core.handle_timer(START + 9.99), [])
        self.assertEqual(pings(self.pair.to_peer()), [])
        self.assertEqual(core.handle_timer(START + 10), [])
        # The PingRequest carries the ms since the connection began.
        self.assertEqual(pings(self.pair.to_peer()), [10000])
        # One ping per silence: the next deadline is the close, from the last byte received.
        self.assertEqual(core.get_timer(), START + 25)
        self.assertEqual(core.handle_timer(START + 20), [])
        self.assertEqual(pings(self.pair.to_peer()), [])
        (event,) = core.handle_timer(START + 25)
        self.assertEqual(event, TimedOut("keepAliveTimeout", 25, "nothing received for 25 s (keepAliveTimeout)"))
        self.assertIsNone(core.get_timer())

    def test_a_late_wake_up_reports_the_silence_it_saw(self):
        (event,) = self.pair.core.handle_timer(START + 40)
        self.assertEqual(event.reason, "nothing received for 40 s (keepAliveTimeout)")

    def test_the_answer_moves_the_deadlines_and_re_arms_the_ping(self):
        core = self.pair.core
        core.handle_timer(START + 10)
        self.pair.to_peer()                        # queues the PingResponse
        self.pair.to_core(START + 10.2)
        self.assertEqual(core.get_timer(), START + 20.2)   # sooner than the close it replaced: re-arm
        self.assertEqual(core.handle_timer(START + 20.2), [])
        self.assertEqual(pings(self.pair.to_peer()), [20200])
        self.assertEqual(core.get_timer(), START + 35.2)

    def test_bytes_move_the_silence_deadline(self):
        core = self.pair.core
        for n in range(1, 10):
            self.pair.peer.send_user_control(UserControl.PING_RESPONSE, 0)
            self.pair.to_core(START + 9 * n)
            self.assertEqual(core.get_timer(), START + 9 * n + 10)
            # Woken at the deadline scheduled earlier: too early now, nothing happens.
            self.assertEqual(core.handle_timer(START + 9 * n + 1), [])
        self.assertEqual(pings(self.pair.to_peer()), [])

    def test_bytes_that_break_the_protocol_leave_no_deadline(self):
        with self.assertRaises(RemoteProtocolError):
            self.pair.core.receive_data(bytes.fromhex("02 000000 000004 05 00000000 00000000"), now=START + 1)
        self.assertIsNone(self.pair.core.get_timer())
        self.assertEqual(self.pair.core.handle_timer(START + 100), [])

    def test_receive_data_without_now_leaves_the_silence_deadlines(self):
        self.pair.peer.send_user_control(UserControl.PING_RESPONSE, 0)
        self.pair.core.receive_data(self.pair.peer.data_to_send())
        self.assertEqual(self.pair.core.get_timer(), START + 10)


class OneDeadlineOffTests(unittest.TestCase):
    def test_keepalive_without_ping(self):
        pair = Pair(Timeouts(keepalive_timeout=25))
        pair.handshake(START)
        self.assertEqual(pair.core.get_timer(), START + 25)
        self.assertEqual(pair.core.handle_timer(START + 25)[0].limit, "keepAliveTimeout")

    def test_ping_without_keepalive_pings_once_per_silence(self):
        pair = Pair(Timeouts(ping_interval=10))
        pair.handshake(START)
        pair.core.handle_timer(START + 10)
        self.assertEqual(pings(pair.to_peer()), [10000])
        self.assertIsNone(pair.core.get_timer())
        pair.to_peer()
        pair.to_core(START + 11)
        self.assertEqual(pair.core.get_timer(), START + 21)

    def test_a_ping_interval_past_the_keepalive_never_delays_the_close(self):
        pair = Pair(Timeouts(ping_interval=30, keepalive_timeout=25))
        pair.handshake(START)
        self.assertEqual(pair.core.get_timer(), START + 25)
        self.assertEqual(pair.core.handle_timer(START + 25)[0].limit, "keepAliveTimeout")


class ClientSideTests(unittest.TestCase):
    def test_the_client_pings_a_silent_server_and_gives_up(self):
        pair = Pair(Timeouts(handshake_timeout=30, ping_interval=60, keepalive_timeout=180), role=Role.CLIENT)
        self.assertEqual(pair.core.get_timer(), START + 30)
        pair.peer.receive_data(pair.core.data_to_send())       # C0+C1
        pair.to_core(START + 0.5)                               # S0+S1+S2: the handshake is done
        pair.peer.receive_data(pair.core.data_to_send())        # C2
        self.assertIs(pair.core.state, State.OPEN)
        self.assertEqual(pair.core.get_timer(), START + 60.5)
        pair.core.handle_timer(START + 60.5)
        self.assertEqual(pings(pair.to_peer()), [60500])
        # The server answers (our core queued nothing else), then goes silent.
        pair.to_core(START + 61)
        self.assertEqual(pair.core.get_timer(), START + 121)
        pair.core.handle_timer(START + 121)
        pair.to_peer()
        (event,) = pair.core.handle_timer(START + 241)
        self.assertEqual(event.limit, "keepAliveTimeout")

    def test_a_ping_from_the_peer_is_answered_and_counts_as_traffic(self):
        pair = Pair(Timeouts(ping_interval=60, keepalive_timeout=180), role=Role.CLIENT)
        pair.peer.receive_data(pair.core.data_to_send())
        pair.to_core(START)
        pair.peer.receive_data(pair.core.data_to_send())
        pair.peer.send_user_control(UserControl.PING_REQUEST, 1234)
        pair.to_core(START + 50)
        answers = [e for e in pair.to_peer() if isinstance(e, UserControlReceived)]
        self.assertEqual([(e.event_type, e.value) for e in answers], [(UserControl.PING_RESPONSE, 1234)])
        self.assertEqual(pair.core.get_timer(), START + 110)


class TimersAloneTests(unittest.TestCase):
    """``Timers`` without a connection: the decisions only."""

    def test_decisions_in_order(self):
        timers = Timers(TIMEOUTS, now=0)
        self.assertEqual(timers.get_timer(), 5)
        timers.received(2)                                      # the bytes that complete the handshake
        timers.handshake_completed(2)
        self.assertEqual(timers.get_timer(), 12)               # the ping, before connect at 22
        self.assertIs(timers.handle_timer(12), PING)
        self.assertIsNone(timers.handle_timer(12))              # one ping per silence
        self.assertEqual(timers.get_timer(), 22)                # connect (22) before the close (27)
        timers.connect_accepted = True
        self.assertEqual(timers.get_timer(), 27)
        timers.received(24)
        self.assertEqual(timers.get_timer(), 34)
        self.assertEqual(timers.ping_timestamp(34.5), 34500)

    def test_the_ping_timestamp_wraps_as_a_u32(self):
        self.assertEqual(Timers(now=0).ping_timestamp(2 ** 32 / 1000 + 1), 1000)
