"""Two gateway nodes as one server: two ``twistd -n fmspy-gateway`` processes and one real Redis.

Each test starts its own redis-server (tests/cluster/redis_server.py, in a
temporary directory) and two nodes, "node-a" and "node-b", each with its own
fmspy.cfg naming that Redis in [Cluster].  Everything a test checks is what
a client on a socket, the push API or a real player (ffmpeg, rtmpdump, read
back with ffprobe) sees.  Cross-node effects are waited for with generous
timeouts, never with sleeps standing in for them; a heartbeat of 1 s makes
"a node silent for 3 heartbeats is gone" quick.
"""
import json
import os
import shutil
import sys
import tempfile

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from fmspy_gateway.server.client import connect_client

from ..cluster.redis_server import redis_for
from ..cluster.test_relay import Player
from ..conftest import require_tool
from .cluster_rooms import CREATED, DESTROYED, room_hooks_path
from . import test_streaming as streaming
from .operations import closed_port, wait_for as poll_until
from .test_netstream_commands import AUDIO, AUDIO_HEADER, VIDEO, VIDEO_HEADER, live_messages, stamp
from .test_twistd import Twistd

SECRET = "shared by the nodes"
TOKEN = "push-t0ken"
ADMIN_TOKEN = "adm1n"
#: Seconds any cross-node effect may take before the test fails (3 heartbeats of 1 s, with room to spare).
WAIT = 30

CONFIG = """
[RTMP]
port = {rtmp_port}
interface = 127.0.0.1
[HTTP]
enabled = yes
port = {http_port}
interface = 127.0.0.1
push-token = {token}
admin-token = {admin_token}
[Cluster]
redis = {redis}
node = {node}
advertise = rtmp://127.0.0.1:{rtmp_port}
secret = {secret}
heartbeat = 1
[ChatApplication]
enabled = yes
name = chat
[LiveApplication]
enabled = yes
name = live
[RoomHooksApplication]
enabled = yes
name = hooks
"""
#: The checkout, so that the nodes can import tests.e2e.cluster_rooms.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Node:
    """One twistd process of the cluster: its ports, its log, and how to stop or kill it."""

    def __init__(self, test, name, redis_url, python_path):
        self.name = name
        self.rtmp_port, self.http_port = closed_port(), closed_port()
        folder = tempfile.mkdtemp(prefix=f"fmspy-{name}-")
        test.addCleanup(shutil.rmtree, folder, True)
        config = os.path.join(folder, "fmspy.cfg")
        with open(config, "w") as f:
            f.write(CONFIG.format(rtmp_port=self.rtmp_port, http_port=self.http_port, token=TOKEN,
                                  admin_token=ADMIN_TOKEN, redis=redis_url, node=name, secret=SECRET))
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        self.process = Twistd()
        self.transport = reactor.spawnProcess(
            self.process, twistd, [twistd, "-n", "--pidfile=", "fmspy-gateway", "--config", config],
            env=dict(os.environ, PYTHONPATH=python_path), path=folder)
        test.addCleanup(self.stop)

    @property
    def log(self) -> str:
        return self.process.output.decode(errors="replace")

    def url(self, path):
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{path}"

    def stop(self):
        if not self.process.ended.called:
            self.transport.signalProcess("INT")
        return self.process.ended

    def kill(self):
        """SIGKILL: no goodbye to Redis or to anyone; the kernel closes its sockets."""
        self.transport.signalProcess("KILL")
        return self.process.ended

    @inlineCallbacks
    def push(self, rpc_method, **params):
        """One push API request; fires with the JSON-RPC answer (its ``result`` or ``error``)."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": rpc_method, "params": params}).encode()
        response = yield treq.post(f"http://127.0.0.1:{self.http_port}/rpc", body, reactor=reactor,
                                   headers={"Content-Type": ["application/json"],
                                            "Authorization": [f"Bearer {TOKEN}"]}, persistent=False)
        return (yield response.json())

    @inlineCallbacks
    def api(self, path):
        response = yield treq.get(f"http://127.0.0.1:{self.http_port}/api/v1/{path}", reactor=reactor,
                                  headers={"Authorization": [f"Bearer {ADMIN_TOKEN}"]}, persistent=False)
        return (yield response.json())


def wait_for(what, probe, timeout=WAIT):
    """``operations.wait_for`` with this module's longer timeout (two nodes and a Redis to start)."""
    return poll_until(what, probe, timeout)


class Heard:
    """A chat client's ``message`` handler: the lines it heard, and a wait for one."""

    def __init__(self):
        self.lines = []
        self._waiting = []

    def __call__(self, line):
        self.lines.append(line)
        for text, d in list(self._waiting):
            if text in line:
                self._waiting.remove((text, d))
                d.callback(line)

    def wait(self, text, timeout=WAIT) -> Deferred:
        """Fires with the first line containing ``text`` (heard already, or when it is)."""
        for line in self.lines:
            if text in line:
                return succeed(line)
        d = Deferred()
        self._waiting.append((text, d))
        return d.addTimeout(timeout, reactor)


