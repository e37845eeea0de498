"""GatewayApplication without sockets: a real Session and core Connection pair, a JSON-RPC backend on StubTreq.

The client side is a real ``rtmp.Connection`` whose bytes are pumped through a
``Session`` (as tests/app/test_session.py does); the backend is an in-memory
``twisted.web`` resource that records every request (body and headers) and
answers according to the JSON-RPC method; time is a ``task.Clock``.  So each
test proves both what the Flash client received and what the backend saw, or
never saw.
"""
import datetime
import json
import os
import shutil
import tempfile
import textwrap
from dataclasses import replace
from urllib.parse import unquote, urlsplit

from treq.testing import StubTreq
from twisted.internet import error as neterror
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from fmspy_gateway.app.application import CallError
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.session import Session
from fmspy_gateway.bridge.application import GatewayApplication
from fmspy_gateway.bridge.routes import gateway_settings, load_routes
from fmspy_gateway.bridge.rpc import BreakerState, JSONRPCClient
from fmspy_gateway.config import load_config
from fmspy_gateway.rtmp.amf import ByteArray
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.rtmp.events import CommandReceived

from ..app.fakes import FakePeer

ENDPOINT = "http://backend.test/rpc"
OTHER = "http://backend.test/other"
DOWN = "http://down.test/rpc"          # nobody listens there: every POST is refused
APP_LOGGER = "fmspy_gateway.bridge.application"

ROUTES = """
[shop]
getUser     = users.get    params=schemas/getUser.params.json  result=schemas/user.json
divide      = math.divide
whoami      = whoami       context=yes
echo        = echo
slow        = slow         timeout=2
other       = other.echo   endpoint=http://backend.test/other
down        = down.echo    endpoint=http://down.test/rpc
@connect    = session.open
@disconnect = session.close
@enter      = room.enter
@leave      = room.leave
"""

PARAMS_SCHEMA = {"type": "array", "prefixItems": [{"type": "integer", "minimum": 1}], "minItems": 1, "maxItems": 1}
USER_SCHEMA = {"type": "object", "required": ["id", "name"],
               "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                              "created": {"type": "string", "format": "date-time"},
                              "avatar": {"type": "string", "contentEncoding": "base64"}}}


def temporary_folder(case):
    """A fresh folder, removed after the test (trial's mktemp would leave it under the current directory)."""
    folder = tempfile.mkdtemp(prefix="fmspy-gateway-test-")
    case.addCleanup(shutil.rmtree, folder, True)
    return folder


# -- the backend ---------------------------------------------------------------------------------

def result(value):
    """An answer: the JSON-RPC result ``value`` with the request's id."""
    def answer(message, request):
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"jsonrpc": "2.0", "result": value, "id": message.get("id")}).encode()
    return answer


def rpc_error(code, message, data=None):
    def answer(request_message, request):
        error = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        return json.dumps({"jsonrpc": "2.0", "error": error, "id": request_message.get("id")}).encode()
    return answer


def raw(body: bytes, status: int = 200):
    def answer(message, request):
        request.setResponseCode(status)
        return body
    return answer


def echo(message, request):
    return result({"method": message.get("method"), "params": message.get("params")})(message, request)


def no_content(message, request):
    request.setResponseCode(204)
    return b""


