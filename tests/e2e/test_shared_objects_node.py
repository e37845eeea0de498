"""npm ``rtmp-client`` (a Node.js client with remote shared objects) against our server, next to our own client.

The package is installed with npm into a cache directory outside the
repository (once; later runs reuse it).  Outside CI the test skips when node
or npm is absent (in CI that fails it, as for every real client); a failed
install fails it.  What rtmp-client can and cannot
do is in docs/PROTOCOL.md section 8: it sends Use, RequestChange,
RequestRemove and Release (with persistence flag 16, read as transient),
reads type 19 only, and ignores Success, so its own changes reach the
others but not its own ``data``.
"""
import json
import os
import shutil
import subprocess

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from fmspy_gateway.server.client import connect_client
from tests.conftest import require_tool

from .server import LoopbackServerMixin
from .test_shared_objects_client import WAIT, AwaitsConditions, Watcher

PACKAGE = "rtmp-client@1.6.3"
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node", "shared_object.js")


def installed_package() -> str:
    """The node_modules directory holding rtmp-client, installed there by npm if it is not yet."""
    require_tool("node")
    npm = require_tool("npm")
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                         "fmspy-gateway-tests", PACKAGE.replace("@", "-"))
    modules = os.path.join(cache, "node_modules")
    if not os.path.exists(os.path.join(modules, "rtmp-client", "package.json")):
        os.makedirs(cache, exist_ok=True)
        done = subprocess.run([npm, "install", "--prefix", cache, "--no-audit", "--no-fund", PACKAGE],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise AssertionError(f"npm install {PACKAGE} failed: {done.stderr.strip()[-500:]}")
    return modules


class NodeClient(AwaitsConditions, ProcessProtocol):
    """The node script: its JSON lines as records, awaited like a Watcher's syncs."""

    def __init__(self):
        self.records = []
        self.ended = Deferred()
        self._buffer = b""
        self.stderr = b""

    def outReceived(self, data):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.records.append(json.loads(line))
        self._check()

    def errReceived(self, data):
        self.stderr = (self.stderr + data)[-5000:]

    def processEnded(self, reason):
        self.ended.callback(None)

    def send(self, command):
        self.transport.write(json.dumps(command).encode() + b"\n")

    def synced(self):
        """Every changeList entry rtmp-client reported, in order."""
        return [entry for record in self.records for entry in record.get("sync", ())]


class NodeSharedObjectTests(LoopbackServerMixin, TestCase):
    timeout = 120

    def setUp(self):
        self.modules = installed_package()
        super().setUp()

    def start_node(self, name="board") -> NodeClient:
        node = NodeClient()
        env = dict(os.environ, NODE_PATH=self.modules)
        process = reactor.spawnProcess(node, shutil.which("node"), ["node", SCRIPT, self.url(), name], env=env)

        def stop():
            try:
                process.signalProcess("KILL")
            except ProcessExitedAlready:
                pass
            return node.ended
        self.addCleanup(stop)
        return node

    @inlineCallbacks
    def test_rtmp_client_and_our_client_share_an_object(self):
        node = self.start_node()
        yield node.until(lambda: any(entry.get("code") == "clear" for entry in node.synced()))
        self.assertIn({"status": "SharedObject.Proxy.Connect", "level": "status"},
                      [r for r in node.records if "status" in r], node.stderr)   # its name for UseSuccess

        ours = yield connect_client(self.url(), reactor=reactor)
        self.addCleanup(ours.close)
        watcher = Watcher(ours, ours.shared_object("board"))
        yield watcher.so.connect().addTimeout(WAIT, reactor)

        # Ours changes a slot: rtmp-client sees a "change" with the value.
        watcher.so.set_property("cell", {"x": 3, "ink": "#"})
        yield node.until(lambda: any(e.get("name") == "cell" for e in node.synced()))
        change = [e for e in node.synced() if e.get("name") == "cell"][0]
        self.assertEqual((change["code"], change["newValue"]), ("change", {"x": 3, "ink": "#"}))

        # rtmp-client changes one: ours sees it.
        node.send({"set": ["from-node", [1, "two"]]})
        yield watcher.until(lambda: watcher.so.data.get("from-node") == [1, "two"])
        self.assertIn(("change", "from-node"), sum(watcher.syncs, []))

        # rtmp-client deletes one (setProperty null is RequestRemove): ours sees "delete", and so does it.
        node.send({"set": ["cell", None]})
        yield watcher.until(lambda: ("delete", "cell") in sum(watcher.syncs, []))
        yield node.until(lambda: any(e.get("code") == "delete" and e.get("name") == "cell" for e in node.synced()))
        self.assertEqual(watcher.so.data, {"from-node": [1, "two"]})

        # A late rtmp-client gets the slots in its first sync, one Change event per slot.
        late = self.start_node()
        yield late.until(lambda: any(e.get("name") == "from-node" for e in late.synced()))
        self.assertEqual([(e["code"], e.get("name"), e.get("newValue")) for e in late.synced()],
                         [("clear", None, None), ("change", "from-node", [1, "two"])])
