"""The hub contract (app/hub.py): what every hub does, written once, run against each implementation.

``HubContract`` is a mixin of test methods; a test module mixes it with
trial's ``TestCase`` and says how to build hubs (``make_hubs``), as
tests/app/test_local_hub.py does for ``LocalHub``.  ``make_hubs`` returns two
hubs, or a Deferred of them: two nodes of one cluster for a distributed hub
(a Redis hub: two hubs on one Redis), the same hub twice for ``LocalHub``.
Clients join ``self.other`` and are reached from ``self.hub``, so every test
also proves the answer crosses nodes.

Nothing here assumes an answer is synchronous: every hub answer is yielded,
and ``settle()`` (a no-op for ``LocalHub``) lets messages in flight between
nodes arrive before the test looks at what a client received.  Clients are
real ``Client`` objects over a fake session (``FakeSession``): calls are kept
in a ``PendingCalls`` table on ``self.clock``, with the session's timeout,
and a disconnect fails them and leaves the hub as a closing session does.
"""
from twisted.internet.defer import inlineCallbacks, maybeDeferred, succeed
from twisted.internet.task import Clock

from fmspy_gateway.app.calls import CallFailed, CallTimedOut, PendingCalls
from fmspy_gateway.app.client import Client
from fmspy_gateway.app.hub import ClientInfo, ClientNotFound, Publication, Room, RoomInfo, StreamTaken

#: The call timeout of the fake sessions (the server's callTimeout).
CALL_TIMEOUT = 30.0


class FakePeer:
    def __init__(self, session):
        self.session = session
        self.closed = None

    def close(self, reason):
        if self.closed is None:
            self.closed = reason
            self.session.connection_lost(reason)


class FakeSession:
    """What a ``Client`` handle reaches: its calls in a table, its notifications in a list."""

    def __init__(self, hub, clock):
        self.hub = hub
        self.peer = FakePeer(self)
        self.outgoing_calls = PendingCalls(clock, CALL_TIMEOUT, first_transaction_id=1)
        self.client = None
        self.connected, self.closed = True, False
        #: False stands for a client over ``maxOutgoingBytes``: what it is sent is dropped.
        self.reading = True
        self.notified = []
        self.calls = []         # (transaction id, method, args) sent to the client

    def notify_client(self, notification):
        if self.closed or not self.reading:
            return False
        self.notified.append((notification.method, notification.args))
        return True

    def call_client(self, method, args, timeout=None):
        transaction_id, d = self.outgoing_calls.new(f"call {method!r}", timeout)
        self.calls.append((transaction_id, method, tuple(args)))
        return d

    def answer(self, value, index=-1):
        self.outgoing_calls.resolve(self.calls[index][0], value)

    def refuse(self, info, index=-1):
        self.outgoing_calls.reject(self.calls[index][0], info)

    def close(self, reason):
        self.peer.close(reason)

    def connection_lost(self, reason):
        self.closed, self.connected = True, False
        self.outgoing_calls.fail_all(f"connection closed: {reason}")
        if self.client.room is not None:
            room, self.client.room = self.client.room, None
            self.hub.leave(self.client, room)


