"""The gateway end to end: our RTMP client (AMF0 and AMF3) -> gateway -> a real JSON-RPC backend process."""
import datetime
import json

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.calls import CallFailed
from fmspy_gateway.rtmp import amf
from fmspy_gateway.server.client import connect_client

from .gateway import TOKEN, GatewayMixin


class GatewayCallTests(GatewayMixin, TestCase):
    @inlineCallbacks
    def connect(self, encoding=0, room="lobby", token="let-me-in", user="alice", **kwargs):
        client = yield connect_client(self.url(room), token, user, object_encoding=encoding, reactor=reactor,
                                      **kwargs)
        self.addCleanup(client.close)
        return client

    @inlineCallbacks
    def test_connect_hook_accepts_with_value_and_rejects_with_reason(self):
        client = yield self.connect()
        self.assertEqual(client.connect_info["application"], {"welcome": "Hello, alice"})
        with self.assertRaises(CallFailed) as raised:
            yield connect_client(self.url(), "wrong-token", reactor=reactor)
        self.assertEqual(raised.exception.code, "NetConnection.Connect.Rejected")
        self.assertEqual(raised.exception.description, "A valid token is required.")

    @inlineCallbacks
    def check_typed_result(self, encoding):
        client = yield self.connect(encoding)
        user = yield client.call("getUser", 42)
        self.assertIsInstance(user, amf.TypedObject)
        self.assertEqual(user.alias, "com.example.User")
        self.assertEqual((user["id"], user["name"]), (42, "user 42"))
        # The result schema says date-time and base64: they arrive as a Date and a ByteArray.
        self.assertEqual(user["created"], datetime.datetime(2009, 2, 13, 23, 31, 30, 123000))
        self.assertIsInstance(user["avatar"], amf.ByteArray)
        self.assertEqual(bytes(user["avatar"].getvalue()), b"\x89PNG\r\n\x1a\n")

    def test_typed_result_amf0(self):
        return self.check_typed_result(0)

    def test_typed_result_amf3(self):
        return self.check_typed_result(3)

    @inlineCallbacks
    def test_invalid_params_never_reach_the_backend(self):
        client = yield self.connect(3)
        with self.assertRaises(CallFailed) as raised:
            yield client.call("getUser", "not a number")
        self.assertIn("params[0]", raised.exception.description)
        self.assertEqual(raised.exception.code, "NetConnection.Call.Failed")

    @inlineCallbacks
    def test_backend_error_object_reaches_the_client(self):
        client = yield self.connect()
        self.assertEqual((yield client.call("divide", 6, 3)), 2)
        with self.assertRaises(CallFailed) as raised:
            yield client.call("divide", 1, 0)
        info = raised.exception.info
        self.assertEqual((info["code"], info["description"]), ("NetConnection.Call.Failed", "division by zero"))
        self.assertEqual(info["application"], {"code": 1001, "message": "division by zero", "data": {"a": 1}})
        self.assertNotIn("Traceback", json.dumps(info, default=str))

    @inlineCallbacks
    def test_backend_knows_the_caller(self):
        client = yield self.connect(room="vip")
        who = yield client.call("whoami")
        self.assertEqual((who["application"], who["room"], who["session"]), ("shop", "vip", {"user": "alice"}))
        self.assertEqual(who["client"], self.shop.clients[0].id)
        self.assertTrue(who["address"].startswith("127.0.0.1:"))

    @inlineCallbacks
    def test_timeout_is_reported_within_the_routes_timeout(self):
        # The route's timeout is 1 s; the backend would answer "finally" after 5 s.
        client = yield self.connect()
        with self.assertRaises(CallFailed) as raised:
            yield client.call("slow", 5)
        self.assertIn("timed out", raised.exception.description)

    @inlineCallbacks
    def test_wildcard_route_and_unknown_backend_method(self):
        client = yield self.connect()
        events = yield client.call("events")      # routed by "*" to the backend's own "events"
        self.assertIsInstance(events, list)
        with self.assertRaises(CallFailed) as raised:
            yield client.call("noSuchThing")
        self.assertIn("Method not found", raised.exception.description)

    @inlineCallbacks
    def test_transaction_zero_is_a_notification(self):
        client = yield self.connect()
        client.notify("cart.add", "apple")
        # The notification and the calls travel on separate HTTP requests: poll until it has landed.
        for _ in range(100):
            cart = yield client.call("cart.add", "pear")
            if "apple" in cart:
                break
            yield deferLater(0.02)
        self.assertEqual(cart["apple"], 1)

    @inlineCallbacks
    def test_lifecycle_hooks_reach_the_backend(self):
        first = yield self.connect(room="r1")
        first_id = self.shop.clients[0].id
        yield first.close()
        watcher = yield self.connect(room="r2", user="bob")
        # Notifications are sent without waiting; poll the backend's record through the gateway.
        for _ in range(100):
            events = yield watcher.call("events")
            names = [e["event"] for e in events if e["client"] == first_id]
            if names == ["room.enter", "room.leave", "session.close"]:
                break
            yield deferLater(0.05)
        self.assertEqual(names, ["room.enter", "room.leave", "session.close"])
        enter = [e for e in events if e["client"] == first_id][0]
        self.assertEqual((enter["params"][0]["room"], enter["params"][0]["session"]), ("r1", {"user": "alice"}))

    @inlineCallbacks
    def test_backend_down_gives_clear_errors(self):
        client = yield self.connect()
        yield self.backend.stop()
        with self.assertRaises(CallFailed) as raised:
            yield client.call("divide", 1, 1)
        self.assertIn("refused", raised.exception.description)
        with self.assertRaises(CallFailed) as raised:
            yield connect_client(self.url(), "let-me-in", reactor=reactor)
        self.assertEqual(raised.exception.code, "NetConnection.Connect.Rejected")


