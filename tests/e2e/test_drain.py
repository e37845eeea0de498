"""A drain end to end: the server as twistd builds it, ``fmspy-gateway drain`` as users run it, real peers.

An Enhanced RTMP client (our own: no third-party client here sends capsEx
yet; ffmpeg 5.1 has no ``-rtmp_enhanced_codecs``) declares Reconnect and
gets ``NetConnection.Connect.ReconnectRequest`` with the target's tcUrl;
rtmpdump, a legacy player, is not asked and is closed when the grace ends;
a connection attempted during the drain is refused.
"""
import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionRefusedError
from twisted.trial.unittest import TestCase

from fmspy_gateway import tap
from fmspy_gateway.server.client import connect_client

from ..conftest import require_tool
from ..tools.process import ToolProcess, run_cli

TOKEN = "dr41n"
TARGET = "rtmp://127.0.0.1:19350"


class DrainTests(TestCase):
    timeout = 60

    def setUp(self):
        folder = tempfile.mkdtemp(prefix="fmspy-drain-")
        self.addCleanup(shutil.rmtree, folder, True)
        config = os.path.join(folder, "fmspy.cfg")
        with open(config, "w") as f:
            f.write(f"""
[RTMP]
port = 0
interface = 127.0.0.1
[HTTP]
enabled = yes
port = 0
interface = 127.0.0.1
push-token = {TOKEN}
[Cluster]
drainGrace = 600
[LiveApplication]
enabled = yes
name = live
""")
        options = tap.Options()
        options.parseOptions(["--config", config])
        self.service = tap.makeService(options, reactor=reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.rtmp_port = self.service.getServiceNamed("rtmp").args[0]
        self.http_port = self.service.getServiceNamed("http").args[0]
        self.factory = self.service.getServiceNamed("rtmp").args[1]

    def url(self, path="live"):
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{path}"

    def drain_cli(self, *args, token=TOKEN):
        """``fmspy-gateway drain`` against this server, the token in the environment as users give it."""
        saved = os.environ.get("FMSPY_PUSH_TOKEN")
        os.environ["FMSPY_PUSH_TOKEN"] = token
        try:
            return run_cli(self, "drain", f"http://127.0.0.1:{self.http_port}", *args)
        finally:
            if saved is None:
                del os.environ["FMSPY_PUSH_TOKEN"]
            else:
                os.environ["FMSPY_PUSH_TOKEN"] = saved

    def rtmpdump(self):
        """A legacy player of live/cam (nobody publishes it: it waits, connected, until the server closes)."""
        process = ToolProcess()
        transport = reactor.spawnProcess(process, require_tool("rtmpdump"), [
            "rtmpdump", "-r", self.url("live/cam"), "-v", "-o", os.devnull], env=dict(os.environ))

        def stop():
            if not process.ended.called:
                transport.signalProcess("KILL")
            return process.ended
        self.addCleanup(stop)
        return process

    @inlineCallbacks
    def test_drain_moves_reconnect_clients_and_closes_the_rest_after_the_grace(self):
        asked = Deferred()

        def on_status(info):
            if info.get("code") == "NetConnection.Connect.ReconnectRequest" and not asked.called:
                asked.callback(info)

        movable = yield connect_client(self.url("live/room1"), reactor=reactor, handlers={"onStatus": on_status},
                                       capsEx=1, fourCcList=["hvc1", "avc1"])
        self.addCleanup(movable.close)
        legacy = yield connect_client(self.url(), reactor=reactor)
        self.addCleanup(legacy.close)
        dump = self.rtmpdump()
        yield dump.said("Connected", "err")     # rtmpdump: "INFO: Connected..." once connect was answered

        tool = self.drain_cli("--grace", "1", "--target", TARGET)
        yield tool.said("draining: 1 client(s) asked to reconnect to " + TARGET)
        self.assertEqual((yield tool.ended), 0)
        self.assertIn("(2 cannot be asked) closes in 1 s", tool.out[0])

        info = yield asked
        self.assertEqual((info["level"], info["tcUrl"]), ("status", TARGET + "/live/room1"))
        self.assertTrue(info["description"])

        # No new connection during the drain: the port is no longer listening.
        refused = connect_client(self.url(), reactor=reactor)
        yield self.assertFailure(refused, ConnectionRefusedError)

        # The grace ends: every connection still open is closed, the asked client's too (it did not move).
        yield legacy.closed
        yield movable.closed
        yield dump.ended

        again = self.drain_cli()
        yield again.said("the node was already draining: nothing changed")

    @inlineCallbacks
    def test_drain_without_the_token_is_one_line_and_drains_nothing(self):
        tool = self.drain_cli(token="wrong")
        yield tool.said("refused (HTTP 401): set FMSPY_PUSH_TOKEN", "err")
        self.assertEqual((yield tool.ended), 1)
        self.assertFalse(self.factory.draining)
        client = yield connect_client(self.url(), reactor=reactor)
        yield client.close()

    @inlineCallbacks
    def test_drain_without_a_token_in_the_environment_says_how_to_give_it(self):
        saved = os.environ.pop("FMSPY_PUSH_TOKEN", None)
        if saved is not None:
            self.addCleanup(os.environ.__setitem__, "FMSPY_PUSH_TOKEN", saved)
        tool = run_cli(self, "drain", f"http://127.0.0.1:{self.http_port}")
        yield tool.said("error: set FMSPY_PUSH_TOKEN to the node's [HTTP] push-token", "err")
        self.assertEqual((yield tool.ended), 1)
        self.assertFalse(self.factory.draining)
