"""Push API (README, "Push API"): every fault of a request is a JSON-RPC error with HTTP 200, naming it.

Faults a backend meets once it is authenticated: a parameter of the wrong JSON type (each type named),
a non-positive call timeout, more positional parameters than the method takes, a client that is not
connected (-32001), a client's answer that JSON cannot carry and a client's call that fails (-32002),
and our own bug (-32603 "Internal error", logged with its traceback, never sent to the backend).
"""
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from fmspy_gateway.app.calls import CallFailed
from fmspy_gateway.bridge.push import PushAPI, PushResource
from fmspy_gateway.rtmp.amf import ASObject

from .test_push import LOGGER, FakeClient, PushTestCase


class Answering(FakeClient):
    """A client whose answer to every call is ``answer`` (a value, or a Failure's exception)."""

    def __init__(self, client_id, answer):
        super().__init__(client_id, 3)
        self.answer = answer

    def call(self, method, *args, timeout=None):
        self.calls.append((method, args, timeout))
        return fail(self.answer) if isinstance(self.answer, Exception) else succeed(self.answer)


class ParameterTypeTests(PushTestCase):
    def test_each_wrong_json_type_is_named(self):
        for value, name in ((None, "null"), (True, "boolean"), (1.5, "number"), (7, "integer"), ("x", "string"),
                            ({}, "object")):
            message = self.rpc_error(self.request("broadcast", {"app": "shop", "room": "lobby", "method": "m",
                                                                "args": value}), -32602)
            self.assertEqual(message, f"Invalid params: args: must be of type array, not {name}")
        self.assertEqual(self.shop.lobby.broadcasts, [])

    def test_a_timeout_must_be_positive(self):
        for timeout in (0, -1):
            message = self.rpc_error(self.request("call", ["c0", "m", [], timeout]), -32602)
            self.assertEqual(message, "Invalid params: timeout: must be greater than 0")
        self.assertEqual(self.amf0.calls, [])

    def test_more_positional_parameters_than_the_method_takes(self):
        message = self.rpc_error(self.request("rooms", ["shop", "extra"]), -32602)
        self.assertEqual(message, "Invalid params: rooms takes at most 1")


class ClientFaultTests(PushTestCase):
    def use(self, client):
        self.shop.directory.clients[client.id] = client
        return client

    def test_an_application_that_does_not_exist_is_not_found(self):
        for method, params in (("broadcast", ["nope", "lobby", "m"]), ("clients", ["nope"]), ("rooms", ["nope"])):
            self.assertEqual(self.rpc_error(self.request(method, params), -32001), "no application 'nope'")

    def test_a_client_that_is_not_connected_is_not_found(self):
        for method, params in (("call", ["gone", "m"]), ("disconnect", ["gone"])):
            self.assertEqual(self.rpc_error(self.request(method, params), -32001), "no client 'gone'")

    def test_a_client_answer_json_cannot_carry_is_a_client_call_error(self):
        loop = ASObject(name="loop")
        loop["self"] = loop
        self.use(Answering("cyclic", loop))
        message = self.rpc_error(self.request("call", ["cyclic", "m"]), -32002)
        self.assertTrue(message.startswith("the client's answer cannot be sent as JSON: "), message)
        self.assertIn("(at result.self)", message)

    def test_a_failed_client_call_carries_its_code_and_description(self):
        self.use(Answering("failing", CallFailed("no such method", "NetConnection.Call.Failed", {})))
        status, answer = self.post(self.request("call", ["failing", "m"]))
        self.assertEqual((status, answer["id"]), (200, 1))
        self.assertEqual(answer["error"], {"code": -32002, "message": "no such method",
                                           "data": {"code": "NetConnection.Call.Failed",
                                                    "description": "no such method"}})

    def test_our_own_bug_is_an_internal_error_logged_not_sent(self):
        self.use(Answering("buggy", RuntimeError("secret internals")))
        with self.assertLogs(LOGGER, "ERROR") as logs:
            status, answer = self.post(self.request("call", ["buggy", "m"]))
        self.assertEqual((status, answer), (200, {"jsonrpc": "2.0", "error": {"code": -32603,
                                                                              "message": "Internal error"}, "id": 1}))
        self.assertIn("secret internals", "\n".join(logs.output))
        self.assertIn("Traceback", "\n".join(logs.output))


class RefusalLogTests(PushTestCase):
    """README, Push API: "Refusals are logged, one line per kind every 10 s, with a count"."""

    def test_one_line_per_kind_every_10_seconds_with_the_count(self):
        clock = Clock()
        resource = PushResource(PushAPI({"shop": self.shop}), "s3cret", clock=clock)
        with self.assertLogs(LOGGER, "WARNING") as logs:
            for _ in range(5):
                resource.refuse_early(Headers({}), 10)
            clock.advance(9.9)
            resource.refuse_early(Headers({}), 10)
            self.assertEqual(len(logs.output), 1)
            clock.advance(0.1)
            resource.refuse_early(Headers({}), 10)
        self.assertEqual(len(logs.output), 2)
        self.assertIn("bearer token (HTTP 401)", logs.output[0])
        self.assertTrue(logs.output[1].endswith("(5 more since the last line)"), logs.output[1])
