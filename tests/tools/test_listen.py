"""``fmspy-gateway listen`` sees what the push API sends, as in the README's gateway walkthrough.

The walkthrough's push reached 0 clients because nothing stayed connected
(issue 8, item 16): here the listener and ``examples/gateway/push.py`` run as
the walkthrough runs them, against the example backend and the gateway.
"""
import os
import signal
import textwrap

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway.tools.listen import format_call

from ..e2e.gateway import EXAMPLE, TOKEN, GatewayMixin
from .process import run_cli, run_tool


def test_format_call_is_one_line_of_json_arguments():
    assert format_call("news", ["Sale starts now", 2, {"a": [1, None]}]) == \
        'news("Sale starts now", 2, {"a": [1, null]})'
    assert format_call("tick", []) == "tick()"
    assert "\n" not in format_call("x", ["two\nlines"])


def test_readme_shows_call_py_as_it_is():
    """The walkthrough prints call.py; the test below runs the file, so the two must not drift apart."""
    readme = open(os.path.join(EXAMPLE, "..", "..", "README.md"), encoding="utf-8").read()
    shown = readme.split("`examples/gateway/call.py` is:", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    source = open(os.path.join(EXAMPLE, "call.py"), encoding="utf-8").read()
    assert textwrap.dedent(shown).strip() == source[source.index("import sys"):].strip()


class ListenTests(GatewayMixin, TestCase):
    @inlineCallbacks
    def listener(self, *connect_args):
        process = run_cli(self, "listen", self.url("lobby"), *connect_args)
        yield process.said("connected to", stream="err")
        return process

    @inlineCallbacks
    def push(self, *args):
        """Runs examples/gateway/push.py as the README does; returns the lines it printed."""
        process = run_tool(self, [os.path.join(EXAMPLE, "push.py"), "--url",
                                  f"http://127.0.0.1:{self.http_port}/rpc", "--token", TOKEN, *args])
        code = yield process.ended
        self.assertEqual(code, 0, (process.out, process.err))
        return process.out

    @inlineCallbacks
    def test_a_broadcast_arrives_at_the_listener(self):
        listener = yield self.listener("let-me-in", "bob")
        self.assertIn("Hello, bob", listener.err[0])      # what the @connect hook answered
        printed = yield self.push("shop", "lobby", "news", "Sale starts now")
        self.assertEqual(printed, ["news reached 1 client in shop/lobby"])    # the listener
        yield listener.said('news("Sale starts now")')
        self.assertEqual(listener.out, ['news("Sale starts now")'])
        listener.transport.signalProcess(signal.SIGINT)    # Ctrl+C leaves quietly
        self.assertEqual((yield listener.ended), 0, listener.err)

    @inlineCallbacks
    def test_the_walkthrough_calls_print_what_the_readme_says(self):
        """examples/gateway/call.py, run with this interpreter (the venv's), prints the README's lines."""
        process = run_tool(self, [os.path.join(EXAMPLE, "call.py"), self.url("lobby")])
        self.assertEqual((yield process.ended), 0, process.err)
        self.assertEqual(process.out, [
            "{'welcome': 'Hello, alice'}",
            "com.example.User 2009-02-13 23:31:30.123000",
            "{'apple': 1}",
            "division by zero {'code': 1001, 'message': 'division by zero', 'data': {'a': 1}}",
        ])

    @inlineCallbacks
    def test_a_refused_connect_is_one_line(self):
        process = run_cli(self, "listen", self.url("lobby"), "wrong-token")
        self.assertEqual((yield process.ended), 1)
        self.assertEqual(len(process.err), 1, process.err)
        self.assertIn("A valid token is required.", process.err[0])

    @inlineCallbacks
    def test_the_server_closing_the_connection_ends_it_with_one_line(self):
        listener = yield self.listener("let-me-in", "carol")
        yield self.service.getServiceNamed("rtmp").args[1].close_all("test says goodbye")
        self.assertEqual((yield listener.ended), 1)
        self.assertEqual(len(listener.err), 2, listener.err)      # "connected to ...", then why it ended
        self.assertIn("the server closed the connection", listener.err[1])
