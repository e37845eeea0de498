"""RedisSharedObjects (cluster/redis_shared_objects.py): two nodes on one real redis-server.

The shared objects contract (tests/app/test_shared_objects_contract.py) runs
with its listeners on one node and its changes made through the other; the
tests below prove what only a cluster has: the order and version a listener
on another node hears, a lost batch repaired by a re-read, a Redis restart
survived, limits held cluster-wide, persistence in Redis and the file that
seeds it; the last class runs two ``twistd`` nodes (tests/e2e/test_cluster.py's
``Node``) with our RTMP client on each, as a Flash client would see it.
"""
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.fileio import SynchronousExecutor
from fmspy_gateway.app.shared_object_store import SharedObjectStore
from fmspy_gateway.app.shared_objects import (DeleteSlot, SetSlot, SharedObjectCode, SharedObjectLimits,
                                              SharedObjectRefused, SharedObjectUpdate)
from fmspy_gateway.cluster import scripts
from fmspy_gateway.cluster.redis_shared_objects import RedisSharedObjects, _Batch, _Entry, operation_arguments
from fmspy_gateway.server.client import connect_client
from tests.app.test_shared_objects_contract import SCOPE, Listener, SharedObjectsContract
from tests.cluster.hubs import LogWatch, start_hub, wait_until
from tests.cluster.redis_server import redis_for
from tests.e2e.test_cluster import start_two_nodes, wait_for


@inlineCallbacks
def start_objects(test, server, node):
    """The shared objects of a started node (its link closed at cleanup, before the hub's)."""
    hub = yield start_hub(test, server, node)
    test.addCleanup(hub.shared_objects.stop)
    return hub.shared_objects


def settle(*nodes):
    """Until every batch applied so far reached every node's listeners."""
    return gatherResults([objects.flush() for objects in nodes], consumeErrors=True)


class Journal(Listener):
    """A listener that also notes, with the answers its own changes got, the order it heard things in."""

    def __init__(self, listener_id):
        super().__init__(listener_id)
        self.journal = []

    def deliver(self, update):
        super().deliver(update)
        self.journal.append(("heard", update.version))


class RedisSharedObjectsContractTests(SharedObjectsContract, TestCase):
    @inlineCallbacks
    def make_objects(self):
        server = redis_for(self)
        objects = yield start_objects(self, server, "node-a")
        other = yield start_objects(self, server, "node-b")
        return objects, other

    def settle(self):
        return settle(self.objects, self.other)


