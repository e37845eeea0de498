"""The server as users start it: ``twistd -n fmspy-gateway --config FILE --rtmp-port N`` in its own process."""
import os
import re
import signal
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.trial.unittest import TestCase

from fmspy_gateway.server.client import connect_client

from ..conftest import IN_CI

CONFIG = """
[RTMP]
port = 1935
interface = 127.0.0.1
[HTTP]
enabled = yes
port = 3000
interface = 127.0.0.1
[EchoApplication]
enabled = yes
name = echotest
[ChatApplication]
enabled = yes
name = chat
"""

# The address actually bound, logged once listening (issue 8, item 18).
LISTENING = re.compile(rb"RTMP listening on 127\.0\.0\.1:(\d+) \(loopback only\)")
HTTP_LISTENING = re.compile(rb"HTTP listening on 127\.0\.0\.1:(\d+) \(loopback only\)")


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
    def start(self, *args, config=CONFIG):
        text, config = config, os.path.join(self.mktemp_dir(), "fmspy.cfg")
        with open(config, "w") as f:
            f.write(text)
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
        if IN_CI:
            # .ci/run builds cpyamf: a set-up that fell back to the pure codec must not pass.
            self.assertIn(b"pyamf codec: cpyamf (compiled); plain AMF0 fast path: compiled", process.output)
        self.assertRegex(process.output, HTTP_LISTENING)
        self.assertIn(b"chat (ChatApplication), echotest (EchoApplication)", process.output)
        self.transport.signalProcess(signal.SIGINT)
        # A clean stop: twistd shuts down, then (as Twisted does) re-raises SIGINT on itself.
        self.assertEqual((yield process.ended), (None, signal.SIGINT), process.output.decode())
        self.assertIn(b"Server Shut Down.", process.output)

    @inlineCallbacks
    def test_chat_max_name_length_from_the_config(self):
        """``[ChatApplication] maxNameLength``: a longer name is refused with Chat.Error.Invalid and logged."""
        from fmspy_gateway.app.calls import CallFailed

        process = self.start("--rtmp-port", "0", "--http-port", "0",
                             config=CONFIG.replace("name = chat\n", "name = chat\nmaxNameLength = 5\n"))
        port = yield process.listening
        client = yield connect_client(f"rtmp://127.0.0.1:{port}/chat", reactor=reactor)
        with self.assertRaises(CallFailed) as raised:
            yield client.call("identify", "marguerite")
        self.assertEqual((raised.exception.code, raised.exception.description),
                         ("Chat.Error.Invalid", "A name is at most 5 characters"))
        self.assertIsNone((yield client.call("identify", "marge")))
        yield client.close()
        self.assertIn(b"identify refused, a name of 10 characters (maxNameLength 5)", process.output)

    @inlineCallbacks
    def test_fourcc_entries_past_the_configured_bound_are_ignored_and_logged(self):
        """``[RTMP] maxFourCcEntries``: the connect is accepted; entries past it are not read, and that is logged."""
        process = self.start("--rtmp-port", "0", "--http-port", "0",
                             config=CONFIG.replace("interface = 127.0.0.1\n", "interface = 127.0.0.1\n"
                                                   "maxFourCcEntries = 2\n", 1))
        port = yield process.listening
        client = yield connect_client(f"rtmp://127.0.0.1:{port}/echotest", reactor=reactor,
                                      fourCcList=["hvc1", "av01", "vp09", "Opus"])
        self.assertEqual((yield client.call("echo", "still served")), "still served")
        yield client.close()
        self.assertIn(b"connect declared 2 Enhanced RTMP codec entries past maxFourCcEntries (2 per list or map):"
                      b" ignored", process.output)

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

    @inlineCallbacks
    def failed_start(self, *args, config=CONFIG):
        """twistd's whole output for a start that must fail: exactly one line, exit status 1."""
        process = self.start(*args, config=config)
        process.listening.addErrback(lambda _: None)
        code, _ = yield process.ended
        self.assertEqual(code, 1, process.output.decode())
        lines = process.output.decode().splitlines()
        self.assertEqual(len(lines), 1, process.output.decode())
        self.assertTrue(lines[0].startswith("fmspy-gateway: "), lines[0])
        return lines[0]

    def busy_port(self):
        """A loopback port in LISTEN, as another server would hold it, for the rest of the test."""
        listening = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        return listening.getHost().port

    @inlineCallbacks
    def test_rtmp_port_in_use_is_one_line(self):
        busy = self.busy_port()
        line = yield self.failed_start(config=CONFIG.replace("port = 1935", f"port = {busy}"))
        self.assertIn(f"[RTMP] port = {busy}: the port is already in use on 127.0.0.1", line)

    @inlineCallbacks
    def test_http_port_in_use_is_one_line(self):
        busy = self.busy_port()
        line = yield self.failed_start("--rtmp-port", "0", "--http-port", str(busy))
        self.assertIn(f"--http-port {busy}: the port is already in use", line)

    @inlineCallbacks
    def test_invalid_interface_is_one_line(self):
        # TEST-NET-1 (RFC 5737): no machine has it, and no DNS is asked.
        line = yield self.failed_start("--rtmp-port", "0", "--http-port", "0",
                                       config=CONFIG.replace("interface = 127.0.0.1", "interface = 192.0.2.1", 1))
        self.assertIn("[RTMP] interface = 192.0.2.1", line)

    @inlineCallbacks
    def test_unusable_record_dir_is_one_line(self):
        config = CONFIG + "[LiveApplication]\nenabled = yes\nname = live\nrecordDir = fmspy.cfg\n"
        line = yield self.failed_start("--rtmp-port", "0", "--http-port", "0", config=config)
        self.assertIn("[LiveApplication] recordDir = fmspy.cfg", line)
        self.assertIn("not a directory", line)
