"""Our client's remote shared objects against the real server over loopback (AMF0 and AMF3 connections).

Every wait is on an event (a sync, a message, a Status) with a generous
timeout; order across clients is proven by what each one saw, never by time.
"""
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.app.shared_objects import Access
from fmspy_gateway.server.client import connect_client
from fmspy_gateway.server.shared_object_client import SharedObjectRefused

from .server import LoopbackServerMixin

#: Seconds any one wait may take before the test fails (a generous bound, never a measurement).
WAIT = 20


class AwaitsConditions:
    """``until(condition)``: a Deferred that fires once ``condition()`` is true, checked now and at each
    ``_check()`` (the subclass calls it whenever it saw something new)."""

    _waiting = ()

    def until(self, condition) -> Deferred:
        d = Deferred()
        if condition():
            d.callback(None)
        else:
            self._waiting = [*self._waiting, (condition, d)]
        return d.addTimeout(WAIT, reactor)

    def _check(self):
        waiting, self._waiting = self._waiting, []
        for condition, d in waiting:
            if condition():
                d.callback(None)
            else:
                self._waiting.append((condition, d))


class Watcher(AwaitsConditions):
    """One client's view of one shared object: every sync, message and status, and a way to await the next."""

    def __init__(self, protocol, so):
        self.protocol = protocol
        self.so = so
        self.syncs, self.messages, self.statuses = [], [], []
        so.on_sync = lambda changes: self._saw(self.syncs, changes)
        so.on_message = lambda handler, args: self._saw(self.messages, (handler, args))
        so.on_status = lambda code, level: self._saw(self.statuses, (code, level))

    def _saw(self, seen, item):
        seen.append(item)
        self._check()


class Guarded(EchoApplication):
    """Slots named "locked..." cannot be changed; the object "secret" cannot be read."""

    def on_shared_object_use(self, client, name, persistent):
        return Access.DENY_READ if name == "secret" else Access.ALLOW

    def on_shared_object_change(self, client, name, changes):
        return [key for key in changes if key.startswith("locked")]