class RedisSharedObjectsTests(TestCase):
    @inlineCallbacks
    def setUp(self):
        self.server = redis_for(self)
        self.a = yield start_objects(self, self.server, "node-a")
        self.b = yield start_objects(self, self.server, "node-b")

    @inlineCallbacks
    def test_changes_from_both_nodes_reach_each_listener_in_order_with_the_version_they_made(self):
        on_a, on_b = Journal("on-a"), Journal("on-b")
        yield self.a.use(SCOPE, "board", False, on_a)
        yield self.b.use(SCOPE, "board", False, on_b)

        def answered(update, listener):
            listener.journal.append(("answer", update.version))
            return update
        updates = yield gatherResults([
            (self.a if i % 2 else self.b).apply(SCOPE, "board", (SetSlot("turn", i), SetSlot(f"cell{i}", [i])),
                                                origin="on-a" if i % 2 else "on-b")
            .addCallback(answered, on_a if i % 2 else on_b)
            for i in range(40)])
        yield settle(self.a, self.b)
        for listener in (on_a, on_b):
            # a requester's answer comes after every earlier batch of the other node, never before one
            self.assertEqual([version for _, version in listener.journal], list(range(1, 41)))
            self.assertEqual({kind for kind, _ in listener.journal}, {"answer", "heard"})
        self.assertEqual(sorted(update.version for update in updates), list(range(1, 41)))
        self.assertEqual(sorted(on_a.updates + on_b.updates, key=lambda update: update.version),
                         sorted(updates, key=lambda update: update.version))
        a, b = yield gatherResults([self.a.snapshot(SCOPE, "board"), self.b.snapshot(SCOPE, "board")])
        self.assertEqual((a.version, a.data), (b.version, b.data))
        self.assertEqual((a.version, a.data["turn"]), (40, 39))

    @inlineCallbacks
    def test_a_listener_hears_a_change_of_the_other_node_with_its_version(self):
        on_b = Listener("on-b")
        yield self.a.use(SCOPE, "board", False, Listener("on-a"))
        yield self.b.use(SCOPE, "board", False, on_b)
        update = yield self.a.apply(SCOPE, "board", (SetSlot("x", {"deep": [1, "two"]}),), origin="on-a")
        yield settle(self.b)
        self.assertEqual(on_b.updates, [update])
        self.assertEqual((update.version, update.origin, update.changes()), (1, "on-a", {"x": {"deep": [1, "two"]}}))

    def queue_own_batch_behind_a_gap(self, objects):
        """A batch this node applied (its answer came) waiting in the mirror behind a seq nobody has delivered."""
        mirror = objects._mirrors[(SCOPE, "board")]
        update = SharedObjectUpdate("board", mirror.version + 2, False, (), "on-b")
        entry = _Entry(_Batch(mirror.seq + 2, objects.node, "", update, ()))
        entry.waiter = Deferred()
        mirror.queue[mirror.seq + 2] = entry
        answered = []
        entry.waiter.addCallback(answered.append)
        return mirror, update, answered

    @inlineCallbacks
    def test_a_change_behind_a_gap_is_answered_when_the_object_cannot_be_read_again(self):
        yield self.b.use(SCOPE, "board", False, Listener("on-b"))
        mirror, update, answered = self.queue_own_batch_behind_a_gap(self.b)
        self.b._resync(mirror, None)                # what a failed re-read does
        self.assertEqual((answered, mirror.queue), ([update], {}))

    @inlineCallbacks
    def test_a_change_behind_a_gap_is_answered_when_the_node_stops(self):
        yield self.b.use(SCOPE, "board", False, Listener("on-b"))
        mirror, update, answered = self.queue_own_batch_behind_a_gap(self.b)
        yield self.b.stop()
        self.assertEqual((answered, mirror.queue), ([update], {}))

    @inlineCallbacks
    def test_a_lost_batch_is_repaired_by_reading_the_whole_object(self):
        on_b = Listener("on-b")
        yield self.b.use(SCOPE, "board", False, on_b)
        yield self.b.apply(SCOPE, "board", (SetSlot("kept", 1),))
        yield settle(self.b)
        # A batch applied in Redis whose PUBLISH nobody hears (as one lost while a subscriber reconnects).
        layout = self.b.layout
        keys = [layout.shared_object(SCOPE, "board"), layout.shared_object_meta(SCOPE, "board"),
                layout.shared_object_sizes(SCOPE, "board"), layout.shared_object_listeners(SCOPE, "board")]
        argv = [1024 * 1024, "", "node-x", "nobody-listens", ""] + operation_arguments((SetSlot("missed", "m"),
                                                                                     DeleteSlot("kept")))
        self.assertEqual(self.server.command("EVAL", scripts.SO_APPLY, len(keys), *keys, *argv), b"*2")
        update = yield self.a.apply(SCOPE, "board", (SetSlot("next", 3),))
        self.assertEqual(update.version, 3)
        yield settle(self.b)
        repaired = on_b.updates[-1]
        self.assertEqual((repaired.version, repaired.changes()), (3, {"missed": "m", "kept": None, "next": 3}))
        snapshot = yield self.b.snapshot(SCOPE, "board")
        self.assertEqual((snapshot.version, snapshot.data), (3, {"missed": "m", "next": 3}))

    @inlineCallbacks
    def test_a_redis_restart_is_recovered_by_registering_again_and_re_reading(self):
        watch = LogWatch(self)
        on_a, on_b = Listener("on-a"), Listener("on-b")
        yield self.a.use(SCOPE, "board", False, on_a)
        yield self.b.use(SCOPE, "board", False, on_b)
        yield self.a.apply(SCOPE, "board", (SetSlot("x", 1),))
        yield settle(self.a, self.b)
        self.server.stop()
        yield wait_until(lambda: watch.count("shared object uses and changes are refused"), lambda n: n >= 2,
                         "both nodes saw Redis go")
        refused = yield self.assertFailure(self.a.apply(SCOPE, "board", (SetSlot("x", 2),)), Exception)
        self.assertEqual(refused.code, SharedObjectCode.NO_WRITE_ACCESS)
        self.server.start()         # empty: persistence is off
        yield wait_until(lambda: watch.count("re-registered the listeners of 1 shared objects"), lambda n: n >= 2,
                         "both nodes registered again")
        update = yield self.b.apply(SCOPE, "board", (SetSlot("y", 2),))
        yield settle(self.a, self.b)
        self.assertEqual((update.version, on_a.updates[-1]), (2, update))
        c = yield start_objects(self, self.server, "node-c")        # no listener: it reads Redis
        snapshot = yield c.snapshot(SCOPE, "board")
        self.assertEqual((snapshot.version, snapshot.data), (2, {"x": 1, "y": 2}))
        self.assertEqual((yield c.release(SCOPE, "board", "on-a")), False)      # not its listener
        self.assertEqual((yield self.a.release(SCOPE, "board", "on-a")), False)
        self.assertEqual((yield self.b.release(SCOPE, "board", "on-b")), True)
        self.assertIsNone((yield c.snapshot(SCOPE, "board")))

    @inlineCallbacks
    def test_stopped_again_as_its_first_stop_ends_it_waits_for_nothing_more(self):
        # The first stop ends inside txredisapi's reconnecting service (the last connection's close is an
        # input of its state machine), and whatever waited for it runs there: the hub stopping these same
        # shared objects next, say (RedisHub.stop). Stopping that service again from there is a re-entry
        # its machine refuses with a RuntimeError; the link stops once.
        yield self.a.use(SCOPE, "board", False, Listener("on-a"))       # its link starts at the first use
        again = []
        first = self.a.stop()
        first.addCallback(lambda _: again.append(self.a.stop()))
        yield first
        self.assertEqual(len(again), 1)
        self.assertIsNone((yield again[0]))
        self.assertIsNone((yield self.a.stop()))        # and once more, later: nothing left to stop

    @inlineCallbacks
    def test_stopped_twice_at_once_both_stops_end_when_the_link_is_closed(self):
        yield self.a.use(SCOPE, "board", False, Listener("on-a"))
        first, second = self.a.stop(), self.a.stop()
        self.assertEqual((yield gatherResults([first, second], consumeErrors=True)), [None, None])
        self.assertIsNone(self.a._link.commands)        # closed, not reconnecting

    @inlineCallbacks
    def test_each_nodes_application_handle_is_its_own_listener_though_their_ids_are_the_same(self):
        handle_a, handle_b = Listener("application:chat"), Listener("application:chat")
        yield self.a.use(SCOPE, "presence", False, handle_a)
        yield self.b.use(SCOPE, "presence", False, handle_b)
        update = yield self.a.apply(SCOPE, "presence", (SetSlot("c1", "alice"),), origin="application:chat")
        yield settle(self.a, self.b)
        self.assertEqual((handle_a.updates, handle_b.updates), ([], [update]))
        self.assertEqual((yield self.a.release(SCOPE, "presence", "application:chat")), False)
        self.assertEqual((yield self.a.snapshot(SCOPE, "presence")).data, {"c1": "alice"})   # node B's still there

    @inlineCallbacks
    def test_limits_hold_for_the_whole_cluster(self):
        for objects in (self.a, self.b):
            objects.configure(SCOPE, SharedObjectLimits(max_bytes=200, max_objects=1, max_listeners=2), None)
        yield self.a.use(SCOPE, "one", False, Listener("1"))
        yield self.b.use(SCOPE, "one", False, Listener("2"))
        failure = yield self.assertFailure(self.a.use(SCOPE, "one", False, Listener("3")), Exception)
        self.assertEqual(failure.code, SharedObjectCode.NO_READ_ACCESS)
        failure = yield self.assertFailure(self.b.use(SCOPE, "two", False, Listener("1")), Exception)
        self.assertEqual(failure.code, SharedObjectCode.OBJECT_CREATION_FAILED)
        yield self.a.apply(SCOPE, "one", (SetSlot("a", "x" * 100),))
        failure = yield self.assertFailure(self.b.apply(SCOPE, "one", (SetSlot("b", "y" * 100),)), Exception)
        self.assertEqual(failure.code, SharedObjectCode.NO_WRITE_ACCESS)

    @inlineCallbacks
    def test_the_last_listener_anywhere_deletes_a_transient_object_and_stop_releases_a_nodes_listeners(self):
        yield self.a.use(SCOPE, "room", False, Listener("1"))
        yield self.b.use(SCOPE, "room", False, Listener("2"))
        yield self.b.apply(SCOPE, "room", (SetSlot("x", 1),))
        self.assertEqual((yield self.a.release(SCOPE, "room", "1")), False)
        yield self.b.stop()          # its listener goes with it: the object had no other
        self.assertIsNone((yield self.a.snapshot(SCOPE, "room")))
        self.assertEqual(self.server.command("EXISTS", self.a.layout.shared_object(SCOPE, "room")), b":0")

    @inlineCallbacks
    def test_the_listeners_of_a_node_gone_silent_are_forgotten_for_it(self):
        for objects in (self.a, self.b):
            objects.configure(SCOPE, SharedObjectLimits(max_listeners=2), None)
        yield self.a.use(SCOPE, "room", False, Listener("1"))
        yield self.b.use(SCOPE, "room", False, Listener("2"))
        yield self.b.use(SCOPE, "lonely", False, Listener("2"))
        self.assertEqual((yield self.a.forget_node("node-b")), 2)        # as if node B had been killed
        yield self.a.use(SCOPE, "room", False, Listener("3"))            # its listener no longer counts
        self.assertIsNone((yield self.a.snapshot(SCOPE, "lonely")))      # nobody else used it: gone

    @inlineCallbacks
    def test_a_persistent_object_stays_in_redis_and_its_file_seeds_an_empty_redis(self):
        directory = tempfile.mkdtemp(prefix="fmspy-so-")
        self.addCleanup(shutil.rmtree, directory, True)
        for objects in (self.a, self.b):
            objects.configure(SCOPE, SharedObjectLimits(), SharedObjectStore(directory, SynchronousExecutor()))
        yield self.a.use(SCOPE, "scores", True, Listener("1"))
        yield self.a.apply(SCOPE, "scores", (SetSlot("best", 42),))
        yield self.a.release(SCOPE, "scores", "1")
        yield self.a.flushed(SCOPE)
        snapshot = yield self.b.use(SCOPE, "scores", True, Listener("2"))       # from Redis: no file read
        self.assertEqual((snapshot.version, snapshot.data), (1, {"best": 42}))
        failure = yield self.assertFailure(self.a.use(SCOPE, "scores", False, Listener("3")), Exception)
        self.assertEqual(failure.code, SharedObjectCode.BAD_PERSISTENCE)
        yield self.b.release(SCOPE, "scores", "2")
        self.assertEqual(self.server.command("FLUSHALL"), b"+OK")
        snapshot = yield self.b.use(SCOPE, "scores", True, Listener("2"))       # Redis lost it: the file
        self.assertEqual((snapshot.version, snapshot.data), (1, {"best": 42}))


