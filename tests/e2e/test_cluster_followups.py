"""Two twistd nodes on one Redis (tests/e2e/test_cluster.py's set-up, reused): what the first wave left open.

- SIGTERM to a node: its clients' leave chains reach Redis and run their hooks (the leave notice reaches the
  other node's member, the last member's room is destroyed by its hook) before the node leaves the cluster.
- A drain without a target sends the clients to another live node's advertised URL (``hub.nodes()``).
- A player waiting on node B for a name that node A publishes later gets it (the hub's "announced" message
  starts B's pull): ffmpeg plays on B first, ffmpeg publishes on A, ffprobe checks what B's player wrote.
- A room whose last member's node is killed with SIGKILL is destroyed by the surviving node's hook, once.
"""
import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway.server.client import connect_client

from ..conftest import require_tool
from . import test_cluster as cluster
from . import test_streaming as streaming
from .cluster_rooms import DESTROYED
from .test_cluster import WAIT, wait_for


class ClusterFollowUpTests(TestCase):
    timeout = 180

    # (Through the module: a ClusterTests name here would make pytest run those tests a second time.)
    setUp = cluster.ClusterTests.setUp
    _stop_tools = cluster.ClusterTests._stop_tools
    chat = cluster.ClusterTests.chat
    describe = cluster.ClusterTests.describe
    run_tool = cluster.ClusterTests.run_tool
    ffmpeg_args = cluster.ClusterTests.ffmpeg_args
    probe = cluster.ClusterTests.probe
    check_media_file = cluster.ClusterTests.check_media_file

    @inlineCallbacks
    def test_sigterm_runs_every_leave_through_the_hub_before_the_node_leaves(self):
        bob, heard = yield self.chat(self.b, "bob", room="party", path="hooks")
        yield self.chat(self.a, "alice", room="party", path="hooks")
        yield self.chat(self.a, "solo", room="alone", path="hooks")
        yield heard.wait("<alice> is entering chat...")
        self.a.transport.signalProcess("TERM")
        yield self.a.process.ended.addTimeout(WAIT, reactor)       # twistd ends with the signal it got, once stopped
        self.assertIn("Server Shut Down.", self.a.log)
        # Alice's leave went through the hub while node A was still in the cluster: its notice reached B.
        yield heard.wait("<alice> is leaving chat...")
        self.assertIn(DESTROYED.format("hooks", "alone"), self.a.log, self.describe())
        self.assertNotIn("still leaving", self.a.log)
        self.assertNotIn(DESTROYED.format("hooks", "party"), self.a.log + self.b.log)   # bob is still there
        answer = yield self.b.push("clients", app="hooks")
        self.assertEqual([c["room"] for c in answer["result"]], ["party"], answer)      # bob alone
        rooms = yield self.b.push("rooms", app="hooks")
        self.assertEqual([(r["name"], r["clients"]) for r in rooms["result"]], [("party", 1)], rooms)
        self.assertEqual(self.redis.command("KEYS", "fmspy:room:hooks:alone"), b"*0")
        self.assertTrue(bob.connected)

    @inlineCallbacks
    def test_a_drain_without_a_target_sends_clients_to_another_live_node(self):
        asked = Deferred()

        def on_status(info):
            if info.get("code") == "NetConnection.Connect.ReconnectRequest" and not asked.called:
                asked.callback(info)

        movable = yield connect_client(self.a.url("live"), reactor=reactor, handlers={"onStatus": on_status},
                                       capsEx=1)
        self.addCleanup(movable.close)
        answer = yield self.a.push("drain", grace=600)
        target = f"rtmp://127.0.0.1:{self.b.rtmp_port}"
        self.assertEqual((answer["result"]["asked"], answer["result"]["target"]), (1, target), answer)
        info = yield asked.addTimeout(WAIT, reactor)
        self.assertEqual(info["tcUrl"], f"{target}/live")
        # And that URL is a node that takes the client.
        moved = yield connect_client(info["tcUrl"], reactor=reactor)
        self.addCleanup(moved.close)
        yield wait_for("the moved client listed on node B (its operations API lists its own clients)",
                       lambda: self.b.api("clients?app=live").addCallback(lambda page: page["total"] == 1))

    @inlineCallbacks
    def test_a_player_waiting_on_b_gets_the_stream_published_later_on_a(self):
        ffmpeg = require_tool("ffmpeg")
        self.ffprobe = require_tool("ffprobe")
        work = tempfile.mkdtemp(prefix="fmspy-cluster-waiting-")
        self.addCleanup(shutil.rmtree, work, True)
        out = os.path.join(work, "waited.flv")
        player = self.run_tool(ffmpeg, self.ffmpeg_args("-rw_timeout", "60000000", "-i", self.b.url("live/later"),
                                                        "-t", "3", "-c", "copy", "-copyinkf", "-f", "flv", out),
                               deadline=90)

        def waiting():
            return self.b.api("streams").addCallback(lambda streams: [
                s for s in streams if s["name"] == "later" and s["players"] == 1 and not s["publishing"]])
        yield wait_for("ffmpeg waiting on node B for live/later", waiting)
        seconds = 8
        source = ["-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i",
                  "sine=frequency=440", "-t", str(seconds)]
        publisher = self.run_tool(ffmpeg, self.ffmpeg_args(*source, *streaming.H264_AAC, "-f", "flv",
                                                           self.a.url("live/later")), deadline=seconds + 30)
        yield player.done
        yield publisher.done
        self.assertEqual(player.code, 0, player.describe() + self.describe())
        yield self.check_media_file(out, 2.5, 3.5, player.describe())
        self.assertIn("relay: pulling live/later from node node-a", self.b.log)

    @inlineCallbacks
    def test_a_room_whose_members_node_was_killed_is_destroyed_once_by_the_survivor(self):
        yield self.chat(self.a, "alice", room="orphan", path="hooks")
        yield self.a.kill()
        destroyed = DESTROYED.format("hooks", "orphan")
        yield wait_for("node B running the orphaned room's destroy hook", lambda: destroyed in self.b.log)
        self.assertIn("lost its last members with node node-a; running its destroy hook here", self.b.log)
        rooms = yield self.b.push("rooms", app="hooks")
        self.assertEqual(rooms["result"], [], rooms)
        self.assertEqual(self.b.log.count(destroyed), 1, self.describe())
