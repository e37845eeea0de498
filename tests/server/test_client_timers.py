"""Our client's glue (server.client) on a StringTransport and a Clock: keep-alive, and calls failing at once.

The deadlines are the core's (rtmp/timers.py, tested with explicit times in
tests/rtmp/test_timers.py); here the glue must wake the core at them with
one DelayedCall, flush the PingRequest, drop the connection on a TimedOut
and fail what is waiting with a reason naming the option.  Once the
connection is gone a call fails at once (``PendingCalls`` refuses new
entries after ``fail_all``, as AMP's ``failAllOutgoing``).
"""
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.calls import CallTimedOut, ConnectionClosed, PendingCalls
from fmspy_gateway.rtmp.connection import Connection, Role, State
from fmspy_gateway.rtmp.events import CommandReceived, UserControlReceived
from fmspy_gateway.rtmp.messages import UserControl
from fmspy_gateway.server.client import RTMPClientProtocol


def pings(events, kind=UserControl.PING_REQUEST):
    return [e.value for e in events if isinstance(e, UserControlReceived) and e.event_type == kind]


class ClientCase(SynchronousTestCase):
    timeouts = dict(handshake_timeout=5, ping_interval=10, keepalive_timeout=25)

    def setUp(self):
        self.clock = Clock()
        self.protocol = RTMPClientProtocol(self.clock, call_timeout=100, **self.timeouts)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.server = Connection(Role.SERVER)

    def to_server(self):
        """What the client wrote, read by the server; returns the server's events."""
        sent = self.transport.value()
        self.transport.clear()
        return self.server.receive_data(sent) if sent else []

    def to_client(self):
        back = self.server.data_to_send()
        if back:
            self.protocol.dataReceived(back)

    def handshake(self):
        while self.server.state is not State.OPEN or self.protocol.connection.state is not State.OPEN:
            self.to_server()
            self.to_client()
        self.to_server()

    def lose(self, reason=ConnectionAborted()):
        """What the reactor does after the glue aborted the transport."""
        self.protocol.connectionLost(Failure(reason))

    def delayed_calls(self):
        return self.clock.getDelayedCalls()


