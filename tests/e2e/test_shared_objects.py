"""Remote shared objects over loopback: our RTMP client (AMF0 and AMF3) against a real server.

The applications are built from an fmspy.cfg section as twistd builds them
(``Application.from_config``), so ``sharedObjectDir`` and the limits come
from the file and persistent objects are written through the reactor's
thread pool.  Every wait is on an event a client received.
"""
import os

from twisted.internet import reactor
from twisted.internet.defer import DeferredQueue, gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.application import Application, Services
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.config import load_config
from fmspy_gateway.server.client import connect_client
from fmspy_gateway.server.shared_object_client import SharedObjectRefused
from tests.conftest import scratch_path

from .server import LoopbackServerMixin


class Watched:
    """A client's RemoteSharedObject whose syncs and messages a test waits for, one at a time."""

    def __init__(self, client, name, persistent=False):
        self.client = client
        self.so = client.shared_object(name, persistent)
        self.heard = DeferredQueue()
        self.so.on_sync = lambda changes: self.heard.put(("sync", sorted(changes, key=repr), self.so.version))
        self.so.on_message = lambda handler, args: self.heard.put(("message", handler, tuple(args)))

    def next(self):
        return self.heard.get()


class SharedObjectServerMixin(LoopbackServerMixin):
    """The server of these tests: one application "app" built from an fmspy.cfg section with ``options``."""

    options = ""

    def applications(self):
        path = scratch_path(self)
        with open(path, "w") as f:
            f.write(f"[RTMP]\n[Application:app]\nenabled = yes\nname = app\n{self.options}")
        section = load_config(path).applications[0]
        self.hub = LocalHub()
        self.app = Application.from_config(section, Services(self.hub, clock=reactor))
        return {"app": self.app}

    @inlineCallbacks
    def connected(self, count, name="board", persistent=False, encodings=(0, 3)):
        """``count`` clients, alternating AMF0 and AMF3, each listening to ``name`` and synced."""
        watched = []
        for n in range(count):
            client = yield connect_client(self.url("app"), object_encoding=encodings[n % len(encodings)],
                                          reactor=reactor)
            self.addCleanup(client.close)
            one = Watched(client, name, persistent)
            yield one.so.connect()
            self.assertEqual((yield one.next())[0], "sync")         # the initial sync ("clear", ...)
            watched.append(one)
        return watched


class SharedObjectTests(SharedObjectServerMixin, TestCase):

    @inlineCallbacks
    def test_two_and_three_clients_change_delete_remove_and_send(self):
        a, b, c = yield self.connected(3)
        a.so.set_property("x", {"n": 1, "tags": ["red"]})
        self.assertEqual((yield a.next()), ("sync", [("success", "x")], 1))
        for other in (b, c):
            self.assertEqual((yield other.next()), ("sync", [("change", "x")], 1))
            self.assertEqual(other.so.data, {"x": {"n": 1, "tags": ["red"]}})
        b.so.set_property("x", None)                    # a null value deletes
        self.assertEqual((yield b.next()), ("sync", [("success", "x")], 2))
        self.assertEqual((yield a.next()), ("sync", [("delete", "x")], 2))
        self.assertEqual((yield c.next()), ("sync", [("delete", "x")], 2))
        c.so.set_property("y", 5)
        yield gatherResults([c.next(), a.next(), b.next()])
        a.so.delete("y")                                # RequestRemove: Remove to everyone
        for one in (a, b, c):
            self.assertEqual((yield one.next()), ("sync", [("delete", "y")], 4))
        b.so.send("said", "hi", 2)
        for one in (a, b, c):
            self.assertEqual((yield one.next()), ("message", "said", ("hi", 2)))
        self.assertEqual(self.app.shared_object("board").version, 4)

    @inlineCallbacks
    def test_many_clients_see_every_change_in_version_order(self):
        clients = yield self.connected(12)
        for n in range(5):              # five writers at once: the server decides their order
            clients[n].so.set_property("turn", n)
        for one in clients:
            versions = []
            while len(versions) < 5:
                kind, changes, version = yield one.next()
                versions.append(version)
            self.assertEqual(versions, [1, 2, 3, 4, 5])
        final = yield self.hub.shared_objects.snapshot("app", "board")
        self.assertEqual(final.version, 5)
        for one in clients:             # every copy ends as the server's, writers' own included
            self.assertEqual(one.so.data, final.data)

    @inlineCallbacks
    def test_a_late_listener_gets_the_whole_object_and_the_application_can_change_it(self):
        a, = yield self.connected(1)
        a.so.set_property("x", 1)
        yield a.next()
        board = self.app.shared_object("board")
        with board.batch():
            board.set("y", "two")
            board.set("z", [3])
        self.assertEqual((yield a.next()), ("sync", [("change", "y"), ("change", "z")], 2))
        b, = yield self.connected(1, encodings=(3,))
        self.assertEqual(b.so.data, {"x": 1, "y": "two", "z": [3]})
        self.assertEqual(b.so.version, 2)

    @inlineCallbacks
    def test_a_transient_object_goes_with_its_last_listener(self):
        a, b = yield self.connected(2)
        a.so.set_property("x", 1)
        yield gatherResults([a.next(), b.next()])
        a.so.close()
        b.so.close()
        c, = yield self.connected(1)      # the server answered its Use after both Releases: a new object
        self.assertEqual((c.so.data, c.so.version), ({}, 0))

    @inlineCallbacks
    def test_a_different_persistence_flag_is_refused_with_bad_persistence(self):
        yield self.connected(1)
        client = yield connect_client(self.url("app"), reactor=reactor)
        self.addCleanup(client.close)
        refused = yield self.assertFailure(client.shared_object("board", persistent=True).connect(),
                                           SharedObjectRefused)
        self.assertEqual(refused.code, "SharedObject.BadPersistence")

    @inlineCallbacks
    def test_persistent_objects_are_refused_without_a_shared_object_dir(self):
        client = yield connect_client(self.url("app"), reactor=reactor)
        self.addCleanup(client.close)
        refused = yield self.assertFailure(client.shared_object("scores", persistent=True).connect(),
                                           SharedObjectRefused)
        self.assertEqual(refused.code, "SharedObject.ObjectCreationFailed")


