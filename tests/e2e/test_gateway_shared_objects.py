"""Remote shared objects through the gateway, end to end.

A real JSON-RPC backend process (examples/gateway/backend.py: "private.*"
objects refused, "readonly.*" read-only, slots "locked.*" refused) decides
``@so.use`` and ``@so.change`` and is told ``@so.changed``; the gateway is
built as twistd builds it and listens on loopback; the Flash side is our RTMP
client's shared objects (server/shared_object_client.py), AMF0 and AMF3.
The push API's ``so.*`` methods change an object that a connected client
then sees change.
"""
from twisted.internet import reactor
from twisted.internet.defer import DeferredQueue, inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway.rtmp import amf
from fmspy_gateway.server.client import connect_client
from fmspy_gateway.server.shared_object_client import SharedObjectRefused

from .gateway import GatewayMixin
from .test_gateway import deferLater

NO_READ = "SharedObject.NoReadAccess"


class Watched:
    """A client's shared object and every sync and message it hears, in order, to wait on."""

    def __init__(self, shared_object):
        self.so = shared_object
        self.syncs, self.messages = DeferredQueue(), DeferredQueue()
        shared_object.on_sync = self.syncs.put
        shared_object.on_message = lambda handler, args: self.messages.put((handler, args))


class GatewaySharedObjectTests(GatewayMixin, TestCase):
    @inlineCallbacks
    def client(self, user="alice", encoding=0):
        client = yield connect_client(self.url(), "let-me-in", user, object_encoding=encoding, reactor=reactor)
        self.addCleanup(client.close)
        return client

    @inlineCallbacks
    def watched(self, client, name="board"):
        """``client`` uses ``name``; its initial sync already heard."""
        watched = Watched(client.shared_object(name))
        yield watched.so.connect()
        yield watched.syncs.get()            # the initial sync: ("clear", None) and a change per slot
        return watched

    @inlineCallbacks
    def backend_events(self, client, event, count):
        """The backend's record of ``event`` notifications, once it holds ``count`` (they arrive unawaited)."""
        for _ in range(200):
            events = [e for e in (yield client.call("events")) if e["event"] == event]
            if len(events) >= count:
                return events
            yield deferLater(0.02)
        self.fail(f"the backend never recorded {count} {event}: {events}")

    @inlineCallbacks
    def test_the_backend_decides_who_may_use_which_object(self):
        client = yield self.client()
        yield self.watched(client)
        with self.assertRaises(SharedObjectRefused) as refused:
            yield client.shared_object("private.notes").connect()
        self.assertEqual(refused.exception.code, NO_READ)

        readonly = yield self.watched(client, "readonly.news")
        readonly.so.set_property("x", 1)
        self.assertEqual((yield readonly.syncs.get()), [("reject", "x")])
        self.assertEqual(readonly.so.data, {})

    @inlineCallbacks
    def check_changes_refused_key_by_key(self, encoding):
        writer = yield self.client("alice", encoding)
        listener = yield self.client("bob", 3 - encoding)
        mine = yield self.watched(writer)
        theirs = yield self.watched(listener)
        mine.so.set_property("x", 1)
        self.assertEqual((yield mine.syncs.get()), [("success", "x")])
        mine.so.set_property("locked.y", 2)
        self.assertEqual((yield mine.syncs.get()), [("reject", "locked.y")])
        mine.so.set_property("z", {"n": 3})
        self.assertEqual((yield mine.syncs.get()), [("success", "z")])
        # The listener heard x and z, in order, and never locked.y.
        self.assertEqual((yield theirs.syncs.get()), [("change", "x")])
        self.assertEqual((yield theirs.syncs.get()), [("change", "z")])
        self.assertEqual(theirs.so.data, {"x": 1, "z": {"n": 3}})
        self.assertEqual(mine.so.data, theirs.so.data)

        changed = yield self.backend_events(writer, "so.changed", 2)
        subject, context = changed[0]["params"]
        self.assertEqual(subject, {"name": "board", "changes": {"x": 1}})
        self.assertEqual((context["client"], context["session"]), (changed[0]["client"], {"user": "alice"}))
        self.assertEqual(changed[1]["params"][0], {"name": "board", "changes": {"z": {"n": 3}}})

    def test_changes_refused_key_by_key_amf0_writer(self):
        return self.check_changes_refused_key_by_key(0)

    def test_changes_refused_key_by_key_amf3_writer(self):
        return self.check_changes_refused_key_by_key(3)

    @inlineCallbacks
    def test_a_backend_that_is_down_refuses_uses_and_changes(self):
        client = yield self.client()
        board = yield self.watched(client)
        yield self.backend.stop()
        with self.assertRaises(SharedObjectRefused) as refused:
            yield client.shared_object("lobby").connect()
        self.assertEqual(refused.exception.code, NO_READ)
        board.so.set_property("x", 1)
        self.assertEqual((yield board.syncs.get()), [("reject", "x")])
        self.assertEqual(self.shop.shared_object("board").data(), {})

    @inlineCallbacks
    def check_the_push_api_drives_what_a_client_sees(self, encoding):
        client = yield self.client("alice", encoding)
        board = yield self.watched(client)
        code, answer = yield self.push_json("so.set", {"app": "shop", "name": "board", "values": {
            "score": 10, "who": {"_explicitType": "com.example.User", "id": 7}}})
        self.assertEqual((code, answer["result"]), (200, {"version": 1}))
        self.assertEqual(sorted((yield board.syncs.get())), [("change", "score"), ("change", "who")])  # one sync
        self.assertEqual(board.so.version, 1)
        self.assertEqual(board.so.data["score"], 10)
        self.assertIsInstance(board.so.data["who"], amf.TypedObject)
        self.assertEqual((board.so.data["who"].alias, board.so.data["who"]["id"]), ("com.example.User", 7))

        board.so.set_property("mine", "hello")
        self.assertEqual((yield board.syncs.get()), [("success", "mine")])
        code, answer = yield self.push_json("so.get", ["shop", "board"])
        self.assertEqual(answer["result"], {"version": 2, "data": {
            "score": 10, "who": {"_explicitType": "com.example.User", "id": 7}, "mine": "hello"}})

        code, answer = yield self.push_json("so.send", ["shop", "board", "onNews", ["big", {"n": 1}]])
        self.assertEqual(answer["result"], {"version": 2})
        self.assertEqual((yield board.messages.get()), ("onNews", ("big", {"n": 1})))

        code, answer = yield self.push_json("so.delete", ["shop", "board", ["score"]])
        self.assertEqual(answer["result"], {"version": 3})
        self.assertEqual((yield board.syncs.get()), [("delete", "score")])
        self.assertNotIn("score", board.so.data)

        # The backend hears of its own changes too, with no client.  (Its record comes back to us as the
        # result of "events", so the "who" it recorded arrives as the typed object JSON-RPC described.)
        changed = yield self.backend_events(client, "so.changed", 3)
        self.assertEqual([(e["client"], e["params"][0]["changes"]) for e in changed], [
            ("", {"score": 10, "who": board.so.data["who"]}),
            (changed[1]["client"], {"mine": "hello"}),
            ("", {"score": None})])
        self.assertEqual(changed[0]["params"][0]["changes"]["who"].alias, "com.example.User")
        self.assertEqual(changed[0]["params"][1]["client"], None)

    def test_the_push_api_drives_what_an_amf0_client_sees(self):
        return self.check_the_push_api_drives_what_a_client_sees(0)

    def test_the_push_api_drives_what_an_amf3_client_sees(self):
        return self.check_the_push_api_drives_what_a_client_sees(3)

    @inlineCallbacks
    def test_push_api_refusals_are_json_rpc_errors(self):
        code, answer = yield self.push_json("so.set", ["nowhere", "board", {"x": 1}])
        self.assertEqual((code, answer["error"]["code"]), (200, -32001))
        code, answer = yield self.push_json("so.set", ["shop", "scores", {"x": 1}, True])
        self.assertEqual(answer["error"], {"code": -32003, "message": "SharedObject.ObjectCreationFailed: shop has "
                                                                      "no sharedObjectDir: persistent objects are "
                                                                      "refused",
                                           "data": {"code": "SharedObject.ObjectCreationFailed"}})
        code, answer = yield self.push_json("so.set", ["shop", "board", {"x": 1}, "no"])
        self.assertEqual(answer["error"]["code"], -32602)
