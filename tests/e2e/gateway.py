"""A real JSON-RPC backend process (examples/gateway/backend.py) and the gateway as twistd builds it."""
import json
import os
import re
import signal
import sys
import tempfile
import shutil

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from fmspy_gateway import tap

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "gateway")
TOKEN = "s3cret"


class BackendProcess:
    """Runs the example backend on 127.0.0.1, port chosen by the OS."""

    def __init__(self):
        from twisted.internet.protocol import ProcessProtocol
        owner = self

        class Output(ProcessProtocol):
            def outReceived(self, data):
                owner.output += data
                match = re.search(rb"listening on (\d+)", owner.output)
                if match and not owner.started.called:
                    owner.started.callback(int(match.group(1)))

            errReceived = outReceived

            def processEnded(self, reason):
                if not owner.started.called:
                    owner.started.errback(RuntimeError(owner.output.decode()))
                owner.ended.callback(None)

        self.output = b""
        self.started = Deferred()
        self.ended = Deferred()
        script = os.path.join(EXAMPLE, "backend.py")
        self.process = reactor.spawnProcess(Output(), sys.executable, [sys.executable, script, "--port", "0"],
                                            env=dict(os.environ))

    def stop(self):
        if not self.ended.called:
            self.process.signalProcess(signal.SIGKILL)
        return self.ended


class GatewayMixin:
    """setUp: backend + gateway (fmspy.cfg written here, routes.cfg and schemas from examples/gateway)."""

    extra_options = ""
    #: More options of the [HTTP] section.
    http_options = ""

    @inlineCallbacks
    def setUp(self):
        self.backend = BackendProcess()
        self.addCleanup(self.backend.stop)
        self.backend_port = yield self.backend.started
        folder = tempfile.mkdtemp(prefix="fmspy-gateway-")
        self.addCleanup(shutil.rmtree, folder, True)
        config = os.path.join(folder, "fmspy.cfg")
        with open(config, "w") as f:
            f.write(f"""
[RTMP]
port = 0
[HTTP]
enabled = yes
port = 0
push-token = {TOKEN}
{self.http_options}
[GatewayApplication:shop]
enabled = yes
name = shop
endpoint = http://127.0.0.1:{self.backend_port}/rpc
timeout = 5
routes-file = {os.path.abspath(os.path.join(EXAMPLE, "routes.cfg"))}
{self.extra_options}
""")
        options = tap.Options()
        options.parseOptions(["--config", config])
        self.service = tap.makeService(options, reactor=reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        # The port each listener was built with: makeService bound its socket already (port 0 -> the real one).
        self.rtmp_port = self.service.getServiceNamed("rtmp").args[0]
        self.http_port = self.service.getServiceNamed("http").args[0]

    def url(self, room="lobby"):
        return f"rtmp://127.0.0.1:{self.rtmp_port}/shop/{room}"

    @property
    def shop(self):
        return self.service.getServiceNamed("rtmp").args[1].applications["shop"]

    def push(self, method, params, token=TOKEN):
        """POST a JSON-RPC request (id 7) to the push API; fires with treq's response."""
        headers = {"Content-Type": ["application/json"]}
        if token is not None:
            headers["Authorization"] = [f"Bearer {token}"]
        body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).encode()
        return treq.post(f"http://127.0.0.1:{self.http_port}/rpc", body, headers=headers, reactor=reactor,
                         persistent=False)

    @inlineCallbacks
    def push_json(self, method, params, token=TOKEN):
        """(HTTP status, the JSON answer) of a push API request."""
        response = yield self.push(method, params, token)
        return response.code, (yield response.json())
