"""README, "Configuration" and "HTTP client": ``max-concurrent`` and ``max-queued`` written in fmspy.cfg
bound the gateway as twistd builds it: beyond them a call is refused at once with a clear ``_error``."""
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.calls import CallFailed
from fmspy_gateway.server.client import connect_client

from .gateway import GatewayMixin


class OverloadFromConfigTests(GatewayMixin, TestCase):
    extra_options = "max-concurrent = 1\nmax-queued = 0\n"

    @inlineCallbacks
    def test_a_call_beyond_the_configured_bounds_is_refused_at_once(self):
        client = yield connect_client(self.url(), "let-me-in", "alice", reactor=reactor)
        self.addCleanup(client.close)
        # The @enter notification may still be in flight (max-concurrent 1, no queue): once a call is
        # admitted and answered, nothing else is.
        for _ in range(100):
            try:
                yield client.call("divide", 1, 1)
                break
            except CallFailed:
                yield deferLater(reactor, 0.02, lambda: None)
        slow = client.call("slow", 5)              # the one request in flight (its route times out after 1 s)
        with self.assertRaises(CallFailed) as raised:
            yield client.call("divide", 6, 3)
        self.assertEqual(raised.exception.description,
                         f"'divide' failed: backend http://127.0.0.1:{self.backend_port}/rpc is overloaded: "
                         "0 requests waiting")
        with self.assertRaises(CallFailed):
            yield slow
        self.assertEqual((yield client.call("divide", 6, 3)), 2)     # free again
