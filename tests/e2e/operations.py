"""A whole server for the operations tests: twistd's wiring, a real backend, ffmpeg publishing, our clients.

``OperationsMixin.setUp`` starts the example JSON-RPC backend, then the
server as ``tap.makeService`` builds it with an ``admin-token``, the live
application, the example gateway (``shop``) and a gateway whose backend is
down (``broken``, fail-open so that clients still connect); ffmpeg publishes
H.264/AAC to ``live/cam``.  ``http()`` requests the [HTTP] site.
"""
import json
import os
import shutil
import socket
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from fmspy_gateway import tap

from ..conftest import require_tool
from .gateway import EXAMPLE, BackendProcess

ADMIN_TOKEN = "adm1n"
#: Picture and sound ffmpeg publishes, to compare with what the API reports.
WIDTH, HEIGHT, RATE = 320, 240, 25
WAIT = 20


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@inlineCallbacks
def wait_for(what, probe, timeout=WAIT):
    """Ask ``probe()`` (a value or a Deferred of one) until it gives something true; fail after ``timeout`` s."""
    deadline = reactor.seconds() + timeout
    while True:
        value = yield probe()
        if value:
            return value
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        yield deferLater(reactor, 0.2, lambda: None)

class _Process(ProcessProtocol):
    def __init__(self):
        self.output = b""
        self.ended = Deferred()

    def outReceived(self, data):
        self.output = (self.output + data)[-20000:]

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(None)


class OperationsMixin:
    #: Extra lines for the [HTTP] section.
    http_options = f"admin-token = {ADMIN_TOKEN}"
    #: Extra lines for the [RTMP] section.
    rtmp_options = ""
    publish = True

    @inlineCallbacks
    def setUp(self):
        self.backend = BackendProcess()
        self.addCleanup(self.backend.stop)
        backend_port = yield self.backend.started
        folder = tempfile.mkdtemp(prefix="fmspy-ops-")
        self.addCleanup(shutil.rmtree, folder, True)
        routes = os.path.abspath(os.path.join(EXAMPLE, "routes.cfg"))
        config = os.path.join(folder, "fmspy.cfg")
        with open(config, "w") as f:
            f.write(f"""
[RTMP]
port = 0
interface = 127.0.0.1
{self.rtmp_options}
[HTTP]
enabled = yes
port = 0
examples-enabled = yes
{self.http_options}
[LiveApplication]
enabled = yes
name = live
[GatewayApplication:shop]
enabled = yes
name = shop
endpoint = http://127.0.0.1:{backend_port}/rpc
timeout = 5
routes-file = {routes}
[GatewayApplication:broken]
enabled = yes
name = broken
endpoint = http://127.0.0.1:{closed_port()}/rpc
timeout = 2
routes = shop
routes-file = {routes}
fail-open = yes
""")
        options = tap.Options()
        options.parseOptions(["--config", config])
        self.service = tap.makeService(options, reactor=reactor)
        self.service.startService()
        self.addCleanup(self._close_backend_pool)       # runs after stopService (cleanups are LIFO)
        self.addCleanup(self.service.stopService)
        self.rtmp_port = self.service.getServiceNamed("rtmp").args[0]
        self.http_port = self.service.getServiceNamed("http").args[0]
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)
        if self.publish:
            self.start_ffmpeg()

    @inlineCallbacks
    def _close_backend_pool(self):
        """Close backend connections a last answer put back in the gateway's pool during the stop.

        A @disconnect notification answered while the server stops can return its connection to the
        pool after the stop closed it; its idle timer would outlive the test.
        """
        yield deferLater(reactor, 0.05, lambda: None)
        yield self.service.getServiceNamed("applications").pool.closeCachedConnections()

    def start_ffmpeg(self, name="cam", seconds=60):
        ffmpeg = require_tool("ffmpeg")
        self.ffmpeg = _Process()
        args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-re",
                "-f", "lavfi", "-i", f"testsrc=size={WIDTH}x{HEIGHT}:rate={RATE}",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", str(seconds),
                "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-tune", "zerolatency",
                "-g", "25", "-b:v", "300k", "-c:a", "aac", "-ac", "2", "-ar", "44100",
                "-f", "flv", f"rtmp://127.0.0.1:{self.rtmp_port}/live/{name}"]
        transport = reactor.spawnProcess(self.ffmpeg, ffmpeg, args, env=dict(os.environ))

        def stop():
            try:
                transport.signalProcess("KILL")
            except ProcessExitedAlready:
                pass
            return self.ffmpeg.ended

        self.addCleanup(stop)

    def rtmp_url(self, path):
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{path}"

    @inlineCallbacks
    def http(self, path, method=b"GET", token=ADMIN_TOKEN):
        """(status, headers, body bytes) of one request to the [HTTP] site."""
        headers = Headers({b"authorization": [f"Bearer {token}".encode()]} if token else {})
        response = yield self.agent.request(method, f"http://127.0.0.1:{self.http_port}{path}".encode(), headers)
        body = yield readBody(response)
        return (response.code, response.headers, body)

    @inlineCallbacks
    def api(self, path, token=ADMIN_TOKEN, method=b"GET"):
        code, _, body = yield self.http(f"/api/v1/{path}", method, token)
        return (code, json.loads(body))

    def wait_for(self, what, probe, timeout=WAIT):
        return wait_for(what, probe, timeout)

    @inlineCallbacks
    def live_stream(self, name="cam"):
        """The API's entry for live/<name> once it is published with both codecs and a rate."""
        def probe():
            def pick(answer):
                for stream in answer[1]:
                    if (stream["name"] == name and stream["publishing"] and stream["video"]
                            and stream["video"]["codec"] and stream["audio"] and stream["audio"]["codec"]
                            and stream["bits_in_per_second"] > 0):
                        return stream
                return None
            return self.api("streams").addCallback(pick)
        stream = yield self.wait_for(f"live/{name} in /api/v1/streams", probe)
        return stream
