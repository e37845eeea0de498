"""RTMPS and RTMPT as users start them: ``twistd -n fmspy-gateway`` with [RTMPS] and [RTMPT] on."""
import os
import re
import signal
import sys
import tempfile
import shutil

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from fmspy_gateway.server.client import connect_client

from ..conftest import require_system_librtmp
from .certs import TUNNELS_CONFIG, make_certificate

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIG = TUNNELS_CONFIG

PORTS = {name: re.compile(rb"%s listening on 127\.0\.0\.1:(\d+) \(loopback only\)" % name.encode())
         for name in ("RTMP", "RTMPS", "HTTP")}


class Twistd(ProcessProtocol):
    def __init__(self):
        self.output = b""
        self.listening = Deferred()
        self.ended = Deferred()
        self._waiting = []

    def outReceived(self, data):
        self.output += data
        if not self.listening.called and all(p.search(self.output) for p in PORTS.values()):
            self.listening.callback({name: int(p.search(self.output).group(1)) for name, p in PORTS.items()})
        for text, d in list(self._waiting):
            if text in self.output:
                self._waiting.remove((text, d))
                d.callback(None)

    errReceived = outReceived

    def wait_for(self, text: bytes, timeout=10):
        d = Deferred()
        if text in self.output:
            d.callback(None)
        else:
            self._waiting.append((text, d))
        return d.addTimeout(timeout, reactor)

    def processEnded(self, reason):
        if not self.listening.called:
            self.listening.errback(RuntimeError("twistd ended before listening:\n" + self.output.decode()))
        self.ended.callback(reason.value.exitCode)


class TwistdTunnelTests(TestCase):
    timeout = 60

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="fmspy-twistd-tls-")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.cert, self.key = make_certificate(self.work)

    def start(self, certificate=None, key=None):
        config = os.path.join(self.work, "fmspy.cfg")
        with open(config, "w") as f:
            f.write(CONFIG.format(certificate=certificate or self.cert, key=key or self.key))
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        process = Twistd()
        self.transport = reactor.spawnProcess(
            process, twistd, [twistd, "-n", "--pidfile=", "fmspy-gateway", "--config", config],
            env=dict(os.environ), path=self.work)
        self.addCleanup(self.stop, process)
        return process

    def stop(self, process):
        if not process.ended.called:
            self.transport.signalProcess(signal.SIGINT)
        return process.ended

    def trust(self):
        with open(self.cert, "rb") as f:
            return optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(f.read()))

    @inlineCallbacks
    def test_rtmps_rtmpt_and_a_certificate_renewed_on_sighup(self):
        process = self.start()
        ports = yield process.listening
        self.assertIn(b"RTMPS: certificate CN=localhost, valid until", process.output)
        old_trust = self.trust()
        client = yield connect_client(f"rtmps://localhost:{ports['RTMPS']}/echotest", reactor=reactor,
                                      tls=old_trust)
        self.assertEqual((yield client.call("echo", "tls")), "tls")

        # librtmp over RTMPT on the [HTTP] site.
        python = require_system_librtmp()
        empty = os.path.join(self.work, "none.json")
        with open(empty, "w") as f:
            f.write("[]")
        out, err, code = yield getProcessOutputAndValue(
            python, [os.path.join(HERE, "librtmp_echo.py"), f"rtmpt://127.0.0.1:{ports['HTTP']}/echotest", empty],
            env=dict(os.environ), reactor=reactor)
        self.assertEqual(code, 0, err.decode(errors="replace"))
        self.assertNotIn(b"POST /idle/", process.output)          # polls stay out of the log

        # Renewal: new files in place, SIGHUP; the open connection stays, new ones get the new certificate.
        renewed = make_certificate(self.work)
        os.replace(renewed[0], self.cert)
        os.replace(renewed[1], self.key)
        self.transport.signalProcess(signal.SIGHUP)
        yield process.wait_for(b"RTMPS: certificate reloaded: CN=localhost")
        self.assertEqual((yield client.call("echo", "still")), "still")
        again = yield connect_client(f"rtmps://localhost:{ports['RTMPS']}/echotest", reactor=reactor,
                                     tls=self.trust())
        self.assertEqual((yield again.call("echo", "renewed")), "renewed")
        with self.assertRaises(Exception):
            yield connect_client(f"rtmps://localhost:{ports['RTMPS']}/echotest", reactor=reactor, tls=old_trust)
        yield client.close()
        yield again.close()

    @inlineCallbacks
    def test_a_missing_certificate_is_one_line_and_exit_1(self):
        missing = os.path.join(self.work, "missing.pem")
        process = self.start(certificate=missing)
        with self.assertRaises(RuntimeError):
            yield process.listening
        code = yield process.ended
        self.assertEqual(code, 1)
        self.assertEqual(process.output.decode().strip().splitlines(),
                         [f"fmspy-gateway: [RTMPS] certificate = {missing}: no such file"])
