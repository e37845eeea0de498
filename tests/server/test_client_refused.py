"""Our client (server.client) given an answer past its own value budget: the call fails saying so.

Without this the call would wait for its timeout, as the server's clients
did before the server answered refusals.
"""
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.calls import CallFailed
from fmspy_gateway.rtmp.connection import Connection, Role, State
from fmspy_gateway.server.client import RTMPClientProtocol


def exponential_tree(depth=22):
    tree = []
    for _ in range(depth):
        tree = [tree, tree]
    return tree


class RefusedAnswerTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.protocol = RTMPClientProtocol(self.clock, call_timeout=30)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.server = Connection(Role.SERVER)
        while self.server.state is not State.OPEN or self.protocol.connection.state is not State.OPEN:
            self.exchange()

    def exchange(self):
        """Bytes both ways once; returns the server's events."""
        sent = self.transport.value()
        self.transport.clear()
        events = self.server.receive_data(sent) if sent else []
        back = self.server.data_to_send()
        if back:
            self.protocol.dataReceived(back)
        return events

    def test_an_answer_over_the_budget_fails_the_call_at_once(self):
        d = self.protocol.call("giveMe")
        (command,) = self.exchange()
        self.server.send_command("_result", command.transaction_id, None, [exponential_tree()])
        self.protocol.dataReceived(self.server.data_to_send())
        failure = self.failureResultOf(d, CallFailed)
        self.assertIn("(maxValueNodes)", failure.value.description)
        self.assertEqual(len(self.protocol.calls), 0)