class LimitTests(SharedObjectServerMixin, TestCase):
    options = "maxSharedObjectBytes = 100\nmaxSharedObjectListeners = 2\n"

    @inlineCallbacks
    def test_a_change_over_max_shared_object_bytes_is_refused_and_put_back(self):
        a, b = yield self.connected(2)
        a.so.set_property("x", "small")
        yield gatherResults([a.next(), b.next()])
        a.so.set_property("x", "y" * 200)
        self.assertEqual((yield a.next()), ("sync", [("reject", "x")], 1))
        self.assertEqual(a.so.data, {"x": "small"})
        b.so.set_property("z", 1)                       # b's next sync is its own change: it heard no "x"
        self.assertEqual((yield b.next()), ("sync", [("success", "z")], 2))

    @inlineCallbacks
    def test_a_listener_past_max_shared_object_listeners_is_refused(self):
        yield self.connected(2)
        client = yield connect_client(self.url("app"), reactor=reactor)
        self.addCleanup(client.close)
        refused = yield self.assertFailure(client.shared_object("board").connect(), SharedObjectRefused)
        self.assertEqual(refused.code, "SharedObject.NoReadAccess")


class PersistenceTests(LoopbackServerMixin, TestCase):
    """Two servers in turn on one ``sharedObjectDir``: what the first acknowledged, the second serves."""

    def setUp(self):
        self.directory = os.path.abspath(scratch_path(self))   # not relative to each server's own fmspy.cfg
        self.start_server()

    def start_server(self):
        path = scratch_path(self)
        with open(path, "w") as f:
            f.write(f"[RTMP]\n[Application:app]\nenabled = yes\nname = app\nsharedObjectDir = {self.directory}\n")
        self.section = load_config(path).applications[0]
        LoopbackServerMixin.setUp(self)

    def applications(self):
        self.hub = LocalHub()
        self.app = Application.from_config(self.section, Services(self.hub, clock=reactor))
        return {"app": self.app}

    @inlineCallbacks
    def test_persistent_objects_survive_a_server_restart(self):
        client = yield connect_client(self.url("app"), object_encoding=3, reactor=reactor)
        one = Watched(client, "scores", persistent=True)
        yield one.so.connect()
        yield one.next()
        one.so.set_property("alice", 3)
        yield one.next()
        one.so.set_property("bob", {"points": 4})
        yield one.next()
        yield client.close()
        yield self.hub.shared_objects.flushed("app")      # the thread pool's writes are on disk
        yield self.factory.close_all()
        yield self.listening.stopListening()
        self.start_server()                                # a new hub, the same directory
        client = yield connect_client(self.url("app"), reactor=reactor)
        self.addCleanup(client.close)
        again = Watched(client, "scores", persistent=True)
        yield again.so.connect()
        self.assertEqual((yield again.next()), ("sync", [("change", "alice"), ("change", "bob"), ("clear", None)], 2))
        self.assertEqual(again.so.data, {"alice": 3, "bob": {"points": 4}})
