"""A session whose client is over its output budget: notifications, broadcasts and calls to it are dropped."""
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.calls import CallFailed
from fmspy_gateway.app.chat import ChatApplication
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.session import Session
from fmspy_gateway.rtmp.connection import Connection, Role

from .fakes import FakePeer, exchange

LOGGER = "fmspy_gateway.app.session"


class OverBudgetTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.app = ChatApplication("chat", hub=LocalHub())
        self.sessions = [self.connected(f"127.0.0.1:{5000 + n}") for n in range(2)]

    def connected(self, address):
        peer = FakePeer(address)
        session = Session({"chat": self.app}, peer, clock=self.clock)
        client = Connection(Role.CLIENT)
        self.pump(session, client)
        client.send_command("connect", 1, {"app": "chat"})
        self.pump(session, client)
        self.assertTrue(session.connected)
        return session, client

    def pump(self, session, client):
        return exchange(client, session)

    def test_broadcast_skips_a_client_over_budget_and_counts_what_it_dropped(self):
        (listener, listener_client), (talker, talker_client) = self.sessions
        listener.peer.over_budget = True
        room = talker.client.room
        with self.assertLogs(LOGGER, "WARNING") as logs:
            reached = [self.successResultOf(room.broadcast("message", n)) for n in range(50)]
        self.assertEqual(reached, [1] * 50)
        self.assertEqual(self.pump(listener, listener_client), [])
        self.assertEqual(len(self.pump(talker, talker_client)), 50)
        self.assertEqual(listener.limit_log.counts["dropped while over maxOutgoingBytes"], 50)
        self.assertEqual(len(logs.output), 1, logs.output)
        self.assertIn("maxOutgoingBytes", logs.output[0])

    def test_a_call_to_a_client_over_budget_fails_at_once(self):
        (listener, _), _ = self.sessions
        listener.peer.over_budget = True
        with self.assertLogs(LOGGER, "WARNING"):
            failure = self.failureResultOf(listener.client.call("ping"), CallFailed)
        self.assertIn("maxOutgoingBytes", failure.getErrorMessage())

    def test_a_client_within_budget_gets_everything(self):
        (listener, listener_client), (talker, _) = self.sessions
        listener.peer.over_budget = False
        self.assertEqual(self.successResultOf(talker.client.room.broadcast("message", "hi")), 2)
        self.assertEqual([c.name for c in self.pump(listener, listener_client)], ["message"])