class SharedObjectClientTests(LoopbackServerMixin, TestCase):
    timeout = 60

    def applications(self):
        return {"echotest": Guarded("echotest")}

    @inlineCallbacks
    def client(self, object_encoding=0):
        protocol = yield connect_client(self.url(), reactor=reactor, object_encoding=object_encoding)
        self.addCleanup(protocol.close)
        return protocol

    @inlineCallbacks
    def watched(self, name="board", object_encoding=0, persistent=False):
        protocol = yield self.client(object_encoding)
        watcher = Watcher(protocol, protocol.shared_object(name, persistent))
        yield watcher.so.connect().addTimeout(WAIT, reactor)
        return watcher

    @inlineCallbacks
    def two_clients(self, encodings):
        first = yield self.watched(object_encoding=encodings[0])
        second = yield self.watched(object_encoding=encodings[1])
        return first, second

    @inlineCallbacks
    def check_change_delete_send(self, encodings):
        alice, bob = yield self.two_clients(encodings)
        self.assertTrue(alice.so.connected and bob.so.connected)
        self.assertEqual((alice.so.data, bob.so.data), ({}, {}))

        alice.so.set_property("cell", {"x": 3, "y": 1, "ink": "#", "tags": ["a", "a"]})
        yield bob.until(lambda: ("change", "cell") in sum(bob.syncs, []))
        yield alice.until(lambda: ("success", "cell") in sum(alice.syncs, []))
        self.assertEqual(bob.so.data, {"cell": {"x": 3, "y": 1, "ink": "#", "tags": ["a", "a"]}})
        self.assertEqual(alice.so.data, bob.so.data)
        self.assertEqual(alice.so.version, bob.so.version)
        self.assertNotIn(("change", "cell"), sum(alice.syncs, []))    # the requester hears Success, not Change

        bob.so.delete("cell")
        yield alice.until(lambda: ("delete", "cell") in sum(alice.syncs, []))
        yield bob.until(lambda: ("delete", "cell") in sum(bob.syncs, []))
        self.assertEqual((alice.so.data, bob.so.data), ({}, {}))

        bob.so.send("said", "bob", "hello", 1.5)
        yield alice.until(lambda: alice.messages)
        yield bob.until(lambda: bob.messages)                          # the sender hears it too
        self.assertEqual(alice.messages, [("said", ("bob", "hello", 1.5))])
        self.assertEqual(bob.messages, alice.messages)

    def test_change_delete_and_send_between_amf0_clients(self):
        return self.check_change_delete_send((0, 0))

    def test_change_delete_and_send_between_amf3_clients(self):
        return self.check_change_delete_send((3, 3))

    def test_change_delete_and_send_between_an_amf0_and_an_amf3_client(self):
        return self.check_change_delete_send((0, 3))

    @inlineCallbacks
    def test_a_late_listener_gets_the_slots_in_its_first_sync(self):
        alice = yield self.watched()
        alice.so.set_property("a", 1)
        alice.so.set_property("b", "two")
        yield alice.until(lambda: sum(alice.syncs, []).count(("success", "a")) + sum(alice.syncs, []).count(
            ("success", "b")) == 2)
        bob = yield self.watched(object_encoding=3)
        self.assertEqual(bob.so.data, {"a": 1, "b": "two"})
        first = bob.syncs[0]
        self.assertEqual(first[0], ("clear", None))
        self.assertEqual(sorted(first[1:]), [("change", "a"), ("change", "b")])

    @inlineCallbacks
    def test_versions_only_move_forward_and_agree(self):
        alice, bob = yield self.two_clients((0, 3))
        seen = []
        bob_sync = bob.so.on_sync
        bob.so.on_sync = lambda changes: (seen.append(bob.so.version), bob_sync(changes))
        for i in range(5):
            alice.so.set_property("n", i)
        yield bob.until(lambda: bob.so.data.get("n") == 4)
        yield alice.until(lambda: sum(alice.syncs, []).count(("success", "n")) == 5)
        self.assertEqual(seen, sorted(seen))
        self.assertEqual(len(set(seen)), len(seen))
        self.assertEqual(alice.so.version, bob.so.version)

    @inlineCallbacks
    def test_a_different_persistence_flag_is_refused(self):
        yield self.watched("scores", persistent=False)
        protocol = yield self.client()
        d = protocol.shared_object("scores", persistent=True).connect()
        failure = yield self.assertFailure(d.addTimeout(WAIT, reactor), SharedObjectRefused)
        self.assertEqual(failure.code, "SharedObject.BadPersistence")

    @inlineCallbacks
    def test_a_transient_object_vanishes_with_its_last_listener(self):
        alice = yield self.watched()
        alice.so.set_property("a", 1)
        yield alice.until(lambda: ("success", "a") in sum(alice.syncs, []))
        alice.so.close()
        yield alice.protocol.call("echo", "after the Release")     # answered once the Release was handled
        bob = yield self.watched()
        self.assertEqual(bob.so.data, {})

    @inlineCallbacks
    def test_a_refused_change_is_rejected_and_the_servers_value_comes_back(self):
        alice, bob = yield self.two_clients((0, 3))
        alice.so.set_property("free", 1)
        alice.so.set_property("locked", "mine")
        self.assertEqual(alice.so.data, {"free": 1, "locked": "mine"})      # shown at once, as Flash does
        yield alice.until(lambda: ("reject", "locked") in sum(alice.syncs, []))
        self.assertIn(("success", "free"), sum(alice.syncs, []))
        self.assertEqual(alice.so.data, {"free": 1})
        self.assertIn(("SharedObject.NoWriteAccess", "error"), alice.statuses)
        alice.so.send("done")                                  # proves bob saw all the server sent before
        yield bob.until(lambda: bob.messages)
        self.assertEqual(bob.so.data, {"free": 1})

    @inlineCallbacks
    def test_a_read_denied_object_fails_the_connect(self):
        protocol = yield self.client()
        d = protocol.shared_object("secret").connect()
        failure = yield self.assertFailure(d.addTimeout(WAIT, reactor), SharedObjectRefused)
        self.assertEqual(failure.code, "SharedObject.NoReadAccess")
