"""``fmspy-gateway chat`` as users run it: real processes typing to each other through a loopback server."""
import os
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.chat import ChatApplication
from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.app.hub import LocalHub

from ..e2e.server import LoopbackServerMixin


class ChatProcess(ProcessProtocol):
    """One ``fmspy-gateway chat`` process: lines it printed, what it wrote to stderr, how it ended."""

    def __init__(self):
        self.lines = []
        self.err = b""
        self.ended = Deferred()
        self.exit_code = None
        self._partial = b""
        self._waiting = []    # (predicate, Deferred)

    def outReceived(self, data):
        *complete, self._partial = (self._partial + data).split(b"\n")
        self.lines.extend(line.decode() for line in complete)
        waiting, self._waiting = self._waiting, []
        for predicate, d in waiting:
            if predicate(self.lines):
                d.callback(list(self.lines))
            else:
                self._waiting.append((predicate, d))

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        self.exit_code = reason.value.exitCode
        for _, d in self._waiting:
            d.errback(AssertionError(f"process ended before the expected output; stdout: {self.lines!r}, "
                                     f"stderr: {self.err!r}"))
        self._waiting = []
        self.ended.callback(self.exit_code)

    def printed(self, line: str) -> Deferred:
        """Fires with all lines so far once ``line`` has been printed."""
        return self._until(lambda lines: line in lines)

    def _until(self, predicate) -> Deferred:
        if predicate(self.lines):
            return succeed(list(self.lines))
        if self.ended.called:
            return fail(AssertionError(f"process ended before the expected output; stdout: {self.lines!r}, "
                                       f"stderr: {self.err!r}"))
        d = Deferred()
        self._waiting.append((predicate, d))
        return d

    def type(self, text: str):
        self.transport.write(text.encode())


class ChatCommandLineTests(LoopbackServerMixin, TestCase):
    def applications(self):
        hub = LocalHub()
        self.chat = ChatApplication("chat", hub=hub)
        return {"chat": self.chat, "echotest": EchoApplication("echotest", hub=hub)}

    def start(self, path, name="someone"):
        process = ChatProcess()
        argv = [sys.executable, "-m", "fmspy_gateway.cli", "chat", self.url(path), "--name", name]
        reactor.spawnProcess(process, sys.executable, argv, env=dict(os.environ))

        def stop():
            if not process.ended.called:
                process.transport.signalProcess("KILL")
                return process.ended.addErrback(lambda _: None)
        self.addCleanup(stop)
        return process

    @inlineCallbacks
    def join(self, room, name):
        process = self.start(f"chat/{room}", name)
        yield process.printed(f"<{name}> is entering chat...")
        return process

    @inlineCallbacks
    def test_two_rooms_of_terminals(self):
        alice = yield self.join("lobby", "alice")
        bob = yield self.join("lobby", "bob")
        yield alice.printed("<bob> is entering chat...")
        carol = yield self.join("dev", "carol")

        alice.type("hello bob\n")
        yield bob.printed("<alice>: hello bob")
        yield alice.printed("<alice>: hello bob")
        # A line typed right before EOF is still said, and answered, before the client leaves.
        carol.type("anyone in dev?\n")
        carol.transport.closeStdin()
        self.assertEqual((yield carol.ended), 0, carol.err)
        self.assertEqual(carol.lines, ["<carol> is entering chat...", "<carol>: anyone in dev?"])
        self.assertEqual(carol.err, b"")

        bob.type("/quit\n")
        self.assertEqual((yield bob.ended), 0, bob.err)
        yield alice.printed("<bob> is leaving chat...")
        alice.transport.closeStdin()
        self.assertEqual((yield alice.ended), 0, alice.err)
        lobby = ["<alice> is entering chat...", "<bob> is entering chat...", "<alice>: hello bob"]
        self.assertEqual(alice.lines, lobby + ["<bob> is leaving chat..."])
        self.assertEqual(bob.lines, lobby[1:])
        self.assertEqual((alice.err, bob.err), (b"", b""))
        self.assertEqual((yield self.chat.clients()), [])

    @inlineCallbacks
    def test_unknown_application_exits_1_with_one_line(self):
        process = self.start("nosuchapp")
        self.assertEqual((yield process.ended), 1)
        self.assertEqual(process.lines, [])
        lines = process.err.decode().splitlines()
        self.assertEqual(len(lines), 1, process.err)
        self.assertIn("NetConnection.Connect.InvalidApp", lines[0])
        self.assertIn("nosuchapp", lines[0])
        self.assertNotIn("Traceback", lines[0])

    @inlineCallbacks
    def test_not_a_chat_application_exits_1(self):
        process = self.start("echotest")
        self.assertEqual((yield process.ended), 1)
        self.assertEqual(process.err.decode().splitlines(),
                         ["error: NetConnection.Call.Failed: Method 'identify' not found."])

    @inlineCallbacks
    def test_server_closing_the_connection_exits_1(self):
        process = yield self.join("lobby", "dropped")
        yield self.factory.close_all("test says goodbye")
        self.assertEqual((yield process.ended), 1)
        lines = process.err.decode().splitlines()
        self.assertEqual(len(lines), 1, process.err)
        self.assertIn("connection closed by the server", lines[0])

    @inlineCallbacks
    def test_refused_tcp_connection_exits_1(self):
        # A port nobody listens on any more: bind one, then let it go.
        port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        process = ChatProcess()
        argv = [sys.executable, "-m", "fmspy_gateway.cli", "chat", f"rtmp://127.0.0.1:{number}/chat", "--name", "x"]
        reactor.spawnProcess(process, sys.executable, argv, env=dict(os.environ))
        self.assertEqual((yield process.ended), 1)
        lines = process.err.decode().splitlines()
        self.assertEqual(len(lines), 1, process.err)
        self.assertIn("cannot connect", lines[0])
