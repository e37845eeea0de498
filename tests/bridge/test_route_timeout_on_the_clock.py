"""README, "Behaviour", Errors: faults get an ``_error`` "within the route's timeout" -- proved on a
task.Clock, never the wall clock.

The route ``slow`` has ``timeout=2``; the application's ``timeout = 5`` applies to every other route.
The timeout covers the whole exchange: waiting in the endpoint's queue, sending, and reading a body
the backend started and never finished.  One tick before it, the client has no answer; at it, the
``_error`` says which timeout fired.
"""
from .test_application import ENDPOINT, GatewayTestCase


class RouteTimeoutTests(GatewayTestCase):
    options = "max-concurrent = 1\n"

    def setUp(self):
        super().setUp()
        self.connected()

    def assert_silent_until(self, seconds, name):
        """No reply before ``seconds`` of the clock (from now); at ``seconds`` the timeout's _error."""
        self.clock.advance(seconds - 0.001)
        self.assertEqual(self.pump(), [])
        self.clock.advance(0.001)
        replies = self.pump()
        for reply in replies:
            info = reply.arguments[0]
            self.assertEqual((reply.name, info["code"]), ("_error", "NetConnection.Call.Failed"))
            self.assertEqual(info["description"], f"'{name}' failed: backend {ENDPOINT} timed out after "
                                                  f"{seconds:g} s")
        return replies

    def test_a_backend_that_never_answers(self):
        self.backend.answers["slow"] = self.backend.hang
        self.assertEqual(self.call("slow"), [])
        self.assertEqual(len(self.assert_silent_until(2, "slow")), 1)

    def test_a_body_started_and_never_finished(self):
        def headers_then_silence(message, request):
            request.setHeader("Content-Type", "application/json")
            request.write(b'{"jsonrpc": "2.0", "result": ')
            return self.backend.hang(message, request)
        self.backend.answers["slow"] = headers_then_silence
        self.assertEqual(self.call("slow"), [])
        self.assertEqual(len(self.assert_silent_until(2, "slow")), 1)
        self.assertEqual(len(self.backend.lost), 1)        # and the connection is dropped, not left open

    def test_time_spent_queued_counts(self):
        # max-concurrent = 1: the second call waits behind the first, and both fail at 2 s, not 2 + 2.
        self.backend.answers["slow"] = self.backend.hang
        self.call("slow", transaction_id=2)
        self.call("slow", transaction_id=3)
        self.assertEqual(len(self.backend.calls_to("slow")), 1)
        replies = self.assert_silent_until(2, "slow")
        self.assertEqual(sorted(r.transaction_id for r in replies), [2, 3])

    def test_other_routes_get_the_applications_timeout(self):
        self.backend.answers["echo"] = self.backend.hang
        self.assertEqual(self.call("echo"), [])
        self.assertEqual(len(self.assert_silent_until(5, "echo")), 1)
