"""A session entering and leaving its room through a hub that answers later (tests/app/late_hub.py).

A remote hub answers ``join`` and ``leave`` after a round trip; a client may
be gone before its join was answered.  The room hooks must run once each, in
order (create, enter; leave, destroy, disconnect), and a hub that fails must
cost the client nothing but a logged line.
"""
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.application import Application
from fmspy_gateway.app.session import Session

from .late_hub import LateHub
from .test_live import FakePeer


class RoomHooks(Application):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events = []

    def on_room_create(self, room):
        self.events.append(("create", room.name))

    def on_room_enter(self, room, client):
        self.events.append(("enter", room.name, client.id))

    def on_room_leave(self, room, client):
        self.events.append(("leave", room.name, client.id))

    def on_room_destroy(self, room):
        self.events.append(("destroy", room.name))

    def on_disconnect(self, client):
        self.events.append(("disconnect", client.id))


class LateHubSessionTests(SynchronousTestCase):
    def setUp(self):
        self.hub = LateHub()
        self.app = RoomHooks("app", hub=self.hub)

    def connected(self, room="lobby"):
        """A session whose connect was accepted; its join is waiting for the hub."""
        peer = FakePeer()          # the handshake done
        session = Session({"app": self.app}, peer, clock=Clock())
        peer.client.send_command("connect", 1, {"app": f"app/{room}"}, [])
        for event in peer.connection.receive_data(peer.client.data_to_send()):
            session.handle(event)
        self.assertTrue(session.connected)
        return session

    def test_hooks_wait_for_the_hub_and_run_in_order(self):
        session = self.connected()
        me = session.client.id
        self.assertEqual((self.hub.pending(), self.app.events), (["join"], []))
        self.hub.answer()
        self.assertEqual(self.app.events, [("create", "lobby"), ("enter", "lobby", me)])
        session.connection_lost("gone")
        self.assertEqual(self.hub.pending(), ["leave"])
        self.assertEqual(len(self.app.events), 2)          # nothing before the hub answered the leave
        self.hub.answer()
        self.assertEqual(self.app.events[2:], [("leave", "lobby", me), ("destroy", "lobby"), ("disconnect", me)])
        self.assertEqual(self.hub.inner._rooms, {})

    def test_gone_before_the_join_answered_still_leaves_after_it(self):
        session = self.connected()
        me = session.client.id
        session.connection_lost("gone at once")
        # The leave is not sent before the join is answered: a remote hub could apply them out of order.
        self.assertEqual(self.hub.pending(), ["join"])
        self.hub.answer()
        self.assertEqual(self.hub.pending(), ["leave"])
        self.hub.answer()
        self.assertEqual(self.app.events, [("create", "lobby"), ("enter", "lobby", me), ("leave", "lobby", me),
                                           ("destroy", "lobby"), ("disconnect", me)])
        self.assertEqual(self.hub.pending(), [])
        self.assertIsNone(self.successResultOf(self.hub.inner.locate(me)))
        self.assertEqual(self.hub.inner._rooms, {})

    def test_two_clients_one_room_create_and_destroy_once(self):
        first, second = self.connected(), self.connected()
        a, b = first.client.id, second.client.id
        self.hub.answer_all()
        second.connection_lost("gone")
        first.connection_lost("gone")
        self.hub.answer_all()
        self.assertEqual(self.app.events, [
            ("create", "lobby"), ("enter", "lobby", a), ("enter", "lobby", b),
            ("leave", "lobby", b), ("disconnect", b),
            ("leave", "lobby", a), ("destroy", "lobby"), ("disconnect", a)])

    def test_a_slow_enter_hook_delays_the_leave_hooks_but_not_the_hubs_leave(self):
        slow = Deferred()
        self.app.on_room_enter = lambda room, client: self.app.events.append(("enter", room.name)) or slow
        session = self.connected()
        self.hub.answer()
        session.connection_lost("gone")
        # The client leaves the hub at once (a hook that never answers must not keep it in its room) ...
        self.assertEqual(self.hub.pending(), ["leave"])
        self.hub.answer()
        self.assertEqual(self.hub.inner._rooms, {})
        # ... and its leave hooks wait for the enter hook.
        self.assertEqual([e[0] for e in self.app.events], ["create", "enter"])
        slow.callback(None)
        self.assertEqual([e[0] for e in self.app.events], ["create", "enter", "leave", "destroy", "disconnect"])

    def test_a_slow_create_hook_delays_enter_and_the_leave_hooks_in_order(self):
        slow = Deferred()
        self.app.on_room_create = lambda room: self.app.events.append(("create", room.name)) or slow
        session = self.connected()
        session.connection_lost("gone")
        self.hub.answer()                                  # the join: create runs and waits
        self.hub.answer()                                  # the leave, sent as soon as the join was answered
        self.assertEqual(self.app.events, [("create", "lobby")])
        slow.callback(None)
        self.assertEqual([e[0] for e in self.app.events], ["create", "enter", "leave", "destroy", "disconnect"])

    def test_a_failing_hub_is_logged_and_the_hooks_still_pair(self):
        session = self.connected()
        me = session.client.id
        self.hub.fail_next()                               # the join
        session.connection_lost("gone")
        self.hub.fail_next()                               # the leave
        self.assertEqual(self.app.events, [("enter", "lobby", me), ("leave", "lobby", me), ("disconnect", me)])
        self.assertEqual(len(self.flushLoggedErrors()), 0)  # logged as lines by log_failure, never raised
