"""Every backend fault end to end: our RTMP client (AMF0 and AMF3) -> the gateway as twistd builds it -> a
real HTTP backend on 127.0.0.1 that misbehaves on purpose.

The backend is a ``twisted.web`` Site in this process, on a port the OS picks.
Its answer depends on the JSON-RPC method: ``ok`` answers, ``http500`` /
``http404`` answer with that status, ``notjson`` with "<html>", ``wrongid``
with someone else's id, ``hang`` never answers, ``big`` and ``bigchunked``
send more than ``max-response-bytes``, ``gzipbomb`` sends 128 KB of gzip that
inflates to 128 MB and ``gzipgzip`` the same gzipped twice, ``emptykey``
and ``bigint`` results that AMF0, or any AMF, cannot carry.  Two gateway applications share it:
``faults`` (small timeout, circuit opening after 3 failures) and ``healthy``
(another path, so another endpoint, that always works).  The tests check the
text of the errors, never the clock.
"""
import gzip
import json
import os
import shutil
import socket
import tempfile
import zlib

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from fmspy_gateway import tap
from fmspy_gateway.app.calls import CallFailed
from fmspy_gateway.server.client import connect_client

from ..sites import TrackingSite
from .bystander import MAX_GROWTH, Bystander, resident_bytes

MAX_RESPONSE_BYTES = 64 * 1024
#: The bombs application's limit: above the bomb's compressed size, far below its decoded size.
BOMBS_MAX_RESPONSE_BYTES = 512 * 1024
_BOMB = []


def peak_memory() -> int:
    """VmHWM: the most resident memory this process (the gateway runs in it) has held."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_memory() -> int:
    """Start VmHWM again from the current resident size (Linux: "5" to clear_refs); returns that size."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return resident_bytes()


def gzip_bomb() -> bytes:
    """128 MB of zeros in about 128 KB of gzip (made once: compressing costs a few tenths of a second)."""
    if not _BOMB:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        zeros = bytes(1024 * 1024)
        _BOMB.append(b"".join(compressor.compress(zeros) for _ in range(128)) + compressor.flush())
    return _BOMB[0]


def answer(message, **fields):
    return json.dumps({"jsonrpc": "2.0", **fields, "id": message.get("id")}).encode()


class FaultBackend(Resource):
    """The misbehaving backend; ``seen`` lists the methods that reached it, in order."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.seen = []
        self.open = []          # requests never answered (hang), until they end one way or another

    def render_POST(self, request):
        message = json.loads(request.content.read())
        method = message["method"]
        self.seen.append(method)
        request.setHeader("Content-Type", "application/json")
        if method == "http500":
            request.setResponseCode(500)
            return b"<html><body>Traceback (most recent call last): the backend's own</body></html>"
        if method == "http404":
            request.setResponseCode(404)
            return b"<html>Not Found</html>"
        if method == "notjson":
            return b"<html>"
        if method == "wrongid":
            return json.dumps({"jsonrpc": "2.0", "result": "not yours", "id": message["id"] + 1000}).encode()
        if method == "hang":
            self.open.append(request)
            request.notifyFinish().addBoth(lambda _: self.open.remove(request))
            return NOT_DONE_YET
        if method == "big":
            return answer(message, result="x" * (2 * MAX_RESPONSE_BYTES))
        if method == "bigchunked":
            # No Content-Length: the gateway can only find out while reading.
            request.write(b'{"jsonrpc":"2.0","result":"')
            for _ in range(8):
                request.write(b"x" * (MAX_RESPONSE_BYTES // 4))
            request.write(b'","id":' + str(message["id"]).encode() + b"}")
            return b""
        if method == "error":
            return answer(message, error={"code": 1001, "message": "the backend says no", "data": {"a": 1}})
        if method in ("gzipbomb", "gzipgzip"):
            request.setHeader("Content-Encoding", "gzip" if method == "gzipbomb" else "gzip, gzip")
            return gzip_bomb() if method == "gzipbomb" else gzip.compress(gzip_bomb())
        if method == "emptykey":
            return answer(message, result={"ok": {"": 1}})
        if method == "bigint":
            return answer(message, result={"id": int("9" * 400)})
        return answer(message, result={"method": method, "params": message.get("params")})

    def drop_open_requests(self):
        """Cleanup: requests still waiting (there should be none: the gateway gave up on them) are ended."""
        for request in list(self.open):
            request.channel.transport.abortConnection()


class GatewayFaultTests(TestCase):
    def setUp(self):
        self.backend = FaultBackend()
        healthy = FaultBackend()
        root = Resource()
        root.putChild(b"faults", self.backend)
        root.putChild(b"healthy", healthy)
        self.healthy_backend = healthy
        site = TrackingSite(root)
        listening = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(lambda: gatherResults(list(site.closed)))
        self.addCleanup(listening.stopListening)
        self.addCleanup(self.backend.drop_open_requests)
        port = listening.getHost().port

        # A port nobody listens on: bound (so no other test can take it) but not listening, it refuses.
        unused = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(unused.close)
        unused.bind(("127.0.0.1", 0))
        self.refused_url = f"http://127.0.0.1:{unused.getsockname()[1]}/rpc"
        self.faults_url = f"http://127.0.0.1:{port}/faults"

        folder = tempfile.mkdtemp(prefix="fmspy-gateway-faults-")
        self.addCleanup(shutil.rmtree, folder, True)
        with open(os.path.join(folder, "routes.cfg"), "w") as f:
            f.write(f"""
