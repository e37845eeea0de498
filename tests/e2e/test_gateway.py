"""The gateway end to end: our RTMP client (AMF0 and AMF3) -> gateway -> a real JSON-RPC backend process."""
import datetime
import json

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from fmspy_gateway.app.calls import CallFailed
from fmspy_gateway.rtmp import amf
from fmspy_gateway.server.client import connect_client

from .bystander import Bystander
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
        # The result schema says date-time and base64: they arrive as a Date and, for an AMF3 client, a
        # ByteArray.  AMF0 has no ByteArray (only an AMF3 switch, 0x11, could carry one, which AMF0-only
        # clients such as npm rtmp-client cannot read): an AMF0 client gets the base64 text.
        self.assertEqual(user["created"], datetime.datetime(2009, 2, 13, 23, 31, 30, 123000))
        if encoding == 3:
            self.assertIsInstance(user["avatar"], amf.ByteArray)
            self.assertEqual(bytes(user["avatar"].getvalue()), b"\x89PNG\r\n\x1a\n")
        else:
            self.assertEqual((type(user["avatar"]), user["avatar"]), (str, "iVBORw0KGgo="))

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
        self.assertEqual(who["client"], (yield self.shop.clients())[0].id)
        self.assertTrue(who["address"].startswith("127.0.0.1:"))

    @inlineCallbacks
    def test_a_hung_backend_is_reported_naming_the_routes_timeout(self):
        # The route's timeout is 1 s; the backend would answer "finally" after 5 s.  That the error comes
        # at the route's timeout and not before is proved on a Clock: tests/bridge/test_route_timeout_on_the_clock.py.
        client = yield self.connect()
        with self.assertRaises(CallFailed) as raised:
            yield client.call("slow", 5)
        # The route's 1 s fired, not the application's 5 s (by which time the backend would have answered).
        self.assertEqual(raised.exception.code, "NetConnection.Call.Failed")
        self.assertIn(f"backend http://127.0.0.1:{self.backend_port}/rpc timed out after 1 s",
                      raised.exception.description)
        self.assertNotIn("Traceback", raised.exception.description)

    @inlineCallbacks
    def test_wildcard_route_and_unknown_backend_method(self):
        client = yield self.connect()
        me = (yield self.shop.clients())[0].id
        # Routed by "*" to the backend's own "events": only it knows this client entered the lobby
        # (a notification, sent without waiting: poll until it has landed).
        for _ in range(100):
            events = yield client.call("events")
            mine = [e for e in events if e["client"] == me]
            if mine:
                break
            yield deferLater(0.02)
        self.assertEqual([e["event"] for e in mine], ["room.enter"])
        self.assertEqual(mine[0]["params"][0]["room"], "lobby")
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
        first_id = (yield self.shop.clients())[0].id
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
        self.assertEqual(raised.exception.description,
                         f"'divide' failed: backend http://127.0.0.1:{self.backend_port}/rpc refused the connection")
        with self.assertRaises(CallFailed) as raised:
            yield connect_client(self.url(), "let-me-in", reactor=reactor)
        self.assertEqual(raised.exception.code, "NetConnection.Connect.Rejected")
        self.assertEqual(raised.exception.description, "The service is unavailable, please try again later.")


def deferLater(seconds):
    from twisted.internet.task import deferLater as later
    return later(reactor, seconds, lambda: None)


class PushAPITests(GatewayMixin, TestCase):
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
        self.assertEqual(code, 200)
        (info,) = listed["result"]
        self.assertEqual(info["room"], "lobby")
        code, answer = yield self.push_json("call", [info["id"], "ask", ["hi"]])
        self.assertEqual((code, answer["result"], answer["id"]), (200, "a says hi", 7))
        code, rooms = yield self.push_json("rooms", ["shop"])
        self.assertEqual(code, 200)
        self.assertIn({"name": "lobby", "clients": 1}, rooms["result"])
        code, answer = yield self.push_json("call", [info["id"], "noHandler", []])
        # A JSON-RPC error is an answer: HTTP 200, the error in the body.
        self.assertEqual((code, answer["error"]["code"], answer["id"]), (200, -32002, 7))
        code, answer = yield self.push_json("disconnect", [info["id"], "bye"])
        self.assertEqual((code, answer["result"]), (200, True))
        yield client.closed

    @inlineCallbacks
    def test_without_the_token_401_and_nothing_happens(self):
        a, heard, _ = yield self.listener("lobby", "a")
        for token in (None, "wrong"):
            response = yield self.push("broadcast", {"app": "shop", "room": "lobby", "method": "news", "args": []},
                                       token)
            self.assertEqual(response.code, 401)
            self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
            self.assertIn("error", (yield response.json()))
        yield a.call("divide", 1, 1)
        self.assertEqual(heard, [])

    @inlineCallbacks
    def test_invalid_requests_are_refused_with_json_rpc_errors(self):
        code, answer = yield self.push_json("broadcast", {"app": "shop", "room": 5, "method": "x", "args": []})
        self.assertEqual((code, answer["error"]["code"], answer["id"]), (200, -32602, 7))
        code, answer = yield self.push_json("explode", {})
        self.assertEqual((code, answer["error"]["code"], answer["id"]), (200, -32601, 7))
        code, answer = yield self.push_json("clients", {"app": "nope"})
        self.assertEqual((code, answer["error"]["code"], answer["id"]), (200, -32001, 7))


