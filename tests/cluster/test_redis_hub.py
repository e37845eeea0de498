"""What RedisHub does beyond the hub contract: cluster-wide decisions, dead nodes, Redis outages, bad input.

Every test runs its own redis-server (tests/cluster/redis_server.py) and
real RedisHubs on it; a node that is killed is a process of its own
(tests/cluster/node_process.py) killed with SIGKILL.
"""
import socket
import sys

from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.calls import CallFailed
from fmspy_gateway.app.hub import ClientNotFound, Publication, Room, StreamTaken
from fmspy_gateway.app.shared_objects import SharedObjectLimits
from fmspy_gateway.cluster import BroadcastIncomplete, ClusterUnavailable, NodeGone, RedisHub, RedisUnreachable
from fmspy_gateway.cluster.envelope import Envelope, encode
from fmspy_gateway.cluster.layout import Layout
from fmspy_gateway.cluster.link import RedisAddress, probe
from fmspy_gateway.rtmp.amf import Vector
from tests.app.test_shared_objects_contract import SCOPE, Listener
from tests.cluster.hubs import LogWatch, client_of, settle, start_hub, wait_until
from tests.cluster.redis_server import RedisServer, redis_for
from tests.tools.process import run_tool


def raw_subscriber(server, channel):
    """A plain socket subscribed to ``channel`` that never answers anything it receives."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(30)
    connection.connect(server.socket_path)
    name = channel.encode()
    connection.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(name), name))
    assert b"subscribe" in connection.recv(1000)
    return connection


class ClusterDecisionTests(TestCase):
    @inlineCallbacks
    def setUp(self):
        self.server = redis_for(self)
        self.a = yield start_hub(self, self.server, "node-a")
        self.b = yield start_hub(self, self.server, "node-b")

    @inlineCallbacks
    def test_of_two_nodes_racing_exactly_one_creates_and_one_destroys_the_room(self):
        for round_ in range(10):
            room = f"race-{round_}"
            first, second = yield gatherResults([client_of(self.a, room), client_of(self.b, room)])
            self.assertEqual(sorted([first.session.created, second.session.created]), [False, True])
            destroyed = yield gatherResults([self.a.leave(first, first.room), self.b.leave(second, second.room)])
            self.assertEqual(sorted(destroyed), [False, True])
        self.assertEqual((yield self.a.rooms("chat")), [])

    @inlineCallbacks
    def test_a_name_with_colons_is_not_another_room(self):
        one = yield client_of(self.a, "b:c", application="a")
        two = yield client_of(self.b, "c", application="a:b")
        self.assertEqual([m.id for m in (yield self.b.members(Room("a", "b:c")))], [one.id])
        self.assertEqual([m.id for m in (yield self.a.members(Room("a:b", "c")))], [two.id])

    @inlineCallbacks
    def test_amf_values_cross_nodes_as_they_are(self):
        member = yield client_of(self.b, "one")
        values = ["été", {"nested": [1, 2.5, None, True]}, Vector([1, 2, 3], kind="int"), 1e300]
        self.assertEqual((yield self.a.broadcast(Room("chat", "one"), "m", values)), 1)
        self.assertEqual(member.session.notified, [("m", tuple(values))])

    @inlineCallbacks
    def test_a_node_that_does_not_answer_makes_the_broadcast_report_it(self):
        hub = yield start_hub(self, self.server, "node-c", reply_timeout=0.5)
        member = yield client_of(self.b, "one")
        silent = raw_subscriber(self.server, Layout().room_channel("chat", "one"))
        self.addCleanup(silent.close)
        watch = LogWatch(self)
        failure = yield self.assertFailure(hub.broadcast(Room("chat", "one"), "m", ["hi"]), BroadcastIncomplete)
        self.assertEqual((failure.reached, failure.unanswered), (1, 1))
        yield watch.said("([Cluster] replyTimeout")
        self.assertEqual(member.session.notified, [("m", ("hi",))])

    @inlineCallbacks
    def test_values_too_large_to_cross_are_refused_with_a_clear_error(self):
        watch = LogWatch(self)
        hub = yield start_hub(self, self.server, "node-c", max_envelope_bytes=1000)
        yield client_of(self.b, "one")
        failure = yield self.assertFailure(hub.broadcast(Room("chat", "one"), "m", ["x" * 2000]), CallFailed)
        self.assertIn("over the limit of 1000 between nodes ([Cluster] maxEnvelopeBytes)", failure.description)
        yield watch.said("refused to send a broadcast")       # the limit hit is logged (rate-limited)

    @inlineCallbacks
    def test_an_answer_too_large_to_come_back_is_a_clear_error_not_a_timeout(self):
        small = yield start_hub(self, self.server, "node-c", max_envelope_bytes=2000)
        callee = yield client_of(small, "one")
        d = self.a.call(callee.id, "ask", [])
        yield settle(self.a, small)
        callee.session.answer("x" * 5000)
        failure = yield self.assertFailure(d, CallFailed)
        self.assertIn("the answer cannot travel to another node", failure.description)

    @inlineCallbacks
    def test_garbage_from_redis_is_logged_and_dropped(self):
        watch = LogWatch(self)
        member = yield client_of(self.b, "one")
        inbox = Layout().inbox("node-b")
        for payload in (b"\xff\x00garbage", encode(Envelope("call", "x/1", {"origin": "node-a"})),
                        b"\x03" * (2 * 1024 * 1024)):
            self.assertEqual(self.server.command("PUBLISH", inbox, payload), b":1")
        yield settle(self.a, self.b)
        yield watch.said("dropped a message on")
        self.assertEqual((yield self.a.broadcast(Room("chat", "one"), "m", [])), 1, "the node still serves")
        self.assertEqual(member.session.notified, [("m", ())])

    @inlineCallbacks
    def test_a_second_publisher_is_refused_with_where_the_stream_is(self):
        yield self.a.announce("live", "cam", "p1")
        failure = yield self.assertFailure(self.b.announce("live", "cam", "p2"), StreamTaken)
        self.assertEqual(failure.publication, Publication("live", "cam", "node-a", "p1"))

    @inlineCallbacks
    def test_a_stream_claimed_on_one_node_is_announced_to_the_others(self):
        heard = {"node-a": [], "node-b": []}
        self.a.on_stream_announced = heard["node-a"].append
        self.b.on_stream_announced = heard["node-b"].append
        yield self.a.announce("live", "cam", "p1")
        yield self.b.announce("live", "cam", "p2").addErrback(lambda failure: failure.trap(StreamTaken))
        yield settle(self.a, self.b)
        self.assertEqual(heard, {"node-a": [], "node-b": [Publication("live", "cam", "node-a", "p1")]})

    @inlineCallbacks
    def test_each_node_advertises_where_its_streams_are_pulled_from(self):
        self.assertEqual((yield self.b.advertised("node-a")), "rtmp://127.0.0.1:1935/node-a")
        self.assertEqual((yield self.a.advertised("node-a")), "rtmp://127.0.0.1:1935/node-a")
        self.assertIsNone((yield self.a.advertised("nobody")))

    @inlineCallbacks
    def test_nodes_lists_the_live_nodes_with_their_urls(self):
        quiet = yield start_hub(self, self.server, "node-c", advertise=None)
        self.assertEqual((yield self.b.nodes()), {"node-a": "rtmp://127.0.0.1:1935/node-a",
                                                 "node-b": "rtmp://127.0.0.1:1935/node-b", "node-c": None})
        yield quiet.stop()
        self.assertEqual(set((yield self.a.nodes())), {"node-a", "node-b"})

    @inlineCallbacks
    def test_a_stopped_node_is_forgotten_at_once(self):
        gone = yield client_of(self.b, "one")
        yield self.b.announce("live", "cam", gone.id)
        for hub in (self.a, self.b):
            hub.shared_objects.configure(SCOPE, SharedObjectLimits(), None)
        yield self.b.shared_objects.use(SCOPE, "board", False, Listener("1"))
        yield self.b.stop()
        self.assertIsNone((yield self.a.locate(gone.id)))
        self.assertEqual((yield self.a.rooms("chat")), [])
        self.assertIsNone((yield self.a.find("live", "cam")))
        # its shared object listeners left with it: a transient object only it used is gone
        self.assertIsNone((yield self.a.shared_objects.snapshot(SCOPE, "board")))

    def test_a_nodes_key_lives_three_heartbeats(self):
        ttl = int(self.server.command("PTTL", Layout().node("node-b"))[1:])
        self.assertTrue(0 < ttl <= 3 * self.b.heartbeat * 1000, ttl)


class KilledNodeTests(TestCase):
    """A node killed with SIGKILL: the others find it silent and forget it."""

    @inlineCallbacks
    def test_a_killed_nodes_clients_rooms_and_streams_are_forgotten(self):
        server = redis_for(self)
        watch = LogWatch(self)
        hub = yield start_hub(self, server, "node-a", heartbeat=0.5)
        forgotten = []      # its shared object listeners are forgotten with it (redis_shared_objects.py)
        forget_node = hub.shared_objects.forget_node
        hub.shared_objects.forget_node = lambda node: forgotten.append(node) or forget_node(node)
        process = run_tool(self, ["-m", "tests.cluster.node_process", server.url, "doomed", "0.5"])
        yield process.said("ready")
        client_id = process.out[-1].split()[1]
        self.assertEqual((yield hub.locate(client_id)).node, "doomed")
        self.assertEqual((yield hub.find("live", "cam")).node, "doomed")
        pending = hub.call(client_id, "ask", [])      # the doomed node's client never answers
        yield settle(hub)
        process.transport.signalProcess("KILL")
        yield process.ended
        failure = yield self.assertFailure(pending, NodeGone)
        self.assertIn("node doomed is gone (silent for 3 heartbeats) before it answered", failure.description)
        # its subscriber connection closed with it: a call cannot reach it, and says so
        failure = yield wait_until(lambda: hub.call(client_id, "ask", []).addErrback(lambda f: f.value),
                                   lambda answer: isinstance(answer, (NodeGone, ClientNotFound)),
                                   "a call to the killed node's client")
        if isinstance(failure, NodeGone):   # else already forgotten, which the next lines check
            self.assertIn("node doomed is gone", failure.description)
        yield wait_until(lambda: hub.locate(client_id), lambda info: info is None, "the killed node's client")
        self.assertEqual((yield hub.rooms("chat")), [])
        self.assertIsNone((yield hub.find("live", "cam")))
        yield self.assertFailure(hub.call(client_id, "ask", []), ClientNotFound)
        yield watch.said("node doomed was silent for 3 heartbeats: forgot its 1 clients")
        self.assertEqual(forgotten, ["doomed"])
        yield hub.announce("live", "cam", "new-publisher")

    @inlineCallbacks
    def test_a_room_emptied_by_a_killed_node_is_destroyed_by_exactly_one_survivor(self):
        server = redis_for(self)
        destroyed = []
        survivors = []
        for name in ("node-a", "node-b", "node-c"):
            survivor = yield start_hub(self, server, name, heartbeat=0.5)
            survivor.on_room_orphaned = lambda room, name=name: destroyed.append((name, room))
            survivors.append(survivor)
        watcher = yield client_of(survivors[0], "other")       # a room the doomed node is not in stays
        process = run_tool(self, ["-m", "tests.cluster.node_process", server.url, "doomed", "0.5"])
        yield process.said("ready")
        process.transport.signalProcess("KILL")
        yield process.ended
        yield wait_until(lambda: survivors[1].rooms("chat"), lambda rooms: [r.name for r in rooms] == ["other"],
                         "the killed node's room removed")
        # every survivor sweeps at its next heartbeats; none may run the hook a second time
        for survivor in survivors:
            yield survivor._beat()
        yield settle(*survivors)
        self.assertEqual(len(destroyed), 1, destroyed)
        name, room = destroyed[0]
        self.assertEqual(room, Room("chat", "lobby"))
        self.assertEqual(room.hub.node, name)         # the value of the hub that ran the hook
        self.assertEqual([m.id for m in (yield survivors[2].members(Room("chat", "other")))], [watcher.id])


class OutageTests(TestCase):
    """Redis lost while running, then back: local service goes on, cross-node fails at once, then returns."""

    @inlineCallbacks
    def test_an_outage_keeps_local_service_fails_cross_node_at_once_and_heals(self):
        server = redis_for(self)
        watch = LogWatch(self)
        a = yield start_hub(self, server, "node-a")
        b = yield start_hub(self, server, "node-b")
        here = yield client_of(a, "one")
        there = yield client_of(b, "one")
        yield b.announce("live", "cam", there.id)

        server.stop()
        yield watch.said("node-a: Redis at")
        yield wait_until(lambda: watch.count("is lost"), lambda n: n == 2, "both nodes saw the outage")

        failure = yield self.assertFailure(a.broadcast(Room("chat", "one"), "m", ["local"]), BroadcastIncomplete)
        self.assertEqual(failure.reached, 1)
        self.assertEqual(here.session.notified, [("m", ("local",))], "the local member is still reached")
        for cross_node in (a.call(there.id, "ask", []), a.members(Room("chat", "one")), a.locate(there.id),
                           a.announce("live", "other", here.id), a.find("live", "cam")):
            failure = yield self.assertFailure(cross_node, ClusterUnavailable)
            self.assertIn("unreachable", failure.description)
        self.assertIs((yield a.locate(here.id)).handle, here, "a local client is still found")
        late = yield client_of(a, "two")        # a client joining during the outage is registered later

        server.start()
        yield wait_until(lambda: watch.count("answers again"), lambda n: n == 2, "both nodes saw Redis come back")
        self.assertEqual(watch.count("is lost"), 2, "the outage is logged once per node")
        # Redis came back empty (no persistence): the nodes wrote back what they hold
        self.assertEqual(sorted(m.id for m in (yield b.members(Room("chat", "one")))), sorted([here.id, there.id]))
        self.assertEqual((yield b.locate(late.id)).node, "node-a")
        self.assertEqual((yield a.find("live", "cam")), Publication("live", "cam", "node-b", there.id))
        self.assertEqual((yield b.broadcast(Room("chat", "one"), "m", ["both"])), 2)
        d = a.call(there.id, "ask", [])
        yield settle(a, b)
        there.session.answer("yes")
        self.assertEqual((yield d), "yes")

        server.stop()           # a second outage: the nodes still hold everything they wrote back the first time
        yield wait_until(lambda: watch.count("is lost"), lambda n: n == 4, "both nodes saw the second outage")
        server.start()
        yield wait_until(lambda: watch.count("answers again"), lambda n: n == 4, "both nodes saw Redis again")
        self.assertEqual((yield a.find("live", "cam")), Publication("live", "cam", "node-b", there.id))
        self.assertEqual((yield a.broadcast(Room("chat", "one"), "m", ["again"])), 2)


class StartTests(TestCase):
    @inlineCallbacks
    def test_redis_unreachable_at_start_is_one_clear_line(self):
        server = RedisServer()
        self.addCleanup(server.remove)          # never started: its socket path leads nowhere
        hub = RedisHub(server.url, "node-a", heartbeat=0.5, connect_timeout=0.5)
        failure = yield self.assertFailure(hub.start(), RedisUnreachable)
        self.assertEqual(str(failure), f"Redis unreachable at {server.url}: no connection within 0.5 s")
        with self.assertRaises(RedisUnreachable) as raised:
            probe(RedisAddress.parse(server.url), 0.5)
        self.assertTrue(str(raised.exception).startswith(f"Redis unreachable at {server.url}: "))
        self.assertNotIn("\n", str(raised.exception))

    def test_a_wrong_password_is_one_clear_line_without_the_password(self):
        server = RedisServer(tcp=True, password="right")
        self.addCleanup(server.remove)
        server.start()
        with self.assertRaises(RedisUnreachable) as raised:
            probe(RedisAddress.parse(f"redis://:wrong@127.0.0.1:{server.port}/0"), 5)
        message = str(raised.exception)
        self.assertTrue(message.startswith(f"Redis unreachable at redis://127.0.0.1:{server.port}/0: it answered "))
        self.assertNotIn(":wrong", message)
        probe(RedisAddress.parse(server.url), 5)

    def test_the_twistd_plugin_exits_with_one_line_when_redis_is_unreachable(self):
        server = RedisServer()
        self.addCleanup(server.remove)
        config = f"{server.directory}/fmspy.cfg"
        with open(config, "w") as f:
            f.write(f"[RTMP]\nport = 0\ninterface = 127.0.0.1\n[Cluster]\nredis = {server.url}\nsecret = s\n")
        import subprocess
        run = subprocess.run([sys.executable, "-c", "from fmspy_gateway import tap; o = tap.Options(); "
                              f"o.parseOptions(['--config', {config!r}]); tap.makeService(o)"],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(run.returncode, 1)
        self.assertEqual(run.stderr.strip().count("\n"), 0, run.stderr)
        self.assertIn(f"fmspy-gateway: [Cluster] redis: Redis unreachable at {server.url}: ", run.stderr)
        self.assertTrue(run.stderr.strip().endswith("; start Redis there or correct the address"), run.stderr)
