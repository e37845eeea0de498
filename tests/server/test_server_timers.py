"""The server glue waking the core's deadlines (fmspy_gateway/deadline.py), on a StringTransport and a Clock.

The decisions are the core's (tests/rtmp/test_timers.py); here: one
DelayedCall per connection, reads that never reschedule it, re-arming
sooner when the core's deadline comes sooner, the close reasons naming the
options, and RTMPT sessions driving the same protocol.
"""
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.config import RTMPConfig
from fmspy_gateway.rtmp.connection import Connection, Role, State
from fmspy_gateway.rtmp.events import CommandReceived, UserControlReceived
from fmspy_gateway.rtmp.messages import UserControl
from fmspy_gateway.deadline import Deadline
from fmspy_gateway.server.protocol import RTMPServerFactory

from .glue import exchange

LOGGER = "fmspy_gateway"


def pings(events):
    return [e.value for e in events if isinstance(e, UserControlReceived) and e.event_type == UserControl.PING_REQUEST]


class ServerCase(SynchronousTestCase):
    config = RTMPConfig(handshake_timeout=5, connect_timeout=100, ping_interval=10, keepalive_timeout=25)

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)           # the connection starts at 1000: ping timestamps count from it
        self.factory = RTMPServerFactory({"echotest": EchoApplication("echotest")}, self.config, reactor=self.clock)
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.client = Connection(Role.CLIENT)

    def exchange(self):
        return exchange(self.client, self.protocol, self.transport)

    def handshake(self):
        self.exchange()
        self.assertIs(self.client.state, State.OPEN)

    def connect(self):
        self.handshake()
        self.client.send_command("connect", 1, {"app": "echotest", "tcUrl": "rtmp://localhost/echotest"})
        (result,) = [e for e in self.exchange() if isinstance(e, CommandReceived)]
        self.assertEqual(result.name, "_result")

    def calls(self):
        return [call.getTime() - 1000 for call in self.clock.getDelayedCalls()]


class OneTimerTests(ServerCase):
    def test_one_call_armed_at_the_handshake_deadline(self):
        self.assertEqual(self.calls(), [5])

    def test_reads_do_not_reschedule_the_call(self):
        self.connect()
        self.clock.advance(5)                           # past the handshake deadline: re-armed for the ping
        (call,) = self.clock.getDelayedCalls()
        for _ in range(30):
            self.clock.advance(0.1)
            self.client.send_command("echo", 0, None, ["x"])
            self.exchange()
        self.assertEqual(self.clock.getDelayedCalls(), [call])
        self.assertEqual(self.calls(), [10])
        self.clock.advance(2)                           # woken early: nothing sent, re-armed from the last byte
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertAlmostEqual(self.calls()[0], 8 + 10)

    def test_the_call_is_gone_with_the_connection(self):
        self.connect()
        self.protocol.close("test")
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SoonerDeadlineTests(ServerCase):
    config = RTMPConfig(handshake_timeout=30, connect_timeout=3, ping_interval=10, keepalive_timeout=25)

    def test_a_sooner_deadline_re_arms_the_call(self):
        self.assertEqual(self.calls(), [30])
        self.clock.advance(1)
        self.handshake()
        self.assertEqual(self.calls(), [1 + 3])         # connect's deadline, sooner than the handshake's
        with self.assertLogs(LOGGER, "WARNING") as logs:
            self.clock.advance(3)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.protocol.close_reason, "limit hit: connectTimeout")
        self.assertTrue(logs.output[0].endswith(
            ": limit hit: no connect accepted within 3 s of the handshake (connectTimeout)"), logs.output)


class ReasonTests(ServerCase):
    def test_handshake(self):
        self.clock.advance(5)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.protocol.close_reason, "handshake not completed within 5 s (handshakeTimeout)")

    def test_ping_with_the_ms_timestamp_then_keepalive(self):
        self.connect()
        self.clock.advance(10)
        self.assertEqual(pings(self.client.receive_data(self.transport.value())), [10000])
        self.transport.clear()
        self.clock.advance(15)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.protocol.close_reason, "nothing received for 25 s (keepAliveTimeout)")

    def test_an_answered_ping_re_arms_for_the_next_ping(self):
        self.connect()
        self.clock.advance(10)
        self.exchange()                                 # the PingResponse comes back at once
        self.assertEqual(self.calls(), [20])            # the next ping, not the close at 25
        self.clock.advance(10)
        self.assertEqual(pings(self.client.receive_data(self.transport.value())), [20000])


class _TickingClock(Clock):
    """A Clock whose every reading is ``tick`` seconds later than the one before, as a busy reactor's."""

    def __init__(self, tick):
        super().__init__()
        self.tick = tick
        self.scheduled = self.cancelled = 0

    def seconds(self):
        self.rightNow += self.tick
        return self.rightNow

    def callLater(self, delay, f, *args, **kw):
        self.scheduled += 1
        call = super().callLater(delay, f, *args, **kw)
        cancel = call.cancel

        def counted_cancel():
            self.cancelled += 1
            cancel()
        call.cancel = counted_cancel
        return call


class DeadlineTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.fired = []
        self.deadline = Deadline(self.clock, self.fired.append)

    def test_arms_once_moves_only_sooner(self):
        self.deadline.arm(None)
        self.assertIsNone(self.deadline.scheduled)
        self.deadline.arm(10)
        self.deadline.arm(20)
        self.assertEqual(self.deadline.scheduled, 10)
        self.deadline.arm(4)
        self.assertEqual(self.deadline.scheduled, 4)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(4)
        self.assertEqual(self.fired, [4])
        self.assertIsNone(self.deadline.scheduled)

    def test_never_fires_with_a_time_before_its_deadline(self):
        self.clock.advance(0.1)
        self.deadline.arm(0.3)          # 0.1 + (0.3 - 0.1) is 0.30000000000000004, or a hair less
        self.clock.advance(0.2 + 1e-9)
        self.assertGreaterEqual(self.fired[0], 0.3)

    def test_a_deadline_passed_fires_in_the_next_turn(self):
        self.clock.advance(5)
        self.deadline.arm(2)
        self.assertEqual(self.deadline.scheduled, 5)
        self.clock.advance(0)
        self.assertEqual(self.fired, [5])

    def test_the_same_deadline_again_schedules_nothing_even_if_the_clock_moved_while_arming(self):
        # callLater reads the clock again: the call's time lands past the deadline by the time between
        # the two readings.  Arming the same deadline again must not take that for a later call.
        clock = _TickingClock(tick=0.005)
        deadline = Deadline(clock, self.fired.append)
        deadline.arm(30)
        first = deadline.scheduled
        self.assertGreater(first, 30)               # the drift this test is about
        deadline.arm(30)
        deadline.arm(30 + 1e-9)
        self.assertEqual(deadline.scheduled, first)
        self.assertEqual(clock.scheduled, 1)
        self.assertEqual(clock.cancelled, 0)

    def test_cancel(self):
        self.deadline.arm(1)
        self.deadline.cancel()
        self.deadline.cancel()
        self.clock.advance(2)
        self.assertEqual(self.fired, [])