class _RawUpload(Protocol):
    """An HTTP client that sends a POST's headers, waits for an answer, then streams a body as fast as it drains.

    ``answered`` fires with the response head, ``lost`` when the server has
    closed the connection; ``sent`` counts body bytes handed to the socket.
    """

    CHUNK = 64 * 1024

    def __init__(self, head: bytes):
        self.head = head
        self.received = b""
        self.sent = 0
        self.answered = Deferred()
        self.lost = Deferred()

    def connectionMade(self):
        self.transport.write(self.head)

    def dataReceived(self, data):
        self.received += data
        if b"\r\n\r\n" in self.received and not self.answered.called:
            self.answered.callback(self.received)

    def send_body(self):
        self.transport.registerProducer(self, False)   # a pull producer: a chunk each time the socket drains

    def resumeProducing(self):
        self.sent += self.CHUNK
        self.transport.write(b"x" * self.CHUNK)

    def stopProducing(self):
        pass

    def connectionLost(self, reason):
        if not self.answered.called:
            self.answered.errback(reason)
        self.lost.callback(None)


@implementer(IHalfCloseableProtocol)
class _StayingUpload(_RawUpload):
    """One that keeps its side open when the server closes its own (a half-close): only a cut ends it."""

    def readConnectionLost(self):
        pass

    def writeConnectionLost(self):
        pass


class PushAPILimitTests(GatewayMixin, TestCase):
    """Issue 8, items 6 and 8, against the site as twistd builds it, with a real HTTP client on loopback."""

    extra_options = "[EchoApplication]\nenabled = yes\nname = echotest\n"
    http_options = "close-linger = 0.3\n"

    @inlineCallbacks
    def upload(self, token=None, length=10 ** 9, client_class=_RawUpload):
        head = (b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n" % length)
        if token is not None:
            head += b"Authorization: Bearer " + token.encode() + b"\r\n"
        client = client_class(head + b"\r\n")
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.http_port)
        yield connectProtocol(endpoint, client)
        self.addCleanup(lambda: client.lost if client.transport.connected else None)
        self.addCleanup(client.transport.abortConnection)
        return client

    @inlineCallbacks
    def test_an_upload_without_the_token_is_refused_before_its_body_is_sent(self):
        bystander = Bystander(f"rtmp://127.0.0.1:{self.rtmp_port}/echotest")
        yield bystander.start()
        client = yield self.upload()
        # Not one byte of the 1 GB body has been sent: the answer came on the headers alone.
        answer = yield client.answered.addTimeout(10, reactor)
        self.assertEqual(client.sent, 0)
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), head)
        self.assertIn(b"Connection: close", head)
        self.assertEqual(json.loads(body), {"error": "missing or wrong bearer token"})
        # Sent anyway, the body is dropped, never stored: the server cuts the connection after at most
        # push-max-body (1M) more bytes, whatever the socket buffers held on the way.
        client.send_body()
        yield client.lost
        self.assertLess(client.sent, 64 * 1024 * 1024)
        yield bystander.finish(self, min_answered=1)

    @inlineCallbacks
    def test_a_refused_client_that_stays_is_cut_after_close_linger_and_logged(self):
        client = yield self.upload(client_class=_StayingUpload)
        answer = yield client.answered.addTimeout(10, reactor)
        self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), answer)
        site = self.service.getServiceNamed("http").args[1]
        self.assertEqual((site.linger, site.limit_log.counts.get("lingered after a refusal", 0)), (0.3, 0))
        # It sends nothing more and does not close: only the linger ends it, logged as the server cuts it.
        for _ in range(300):
            if site.limit_log.counts.get("lingered after a refusal"):
                break
            yield deferLater(0.1)
        self.assertEqual(site.limit_log.counts.get("lingered after a refusal"), 1)
        # Cut, not closed: the client's next bytes meet a reset (its reading stopped at the server's FIN).
        self.assertFalse(client.lost.called)
        client.transport.write(b"x")
        yield deferLater(0.05)
        client.transport.write(b"x")
        yield client.lost.addTimeout(30, reactor)
        self.assertEqual(client.sent, 0)

    @inlineCallbacks
    def test_a_declared_body_over_push_max_body_is_413_at_once(self):
        client = yield self.upload(token=TOKEN, length=1024 * 1024 + 1)
        answer = yield client.answered.addTimeout(10, reactor)
        self.assertEqual(client.sent, 0)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer)
        self.assertIn(b"larger than 1048576 bytes (push-max-body)", answer)

    @inlineCallbacks
    def test_hostile_bodies_get_json_rpc_errors_with_http_200(self):
        headers = {"Content-Type": ["application/json"], "Authorization": [f"Bearer {TOKEN}"]}

        @inlineCallbacks
        def post(body):
            response = yield treq.post(f"http://127.0.0.1:{self.http_port}/rpc", body, headers=headers,
                                       reactor=reactor, persistent=False)
            self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
            return response.code, (yield response.json())

        code, answer = yield post(b"[" * 100_000 + b"]" * 100_000)
        self.assertEqual((code, answer["error"]["code"]), (200, -32700))
        code, answer = yield post(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "broadcast", "params": [
            "shop", "lobby", "news", [{"n": int("9" * 400)}]]}).encode())
        self.assertEqual((code, answer["error"]["code"], answer["id"]), (200, -32602, 1))
        self.assertIn("(at args[0].n)", answer["error"]["message"])
        code, answer = yield post(b'{"jsonrpc":"2.0","id":2,"method":"call","params":["c","m",[],1e400]}')
        self.assertEqual((code, answer["error"]["code"]), (200, -32602))
        self.assertIn("push-max-call-timeout", answer["error"]["message"])
        code, answer = yield post(json.dumps([{"jsonrpc": "2.0", "method": "rooms", "id": 3}] * 1000).encode())
        self.assertEqual((code, answer["error"]["code"]), (200, -32600))
        self.assertEqual(answer["error"]["message"], "Invalid request: must be of type object, not array")
