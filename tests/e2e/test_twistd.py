"""The server as users start it: ``twistd -n fmspy-gateway --config FILE --rtmp-port N`` in its own process."""
import os
import re
import signal
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from fmspy_gateway.server.client import connect_client

CONFIG = """
[RTMP]
port = 1935
[HTTP]
enabled = yes
port = 3000
[EchoApplication]
enabled = yes
name = echotest
[ChatApplication]
enabled = yes
name = chat
"""

LISTENING = re.compile(rb"RTMPServerFactory starting on (\d+)")


class Twistd(ProcessProtocol):
    """Collects twistd's log; fires ``listening`` with the RTMP port the OS chose."""

    def __init__(self):
        self.output = b""
        self.listening = Deferred()
        self.ended = Deferred()

    def outReceived(self, data):
        self.output += data
        match = LISTENING.search(self.output)
        if match and not self.listening.called:
            self.listening.callback(int(match.group(1)))

    errReceived = outReceived

    def processEnded(self, reason):
        if not self.listening.called:
            self.listening.errback(RuntimeError("twistd ended before listening:\n" + self.output.decode()))
        self.ended.callback((reason.value.exitCode, reason.value.signal))


class TwistdTests(TestCase):
    def start(self, *args):
        config = os.path.join(self.mktemp_dir(), "fmspy.cfg")
        with open(config, "w") as f:
            f.write(CONFIG)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        process = Twistd()
        self.transport = reactor.spawnProcess(
            process, twistd, [twistd, "-n", "--pidfile=", "fmspy-gateway", "--config", config, *args],
            env=dict(os.environ), path=os.path.dirname(config))
        self.addCleanup(self.stop, process)
        return process

    def mktemp_dir(self):
        import tempfile
        path = tempfile.mkdtemp(prefix="fmspy-twistd-")
        self.addCleanup(__import__("shutil").rmtree, path, True)
        return path

    def stop(self, process):
        if not process.ended.called:
            self.transport.signalProcess(signal.SIGINT)
        return process.ended

    @inlineCallbacks
    def test_twistd_serves_on_the_port_given(self):
        process = self.start("--rtmp-port", "0", "--http-port", "0")
        port = yield process.listening
        client = yield connect_client(f"rtmp://127.0.0.1:{port}/echotest", reactor=reactor)
        self.assertEqual((yield client.call("echo", ["through twistd", 1.5])), ["through twistd", 1.5])
        yield client.close()
        self.assertIn(b"pyamf codec: ", process.output)
        self.assertIn(b"chat (ChatApplication), echotest (EchoApplication)", process.output)
        self.transport.signalProcess(signal.SIGINT)
        # A clean stop: twistd shuts down, then (as Twisted does) re-raises SIGINT on itself.
        self.assertEqual((yield process.ended), (None, signal.SIGINT), process.output.decode())
        self.assertIn(b"Server Shut Down.", process.output)

    @inlineCallbacks
    def test_bad_config_is_one_line_not_a_traceback(self):
        config = os.path.join(self.mktemp_dir(), "bad.cfg")
        with open(config, "w") as f:
            f.write("[RTMP]\nkeepAliveTimeout = soon\n")
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        process = Twistd()
        self.transport = reactor.spawnProcess(process, twistd, [twistd, "-n", "--pidfile=", "fmspy-gateway",
                                                                "--config", config], env=dict(os.environ))
        process.listening.addErrback(lambda _: None)
        code, _ = yield process.ended
        self.assertEqual(code, 1)
        self.assertNotIn(b"Traceback", process.output)
        self.assertIn(b"[RTMP] keepAliveTimeout", process.output)