class HandshakeTests(ClientCase):
    def test_a_server_that_never_answers_the_handshake_fails_the_connect(self):
        d = self.protocol.connect("echotest")
        self.clock.advance(4.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(self.transport.disconnected)        # aborted
        self.lose()
        failure = self.failureResultOf(d, ConnectionClosed)
        self.assertIn("handshakeTimeout", failure.getErrorMessage())
        self.assertEqual(self.successResultOf(self.protocol.closed),
                         "handshake not completed within 5 s (handshakeTimeout)")

    def test_the_handshake_deadline_is_gone_once_it_completes(self):
        self.handshake()
        # Lazily: the call stays where it was, finds nothing due, and moves on to the ping.
        self.assertEqual([call.getTime() for call in self.delayed_calls()], [5])
        self.clock.advance(5)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual([call.getTime() for call in self.delayed_calls()], [10])


class KeepAliveTests(ClientCase):
    def test_a_silent_server_is_pinged_then_given_up(self):
        self.handshake()
        waiting = self.protocol.call("slow")
        self.to_server()
        self.clock.advance(9.9)
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(0.1)
        self.assertEqual(pings(self.to_server()), [10000])
        self.clock.advance(14.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.protocol.close_reason, "nothing received for 25 s (keepAliveTimeout)")
        self.lose()
        failure = self.failureResultOf(waiting, ConnectionClosed)
        self.assertIn("keepAliveTimeout", failure.getErrorMessage())
        self.assertEqual(self.delayed_calls(), [])

    def test_an_answering_server_is_kept(self):
        self.handshake()
        for _ in range(10):
            self.clock.advance(10)
            self.assertEqual(len(pings(self.to_server())), 1)
            self.to_client()                 # the server's core answered with a PingResponse
        self.assertGreaterEqual(self.clock.seconds(), 4 * 25)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(len(self.delayed_calls()), 1)

    def test_the_servers_ping_is_answered(self):
        self.handshake()
        self.server.send_user_control(UserControl.PING_REQUEST, 4321)
        self.to_client()
        self.assertEqual(pings(self.to_server(), UserControl.PING_RESPONSE), [4321])

    def test_reads_do_not_reschedule_the_timer(self):
        self.handshake()
        self.clock.advance(5)                    # past the handshake deadline: armed for the ping at 10
        (call,) = self.delayed_calls()
        self.assertEqual(call.getTime(), 10)
        for n in range(19):
            self.clock.advance(0.25)
            self.server.send_command("onStatus", 0, None, [{"code": "x"}])
            self.to_client()
        self.assertEqual([(c, c.getTime()) for c in self.delayed_calls()], [(call, 10)])
        # Woken at the old deadline, it finds the silence too short, pings nothing and re-arms.
        self.clock.advance(10 - self.clock.seconds())
        self.assertEqual(pings(self.to_server()), [])
        self.assertEqual([c.getTime() for c in self.delayed_calls()], [9.75 + 10])



class NoDeadlineTests(ClientCase):
    timeouts = dict(handshake_timeout=None, ping_interval=None, keepalive_timeout=None)

    def test_keepalive_can_be_turned_off(self):
        self.handshake()
        self.assertEqual(self.delayed_calls(), [])
        self.clock.advance(10_000)
        self.assertFalse(self.transport.disconnecting)


class FailAtOnceTests(ClientCase):
    def connected(self):
        self.handshake()
        d = self.protocol.connect("echotest")
        (connect,) = self.to_server()
        self.server.send_command("_result", 1, None, [{"code": "NetConnection.Connect.Success"}])
        self.to_client()
        self.successResultOf(d)

    def test_a_call_after_close_fails_at_once_and_sends_nothing(self):
        self.connected()
        self.lose(ConnectionDone("closed by the server"))
        self.transport.clear()
        d = self.protocol.call("echo", "hello")
        failure = self.failureResultOf(d, ConnectionClosed)
        self.assertNotIsInstance(failure.value, CallTimedOut)
        self.assertEqual(failure.value.code, "NetConnection.Connect.Closed")
        self.assertIn("echo", failure.getErrorMessage())
        self.assertIn("closed by the server", failure.getErrorMessage())
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(len(self.protocol.calls), 0)
        self.assertEqual(self.delayed_calls(), [])          # no call timeout waiting either

    def test_calls_waiting_at_close_fail_with_the_reason(self):
        self.connected()
        first, second = self.protocol.call("a"), self.protocol.call("b")
        self.assertEqual([e.name for e in self.to_server() if isinstance(e, CommandReceived)], ["a", "b"])
        self.lose(ConnectionDone("gone"))
        for d in (first, second):
            self.assertIn("gone", self.failureResultOf(d, ConnectionClosed).getErrorMessage())

    def test_the_table_refuses_new_entries_after_fail_all(self):
        clock = Clock()
        calls = PendingCalls(clock, 30)
        waiting = calls.new("call 'a'")[1]
        calls.fail_all("connection closed: bye")
        self.failureResultOf(waiting, ConnectionClosed)
        self.assertEqual(calls.closed, "connection closed: bye")
        transaction_id, refused = calls.new("call 'b'")
        self.assertEqual(self.failureResultOf(refused, ConnectionClosed).getErrorMessage(),
                         "call 'b': connection closed: bye")
        self.assertEqual(len(calls), 0)
        self.assertFalse(calls.resolve(transaction_id, "late"))
        self.assertEqual(clock.getDelayedCalls(), [])         # no timeout scheduled for a refused call
        calls.fail_all("again")                              # the first reason stays
        self.assertEqual(calls.closed, "connection closed: bye")
