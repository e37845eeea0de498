"""The push API (bridge/push.py) over an in-memory HTTP connection (StubTreq), with fake applications.

Every answer is checked for its HTTP status and for being JSON-RPC 2.0 (issue
8, item 8): hostile bodies (nested 100,000 deep, a 400-digit integer, NaN,
a 1 MB batch, ``timeout: Infinity``) get a JSON-RPC error naming the problem
in one short line, never an HTML page, a traceback or the request echoed.
The refusal on headers alone (401 before the body is read) is tested with
the site in tests/server/test_http.py and end to end in tests/e2e.
"""
import json

from treq.testing import StubTreq
from twisted.internet.defer import succeed
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from fmspy_gateway.app.hub import ClientInfo, Room
from fmspy_gateway.bridge.push import MAX_CALL_TIMEOUT, PushAPI, PushResource

TOKEN = "s3cret"
URL = "http://gateway.test/rpc"
LOGGER = "fmspy_gateway.bridge.push"


class FakeClient:
    def __init__(self, client_id, object_encoding):
        self.id, self.object_encoding = client_id, object_encoding
        self.calls = []

    def call(self, method, *args, timeout=None):
        self.calls.append((method, args, timeout))
        return succeed(f"{self.id} answers {method}")


class FakeRoom:
    def __init__(self):
        self.broadcasts = []

    def broadcast(self, method, *args):
        self.broadcasts.append((method, args))
        return 2


class FakeDirectory:
    def __init__(self, clients):
        self.clients = {c.id: c for c in clients}

    def client(self, client_id):
        return self.clients.get(client_id)


class FakeHub:
    """The hub as the push API asks it (app/hub.py): clients found in ``directory``, one room "lobby"."""

    node = "test-node"

    def __init__(self, directory, lobby):
        self.directory, self.lobby = directory, lobby

    def room(self, application, name):
        return Room(application, name, self)

    def locate(self, client_id):
        client = self.directory.client(client_id)
        return succeed(None if client is None else ClientInfo(client.id, "shop", "192.0.2.1:1", node=self.node,
                                                              object_encoding=client.object_encoding,
                                                              handle=client))

    def call(self, client_id, method, args=(), timeout=None):
        return self.directory.client(client_id).call(method, *args, timeout=timeout)

    def disconnect(self, client_id, reason="disconnected"):
        return succeed(self.directory.client(client_id) is not None)

    def broadcast(self, room, method, args=(), exclude=None):
        return succeed(self.lobby.broadcast(method, *args) if room.name == "lobby" else 0)

    def clients(self, application, room=None):
        return succeed([])

    def rooms(self, application):
        return succeed([])


class FakeApplication:
    def __init__(self, clients):
        #: The fake client handles by id (``directory.clients``), which the fake hub finds.
        self.directory = FakeDirectory(clients)
        self.lobby = FakeRoom()
        self.hub = FakeHub(self.directory, self.lobby)


class PushTestCase(SynchronousTestCase):
    max_body = 1024 * 1024

    def setUp(self):
        self.amf0, self.amf3 = FakeClient("c0", 0), FakeClient("c3", 3)
        self.shop = FakeApplication([self.amf0, self.amf3])
        self.resource = PushResource(PushAPI({"shop": self.shop}), TOKEN, max_body=self.max_body)
        self.stub = StubTreq(self.resource)

    def post(self, body, token=TOKEN):
        """(HTTP status, the JSON answer) of POSTing ``body`` (bytes, or a value to send as JSON)."""
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        headers = {"Content-Type": ["application/json"]}
        if token is not None:
            headers["Authorization"] = [f"Bearer {token}"]
        response = self.successResultOf(self.stub.post(URL, body, headers=headers))
        content = self.successResultOf(response.content())
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        return response.code, json.loads(content)

    def rpc_error(self, body, code):
        """The JSON-RPC error a request gets: HTTP 200, the right code, one short line."""
        with self.assertNoLogs(LOGGER, "ERROR"):        # no traceback logged for any of these
            status, answer = self.post(body)
        self.assertEqual(status, 200)
        self.assertEqual(answer["jsonrpc"], "2.0")
        error = answer["error"]
        self.assertEqual(error["code"], code, error)
        self.assertNotIn("\n", error["message"])
        self.assertNotIn("Traceback", error["message"])
        self.assertLess(len(error["message"]), 300)
        return error["message"]

    def request(self, method, params, **extra):
        return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params, **extra}