@inlineCallbacks
def start_two_nodes(test):
    """``test.redis``, ``test.a`` and ``test.b``: a redis-server of its own and two twistd nodes on it, listening."""
    test.redis = redis_for(test)
    entry_points = tempfile.mkdtemp(prefix="fmspy-cluster-apps-")
    test.addCleanup(shutil.rmtree, entry_points, True)
    python_path = os.pathsep.join([room_hooks_path(entry_points), CHECKOUT])
    test.a = Node(test, "node-a", test.redis.url, python_path)
    test.b = Node(test, "node-b", test.redis.url, python_path)
    yield gatherResults([test.a.process.listening, test.b.process.listening])


class ClusterTests(TestCase):
    timeout = 180

    @inlineCallbacks
    def setUp(self):
        yield start_two_nodes(self)
        self.tools = []
        self.addCleanup(self._stop_tools)

    # The streaming tests' tools and ffprobe checks (tests/e2e/test_streaming.py), reused as they are.
    _stop_tools = streaming.StreamingTests._stop_tools
    run_tool = streaming.StreamingTests.run_tool
    ffmpeg_args = streaming.StreamingTests.ffmpeg_args
    probe = streaming.StreamingTests.probe
    check_media_file = streaming.StreamingTests.check_media_file

    def describe(self):
        return f"node A:\n{self.a.log[-4000:]}\nnode B:\n{self.b.log[-4000:]}"

    @inlineCallbacks
    def chat(self, node, user, room="lobby", handlers=None, path="chat"):
        """A chat client of ``node`` in ``room``, identified as ``user``; fires with (client, Heard)."""
        heard = Heard()
        client = yield connect_client(node.url(f"{path}/{room}"), reactor=reactor,
                                      handlers={"message": heard, **(handlers or {})})
        self.addCleanup(lambda: client.close() if client.connected else None)
        yield client.call("identify", user)
        return client, heard

    @inlineCallbacks
    def client_id(self, node, app, predicate=lambda c: True):
        """The id of a client of ``app`` that ``node``'s push API lists (cluster-wide), once it does."""
        def probe():
            return node.push("clients", app=app).addCallback(
                lambda answer: [c["id"] for c in answer.get("result") or [] if predicate(c)])
        ids = yield wait_for(f"a client of {app} listed by {node.name}", probe)
        return ids[0]

    # -- rooms, chat and the push API across nodes ------------------------------------------------

    @inlineCallbacks
    def test_chat_lines_and_enter_and_leave_notices_reach_the_other_node(self):
        bob, heard = yield self.chat(self.b, "bob")
        alice, _ = yield self.chat(self.a, "alice")
        yield heard.wait("<alice> is entering chat...")
        yield alice.call("say", "hello from A")
        yield heard.wait("<alice>: hello from A")
        yield alice.close()
        yield heard.wait("<alice> is leaving chat...")

    @inlineCallbacks
    def test_room_hooks_run_once_in_the_cluster(self):
        first, _ = yield self.chat(self.a, "first", room="party", path="hooks")
        second, heard = yield self.chat(self.b, "second", room="party", path="hooks")
        yield first.close()
        yield heard.wait("<first> is leaving chat...")          # the first leave was decided: not the last
        yield second.close()
        destroyed = DESTROYED.format("hooks", "party")
        yield wait_for("the room's destroy hook", lambda: destroyed in self.a.log + self.b.log)
        logs = self.a.log + self.b.log
        self.assertEqual((logs.count(CREATED.format("hooks", "party")), logs.count(destroyed)), (1, 1),
                         self.describe())

    @inlineCallbacks
    def test_the_push_api_on_a_calls_a_client_on_b_and_gets_its_result(self):
        yield self.chat(self.b, "carol", handlers={"answer": lambda question: f"carol on B answers {question}"})
        carol = yield self.client_id(self.a, "chat")
        answer = yield self.a.push("call", client=carol, method="answer", args=["ping"])
        self.assertEqual(answer.get("result"), "carol on B answers ping", answer)

    # -- live streams across nodes ----------------------------------------------------------------

    @inlineCallbacks
    def test_ffmpeg_publishes_to_a_and_ffmpeg_and_rtmpdump_play_from_b(self):
        ffmpeg, rtmpdump = require_tool("ffmpeg"), require_tool("rtmpdump")
        self.ffprobe = require_tool("ffprobe")
        work = tempfile.mkdtemp(prefix="fmspy-cluster-media-")
        self.addCleanup(shutil.rmtree, work, True)
        seconds = 8
        source = ["-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i",
                  "sine=frequency=440", "-t", str(seconds)]
        publisher = self.run_tool(ffmpeg, self.ffmpeg_args(*source, *streaming.H264_AAC, "-f", "flv",
                                                           self.a.url("live/cam")), deadline=seconds + 30)

        def published():
            return self.a.api("streams").addCallback(lambda streams: [
                s for s in streams if s["name"] == "cam" and s["publishing"] and s["video"]])
        yield wait_for("live/cam published on node A", published)
        ffmpeg_out, dump_out = os.path.join(work, "ffmpeg.flv"), os.path.join(work, "dump.flv")
        player = self.run_tool(ffmpeg, self.ffmpeg_args("-rw_timeout", "10000000", "-i", self.b.url("live/cam"),
                                                        "-t", "3", "-c", "copy", "-copyinkf", "-f", "flv",
                                                        ffmpeg_out), deadline=seconds + 30)
        # Live (-v) until NetStream.Play.UnpublishNotify, relayed from node A when ffmpeg stops there.
        dump = self.run_tool(rtmpdump, ["-r", self.b.url("live/cam"), "-v", "-m", "10", "-o", dump_out],
                             deadline=seconds + 30)
        yield publisher.done
        yield player.done
        yield dump.done
        self.assertEqual(publisher.code, 0, publisher.describe())
        self.assertEqual(player.code, 0, player.describe() + self.describe())
        self.assertFalse(dump.overdue, dump.describe() + self.describe())
        self.assertIn(dump.code, (0, 2), dump.describe())       # 2: "incomplete", as live streams always are
        yield self.check_media_file(ffmpeg_out, 2.5, 3.5, player.describe())
        yield self.check_media_file(dump_out, 2.0, seconds + 0.5, dump.describe())
        self.assertIn("relay: pulling live/cam from node node-a", self.b.log)

    @inlineCallbacks
    def publish(self, node, name):
        """Our client publishing live/``name`` on ``node``; fires with (client, stream id, the answer's code)."""
        client = yield connect_client(node.url("live"), reactor=reactor)
        self.addCleanup(lambda: client.close() if client.connected else None)
        stream_id = yield client.call("createStream")
        answers = []
        client.handlers["onStatus"] = answers.append
        client.stream_command(stream_id, "publish", name, "live")
        yield wait_for(f"an answer to publish on {node.name}", lambda: answers)
        return client, stream_id, answers[0].get("code")

    @inlineCallbacks
    def test_a_second_publisher_of_the_name_on_b_is_refused(self):
        _, _, first = yield self.publish(self.a, "cam")
        self.assertEqual(first, "NetStream.Publish.Start")
        _, _, second = yield self.publish(self.b, "cam")
        self.assertEqual(second, "NetStream.Publish.BadName")

    # -- faults -------------------------------------------------------------------------------------

    @inlineCallbacks
    def test_node_a_killed_players_on_b_are_told_and_b_forgets_its_clients_and_rooms(self):
        publisher, pub_id, answer = yield self.publish(self.a, "cam")
        self.assertEqual(answer, "NetStream.Publish.Start")
        for type_id, ts, payload in [(VIDEO, 0, VIDEO_HEADER), (AUDIO, 0, AUDIO_HEADER)] + live_messages(0, 2000):
            publisher.connection.send_media(type_id, pub_id, ts, payload)
        publisher.flush()
        yield self.chat(self.a, "dave", room="lobby")
        watcher = yield self._play_on_b("cam")
        yield wait_for("media relayed to node B", lambda: any(stamp(m.payload) == 1900 for m in watcher.media()))
        yield self.client_id(self.b, "chat")                # dave on node A, listed by node B

        mark = watcher.mark()
        yield self.a.kill()
        yield watcher.wait_code("NetStream.Play.UnpublishNotify", mark)
        yield wait_for("StreamEOF on node B", lambda: any(e[0] == "StreamEOF" for e in watcher.since(mark)
                                                          if isinstance(e, tuple)))

        def forgotten():
            return self.b.push("clients", app="chat").addCallback(lambda answer: answer.get("result") == [])
        yield wait_for("node B forgetting node A's clients", forgotten)
        rooms = yield self.b.push("rooms", app="chat")
        self.assertEqual([r for r in rooms["result"] if r["clients"]], [], rooms)

    @inlineCallbacks
    def _play_on_b(self, name):
        """Our player (keeping StreamEOF, tests/cluster/test_relay.py) of live/``name`` on node B."""
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.b.rtmp_port, timeout=WAIT)
        watcher = yield endpoint.connect(Factory.forProtocol(Player))
        self.addCleanup(lambda: watcher.close() if watcher.connected else None)
        yield watcher.connect("live", tc_url=self.b.url("live"))
        yield watcher.play(name)
        return watcher

    @inlineCallbacks
    def test_redis_restarted_local_service_continues_and_cross_node_service_comes_back(self):
        bob, heard = yield self.chat(self.b, "bob")
        erin, _ = yield self.chat(self.b, "erin")
        alice, _ = yield self.chat(self.a, "alice")
        yield heard.wait("<alice> is entering chat...")

        self.redis.stop()
        erin.notify("say", "said while redis is down")      # node B's own room: still served
        yield heard.wait("<erin>: said while redis is down")

        self.redis.start()
        attempt = []

        @inlineCallbacks
        def said_across():
            attempt.append(len(attempt))
            try:
                yield alice.call("say", f"back {attempt[-1]}", timeout=5)
            except Exception:
                return False            # node A has not reconnected yet: the say fails, clearly
            return any(line.startswith("<alice>: back") for line in heard.lines)
        yield wait_for("a line from node A reaching node B after the restart", said_across)
