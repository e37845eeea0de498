"""``twistd -n fmspy-gateway`` in its own process serves /status/, /api/v1/ and /metrics; JSON log lines.

The bundled fmspy.cfg (as a fresh clone has it, ports moved to 0) must give
the status page, the API and the metrics with no further setting; with
``--logger fmspy_gateway.server.jsonlog.observer`` every line is JSON, and a
line about a connection names its client, address and application.
"""
import json
import os
import re
import shutil
import signal
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from fmspy_gateway.server.client import connect_client

from .test_twistd import HTTP_LISTENING, Twistd

BUNDLED = os.path.join(os.path.dirname(__file__), "..", "..", "fmspy.cfg")


class OperationsUnderTwistdTests(TestCase):
    timeout = 60

    def start(self, *args, config_text=None):
        folder = tempfile.mkdtemp(prefix="fmspy-ops-twistd-")
        self.addCleanup(shutil.rmtree, folder, True)
        config = os.path.join(folder, "fmspy.cfg")
        if config_text is None:
            with open(BUNDLED) as source:
                config_text = source.read()
        # The bundled file's RTMP listens on every interface; a test stays on loopback.
        config_text = re.sub(r"(?m)^interface =\s*;.*$", "interface = 127.0.0.1", config_text, count=1)
        with open(config, "w") as f:
            f.write(config_text)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        process = Twistd()
        transport = reactor.spawnProcess(
            process, twistd, [twistd, "-n", "--pidfile=", *args, "fmspy-gateway", "--config", config,
                              "--rtmp-port", "0", "--http-port", "0"], env=dict(os.environ), path=folder)

        def stop():
            if not process.ended.called:
                transport.signalProcess(signal.SIGINT)
            return process.ended
        self.addCleanup(stop)
        self.agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        return process

    @inlineCallbacks
    def http_port(self, process):
        """The [HTTP] port twistd logged (its line may follow RTMP's in a later read)."""
        for _ in range(200):
            match = HTTP_LISTENING.search(process.output)
            if match:
                return int(match.group(1))
            yield deferLater(reactor, 0.05, lambda: None)
        raise AssertionError("twistd did not log its HTTP port:\n" + process.output.decode())

    @inlineCallbacks
    def get(self, port, path, method=b"GET", token=None):
        headers = Headers({b"authorization": [f"Bearer {token}".encode()]} if token else {})
        response = yield self.agent.request(method, f"http://127.0.0.1:{port}{path}".encode(), headers)
        body = yield readBody(response)
        return response.code, body

    @inlineCallbacks
    def test_the_bundled_config_serves_status_api_and_metrics(self):
        process = self.start()
        yield process.listening
        http_port = yield self.http_port(process)
        code, body = yield self.get(http_port, "/")
        self.assertEqual(code, 200)
        self.assertIn(b"/status/", body)
        code, body = yield self.get(http_port, "/status/")
        self.assertEqual(code, 200)
        self.assertIn(b'<script src="status.js">', body)
        for name in ("status.js", "status.css"):
            code, _ = yield self.get(http_port, f"/status/{name}")
            self.assertEqual(code, 200, name)
        code, body = yield self.get(http_port, "/api/v1/summary")
        self.assertEqual(code, 200)                       # no admin-token in the bundled file: reads open
        summary = json.loads(body)
        self.assertEqual(summary["connections"], 0)
        self.assertNotEqual(summary["pid"], os.getpid())  # the twistd process's own
        code, body = yield self.get(http_port, "/metrics")
        self.assertEqual(code, 200)
        self.assertIn(b"fmspy_uptime_seconds", body)
        code, body = yield self.get(http_port, "/examples/")
        self.assertEqual(code, 200)
        self.assertIn(b"fmspy-gateway examples", body)

    @inlineCallbacks
    def test_json_lines_name_the_client(self):
        with open(BUNDLED) as f:
            text = f.read()
        text = re.sub(r"(?m)^admin-token =.*$", "admin-token = t0ken", text)
        process = self.start("--logger", "fmspy_gateway.server.jsonlog.observer", config_text=text)
        rtmp_port = yield process.listening
        http_port = yield self.http_port(process)
        client = yield connect_client(f"rtmp://127.0.0.1:{rtmp_port}/echotest", reactor=reactor)
        code, body = yield self.get(http_port, "/api/v1/clients", token="t0ken")
        client_id = json.loads(body)["clients"][0]["id"]
        # The log's address index is rebuilt at most every 50 ms (jsonlog.REINDEX_CHANGED): let it see alice.
        yield deferLater(reactor, 0.1, lambda: None)
        code, _ = yield self.get(http_port, f"/api/v1/clients/{client_id}", method=b"DELETE", token="t0ken")
        self.assertEqual(code, 200)
        yield client.closed
        # Stop twistd so that every line is written, then read them all.
        process.transport.signalProcess("INT")
        yield process.ended
        lines = [line for line in process.output.decode().splitlines() if line.strip()]
        records = [json.loads(line) for line in lines]             # every line is JSON
        for record in records:
            self.assertLessEqual({"time", "level", "logger", "message"}, set(record), record)
        closing = [r for r in records if "closing: disconnected by an administrator" in r["message"]]
        self.assertEqual(len(closing), 1, lines)
        self.assertEqual((closing[0]["client"], closing[0]["app"]), (client_id, "echotest"))
        self.assertTrue(closing[0]["address"].startswith("127.0.0.1:"))
        self.assertTrue(any("RTMP listening on 127.0.0.1" in r["message"] for r in records))
        # Polling GETs stay out of the access log; the DELETE is in it.
        self.assertFalse([r for r in records if '"GET /api/v1/clients' in r["message"]])
        self.assertEqual(len([r for r in records if f'"DELETE /api/v1/clients/{client_id}' in r["message"]]), 1)