class HubContract:
    """Test methods every hub passes; mix into a trial ``TestCase`` and define ``make_hubs``."""

    def make_hubs(self):
        """Two hubs of one cluster (or a Deferred of them); the same hub twice where there is one node."""
        raise NotImplementedError

    def settle(self):
        """A Deferred that fires once messages between the nodes have arrived (no-op in one process)."""
        return succeed(None)

    def setUp(self):
        self.clock = Clock()
        self._count = 0

        def built(hubs):
            self.hub, self.other = hubs
        return maybeDeferred(self.make_hubs).addCallback(built)

    @inlineCallbacks
    def join(self, room="lobby", application="chat", hub=None, encoding=0, client_id=None):
        """A connected client of ``application`` in ``room``, on ``hub`` (default: the other node)."""
        hub = hub if hub is not None else self.other
        self._count += 1
        client_id = client_id or f"client-{self._count}"
        session = FakeSession(hub, self.clock)
        params = {"app": f"{application}/{room}", "flashVer": "TEST 1,0,0,0", "tcUrl": f"rtmp://h/{application}",
                  "objectEncoding": encoding}
        client = Client(client_id, f"192.0.2.1:{40000 + self._count}", application, params, (), room, session,
                        connected_at=1000.0 + self._count)
        session.client = client
        client.room = hub.room(application, room)
        created = yield hub.join(client, client.room)
        self.created = created
        return client

    def leave(self, client):
        room, client.room = client.room, None
        return client.session.hub.leave(client, room)

    # -- rooms ---------------------------------------------------------------------------------------

    @inlineCallbacks
    def test_first_member_creates_a_named_room_and_the_last_destroys_it(self):
        a = yield self.join("lobby")
        self.assertIs(self.created, True)
        b = yield self.join("lobby", hub=self.hub)
        self.assertIs(self.created, False)
        members = yield self.hub.members(Room("chat", "lobby"))
        self.assertEqual([m.id for m in members], [a.id, b.id])
        rooms = yield self.other.rooms("chat")
        self.assertEqual(rooms, [RoomInfo("chat", "lobby", 2)])
        destroyed = yield self.leave(a)
        self.assertIs(destroyed, False)
        destroyed = yield self.leave(b)
        self.assertIs(destroyed, True)
        self.assertEqual((yield self.hub.rooms("chat")), [])
        self.assertEqual((yield self.hub.members(Room("chat", "lobby"))), [])
        yield self.join("lobby")
        self.assertIs(self.created, True, "a room made again after it was destroyed is created again")

    @inlineCallbacks
    def test_the_default_room_is_never_created_nor_destroyed(self):
        a = yield self.join("")
        self.assertIs(self.created, False)
        self.assertIs((yield self.leave(a)), False)
        rooms = yield self.hub.rooms("chat")
        self.assertEqual(rooms, [RoomInfo("chat", "", 0)])
        self.assertTrue(rooms[0].is_default)

    @inlineCallbacks
    def test_rooms_are_values_of_application_and_name(self):
        self.assertEqual(self.hub.room("chat", "x"), Room("chat", "x"))
        self.assertEqual(hash(self.hub.room("chat", "x")), hash(Room("chat", "x")))
        self.assertNotEqual(Room("chat", "x"), Room("other", "x"))
        a = yield self.join("x", "chat")
        b = yield self.join("x", "other")
        self.assertEqual([m.id for m in (yield self.hub.members(Room("chat", "x")))], [a.id])
        self.assertEqual([m.id for m in (yield self.hub.members(Room("other", "x")))], [b.id])
        self.assertEqual([r.name for r in (yield self.hub.rooms("other"))], ["x"])

    @inlineCallbacks
    def test_leaving_a_room_one_is_not_in_changes_nothing(self):
        a = yield self.join("one")
        self.assertIs((yield self.other.leave(a, Room("chat", "two"))), False)
        self.assertEqual([m.id for m in (yield self.hub.members(Room("chat", "one")))], [a.id])

    # -- broadcast -----------------------------------------------------------------------------------

    @inlineCallbacks
    def test_broadcast_reaches_the_room_only_and_counts(self):
        a = yield self.join("one")
        b = yield self.join("one", hub=self.hub)
        c = yield self.join("two")
        reached = yield self.hub.broadcast(Room("chat", "one"), "message", ["hi", {"n": 1}])
        yield self.settle()
        self.assertEqual(reached, 2)
        self.assertEqual(a.session.notified, [("message", ("hi", {"n": 1}))])
        self.assertEqual(b.session.notified, [("message", ("hi", {"n": 1}))])
        self.assertEqual(c.session.notified, [])

    @inlineCallbacks
    def test_broadcast_excludes_one_client_by_id_or_by_client(self):
        a = yield self.join("one")
        b = yield self.join("one")
        self.assertEqual((yield self.hub.broadcast(Room("chat", "one"), "m", ["x"], exclude=a.id)), 1)
        self.assertEqual((yield self.hub.broadcast(Room("chat", "one"), "m", ["y"], exclude=b)), 1)
        yield self.settle()
        self.assertEqual(a.session.notified, [("m", ("y",))])
        self.assertEqual(b.session.notified, [("m", ("x",))])

    @inlineCallbacks
    def test_a_room_value_broadcasts_through_its_hub(self):
        a = yield self.join("one")
        self.assertEqual((yield self.hub.room("chat", "one").broadcast("m", 1, 2, exclude=None)), 1)
        yield self.settle()
        self.assertEqual(a.session.notified, [("m", (1, 2))])
        self.assertEqual([m.id for m in (yield self.hub.room("chat", "one").members())], [a.id])

    @inlineCallbacks
    def test_broadcast_skips_and_does_not_count_a_client_that_is_not_reading(self):
        talker = yield self.join("one")
        silent = yield self.join("one")
        silent.session.reading = False
        self.assertEqual((yield self.hub.broadcast(Room("chat", "one"), "message", ["hi"])), 1)
        yield self.settle()
        self.assertEqual(silent.session.notified, [])
        self.assertEqual(talker.session.notified, [("message", ("hi",))])

    @inlineCallbacks
    def test_broadcast_to_a_room_nobody_is_in_reaches_nobody(self):
        self.assertEqual((yield self.hub.broadcast(Room("chat", "nowhere"), "m", [])), 0)
        a = yield self.join("gone")
        yield self.leave(a)
        self.assertEqual((yield self.hub.broadcast(Room("chat", "gone"), "m", [])), 0)
        yield self.settle()
        self.assertEqual(a.session.notified, [])

    # -- locate and list ------------------------------------------------------------------------------

    @inlineCallbacks
    def test_locate_describes_a_client_wherever_it_is(self):
        a = yield self.join("lobby", encoding=3)
        info = yield self.hub.locate(a.id)
        self.assertEqual(info, ClientInfo(id=a.id, application="chat", address=a.address, room="lobby",
                                          node=self.other.node, agent="TEST 1,0,0,0", tc_url="rtmp://h/chat",
                                          object_encoding=3, connected_at=a.connected_at))
        self.assertEqual(ClientInfo.from_dict(info.to_dict()), info, "a description travels as a plain dict")
        self.assertIsNone((yield self.hub.locate("nobody")))
        yield self.leave(a)
        self.assertIsNone((yield self.hub.locate(a.id)))

    @inlineCallbacks
    def test_locate_gives_the_handle_only_where_the_client_is_local(self):
        a = yield self.join("lobby")
        self.assertIs((yield self.other.locate(a.id)).handle, a)
        if self.hub is not self.other:
            self.assertIsNone((yield self.hub.locate(a.id)).handle)

    @inlineCallbacks
    def test_clients_of_an_application_and_of_a_room(self):
        a = yield self.join("one")
        b = yield self.join("two", hub=self.hub)
        yield self.join("one", "other")
        self.assertEqual([c.id for c in (yield self.hub.clients("chat"))], [a.id, b.id])
        self.assertEqual([c.id for c in (yield self.other.clients("chat", "two"))], [b.id])
        self.assertEqual([c.room for c in (yield self.hub.clients("chat"))], ["one", "two"])
        self.assertEqual((yield self.hub.clients("nothing")), [])
        self.assertEqual(sorted(r.name for r in (yield self.hub.rooms("chat"))), ["one", "two"])

    # -- calls ---------------------------------------------------------------------------------------

    @inlineCallbacks
    def test_call_fires_with_the_clients_result(self):
        a = yield self.join("lobby")
        d = self.hub.call(a.id, "ask", ["why", 42])
        yield self.settle()
        self.assertEqual([(m, args) for _, m, args in a.session.calls], [("ask", ("why", 42))])
        a.session.answer({"because": True})
        self.assertEqual((yield d), {"because": True})

    @inlineCallbacks
    def test_call_fails_with_the_clients_error(self):
        a = yield self.join("lobby")
        d = self.hub.call(a.id, "ask", [])
        yield self.settle()
        a.session.refuse({"level": "error", "code": "App.No", "description": "no way"})
        failure = yield self.assertFailure(d, CallFailed)
        self.assertEqual((failure.code, failure.description), ("App.No", "no way"))

    @inlineCallbacks
    def test_call_times_out(self):
        a = yield self.join("lobby")
        d = self.hub.call(a.id, "ask", [], timeout=5)
        yield self.settle()
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        yield self.assertFailure(d, CallTimedOut)

    @inlineCallbacks
    def test_calling_a_client_that_is_not_connected_fails_at_once(self):
        yield self.assertFailure(self.hub.call("nobody", "ask", []), ClientNotFound)
        a = yield self.join("lobby")
        yield self.leave(a)
        yield self.assertFailure(self.hub.call(a.id, "ask", []), ClientNotFound)

    # -- disconnect ----------------------------------------------------------------------------------

    @inlineCallbacks
    def test_disconnect_closes_the_client_wherever_it_is(self):
        a = yield self.join("lobby")
        b = yield self.join("lobby")
        pending = self.hub.call(a.id, "ask", [])
        yield self.settle()
        self.assertIs((yield self.hub.disconnect(a.id, "bye")), True)
        yield self.settle()
        self.assertEqual(a.session.peer.closed, "bye")
        yield self.assertFailure(pending, CallFailed)      # its calls fail with its connection
        self.assertIsNone((yield self.hub.locate(a.id)))
        self.assertEqual([m.id for m in (yield self.hub.members(Room("chat", "lobby")))], [b.id])
        self.assertIsNone(b.session.peer.closed)

    @inlineCallbacks
    def test_disconnecting_a_client_that_is_not_connected_says_so(self):
        self.assertIs((yield self.hub.disconnect("nobody", "bye")), False)

    # -- live streams --------------------------------------------------------------------------------

    @inlineCallbacks
    def test_announce_find_and_withdraw_a_live_stream(self):
        self.assertIsNone((yield self.hub.find("live", "cam")))
        publication = yield self.other.announce("live", "cam", "publisher-1")
        self.assertEqual(publication, Publication("live", "cam", self.other.node, "publisher-1"))
        self.assertEqual((yield self.hub.find("live", "cam")), publication)
        self.assertIs((yield self.hub.withdraw("live", "cam", "publisher-1")), True)
        self.assertIsNone((yield self.other.find("live", "cam")))
        self.assertIs((yield self.hub.withdraw("live", "cam", "publisher-1")), False)

    @inlineCallbacks
    def test_a_second_publisher_anywhere_is_refused(self):
        yield self.other.announce("live", "cam", "publisher-1")
        failure = yield self.assertFailure(self.hub.announce("live", "cam", "publisher-2"), StreamTaken)
        self.assertEqual(failure.publication, Publication("live", "cam", self.other.node, "publisher-1"))
        yield self.assertFailure(self.other.announce("live", "cam", "publisher-1"), StreamTaken)
        # The name is per application.
        yield self.hub.announce("other", "cam", "publisher-2")

    @inlineCallbacks
    def test_only_the_publisher_withdraws_its_stream(self):
        yield self.other.announce("live", "cam", "publisher-1")
        self.assertIs((yield self.hub.withdraw("live", "cam", "publisher-2")), False)
        self.assertEqual((yield self.hub.find("live", "cam")).client_id, "publisher-1")
        yield self.other.withdraw("live", "cam", "publisher-1")
        publication = yield self.hub.announce("live", "cam", "publisher-2")
        self.assertEqual(publication.node, self.hub.node)