def deferLater(seconds):
    from twisted.internet.task import deferLater as later
    return later(reactor, seconds, lambda: None)


class PushAPITests(GatewayMixin, TestCase):
    def push(self, method, params, token=TOKEN):
        headers = {"Content-Type": ["application/json"]}
        if token is not None:
            headers["Authorization"] = [f"Bearer {token}"]
        body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).encode()
        return treq.post(f"http://127.0.0.1:{self.http_port}/rpc", body, headers=headers, reactor=reactor,
                         persistent=False)

    @inlineCallbacks
    def push_json(self, method, params, token=TOKEN):
        response = yield self.push(method, params, token)
        return response.code, (yield response.json())

    @inlineCallbacks
    def listener(self, room, user):
        heard = []
        arrived = Deferred()

        def news(*args):
            heard.append(args)
            if not arrived.called:
                arrived.callback(args)

        client = yield connect_client(self.url(room), "let-me-in", user, reactor=reactor,
                                      handlers={"news": news, "ask": lambda q: f"{user} says {q}"})
        self.addCleanup(client.close)
        return client, heard, arrived

    @inlineCallbacks
    def test_broadcast_reaches_the_room_only(self):
        a, heard_a, arrived_a = yield self.listener("lobby", "a")
        b, heard_b, arrived_b = yield self.listener("lobby", "b")
        c, heard_c, _ = yield self.listener("other", "c")
        code, answer = yield self.push_json("broadcast", {"app": "shop", "room": "lobby", "method": "news",
                                                          "args": ["sale", {"_explicitType": "com.example.Deal",
                                                                            "pct": 20}]})
        self.assertEqual((code, answer["result"], answer["id"]), (200, 2, 7))
        for arrived in (arrived_a, arrived_b):
            text, deal = yield arrived
            self.assertEqual(text, "sale")
            self.assertEqual((deal.alias, deal["pct"]), ("com.example.Deal", 20))
        yield c.call("divide", 1, 1)       # a round trip: a broadcast to c would have come first
        self.assertEqual(heard_c, [])

    @inlineCallbacks
    def test_call_a_client_and_list_clients_and_rooms(self):
        client, _, _ = yield self.listener("lobby", "a")
        code, listed = yield self.push_json("clients", {"app": "shop", "room": "lobby"})
        (info,) = listed["result"]
        self.assertEqual(info["room"], "lobby")
        code, answer = yield self.push_json("call", [info["id"], "ask", ["hi"]])
        self.assertEqual(answer["result"], "a says hi")
        code, rooms = yield self.push_json("rooms", ["shop"])
        self.assertIn({"name": "lobby", "clients": 1}, rooms["result"])
        code, answer = yield self.push_json("call", [info["id"], "noHandler", []])
        self.assertEqual(answer["error"]["code"], -32002)
        code, answer = yield self.push_json("disconnect", [info["id"], "bye"])
        self.assertEqual(answer["result"], True)
        yield client.closed

    @inlineCallbacks
    def test_without_the_token_401_and_nothing_happens(self):
        a, heard, _ = yield self.listener("lobby", "a")
        for token in (None, "wrong"):
            response = yield self.push("broadcast", {"app": "shop", "room": "lobby", "method": "news", "args": []},
                                       token)
            self.assertEqual(response.code, 401)
            yield response.content()
        yield a.call("divide", 1, 1)
        self.assertEqual(heard, [])

    @inlineCallbacks
    def test_invalid_requests_are_refused_with_json_rpc_errors(self):
        code, answer = yield self.push_json("broadcast", {"app": "shop", "room": 5, "method": "x", "args": []})
        self.assertEqual(answer["error"]["code"], -32602)
        code, answer = yield self.push_json("explode", {})
        self.assertEqual(answer["error"]["code"], -32601)
        code, answer = yield self.push_json("clients", {"app": "nope"})
        self.assertEqual(answer["error"]["code"], -32001)