class UnreachableRedisTests(TestCase):
    @inlineCallbacks
    def test_without_redis_uses_and_changes_are_refused_until_it_comes(self):
        server = redis_for(self)
        server.stop()
        objects = RedisSharedObjects(server.url, "node-z", reactor=reactor, connect_timeout=1.0)
        self.addCleanup(objects.stop)
        failure = yield self.assertFailure(objects.use(SCOPE, "board", False, Listener("1")), SharedObjectRefused)
        self.assertEqual(failure.code, SharedObjectCode.OBJECT_CREATION_FAILED)
        self.assertIn("no connection within 1 s", failure.reason)
        failure = yield self.assertFailure(objects.apply(SCOPE, "board", (SetSlot("x", 1),)), SharedObjectRefused)
        self.assertEqual(failure.code, SharedObjectCode.NO_WRITE_ACCESS)
        server.start()

        def use():
            return objects.use(SCOPE, "board", False, Listener("1")).addErrback(lambda failure: None)
        snapshot = yield wait_until(use, lambda answer: answer is not None, "a use once Redis is there")
        self.assertEqual((snapshot.version, snapshot.data), (0, {}))


class TwoTwistdNodesTests(TestCase):
    """What Flash-like clients see: our RTMP client on each of two ``twistd`` nodes (tests/e2e/test_cluster.py)."""

    timeout = 180

    @inlineCallbacks
    def setUp(self):
        yield start_two_nodes(self)

    @inlineCallbacks
    def board(self, node, user):
        """A chat client of ``node`` identified as ``user``, listening to the shared object "board"."""
        client = yield connect_client(node.url("chat/lobby"), reactor=reactor)
        self.addCleanup(lambda: client.close() if client.connected else None)
        yield client.call("identify", user)
        board = yield client.shared_object("board").connect()
        return client, board

    @inlineCallbacks
    def test_a_change_on_node_a_reaches_a_listener_on_node_b_with_the_same_version_and_survives_a_redis_restart(self):
        _, on_a = yield self.board(self.a, "alice")
        bob, on_b = yield self.board(self.b, "bob")
        on_a.set_property("x", [1, "two"])
        yield wait_for("bob's copy", lambda: succeed(on_b.data == {"x": [1, "two"]}))
        yield wait_for("alice's Success", lambda: succeed(on_a.version == 1))
        self.assertEqual(on_b.version, 1)
        # The presence list is the chat application's own shared object, changed by each node's handle.
        presence = yield bob.shared_object("presence/lobby").connect()
        yield wait_for("alice and bob in the presence list", lambda: succeed(
            sorted(presence.data.values()) == ["alice", "bob"]))

        self.redis.stop()
        self.redis.start()          # empty: the nodes register their listeners again and restore the object
        for node in (self.a, self.b):
            yield wait_for(f"{node.name} registered again",
                           lambda: succeed("re-registered the listeners of" in node.log))
        on_a.set_property("y", True)
        yield wait_for("bob's copy after the restart", lambda: succeed(on_b.data == {"x": [1, "two"], "y": True}))
        yield wait_for("alice's Success", lambda: succeed(on_a.version == 2))
        self.assertEqual((on_b.version, on_a.data), (2, on_b.data))
