"""What a client sees when the backend, or the gateway itself, does something odd (README, "Behaviour").

- An error object whose ``data`` the client's AMF cannot carry still reaches the client as ``_error``
  with its code and message; the data is dropped, with a log line.
- A connect whose parameters JSON cannot carry (a cycle) is rejected, and the backend never asked.
- Without a @publish / @play hook a stream is allowed; with ``fail-open = yes`` it is allowed when the
  hook's backend is down.
- A fault of our own in the backend path (not a BackendError) is an ``_error`` without its internals,
  for a call and for a publish decision: "never with a stack trace".
"""
from twisted.internet.defer import fail

from fmspy_gateway.rtmp.amf import ASObject

from .test_application import APP_LOGGER, DOWN, ROUTES, GatewayTestCase, rpc_error


class Bug(Exception):
    pass


class ErrorDataTests(GatewayTestCase):
    def test_error_data_the_client_cannot_carry_is_dropped_and_logged(self):
        self.connected()
        self.backend.answers["math.divide"] = rpc_error(1001, "division by zero", {"n": int("9" * 400)})
        with self.assertLogs(APP_LOGGER, "WARNING") as logs:
            info = self.error_of("divide", 1, 0)
        self.assertEqual(info["description"], "division by zero")
        self.assertEqual(info["application"], {"code": 1001, "message": "division by zero", "data": None})
        self.assertIn("backend data dropped", "\n".join(logs.output))
        self.assertIn("beyond their range (at data.n)", "\n".join(logs.output))


class ConnectParameterTests(GatewayTestCase):
    def test_connect_arguments_json_cannot_carry_are_rejected_without_asking_the_backend(self):
        loop = ASObject(name="loop")
        loop["self"] = loop
        info = self.rejection(loop)
        self.assertTrue(info["description"].startswith("Cannot pass the connect parameters to the backend: "),
                        info["description"])
        self.assertIn("args[0]", info["description"])
        self.assertEqual(self.backend.calls_to("session.open"), [])


class NoStreamHookTests(GatewayTestCase):
    def statuses(self, command, *args):
        self.client.send_command(command, 0, None, args, stream_id=1)
        return [c.arguments[0]["code"] for c in self.pump() if c.name == "onStatus"]

    def test_without_hooks_publish_and_play_are_allowed_and_the_backend_not_asked(self):
        self.connected()
        self.call("createStream", transaction_id=3)
        self.assertEqual(self.statuses("publish", "cam", "live")[0], "NetStream.Publish.Start")
        self.assertNotIn("stream.publish", self.backend.methods())
        self.assertIsNotNone(self.app.live.get("cam").publisher)


class StreamHookFailOpenTests(GatewayTestCase):
    routes = ROUTES + "@publish = stream.publish endpoint=" + DOWN + "\n"
    options = "fail-open = yes\n"

    def test_a_publish_is_allowed_when_the_hooks_backend_is_down(self):
        self.connected()
        self.call("createStream", transaction_id=3)
        self.client.send_command("publish", 0, None, ("cam", "live"), stream_id=1)
        codes = [c.arguments[0]["code"] for c in self.pump() if c.name == "onStatus"]
        self.assertEqual(codes[0], "NetStream.Publish.Start")
        self.assertEqual(self.network.refused, 1)


class OwnFaultTests(GatewayTestCase):
    routes = ROUTES + "@publish = stream.publish\n"

    def break_the_backend_path(self):
        calls = []

        def call(*args, **kwargs):
            calls.append(args)
            return fail(Bug("secret internals at 0xdeadbeef"))
        self.app.rpc.call = call
        return calls

    def test_a_call_gets_an_error_without_internals(self):
        self.connected()
        calls = self.break_the_backend_path()
        (reply,) = self.call("echo", 1)
        self.assertEqual(len(calls), 1)
        info = reply.arguments[0]
        self.assertEqual((reply.name, info["code"]), ("_error", "NetConnection.Call.Failed"))
        self.assertNotIn("secret internals", info["description"])
        self.assertNotIn("Traceback", info["description"])
        self.flushLoggedErrors(Bug)

    def test_a_publish_decision_fails_without_internals(self):
        self.connected()
        self.call("createStream", transaction_id=3)
        self.break_the_backend_path()
        self.client.send_command("publish", 0, None, ("cam", "live"), stream_id=1)
        statuses = [c.arguments[0] for c in self.pump() if c.name == "onStatus"]
        self.assertEqual([s["level"] for s in statuses], ["error"])
        self.assertNotIn("secret internals", statuses[0]["description"])
        self.assertIsNone(self.app.live.get("cam"))
        self.flushLoggedErrors(Bug)