class Backend(Resource):
    """A JSON-RPC backend answering by method (``answers``); records every request it gets.

    ``requests`` holds (message, headers) with headers as {lowercase name: value};
    ``pending`` the requests kept open (``hang``), ``lost`` those whose
    connection the gateway dropped.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.answers = {"session.open": result(True), "session.close": no_content, "room.enter": no_content,
                        "room.leave": no_content}
        self.requests = []
        self.pending = []
        self.lost = []

    def render_POST(self, request):
        body = request.content.read()
        headers = {name.decode().lower(): values[-1].decode()
                   for name, values in request.requestHeaders.getAllRawHeaders()}
        message = json.loads(body)
        self.requests.append((message, headers, body))
        return self.answers.get(message["method"], echo)(message, request)

    def hang(self, message, request):
        self.pending.append(request)
        request.notifyFinish().addErrback(lambda _: self.lost.append(request))
        return NOT_DONE_YET

    def methods(self):
        return [message["method"] for message, _, _ in self.requests]

    def calls_to(self, method):
        return [(message, headers) for message, headers, _ in self.requests if message["method"] == method]


class Network:
    """treq-like: StubTreq for backend.test; a refused connection for down.test."""

    def __init__(self, resource):
        self.stub = StubTreq(resource)
        self.refused = 0

    def post(self, url, **kwargs):
        if urlsplit(url).hostname == "down.test":
            self.refused += 1
            return fail(neterror.ConnectionRefusedError("Connection refused"))
        return self.stub.post(url, **kwargs)

    def flush(self):
        self.stub.flush()


# -- the RTMP side -------------------------------------------------------------------------------

class Line:
    """One RTMP client of the application: a client Connection, a Session and the fake peer between them."""

    def __init__(self, app, clock, network, address="192.0.2.7:40001"):
        self.network = network
        self.peer = FakePeer(address)
        self.session = Session({app.name: app}, self.peer, clock=clock, call_timeout=10)
        self.client = Connection(Role.CLIENT)
        self.pump()

    def pump(self, kind=CommandReceived):
        """Move bytes both ways (and across the in-memory HTTP connections); the events of ``kind`` the client got."""
        commands = []
        while True:
            self.network.flush()
            out = self.client.data_to_send()
            for event in self.peer.connection.receive_data(out) if out else []:
                self.session.handle(event)
            back = self.peer.connection.data_to_send()
            if back:
                commands.extend(e for e in self.client.receive_data(back) if isinstance(e, kind))
            if not out and not back:
                return commands


class GatewayTestCase(SynchronousTestCase):
    """A GatewayApplication named shop built from a temporary fmspy.cfg + routes.cfg, and one RTMP client."""

    routes = ROUTES
    options = ""

    def setUp(self):
        self.clock = Clock()
        self.backend, self.other = Backend(), Backend()
        root = Resource()
        root.putChild(b"rpc", self.backend)
        root.putChild(b"other", self.other)
        self.network = Network(root)
        self.app = self.build_application()
        self.line = Line(self.app, self.clock, self.network)
        self.peer, self.session, self.client = self.line.peer, self.line.session, self.line.client

    def build_application(self):
        folder = temporary_folder(self)
        os.makedirs(os.path.join(folder, "schemas"))
        files = {
            "fmspy.cfg": f"[RTMP]\n[GatewayApplication:shop]\nenabled = yes\nname = shop\nendpoint = {ENDPOINT}\n"
                         f"timeout = 5\n{textwrap.dedent(self.options)}",
            "routes.cfg": textwrap.dedent(self.routes),
            "schemas/getUser.params.json": json.dumps(PARAMS_SCHEMA),
            "schemas/user.json": json.dumps(USER_SCHEMA),
        }
        for name, text in files.items():
            with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
                f.write(text)
        self.settings = settings = gateway_settings(load_config(os.path.join(folder, "fmspy.cfg")).applications[0])
        rpc = JSONRPCClient(self.network, self.clock, max_concurrent=settings.max_concurrent,
                            max_queued=settings.max_queued, breaker_threshold=settings.breaker_threshold,
                            breaker_reset=settings.breaker_reset, max_response_bytes=settings.max_response_bytes)
        return GatewayApplication("shop", {}, LocalHub(), settings=settings, routes=load_routes(settings),
                                  rpc=rpc)

    def other_routes(self, *lines):
        """Routes of another routes.cfg (these lines only), to swap in after start."""
        folder = temporary_folder(self)
        with open(os.path.join(folder, "routes.cfg"), "w") as f:
            f.write("[shop]\n" + "\n".join(lines) + "\n")
        return load_routes(replace(self.settings, routes_file=os.path.join(folder, "routes.cfg")))

    def pump(self):
        return self.line.pump()

    def connect(self, *args, room="lobby", **params):
        self.client.send_command("connect", 1, {"app": f"shop/{room}", "flashVer": "TEST 1,0,0,0",
                                                "tcUrl": f"rtmp://h/shop/{room}", **params}, args)
        return self.pump()

    def connected(self, *args, **kwargs):
        (reply,) = self.connect(*args, **kwargs)
        self.assertEqual((reply.name, reply.arguments[0]["code"]), ("_result", "NetConnection.Connect.Success"))
        return reply.arguments[0]

    def call(self, name, *args, transaction_id=2, amf3=False):
        self.client.send_command(name, transaction_id, None, args, amf3=amf3)
        return self.pump()

    def result_of(self, name, *args, amf3=False):
        (reply,) = self.call(name, *args, amf3=amf3)
        self.assertEqual(reply.name, "_result", reply.arguments)
        self.assertEqual((reply.transaction_id, reply.amf3), (2, amf3))
        return reply.arguments[0]

    def error_of(self, name, *args, amf3=False):
        """The information object of the ``_error`` a call got; checked to be a call failure without internals."""
        (reply,) = self.call(name, *args, amf3=amf3)
        self.assertEqual(reply.name, "_error", reply.arguments)
        info = reply.arguments[0]
        self.assertEqual((info["level"], info["code"]), ("error", "NetConnection.Call.Failed"))
        self.assertNotIn("Traceback", info["description"])
        self.assertNotIn("Failure", info["description"])
        self.assertNotIn("\n", info["description"])
        return info

    def rejection(self, *args):
        """The connect ``_error`` information object; the connection must have been closed."""
        (reply,) = self.connect(*args)
        self.assertEqual(reply.name, "_error")
        info = reply.arguments[0]
        self.assertEqual((info["level"], info["code"]), ("error", "NetConnection.Connect.Rejected"))
        self.assertIsNotNone(self.peer.closed_because)
        self.assertFalse(self.session.connected)
        return info


# -- calls ------------------------------------------------------------------------------------------

class CallTests(GatewayTestCase):
    def test_a_call_becomes_the_exact_json_rpc_post(self):
        self.connected()
        user = result({"id": 42, "name": "user 42", "created": "2009-02-13T23:31:30.123Z"})
        self.backend.answers["users.get"] = user
        value = self.result_of("getUser", 42)
        message, headers, body = self.backend.requests[-1]
        self.assertEqual(set(message), {"jsonrpc", "method", "params", "id"})
        self.assertIsInstance(message["id"], int)
        self.assertEqual(body, b'{"jsonrpc":"2.0","method":"users.get","params":[42],"id":%d}' % message["id"])
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual((value["id"], value["name"]), (42, "user 42"))
        self.assertEqual(value["created"], datetime.datetime(2009, 2, 13, 23, 31, 30, 123000))   # the schema says

    def test_a_schema_typed_byte_array_is_base64_text_for_amf0_and_a_byte_array_for_amf3(self):
        # Issue 8, item 12: AMF0 has no ByteArray; writing one means an AMF3 switch (0x11), which
        # AMF0-only clients (npm rtmp-client) cannot decode.
        self.backend.answers["users.get"] = result({"id": 42, "name": "n", "avatar": "iVBORw=="})
        self.connected()
        value = self.result_of("getUser", 42)
        self.assertEqual((type(value["avatar"]), value["avatar"]), (str, "iVBORw=="))
        amf3 = Line(self.app, self.clock, self.network, "192.0.2.8:40002")
        amf3.client.send_command("connect", 1, {"app": "shop/lobby", "tcUrl": "rtmp://h/shop/lobby",
                                                "objectEncoding": 3}, [])
        amf3.pump()
        amf3.client.send_command("getUser", 2, None, [42], amf3=True)
        (reply,) = amf3.pump()
        self.assertEqual(reply.arguments[0]["avatar"], ByteArray(b"\x89PNG"))

    def test_params_are_positional_in_the_order_sent(self):
        self.connected()
        value = self.result_of("echo", 1, "two", [3.5, None], {"four": True})
        message, _, _ = self.backend.requests[-1]
        self.assertEqual(message["params"], [1, "two", [3.5, None], {"four": True}])
        self.assertEqual(value, {"method": "echo", "params": [1, "two", [3.5, None], {"four": True}]})

    def test_amf3_calls_are_answered_in_amf3(self):
        self.connected(objectEncoding=3)
        self.assertEqual(self.result_of("echo", "x", amf3=True)["params"], ["x"])

    def test_ids_differ_between_requests(self):
        self.connected()
        self.result_of("echo")
        self.result_of("echo")
        ids = [message["id"] for message, _ in self.backend.calls_to("echo")]
        self.assertEqual(len(set(ids)), 2)

    def test_context_headers_name_the_caller(self):
        self.connected()
        self.result_of("echo")
        _, headers = self.backend.calls_to("echo")[0]
        self.assertEqual(headers["x-rtmp-client-id"], self.session.client.id)
        self.assertEqual(headers["x-rtmp-application"], "shop")
        self.assertEqual(headers["x-rtmp-room"], "lobby")
        self.assertEqual(headers["x-rtmp-client-address"], "192.0.2.7:40001")
        self.assertNotIn("x-rtmp-session", headers)       # @connect answered a plain true: no session

    def test_context_headers_are_encoded_once_per_client_and_dropped_when_it_leaves(self):
        self.connected()
        self.result_of("echo")
        kept = self.app._client_headers[self.session.client.id]
        self.result_of("echo")
        self.assertIs(self.app._client_headers[self.session.client.id], kept)
        (_, first), (_, second) = self.backend.calls_to("echo")
        self.assertEqual(first, second)
        self.session.client.room_name = "elsewhere"
        self.result_of("echo")
        self.assertEqual(self.backend.calls_to("echo")[2][1]["x-rtmp-room"], "elsewhere")
        self.session.connection_lost("bye")
        self.pump()
        self.assertEqual(self.app._client_headers, {})

    def test_a_refused_client_leaves_no_context_headers_behind(self):
        self.backend.answers["session.open"] = result(False)
        self.rejection()
        self.assertEqual(self.backend.methods(), ["session.open"])
        self.assertEqual(self.app._client_headers, {})

    def test_non_ascii_header_values_are_percent_encoded(self):
        self.connected(room="caf\u00e9")
        self.result_of("echo")
        _, headers = self.backend.calls_to("echo")[0]
        self.assertEqual(headers["x-rtmp-room"], "caf%C3%A9")
        self.assertEqual(self.session.client.room_name, "caf\u00e9")

    def test_session_header_is_json_percent_encoded_where_needed(self):
        session = {"user": "Jos\u00e9", "discount": "50%", "line": "a\nb"}
        self.backend.answers["session.open"] = result({"accept": True, "session": session})
        self.connected("let-me-in")
        self.result_of("echo")
        header = self.backend.calls_to("echo")[0][1]["x-rtmp-session"]
        self.assertTrue(header.isascii() and header.isprintable(), header)
        self.assertEqual(json.loads(unquote(header)), session)

    def test_context_yes_appends_the_context_object(self):
        self.backend.answers["session.open"] = result({"accept": True, "session": {"user": "alice", "tier": 2}})
        self.connected("let-me-in")
        value = self.result_of("whoami", 7)
        message, _ = self.backend.calls_to("whoami")[0]
        context = {"client": self.session.client.id, "application": "shop", "room": "lobby",
                   "address": "192.0.2.7:40001", "session": {"user": "alice", "tier": 2}}
        self.assertEqual(message["params"], [7, context])
        self.assertEqual(value["params"], [7, context])

    def test_routes_without_context_do_not_get_it(self):
        self.connected()
        self.result_of("echo", 7)
        self.assertEqual(self.backend.calls_to("echo")[0][0]["params"], [7])

    def test_transaction_zero_sends_a_notification_and_answers_nothing(self):
        self.connected()
        self.assertEqual(self.call("echo", "fire", "forget", transaction_id=0), [])
        message, headers, body = self.backend.requests[-1]
        self.assertEqual(body, b'{"jsonrpc":"2.0","method":"echo","params":["fire","forget"]}')
        self.assertNotIn("id", message)
        self.assertEqual(headers["x-rtmp-client-id"], self.session.client.id)

    def test_a_failed_notification_is_logged_and_answers_nothing(self):
        self.connected()
        self.backend.answers["echo"] = raw(b"", status=500)
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            self.assertEqual(self.call("echo", transaction_id=0), [])
        self.assertIn("HTTP 500", "\n".join(logs.output))

    def test_unknown_method_without_a_fallback_is_not_found_without_a_request(self):
        self.connected()
        before = len(self.backend.requests)
        info = self.error_of("noSuchMethod", 1)
        self.assertEqual(info["description"], "Method 'noSuchMethod' not found.")
        self.assertEqual(len(self.backend.requests), before)

    def test_a_value_json_cannot_carry_is_refused_without_a_request(self):
        self.connected()
        cyclic = []
        cyclic.append(cyclic)
        with self.assertRaises(CallError) as raised:
            self.app.handle_call(self.session.client, "echo", (1, cyclic), True)
        self.assertIn("params[1]", raised.exception.description)
        self.assertIn("cyclic", raised.exception.description)
        self.assertEqual(self.backend.calls_to("echo"), [])


class FallbackRouteTests(GatewayTestCase):
    routes = """
    [shop]
    renamed = backend.renamed
    *       = *
    """

    def test_star_forwards_the_name_as_called_and_exact_routes_rename(self):
        self.connected()
        self.assertEqual(self.result_of("anything.at.all", 1)["method"], "anything.at.all")
        self.assertEqual(self.result_of("renamed")["method"], "backend.renamed")
        self.assertEqual(self.backend.methods(), ["anything.at.all", "backend.renamed"])

    def test_star_never_forwards_reserved_or_hook_names(self):
        self.connected()
        for name in ("rpc.discover", "@connect", "has space"):
            self.assertIn("not found", self.error_of(name)["description"])
        self.assertEqual(self.backend.requests, [])

    def test_without_a_connect_hook_every_client_is_accepted(self):
        self.connected("anything")
        self.assertEqual(self.backend.requests, [])


# -- validation -------------------------------------------------------------------------------------

class ValidationTests(GatewayTestCase):
    def test_invalid_params_never_reach_the_backend_and_the_error_names_the_path(self):
        self.connected()
        before = len(self.backend.requests)
        for args, path in ((("not a number",), "params[0]"), ((0,), "params[0]"), ((1, 2), "params")):
            info = self.error_of("getUser", *args)
            self.assertIn(f"Invalid parameters for 'getUser': {path}", info["description"])
        info = self.error_of("getUser", "x", amf3=True)
        self.assertIn("params[0]: 'x' is not of type 'integer'", info["description"])
        self.assertEqual(len(self.backend.requests), before)
        self.assertEqual(self.backend.calls_to("users.get"), [])

    def test_invalid_result_gives_an_error_and_a_log_line(self):
        self.connected()
        self.backend.answers["users.get"] = result({"id": "forty-two", "name": "x"})
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            info = self.error_of("getUser", 42)
        self.assertEqual(info["description"], "The backend returned an invalid result for 'getUser'.")
        self.assertNotIn("forty-two", info["description"])
        (line,) = logs.output
        self.assertIn("user.json", line)
        self.assertIn("result.id", line)
        self.assertEqual(len(self.backend.calls_to("users.get")), 1)


# -- backend faults ---------------------------------------------------------------------------------

class FaultTests(GatewayTestCase):
    options = "breaker-threshold = 100\n"

    def test_json_rpc_error_object_reaches_the_client(self):
        self.connected()
        self.backend.answers["math.divide"] = rpc_error(1001, "division by zero", {"a": 1})
        for amf3 in (False, True):
            info = self.error_of("divide", 1, 0, amf3=amf3)
            self.assertEqual(info["description"], "division by zero")
            self.assertEqual(info["application"], {"code": 1001, "message": "division by zero", "data": {"a": 1}})

    def test_json_rpc_error_without_data(self):
        self.connected()
        self.backend.answers["math.divide"] = rpc_error(-32602, "b must not be zero")
        info = self.error_of("divide", 1, 0)
        self.assertEqual(info["application"], {"code": -32602, "message": "b must not be zero", "data": None})

    def test_timeout(self):
        self.connected()
        self.backend.answers["slow"] = self.backend.hang
        self.assertEqual(self.call("slow"), [])
        self.clock.advance(1.9)
        self.assertEqual(self.pump(), [])
        self.clock.advance(0.1)
        (reply,) = self.pump()
        info = reply.arguments[0]
        self.assertEqual((reply.name, info["code"]), ("_error", "NetConnection.Call.Failed"))
        self.assertEqual(info["description"], f"'slow' failed: backend {ENDPOINT} timed out after 2 s")
        self.assertEqual(len(self.backend.lost), 1)            # the HTTP request was dropped, not left hanging
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_http_status_not_json_and_wrong_id_say_which(self):
        self.connected()
        cases = {
            "http500": (raw(b"<html>oops</html>", status=500), "answered HTTP 500"),
            "http404": (raw(b"", status=404), "answered HTTP 404"),
            "notjson": (raw(b"<html>"), "sent a bad response: not JSON"),
            "wrongid": (lambda m, r: json.dumps({"jsonrpc": "2.0", "result": 1, "id": m["id"] + 1000}).encode(),
                        "sent a bad response: wrong id (sent "),
            "noid": (raw(b'{"jsonrpc":"2.0","result":1}'), "wrong id"),
            "badshape": (raw(b'{"result":1,"id":1}'), "not a JSON-RPC 2.0 response object"),
        }
        self.app.routes = self.other_routes("* = *")
        for method, (answer, expected) in cases.items():
            self.backend.answers[method] = answer
            for amf3 in (False, True):
                info = self.error_of(method, amf3=amf3)
                self.assertTrue(info["description"].startswith(f"'{method}' failed: backend {ENDPOINT} "),
                                info["description"])
                self.assertIn(expected, info["description"])
                self.assertNotIn("<html>", info["description"])

    def test_a_result_that_cannot_be_sent_to_the_client_is_an_error_and_a_log_line(self):
        self.connected()
        deep = []
        for _ in range(200):
            deep = [deep]
        self.backend.answers["echo"] = result(deep)
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            info = self.error_of("echo")
        self.assertTrue(info["description"].startswith(
            "The backend's result for 'echo' cannot be sent to the client: cannot send a value nested deeper "
            "than 128 levels to the client (at result[0][0][0][0]..."), info["description"])
        self.assertIn("nested deeper than", "\n".join(logs.output))

    def test_an_argument_expanding_past_the_value_budget_never_reaches_the_mapping_or_the_backend(self):
        # Issue 8, item 1: ~160 bytes of AMF3 references for 2**22 nodes; mapped as a tree, a 20 s stall.
        self.connected(objectEncoding=3)
        tree = []
        for _ in range(22):
            tree = [tree, tree]
        (reply,) = self.call("echo", tree, amf3=True)
        self.assertEqual(reply.name, "_error")
        self.assertIn("maxValue", reply.arguments[0]["description"])
        self.assertEqual(self.backend.calls_to("echo"), [])

    def test_a_result_with_an_empty_key_is_an_error_for_amf0_and_a_result_for_amf3(self):
        # Issue 8, item 7: {"": 1} cannot be written in AMF0 (it reads as the end of the object).
        self.backend.answers["echo"] = result({"ok": {"": 1}})
        self.connected()
        with self.assertLogs(APP_LOGGER, "WARNING"):
            info = self.error_of("echo")
        self.assertEqual(info["description"], "The backend's result for 'echo' cannot be sent to the client: "
                                              'cannot send an object with an empty key ("") to an AMF0 client: '
                                              "AMF0 reads it as the end of the object (at result.ok)")
        amf3 = Line(self.app, self.clock, self.network, "192.0.2.8:40002")
        amf3.client.send_command("connect", 1, {"app": "shop/lobby", "tcUrl": "rtmp://h/shop/lobby",
                                                "objectEncoding": 3}, [])
        amf3.pump()
        amf3.client.send_command("echo", 2, None, [], amf3=True)
        (reply,) = amf3.pump()
        self.assertEqual((reply.name, reply.arguments[0]), ("_result", {"ok": {"": 1}}))

    def test_an_integer_beyond_a_double_is_an_error_naming_it(self):
        self.backend.answers["echo"] = result({"id": int("9" * 400)})
        self.connected()
        for amf3 in (False, True):
            info = self.error_of("echo", amf3=amf3)
            self.assertEqual(info["description"], "The backend's result for 'echo' cannot be sent to the client: "
                                                  "cannot send the integer <int of 1329 bits> to the client: AMF "
                                                  "numbers are doubles, and this one is beyond their range "
                                                  "(at result.id)")

    def test_refusals_of_results_are_logged_rate_limited(self):
        self.backend.answers["echo"] = result({"id": int("9" * 400)})
        self.connected()
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            for _ in range(20):
                self.error_of("echo")
        self.assertEqual(len(logs.output), 1)
        self.assertEqual(self.app.result_log.counts["unsendable result"], 20)

    def test_refused(self):
        self.connected()
        info = self.error_of("down")
        self.assertEqual(info["description"], f"'down' failed: backend {DOWN} refused the connection")
        self.assertEqual(self.network.refused, 1)


class CircuitBreakerTests(GatewayTestCase):
    options = "breaker-threshold = 3\nbreaker-reset = 30\n"

    def test_after_n_failures_calls_fail_fast_while_another_endpoint_works(self):
        self.connected()
        self.backend.answers["echo"] = raw(b"", status=500)
        for _ in range(3):
            self.assertIn("HTTP 500", self.error_of("echo")["description"])
        self.assertEqual(len(self.backend.calls_to("echo")), 3)
        self.assertEqual(self.app.rpc.endpoint(ENDPOINT).breaker.state, BreakerState.OPEN)

        info = self.error_of("echo")
        self.assertIn(f"backend {ENDPOINT} unavailable (circuit open after 3 failures)", info["description"])
        self.assertEqual(len(self.backend.calls_to("echo")), 3)        # nothing reached the backend
        # Another route of the same endpoint is refused too; the other endpoint answers.
        self.error_of("divide", 1, 1)
        self.assertEqual(self.backend.calls_to("math.divide"), [])
        self.assertEqual(self.result_of("other", "still here")["params"], ["still here"])
        self.assertEqual(len(self.other.calls_to("other.echo")), 1)

        # After breaker-reset one probe goes through; its success closes the circuit.
        self.backend.answers["echo"] = echo
        self.clock.advance(30)
        self.assertEqual(self.result_of("echo", "probe")["params"], ["probe"])
        self.assertEqual(self.app.rpc.endpoint(ENDPOINT).breaker.state, BreakerState.CLOSED)
        self.assertEqual(self.result_of("divide", 6, 3)["params"], [6, 3])

    def test_json_rpc_errors_do_not_open_the_circuit(self):
        self.connected()
        self.backend.answers["math.divide"] = rpc_error(1001, "division by zero")
        for _ in range(5):
            self.assertEqual(self.error_of("divide", 1, 0)["description"], "division by zero")
        self.assertEqual(len(self.backend.calls_to("math.divide")), 5)

    def test_refused_connections_open_the_circuit_too(self):
        self.connected()
        for _ in range(3):
            self.assertIn("refused the connection", self.error_of("down")["description"])
        self.assertIn("circuit open", self.error_of("down")["description"])
        self.assertEqual(self.network.refused, 3)
        self.assertEqual(self.result_of("echo")["method"], "echo")


class OverloadTests(GatewayTestCase):
    options = "max-concurrent = 1\nmax-queued = 1\n"

    def test_beyond_the_queue_calls_are_refused_at_once(self):
        self.connected()
        self.backend.answers["slow"] = self.backend.hang
        self.assertEqual(self.call("slow", transaction_id=2), [])      # in flight
        self.assertEqual(self.call("slow", transaction_id=3), [])      # queued
        (reply,) = self.call("slow", transaction_id=4)
        self.assertEqual((reply.name, reply.transaction_id), ("_error", 4))
        self.assertEqual(reply.arguments[0]["description"],
                         f"'slow' failed: backend {ENDPOINT} is overloaded: 1 requests waiting")
        self.assertEqual(len(self.backend.calls_to("slow")), 1)
        self.assertEqual(self.app.rpc.endpoint(ENDPOINT).queued, 1)


# -- disconnect ---------------------------------------------------------------------------------

class DisconnectTests(GatewayTestCase):
    def test_a_client_that_disconnects_cancels_its_calls_in_flight(self):
        self.connected()
        self.backend.answers["slow"] = self.backend.hang
        self.assertEqual(self.call("slow"), [])
        self.assertEqual(self.call("slow", transaction_id=3), [])
        self.assertEqual(len(self.backend.pending), 2)
        self.session.connection_lost("client went away")
        self.assertEqual(self.pump(), [])
        self.assertEqual(len(self.backend.lost), 2)             # both backend requests were aborted
        self.assertEqual(self.app.rpc.outstanding, 0)
        self.assertEqual(self.app.rpc.endpoint(ENDPOINT).in_flight, 0)
        self.assertEqual(self.app.rpc.endpoint(ENDPOINT).breaker.failures, 0)   # cancelling is not failing
        self.assertEqual(self.clock.getDelayedCalls(), [])      # no timeout left to fire later
        self.clock.advance(60)
        self.assertEqual(self.pump(), [])
        self.assertEqual(self.peer.connection.data_to_send(), b"")

    def test_other_clients_calls_are_not_cancelled(self):
        self.connected()
        self.backend.answers["slow"] = self.backend.hang
        self.assertEqual(self.call("slow"), [])
        other = Line(self.app, self.clock, self.network, "192.0.2.8:40002")
        other.client.send_command("connect", 1, {"app": "shop/lobby"}, ())
        other.client.send_command("slow", 2, None, ("other",))
        self.assertEqual([r.name for r in other.pump()], ["_result"])      # the connect only
        self.assertEqual(len(self.backend.pending), 2)
        self.session.connection_lost("gone")
        self.pump()
        (lost,) = self.backend.lost
        (survivor,) = [r for r in self.backend.pending if r is not lost]
        self.assertEqual(self.app.rpc.outstanding, 1)
        (message, headers), = [c for c in self.backend.calls_to("slow") if c[0]["params"] == ["other"]]
        self.assertEqual(headers["x-rtmp-client-address"], "192.0.2.8:40002")
        survivor.write(json.dumps({"jsonrpc": "2.0", "result": "late", "id": message["id"]}).encode())
        survivor.finish()
        (reply,) = other.pump()
        self.assertEqual((reply.name, reply.transaction_id, reply.arguments), ("_result", 2, ("late",)))


# -- @connect -------------------------------------------------------------------------------------

class ConnectHookTests(GatewayTestCase):
    def test_the_backend_gets_connect_parameters_and_arguments(self):
        self.connected("let-me-in", 42, pageUrl="http://page")
        ((message, headers),) = self.backend.calls_to("session.open")
        params, args = message["params"]
        self.assertIsInstance(message["id"], int)
        self.assertEqual((params["app"], params["flashVer"], params["pageUrl"]), ("shop/lobby", "TEST 1,0,0,0",
                                                                                   "http://page"))
        self.assertEqual(args, ["let-me-in", 42])
        self.assertEqual(headers["x-rtmp-client-id"], self.session.client.id)
        self.assertEqual(headers["x-rtmp-room"], "lobby")

    def test_true_accepts(self):
        info = self.connected()
        self.assertNotIn("application", info)
        self.assertEqual(self.session.client.room_name, "lobby")
        self.assertIsNone(self.peer.closed_because)

    def test_accept_with_session_room_and_application_value(self):
        self.backend.answers["session.open"] = result({"accept": True, "session": {"user": "alice", "n": [1, 2]},
                                                       "room": "vip", "application": {"welcome": "Hello, alice"}})
        info = self.connected("let-me-in")
        self.assertEqual(info["application"], {"welcome": "Hello, alice"})
        self.assertEqual(self.session.client.room_name, "vip")
        self.assertEqual(self.session.client.room, self.app.room("vip"))
        self.result_of("echo")
        _, headers = self.backend.calls_to("echo")[0]
        self.assertEqual(json.loads(headers["x-rtmp-session"]), {"user": "alice", "n": [1, 2]})
        self.assertEqual(headers["x-rtmp-room"], "vip")
        context = self.result_of("whoami")["params"][-1]
        self.assertEqual((context["session"], context["room"]), ({"user": "alice", "n": [1, 2]}, "vip"))

    def test_false_rejects(self):
        self.backend.answers["session.open"] = result(False)
        self.assertEqual(self.rejection()["description"], "Connection rejected by the backend.")

    def test_accept_false_with_a_reason(self):
        self.backend.answers["session.open"] = result({"accept": False, "reason": "A valid token is required."})
        self.assertEqual(self.rejection("wrong")["description"], "A valid token is required.")

    def test_a_json_rpc_error_rejects_with_its_message(self):
        self.backend.answers["session.open"] = rpc_error(403, "Banned until Monday", {"until": "monday"})
        self.assertEqual(self.rejection()["description"], "Banned until Monday")

    def test_an_unclear_answer_rejects_and_is_logged(self):
        self.backend.answers["session.open"] = result("yes please")
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            info = self.rejection()
        self.assertIn("no clear answer", info["description"])
        self.assertIn("yes please", "\n".join(logs.output))

    def test_a_session_of_a_rejected_client_is_not_kept(self):
        self.backend.answers["session.open"] = result({"accept": "maybe", "session": {"user": "x"}})
        with self.assertLogs(APP_LOGGER, "WARNING"):
            self.rejection()
        self.assertEqual(self.app._sessions, {})

    def test_calls_sent_before_the_decision_wait_for_it(self):
        self.backend.answers["session.open"] = self.backend.hang
        self.assertEqual(self.connect("let-me-in"), [])
        self.assertEqual(self.call("echo", "early"), [])
        self.assertEqual(self.backend.methods(), ["session.open"])
        (request,) = self.backend.pending
        connect_id = self.backend.calls_to("session.open")[0][0]["id"]
        request.write(json.dumps({"jsonrpc": "2.0", "result": {"accept": True, "session": {"user": "early"}},
                                  "id": connect_id}).encode())
        request.finish()
        replies = self.pump()
        self.assertEqual([(r.name, r.transaction_id) for r in replies], [("_result", 1), ("_result", 2)])
        self.assertEqual(json.loads(self.backend.calls_to("echo")[0][1]["x-rtmp-session"]), {"user": "early"})

    def test_connect_timeout_rejects(self):
        self.backend.answers["session.open"] = self.backend.hang
        self.assertEqual(self.connect(), [])
        self.clock.advance(5)
        (reply,) = self.pump()
        self.assertEqual((reply.name, reply.arguments[0]["code"]), ("_error", "NetConnection.Connect.Rejected"))
        self.assertEqual(reply.arguments[0]["description"], "The service is unavailable, please try again later.")


class ConnectContextTests(GatewayTestCase):
    routes = """
    [shop]
    @connect = session.open context=yes
    """

    def test_connect_with_context_yes_gets_the_context_object_last(self):
        self.connected("let-me-in", room="r1")
        ((message, _),) = self.backend.calls_to("session.open")
        params, args, context = message["params"]
        self.assertEqual(args, ["let-me-in"])
        self.assertEqual(context, {"client": self.session.client.id, "application": "shop", "room": "r1",
                                   "address": "192.0.2.7:40001", "session": None})


class ConnectBackendDownTests(GatewayTestCase):
    routes = ROUTES.replace("@connect    = session.open", "@connect    = session.open endpoint=" + DOWN)

    def test_unreachable_backend_rejects(self):
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            info = self.rejection("let-me-in")
        self.assertEqual(info["description"], "The service is unavailable, please try again later.")
        self.assertNotIn("down.test", info["description"])
        self.assertEqual(self.network.refused, 1)
        self.assertIn("refused the connection", "\n".join(logs.output))
        self.assertEqual(self.successResultOf(self.app.clients()), [])


class ConnectBackendDownFailOpenTests(GatewayTestCase):
    routes = ConnectBackendDownTests.routes
    options = "fail-open = yes\n"

    def test_unreachable_backend_accepts_with_fail_open(self):
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            self.connected("let-me-in")
        self.assertIn("fail-open", "\n".join(logs.output))
        self.assertEqual(self.network.refused, 1)
        self.assertEqual([c.id for c in self.successResultOf(self.app.clients())], [self.session.client.id])
        _, headers = self.backend.calls_to("room.enter")[0]
        self.assertNotIn("x-rtmp-session", headers)

    def test_fail_open_does_not_override_the_backends_no(self):
        # Reachable and saying no is a decision, not an outage.
        self.app.routes = self.other_routes("@connect = session.open")
        self.backend.answers["session.open"] = rpc_error(403, "Banned")
        self.assertEqual(self.rejection()["description"], "Banned")


# -- lifecycle notifications ----------------------------------------------------------------------

class LifecycleHookTests(GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.backend.answers["session.open"] = result({"accept": True, "session": {"user": "alice"}})

    def notifications(self):
        found = []
        for message, headers, _ in self.backend.requests:
            if message["method"] in ("room.enter", "room.leave", "session.close"):
                self.assertNotIn("id", message)            # notifications: no id
                found.append((message["method"], message["params"], headers))
        return found

    def test_enter_leave_and_disconnect_carry_the_context(self):
        self.connected("let-me-in")
        client_id = self.session.client.id
        context = {"client": client_id, "application": "shop", "room": "lobby", "address": "192.0.2.7:40001",
                   "session": {"user": "alice"}}
        self.assertEqual([(m, p) for m, p, _ in self.notifications()], [("room.enter", [context])])
        self.session.connection_lost("bye")
        self.pump()
        self.assertEqual([(m, p) for m, p, _ in self.notifications()],
                         [("room.enter", [context]), ("room.leave", [context]), ("session.close", [context])])
        for _, _, headers in self.notifications():
            self.assertEqual((headers["x-rtmp-client-id"], headers["x-rtmp-room"]), (client_id, "lobby"))
            self.assertEqual(json.loads(headers["x-rtmp-session"]), {"user": "alice"})
        self.assertEqual(self.app._sessions, {})       # forgotten once the client has gone

    def test_a_failing_notification_is_logged_not_fatal(self):
        self.backend.answers["room.enter"] = raw(b"", status=503)
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            self.connected("let-me-in")
        self.assertIn("@enter", "\n".join(logs.output))
        self.assertIn("HTTP 503", "\n".join(logs.output))
        self.assertEqual(self.result_of("echo")["method"], "echo")

    def test_no_hooks_no_notifications(self):
        self.app.routes = self.other_routes("@connect = session.open")
        self.connected()
        self.session.connection_lost("bye")
        self.pump()
        self.assertEqual(self.backend.methods(), ["session.open"])


# -- bugs found and fixed: kept as regression tests --------

class RegressionTests(GatewayTestCase):
    def test_cancelled_calls_are_not_logged_as_errors(self):
        self.connected()
        self.backend.answers["slow"] = self.backend.hang
        self.call("slow")
        with self.assertNoLogs("fmspy_gateway", "ERROR"):
            self.session.connection_lost("client went away")
            self.assertEqual(self.pump(), [])
        self.assertEqual(len(self.backend.lost), 1)

    def test_a_client_that_leaves_before_connect_is_decided_leaves_no_session_behind(self):
        self.backend.answers["session.open"] = self.backend.hang
        self.assertEqual(self.connect("let-me-in"), [])
        self.session.connection_lost("impatient")
        (request,) = self.backend.pending
        connect_id = self.backend.calls_to("session.open")[0][0]["id"]
        request.write(json.dumps({"jsonrpc": "2.0", "result": {"accept": True, "session": {"user": "x"}},
                                  "id": connect_id}).encode())
        request.finish()
        self.assertEqual(self.pump(), [])
        self.assertEqual(self.app._sessions, {})

    def test_calls_are_cancelled_at_once_even_when_the_leave_hook_is_slow(self):
        self.connected()
        self.backend.answers["slow"] = self.backend.hang
        self.backend.answers["room.leave"] = self.backend.hang
        self.call("slow")
        self.session.connection_lost("client went away")
        self.pump()
        self.assertEqual(len(self.backend.lost), 1)     # the call, not the @leave notification


# -- streams: @publish, @play, @unpublish ------------------------------------------------------------

class StreamHookTests(GatewayTestCase):
    routes = ROUTES + """
