"""The per-route figures the status API and /metrics show operators (bridge/stats.py, read by server/ops.py):
latency percentiles from the gateway's clock, errors counted by kind, routes listed by name.

Time is a task.Clock: a backend that answers after 1.5 s of the clock is a 1.5 s sample.
"""
import json

from .test_application import GatewayTestCase, rpc_error


class RouteFiguresTests(GatewayTestCase):
    def answer_pending(self, value):
        request = self.backend.pending.pop(0)
        message = json.loads(self.backend.requests[-1][2])
        request.write(json.dumps({"jsonrpc": "2.0", "result": value, "id": message["id"]}).encode())
        request.finish()

    def test_latency_percentiles_errors_and_the_route_list(self):
        self.connected()
        self.assertEqual([f.name for f in self.app.stats.snapshot()], ["@connect", "@enter"])
        self.assertIsNone(self.app.stats.figures(self.app.routes.route("echo")).percentile(0.5))   # no sample yet
        self.backend.answers["echo"] = self.backend.hang
        for seconds in (1.5, 0.5, 3.0):
            self.call("echo")
            self.clock.advance(seconds)
            self.answer_pending("ok")
            (reply,) = self.pump()
            self.assertEqual(reply.name, "_result")
        self.backend.answers["math.divide"] = rpc_error(1001, "division by zero")
        self.error_of("divide", 1, 0)
        self.backend.answers["math.divide"] = self.backend.hang
        for _ in range(2):
            self.call("divide", 1, 1)
            self.clock.advance(5)                               # the application's timeout
            self.pump()
        figures = {f.name: f for f in self.app.stats.snapshot()}
        self.assertEqual(list(figures), sorted(figures))
        self.assertEqual(sorted(figures), ["@connect", "@enter", "divide", "echo"])
        echo = figures["echo"]
        self.assertEqual((echo.calls, echo.ok, echo.error_count), (3, 3, 0))
        self.assertEqual((echo.percentile(0.0), echo.percentile(0.5), echo.percentile(0.99)), (0.5, 1.5, 3.0))
        divide = figures["divide"]
        self.assertEqual((divide.calls, divide.ok, divide.error_count), (3, 0, 3))
        self.assertEqual(divide.errors, {"backend-error": 1, "timeout": 2})
        self.assertEqual(divide.percentile(0.99), 5.0)
