"""tap.py's cluster wiring: which hub makeService builds from [Cluster], and the service that starts and stops it."""
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from fmspy_gateway import tap
from fmspy_gateway.app.application import Application
from fmspy_gateway.app.hub import LocalHub, Publication, default_node_name
from fmspy_gateway.cluster import RedisHub
from tests.cluster.hubs import start_hub, wait_until
from tests.cluster.redis_server import redis_for


def make(test, directory, cluster_section):
    path = f"{directory}/fmspy.cfg"
    with open(path, "w") as f:
        f.write(f"[RTMP]\nport = 0\ninterface = 127.0.0.1\n{cluster_section}")
    options = tap.Options()
    options.parseOptions(["--config", path])
    top = tap.makeService(options, reactor=Clock())
    test.addCleanup(top.getServiceNamed("rtmp").stopService)    # gives back the socket makeService bound
    return top


class MakeServiceTests(TestCase):
    def test_with_redis_the_hub_is_a_redis_hub_advertising_the_bound_rtmp_port(self):
        server = redis_for(self)
        top = make(self, server.directory, f"[Cluster]\nredis = {server.url}\nsecret = s\nheartbeat = 2\n")
        hub = top.getServiceNamed("hub").hub
        self.assertIsInstance(hub, RedisHub)
        self.assertEqual(hub.node, default_node_name())
        self.assertEqual(hub.heartbeat, 2)
        port = top.getServiceNamed("rtmp").bound.getsockname()[1]
        self.assertEqual(hub.advertise, f"rtmp://127.0.0.1:{port}")

    def test_a_configured_node_and_advertise_url_are_kept(self):
        server = redis_for(self)
        top = make(self, server.directory, f"[Cluster]\nredis = {server.url}\nsecret = s\nnode = edge-1\n"
                                           f"advertise = rtmp://10.0.0.5:1935\n")
        hub = top.getServiceNamed("hub").hub
        self.assertEqual((hub.node, hub.advertise), ("edge-1", "rtmp://10.0.0.5:1935"))

    def test_every_limit_of_the_redis_hub_comes_from_fmspy_cfg(self):
        server = redis_for(self)
        top = make(self, server.directory, f"maxValueNodes = 500\n[Cluster]\nredis = {server.url}\nsecret = s\n"
                                           f"replyTimeout = 1.5\ncommandTimeout = 4\nconnectTimeout = 3\n"
                                           f"maxEnvelopeBytes = 64K\n")
        hub = top.getServiceNamed("hub").hub
        self.assertEqual((hub.reply_timeout, hub.connect_timeout, hub.max_envelope_bytes, hub.budget.max_nodes),
                         (1.5, 3, 64 * 1024, 500))
        self.assertEqual((hub.command_timeout, hub._link._factories["commands"].replyTimeout), (4, 4))

    def test_the_redis_hubs_defaults_without_those_options(self):
        server = redis_for(self)
        top = make(self, server.directory, f"[Cluster]\nredis = {server.url}\nsecret = s\nheartbeat = 2\n")
        hub = top.getServiceNamed("hub").hub
        self.assertEqual((hub.reply_timeout, hub.connect_timeout, hub.max_envelope_bytes), (2, 10, 1024 * 1024))

    def test_a_bad_cluster_limit_is_one_line(self):
        server = redis_for(self)
        for option, value in (("replyTimeout", "-1"), ("commandTimeout", "soon"), ("connectTimeout", "0"),
                              ("maxEnvelopeBytes", "1T"), ("stopTimeout", "never")):
            with self.assertRaises(SystemExit):
                make(self, server.directory, f"[Cluster]\nredis = {server.url}\nsecret = s\n{option} = {value}\n")

    def test_a_room_orphaned_in_the_cluster_runs_its_applications_destroy_hook(self):
        server = redis_for(self)
        top = make(self, server.directory, f"[Cluster]\nredis = {server.url}\nsecret = s\n"
                                           f"[ChatApplication]\nenabled = yes\nname = chat\n")
        hub = top.getServiceNamed("hub").hub
        chat = top.getServiceNamed("applications").applications["chat"]
        destroyed = []
        chat.on_room_destroy = destroyed.append
        hub.on_room_orphaned(hub.room("chat", "lobby"))
        hub.on_room_orphaned(hub.room("gone-app", "lobby"))      # no such application here: nothing to run
        self.assertEqual(destroyed, [hub.room("chat", "lobby")])

    def test_without_redis_the_hub_is_local(self):
        server = redis_for(self)
        top = make(self, server.directory, "")
        self.assertIsInstance(top.getServiceNamed("hub").hub, LocalHub)


class HubServiceTests(TestCase):
    @inlineCallbacks
    def test_the_service_registers_the_node_at_start_and_removes_it_at_stop(self):
        server = redis_for(self)
        watcher = yield start_hub(self, server, "watcher")
        hub = RedisHub(server.url, "served", advertise="rtmp://127.0.0.1:1/x", heartbeat=0.5, reactor=reactor)
        service = tap.HubService(hub, reactor)
        service.startService()
        yield wait_until(lambda: watcher.advertised("served"), lambda url: url == "rtmp://127.0.0.1:1/x",
                         "the node registered")
        yield service.stopService()
        self.assertIsNone((yield watcher.advertised("served")))


class AnnouncedStreamTests(TestCase):
    """tap.py's route from the hub's "announced" to an application: only players waiting here start a pull."""

    def test_a_stream_announced_elsewhere_is_pulled_only_for_players_waiting_here(self):
        pulls = []

        class Relay:
            def pull(self, application, live, publication):
                pulls.append((application.name, live.name, publication.node))

        live_app = Application("live")
        live_app.relay = Relay()
        announced = tap.announced_hook_of({"live": live_app})
        cam = Publication("live", "cam", "node-a", "p1")
        announced(cam)                                          # nobody plays cam here
        live = live_app.live.stream("cam")
        announced(cam)                                          # a stream nobody waits on
        live.players.append(object())                           # a player waiting for a publisher
        announced(Publication("other-app", "cam", "node-a", "p1"))
        announced(cam)
        self.assertEqual(pulls, [("live", "cam", "node-a")])
        live.publisher = object()                               # published (or pulled) here already
        announced(cam)
        live_app.relay = None                                   # a node without a cluster never pulls
        live.publisher = None
        announced(cam)
        self.assertEqual(len(pulls), 1)