@publish    = stream.publish
@play       = stream.play
@unpublish  = stream.unpublish
"""

    def statuses(self, command, *args, stream_id=1):
        self.client.send_command(command, 0, None, args, stream_id=stream_id)
        return [(c.arguments[0]["code"], c.arguments[0]["description"]) for c in self.pump() if c.name == "onStatus"]

    def setUp(self):
        super().setUp()
        self.backend.answers["stream.unpublish"] = no_content
        self.connected()
        (created,) = self.call("createStream", transaction_id=3)
        self.assertEqual(created.arguments, (1,))

    def test_publish_allowed_by_the_backend(self):
        self.backend.answers["stream.publish"] = result(True)
        codes = self.statuses("publish", "cam?key=k1", "live")
        self.assertEqual(codes[0][0], "NetStream.Publish.Start")
        (request, _, _), = [r for r in self.backend.requests if r[0]["method"] == "stream.publish"]
        stream, context = request["params"]
        self.assertEqual(stream, {"name": "cam", "mode": "live", "query": "key=k1"})
        self.assertEqual((context["application"], context["room"]), ("shop", "lobby"))
        self.assertIsNotNone(self.app.live.get("cam").publisher)

    def test_publish_refused_with_the_backends_reason(self):
        self.backend.answers["stream.publish"] = result({"accept": False, "reason": "bad stream key"})
        self.assertEqual(self.statuses("publish", "cam", "live"), [("NetStream.Publish.Denied", "bad stream key")])
        self.assertIsNone(self.app.live.get("cam"))

    def test_publish_refused_by_a_json_rpc_error_and_when_the_backend_is_down(self):
        self.backend.answers["stream.publish"] = rpc_error(403, "not yours")
        self.assertEqual(self.statuses("publish", "cam", "live"), [("NetStream.Publish.Denied", "not yours")])
        self.backend.answers["stream.publish"] = raw(b"oops", 500)
        (code, description), = self.statuses("publish", "cam", "live")
        self.assertEqual(code, "NetStream.Publish.Denied")
        self.assertIn("unavailable", description)

    def test_play_refused_and_allowed(self):
        self.backend.answers["stream.play"] = result(False)
        (code, _), = self.statuses("play", "cam")
        self.assertEqual(code, "NetStream.Play.Failed")
        self.backend.answers["stream.play"] = result({"accept": True})
        codes = [code for code, _ in self.statuses("play", "cam")]
        self.assertEqual(codes, ["NetStream.Play.Reset", "NetStream.Play.Start"])

    def test_unpublish_is_a_notification(self):
        self.backend.answers["stream.publish"] = result(True)
        self.statuses("publish", "cam", "live")
        self.assertIn(("NetStream.Unpublish.Success", "cam is now unpublished."), self.statuses("closeStream"))
        (message, _, _), = [r for r in self.backend.requests if r[0]["method"] == "stream.unpublish"]
        self.assertNotIn("id", message)
        self.assertEqual(message["params"][0], {"name": "cam"})
