"""A graceful stop with a hub that answers later: every client's leave chain, then the applications, then the hub.

A remote hub (Redis) answers a leave after a round trip, and the room and
disconnect hooks run only then, after the connection has closed.  The stop
must wait for them (bounded by [Cluster] stopTimeout, logged when hit), then
stop the applications, and only then let the node leave the cluster.
tests/app/late_hub.py plays the remote hub; twistd's real MultiService
stops the services, as it does at SIGTERM.
"""
from twisted.application import service
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.session import Session
from fmspy_gateway.tap import ApplicationService, HubService

from .app.late_hub import LateHub
from .app.test_live import FakePeer
from .app.test_session_late_hub import RoomHooks


class StoppingHooks(RoomHooks):
    def stop(self):
        self.events.append(("stop",))
        return succeed(None)


class ClosingFactory:
    """The factory's part of a stop: closing every connection (the session hears its connection lost)."""

    def __init__(self, sessions):
        self.sessions = sessions

    def close_all(self, reason):
        for session in self.sessions:
            session.connection_lost(reason)
        return succeed(None)


class Pool:
    def closeCachedConnections(self):
        return succeed(None)


class EventedLateHub(LateHub):
    """A LateHub whose stop is one more event in the application's list (what ran in which order)."""

    def __init__(self, events):
        super().__init__()
        self.events = events

    def stop(self):
        self.events.append(("hub stop",))
        return succeed(None)


class GracefulStopTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.events = []
        self.hub = EventedLateHub(self.events)
        self.app = StoppingHooks("app", hub=self.hub)
        self.app.events = self.events
        self.sessions = []
        top = self.top = service.MultiService()
        hub_service = HubService(self.hub, self.clock)
        hub_service.setServiceParent(top)
        applications = ApplicationService(ClosingFactory(self.sessions), {"app": self.app}, Pool(),
                                          clock=self.clock, stop_timeout=30)
        applications.setServiceParent(top)
        hub_service.stop_after = lambda: applications.stopping
        self.hub.start = lambda: succeed(None)
        top.startService()

    def connected(self, room="lobby"):
        peer = FakePeer()
        session = Session({"app": self.app}, peer, clock=self.clock)
        peer.client.send_command("connect", 1, {"app": f"app/{room}"}, [])
        for event in peer.connection.receive_data(peer.client.data_to_send()):
            session.handle(event)
        self.hub.answer_all()           # the join
        self.sessions.append(session)
        return session

    def test_the_stop_waits_for_the_leave_hooks_then_stops_the_applications_then_the_hub(self):
        me = self.connected().client.id
        del self.events[:]
        stopped = self.top.stopService()
        # The connection is closed; its leave waits for the hub: nothing else may stop meanwhile.
        self.assertEqual((self.hub.pending(), self.events), (["leave"], []))
        self.assertNoResult(stopped)
        self.hub.answer_all()
        self.successResultOf(stopped)
        self.assertEqual(self.events, [("leave", "lobby", me), ("destroy", "lobby"), ("disconnect", me),
                                       ("stop",), ("hub stop",)])
        self.assertEqual(self.app.leaving, set())

    def test_a_hub_that_never_answers_delays_the_stop_only_until_stop_timeout_and_that_is_logged(self):
        self.connected()
        self.connected(room="other")
        del self.events[:]
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        stopped = self.top.stopService()
        self.clock.advance(29)
        self.assertNoResult(stopped)
        self.assertEqual(self.events, [])
        self.clock.advance(1)
        self.successResultOf(stopped)
        self.assertEqual(self.events, [("stop",), ("hub stop",)])
        lines = [event["log_format"].format(**event) for event in logged if "graceful stop" in event["log_format"]]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("2 client(s) still leaving", lines[0])
        self.assertIn("after 30 s ([Cluster] stopTimeout)", lines[0])

    def test_a_stop_with_every_leave_already_done_does_not_wait(self):
        session = self.connected()
        session.connection_lost("gone")
        self.hub.answer_all()
        self.sessions.remove(session)
        del self.events[:]
        self.successResultOf(self.top.stopService())
        self.assertEqual(self.events, [("stop",), ("hub stop",)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