class ParseTests(PushTestCase):
    def test_json_nested_too_deeply_to_parse_is_a_parse_error_not_an_html_500(self):
        message = self.rpc_error(b"[" * 100_000 + b"]" * 100_000, -32700)
        self.assertEqual(message, "Parse error: the body is nested too deeply")

    def test_nan_and_infinity_are_not_json(self):
        for literal in (b"NaN", b"Infinity", b"-Infinity"):
            body = b'{"jsonrpc":"2.0","id":1,"method":"call","params":["c0","m",[],%s]}' % literal
            message = self.rpc_error(body, -32700)
            self.assertIn(f"{literal.decode().lstrip('-')} is not JSON", message)

    def test_not_json_at_all(self):
        self.assertIn("Parse error: the body is not JSON", self.rpc_error(b"<html>", -32700))
        self.rpc_error(b"\xff\xfe", -32700)


class InvalidRequestTests(PushTestCase):
    def test_the_message_does_not_embed_the_request(self):
        batch = [self.request("rooms", ["shop"])] * 10_000      # a batch: not supported, and 600 KB
        message = self.rpc_error(batch, -32600)
        self.assertEqual(message, "Invalid request: must be of type object, not array")

    def test_messages_name_the_member_and_cut_the_value(self):
        message = self.rpc_error({"jsonrpc": "1." + "0" * 10_000, "method": "rooms"}, -32600)
        self.assertTrue(message.startswith("Invalid request: jsonrpc: must be \"2.0\", not '1.000"), message)
        self.assertIn("(10002 characters)", message)
        self.assertEqual(self.rpc_error({"jsonrpc": "2.0"}, -32600), "Invalid request: 'method' is required")
        self.assertEqual(self.rpc_error({"jsonrpc": "2.0", "method": 5}, -32600),
                         "Invalid request: method: must be of type string, not integer")

    def test_unknown_methods_and_parameters_are_named_briefly(self):
        message = self.rpc_error(self.request("x" * 10_000, {}), -32601)
        self.assertIn("(10000 characters)", message)
        message = self.rpc_error(self.request("rooms", {"app": "shop", "y" * 10_000: 1}), -32602)
        self.assertTrue(message.startswith("Invalid params: unexpected parameter 'yyy"), message)
        self.assertEqual(self.rpc_error(self.request("rooms", {"app": 5}), -32602),
                         "Invalid params: app: must be of type string, not integer")
        self.assertEqual(self.rpc_error(self.request("broadcast", ["shop", "lobby", ""]), -32602),
                         "Invalid params: method: must not be empty")


class ValueTests(PushTestCase):
    def test_an_integer_beyond_a_double_is_invalid_params_naming_the_field(self):
        message = self.rpc_error(self.request("broadcast", ["shop", "lobby", "news", ["a", {"n": int("9" * 400)}]]),
                                 -32602)
        self.assertEqual(message, "Invalid params: cannot send the integer <int of 1329 bits> to the client: AMF "
                                  "numbers are doubles, and this one is beyond their range (at args[1].n)")
        self.assertEqual(self.shop.lobby.broadcasts, [])

    def test_an_empty_key_cannot_be_broadcast_as_amf0_clients_may_listen(self):
        message = self.rpc_error(self.request("broadcast", ["shop", "lobby", "news", [{"": 1}]]), -32602)
        self.assertIn('empty key ("") to an AMF0 client', message)
        self.assertIn("(at args[0])", message)
        self.assertEqual(self.shop.lobby.broadcasts, [])

    def test_a_call_is_mapped_for_the_encoding_of_its_client(self):
        status, answer = self.post(self.request("call", ["c3", "m", [{"": 1}]]))
        self.assertEqual((status, answer["result"]), (200, "c3 answers m"))
        self.assertEqual(self.amf3.calls, [("m", ({"": 1},), None)])
        self.rpc_error(self.request("call", ["c0", "m", [{"": 1}]]), -32602)
        self.assertEqual(self.amf0.calls, [])

    def test_a_broadcast_that_can_be_sent_is(self):
        status, answer = self.post(self.request("broadcast", ["shop", "lobby", "news", [1, {"a": [2]}]]))
        self.assertEqual((status, answer), (200, {"jsonrpc": "2.0", "result": 2, "id": 1}))
        self.assertEqual(self.shop.lobby.broadcasts, [("news", (1, {"a": [2]}))])