[faults]
hang     = hang   timeout=0.5
refused  = ok     endpoint={self.refused_url}
*        = *
[healthy]
*        = *
[bombs]
*        = *
""")
        config = os.path.join(folder, "fmspy.cfg")
        with open(config, "w") as f:
            f.write(f"""
[RTMP]
port = 0
interface = 127.0.0.1
[GatewayApplication:faults]
enabled = yes
name = faults
endpoint = {self.faults_url}
timeout = 5
breaker-threshold = 3
breaker-reset = 3600
max-response-bytes = {MAX_RESPONSE_BYTES}
[GatewayApplication:healthy]
enabled = yes
name = healthy
endpoint = http://127.0.0.1:{port}/healthy
timeout = 5
[GatewayApplication:bombs]
enabled = yes
name = bombs
endpoint = {self.faults_url}
timeout = 5
breaker-threshold = 1000
max-response-bytes = {BOMBS_MAX_RESPONSE_BYTES}
[EchoApplication]
enabled = yes
name = echotest
""")
        options = tap.Options()
        options.parseOptions(["--config", config])
        self.service = tap.makeService(options, reactor=reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.rtmp_port = self.service.getServiceNamed("rtmp").args[0]

    @inlineCallbacks
    def connect(self, app="faults", encoding=0):
        client = yield connect_client(f"rtmp://127.0.0.1:{self.rtmp_port}/{app}", object_encoding=encoding,
                                      reactor=reactor)
        self.addCleanup(client.close)
        return client

    @inlineCallbacks
    def failure_of(self, client, method, *args):
        """The CallFailed of a call that must fail: a call failure, one line, no traceback."""
        try:
            value = yield client.call(method, *args)
        except CallFailed as e:
            error = e
        else:
            self.fail(f"{method} answered {value!r} instead of failing")
        self.assertEqual(error.code, "NetConnection.Call.Failed")
        self.assertEqual(error.info["level"], "error")
        self.assertNotIn("Traceback", error.description)
        self.assertNotIn("\n", error.description)
        self.assertNotIn("<html>", error.description)
        return error.description

    @inlineCallbacks
    def check_fault(self, method, expected):
        """``method`` fails the same way for an AMF0 and an AMF3 client; returns the descriptions."""
        descriptions = []
        for encoding in (0, 3):
            client = yield self.connect(encoding=encoding)
            description = yield self.failure_of(client, method)
            self.assertIn(expected, description)
            descriptions.append(description)
        self.assertEqual(self.backend.seen, [method, method])
        return descriptions

    @inlineCallbacks
    def test_a_working_call_for_reference(self):
        for encoding in (0, 3):
            client = yield self.connect(encoding=encoding)
            self.assertEqual((yield client.call("ok", 1, "two")), {"method": "ok", "params": [1, "two"]})

    @inlineCallbacks
    def test_http_500(self):
        descriptions = yield self.check_fault("http500", f"backend {self.faults_url} answered HTTP 500")
        self.assertEqual(descriptions[0], f"'http500' failed: backend {self.faults_url} answered HTTP 500")

    def test_http_404(self):
        return self.check_fault("http404", f"backend {self.faults_url} answered HTTP 404")

    def test_not_json(self):
        return self.check_fault("notjson", f"backend {self.faults_url} sent a bad response: not JSON")

    def test_wrong_id(self):
        return self.check_fault("wrongid", "sent a bad response: wrong id (sent ")

    def test_timed_out_names_the_routes_timeout(self):
        # When it fires (and not before) is proved on a Clock: tests/bridge/test_route_timeout_on_the_clock.py.
        return self.check_fault("hang", f"backend {self.faults_url} timed out after 0.5 s")

    def test_too_large_by_content_length(self):
        return self.check_fault("big", f"is larger than the limit of {MAX_RESPONSE_BYTES} bytes")

    def test_too_large_while_streaming(self):
        return self.check_fault("bigchunked", f"response is larger than the limit of {MAX_RESPONSE_BYTES} bytes")

    @inlineCallbacks
    def test_json_rpc_error_object(self):
        client = yield self.connect(encoding=3)
        with self.assertRaises(CallFailed) as raised:
            yield client.call("error")
        info = raised.exception.info
        self.assertEqual(info["description"], "the backend says no")
        self.assertEqual(info["application"], {"code": 1001, "message": "the backend says no", "data": {"a": 1}})

    @inlineCallbacks
    def test_backend_not_listening_is_refused(self):
        for encoding in (0, 3):
            client = yield self.connect(encoding=encoding)
            description = yield self.failure_of(client, "refused")
            self.assertEqual(description, f"'refused' failed: backend {self.refused_url} refused the connection")
        self.assertEqual(self.backend.seen, [])

    @inlineCallbacks
    def test_circuit_opens_after_3_failures_while_healthy_keeps_answering(self):
        amf0 = yield self.connect(encoding=0)
        amf3 = yield self.connect(encoding=3)
        healthy = yield self.connect("healthy", encoding=3)
        # A 404 proves the backend alive: it does not count.  Three faults of any kind open the circuit.
        yield self.failure_of(amf0, "http404")
        for client, method in ((amf0, "http500"), (amf3, "notjson"), (amf0, "hang")):
            description = yield self.failure_of(client, method)
            self.assertNotIn("unavailable", description)
            self.assertEqual((yield healthy.call("ok", method)), {"method": "ok", "params": [method]})
        self.assertEqual(self.backend.seen, ["http404", "http500", "notjson", "hang"])

        for client in (amf0, amf3):
            for method in ("ok", "http500", "hang"):
                description = yield self.failure_of(client, method)
                self.assertIn(f"backend {self.faults_url} unavailable (circuit open after 3 failures)",
                              description)
        self.assertEqual(self.backend.seen, ["http404", "http500", "notjson", "hang"])   # nothing more arrived

        # The other application, on another endpoint of the same server, is not affected.
        for number in range(3):
            self.assertEqual((yield healthy.call("ok", number)), {"method": "ok", "params": [number]})
        self.assertEqual(self.healthy_backend.seen, ["ok"] * 6)
        # Nor is another endpoint of the same application (refused, but its own circuit is closed).
        description = yield self.failure_of(amf3, "refused")
        self.assertIn("refused the connection", description)


class GatewayHostileBackendTests(TestCase):
    """Issue 8, items 5 and 7: answers that would cost the gateway memory, or that no client could decode.

    The same gateway and backend as GatewayFaultTests; the ``bombs``
    application reads answers up to BOMBS_MAX_RESPONSE_BYTES, so that a bomb's
    compressed size passes the Content-Length check and only its decoded
    size can stop it.
    """

    setUp = GatewayFaultTests.setUp
    connect = GatewayFaultTests.connect
    failure_of = GatewayFaultTests.failure_of

    @inlineCallbacks
    def test_a_gzip_bomb_is_cut_at_the_limit_while_a_bystander_is_served(self):
        gzip_bomb()                     # made before the bystander measures memory
        bystander = Bystander(f"rtmp://127.0.0.1:{self.rtmp_port}/echotest")
        yield bystander.start()
        # The peak, not only what is left at the end: an inflated bomb is freed as soon as it is refused.
        peak_before = reset_peak_memory()
        client = yield self.connect("bombs", encoding=3)
        served = bystander.answered
        stacked = []
        for _ in range(200):            # until the bystander has been answered 5 times during the attack
            description = yield self.failure_of(client, "gzipbomb")
            self.assertIn(f"response is larger than the limit of {BOMBS_MAX_RESPONSE_BYTES} bytes", description)
            stacked.append((yield self.failure_of(client, "gzipgzip")))
            if bystander.answered >= served + 5:
                break
        # Memory first: what the bombs would have cost, had they been inflated before being counted.
        growth = peak_memory() - peak_before
        self.assertLess(growth, MAX_GROWTH, f"the gateway's peak memory grew by {growth} bytes")
        yield bystander.finish(self, min_answered=served + 5)
        self.assertIn("once decompressed", description)
        self.assertIn("Content-Encoding 'gzip, gzip' is stacked; one gzip layer at most is accepted", stacked[0])

    @inlineCallbacks
    def test_results_the_client_cannot_decode_are_errors_naming_why(self):
        amf0 = yield self.connect("bombs", encoding=0)
        amf3 = yield self.connect("bombs", encoding=3)
        description = yield self.failure_of(amf0, "emptykey")
        self.assertEqual(description, "The backend's result for 'emptykey' cannot be sent to the client: cannot send "
                                      'an object with an empty key ("") to an AMF0 client: AMF0 reads it as the end '
                                      "of the object (at result.ok)")
        self.assertEqual((yield amf3.call("emptykey")), {"ok": {"": 1}})
        for client in (amf0, amf3):
            description = yield self.failure_of(client, "bigint")
            self.assertIn("cannot send the integer <int of 1329 bits> to the client", description)
