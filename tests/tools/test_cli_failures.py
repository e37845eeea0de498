"""A server that is down, a wrong URL or an unknown application: each tool says so in one line and exits 1.

``react`` used to print "main function encountered error" and a traceback
for these (issue 8, item 14); a user who mistyped a port learned nothing.
"""
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from ..e2e.server import LoopbackServerMixin
from .process import run_cli


class ToolFailureTests(LoopbackServerMixin, TestCase):
    @inlineCallbacks
    def one_line(self, *args):
        """The single stderr line of a tool run that must fail with status 1."""
        process = run_cli(self, *args)
        code = yield process.ended
        self.assertEqual(code, 1, (process.out, process.err))
        self.assertEqual(len(process.err), 1, process.err)
        self.assertNotIn("Traceback", process.err[0])
        self.assertNotIn("main function encountered error", process.err[0])
        return process.err[0]

    @inlineCallbacks
    def down_url(self, path):
        """A loopback URL nobody listens on any more: bound by the OS, then let go."""
        port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        return f"rtmp://127.0.0.1:{number}/{path}", number

    @inlineCallbacks
    def test_echotest_against_a_server_that_is_down(self):
        url, number = yield self.down_url("echotest")
        line = yield self.one_line("echotest", url)
        self.assertIn(f"nothing listens on 127.0.0.1:{number}", line)
        self.assertIn("start the server", line)

    @inlineCallbacks
    def test_echotest_of_an_unknown_application(self):
        line = yield self.one_line("echotest", self.url("nosuchapp"), "--amf0")
        self.assertIn("no application 'nosuchapp'", line)
        self.assertIn("NetConnection.Connect.InvalidApp", line)

    @inlineCallbacks
    def test_echotest_of_what_is_not_an_rtmp_url(self):
        line = yield self.one_line("echotest", "http://127.0.0.1/echotest")
        self.assertIn("not an rtmp:// URL", line)

    @inlineCallbacks
    def test_chat_against_a_server_that_is_down(self):
        url, number = yield self.down_url("chat/lobby")
        line = yield self.one_line("chat", url, "--name", "alice")
        self.assertIn(f"nothing listens on 127.0.0.1:{number}", line)

    @inlineCallbacks
    def test_listen_against_a_server_that_is_down(self):
        url, number = yield self.down_url("shop/lobby")
        line = yield self.one_line("listen", url)
        self.assertIn(f"nothing listens on 127.0.0.1:{number}", line)

    @inlineCallbacks
    def test_listen_to_an_unknown_application(self):
        line = yield self.one_line("listen", self.url("nosuchapp"))
        self.assertIn("no application 'nosuchapp'", line)