class TimeoutTests(PushTestCase):
    def test_the_timeout_of_a_call_is_bounded(self):
        for timeout in (MAX_CALL_TIMEOUT + 1, 1e308, int("9" * 400)):
            message = self.rpc_error(self.request("call", {"client": "c0", "method": "m", "timeout": timeout}),
                                     -32602)
            self.assertIn(f"is more than the maximum of {MAX_CALL_TIMEOUT:g} s (push-max-call-timeout)", message)
        # 1e400 is valid JSON that Python reads as inf.
        self.rpc_error(b'{"jsonrpc":"2.0","id":1,"method":"call","params":{"client":"c0","method":"m",'
                       b'"timeout":1e400}}', -32602)
        self.assertEqual(self.amf0.calls, [])
        status, answer = self.post(self.request("call", {"client": "c0", "method": "m", "timeout": MAX_CALL_TIMEOUT}))
        self.assertEqual((status, answer["result"]), (200, "c0 answers m"))
        self.assertEqual(self.amf0.calls, [("m", (), MAX_CALL_TIMEOUT)])

    def test_the_maximum_is_configurable(self):
        resource = PushResource(PushAPI({"shop": self.shop}, max_call_timeout=5), TOKEN)
        self.stub = StubTreq(resource)
        message = self.rpc_error(self.request("call", ["c0", "m", [], 6]), -32602)
        self.assertIn("the maximum of 5 s", message)


class AuthenticationAndSizeTests(PushTestCase):
    max_body = 1000

    def test_without_the_right_token_401_and_nothing_happens(self):
        for token in (None, "wrong"):
            status, answer = self.post(self.request("broadcast", ["shop", "lobby", "news", []]), token=token)
            self.assertEqual((status, answer), (401, {"error": "missing or wrong bearer token"}))
        self.assertEqual(self.shop.lobby.broadcasts, [])

    def test_a_body_over_max_body_is_413(self):
        with self.assertLogs(LOGGER, "WARNING") as logs:
            status, answer = self.post(self.request("broadcast", ["shop", "lobby", "news", ["x" * 2000]]))
        self.assertEqual((status, answer), (413, {"error": "request body larger than 1000 bytes (push-max-body)"}))
        self.assertIn("push-max-body", logs.output[0])
        self.assertEqual(self.shop.lobby.broadcasts, [])

    def test_refuse_early_reads_the_token_from_the_headers_alone(self):
        self.assertIsNone(self.resource.refuse_early(Headers({"Authorization": [f"Bearer {TOKEN}"]}), 10 ** 9))
        with self.assertLogs(LOGGER, "WARNING") as logs:
            for _ in range(10):
                status, headers, body = self.resource.refuse_early(Headers({}), 10 ** 9)
        self.assertEqual(status, 401)
        self.assertIn((b"WWW-Authenticate", b'Bearer realm="fmspy-gateway push API"'), headers)
        self.assertEqual(json.loads(body), {"error": "missing or wrong bearer token"})
        self.assertEqual(len(logs.output), 1)                  # rate-limited
        self.assertEqual(self.resource.limit_log.counts["push-token"], 10)

    def test_without_a_push_token_the_api_is_off(self):
        resource = PushResource(PushAPI({"shop": self.shop}), "")
        status, _, body = resource.refuse_early(Headers({"Authorization": ["Bearer "]}), 10)
        self.assertEqual((status, json.loads(body)), (401, {"error": "the push API is off: no [HTTP] push-token"}))
