"""Live streams across nodes (fmspy_gateway/cluster/relay.py, app/relay.py): two real servers on loopback.

Node A and node B are two ``RTMPServerFactory`` listening on 127.0.0.1 port
0, each with its own application and its own ``RelayPuller``; they share one
hub-like test double (``TwoNodeHub``: where streams are published and which
URL each node advertises), standing in for the Redis hub, which
tests/e2e/test_cluster.py uses between two twistd processes.  The
publishers and players are our own client with media built by the test
(tests/e2e/test_netstream_commands.py), so each test knows exactly what was
sent; order is proven with round trips (``barrier``), never with time.
"""
import logging

from twisted.internet import reactor
from twisted.internet.defer import fail, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.application import Services
from fmspy_gateway.app.calls import CallFailed
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.live_application import LiveApplication
from fmspy_gateway.app.relay import RELAY_CREDENTIAL, Relay
from fmspy_gateway.cluster.relay import RelayPuller
from fmspy_gateway.config import RTMPConfig
from fmspy_gateway.rtmp.events import DataReceived, UserControlReceived
from fmspy_gateway.rtmp.messages import UserControl
from fmspy_gateway.server.client import connect_client
from fmspy_gateway.server.protocol import RTMPServerFactory
from fmspy_gateway.server.transport import listen_direct
from tests.e2e.clocked import LogCapture
from tests.e2e.test_netstream_commands import (AUDIO, AUDIO_HEADER, VIDEO, VIDEO_HEADER, WAIT, StreamClient,
                                               is_header, is_keyframe, live_messages, stamp)

SECRET = "the cluster's own secret"
METADATA = {"width": 320.0, "height": 240.0, "videocodecid": 7.0, "audiocodecid": 10.0}


class TwoNodeHub(LocalHub):
    """A test double for the cluster's hub: one ``LocalHub`` per node sharing where streams are published.

    ``announce`` / ``find`` read one dict for both nodes (a name is published
    once in the cluster, and ``find`` names the node); ``advertised`` is the
    node's RTMP address, as the Redis hub keeps it.
    """

    def __init__(self, node, streams, addresses):
        super().__init__(node)
        self._streams = streams
        self.addresses = addresses

    def advertised(self, node):
        return succeed(self.addresses.get(node))


class CountingLive(LiveApplication):
    """The live application, counting the hooks each node ran."""

    def __init__(self, name, hub):
        super().__init__(name, hub=hub)
        self.connects = 0
        self.plays = 0

    def on_connect(self, client, *args):
        self.connects += 1
        return True

    def on_play(self, client, name, query=""):
        self.plays += 1
        return True


class Player(StreamClient):
    """Our client, also keeping StreamEOF (``("StreamEOF", stream id)``) in its timeline."""

    def _on_events(self, events):
        super()._on_events(events)
        for event in events:
            if isinstance(event, UserControlReceived) and event.event_type == UserControl.STREAM_EOF:
                self.timeline.append(("StreamEOF", event.value))

    def data(self, mark=0):
        return [list(e.values) for e in self.since(mark) if isinstance(e, DataReceived)]


@inlineCallbacks
def until(what, condition):
    """Wait, a reactor turn at a time, for ``condition()`` (state another connection changes), at most WAIT s."""
    deadline = reactor.seconds() + WAIT
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        yield deferLater(reactor, 0.02, lambda: None)


class Node:
    """One server of the two: its application, puller, factory and port."""

    def __init__(self, test, name, streams, addresses):
        self.hub = TwoNodeHub(name, streams, addresses)
        self.relay = RelayPuller(self.hub, SECRET, reactor)
        self.app = CountingLive("live", self.hub)
        rtmp = RTMPConfig()
        self.app.configure_streaming(object(), Services(self.hub, clock=reactor, rtmp=rtmp, relay=self.relay))
        self.factory = RTMPServerFactory({"live": self.app}, rtmp, reactor=reactor)
        self.listening = listen_direct(reactor, 0, self.factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        addresses[name] = f"rtmp://127.0.0.1:{self.port}"
        test.addCleanup(self.listening.stopListening)
        test.addCleanup(self.factory.close_all)
        test.addCleanup(self.relay.stop)

    @property
    def url(self):
        return f"rtmp://127.0.0.1:{self.port}/live"

    def players_of(self, name):
        live = self.app.live.get(name)
        return list(live.players) if live is not None else []

    def relay_sessions(self):
        return [p.session for p in self.factory.connections
                if getattr(p, "session", None) is not None and p.session.is_relay]


class RelayTests(TestCase):
    timeout = 60

    def setUp(self):
        streams, addresses = {}, {}
        self.a = Node(self, "node-a", streams, addresses)
        self.b = Node(self, "node-b", streams, addresses)

    @inlineCallbacks
    def client(self, node, cls=Player):
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", node.port, timeout=WAIT)
        client = yield endpoint.connect(Factory.forProtocol(cls))
        self.addCleanup(lambda: client.close() if client.connected else None)
        yield client.connect("live", tc_url=node.url)
        return client

    @inlineCallbacks
    def publish_on_a(self, until_ms=2000):
        """A publisher on node A of "cam": metadata, sequence headers and ``until_ms`` of media."""
        publisher = yield self.client(self.a)
        stream_id, answer = yield publisher.publish("cam")
        self.assertEqual(answer, "NetStream.Publish.Start")
        publisher.connection.send_data(["@setDataFrame", "onMetaData", METADATA], stream_id=stream_id)
        publisher.send(stream_id, [(VIDEO, 0, VIDEO_HEADER), (AUDIO, 0, AUDIO_HEADER)] + live_messages(0, until_ms))
        yield publisher.barrier()
        return publisher, stream_id

    @inlineCallbacks
    def play_on_b(self, last_ms):
        """A player of "cam" on node B, once it has the media stamped ``last_ms``."""
        player = yield self.client(self.b)
        stream_id = yield player.play("cam")
        yield player._wait(lambda: any(stamp(m.payload) == last_ms for m in player.media()))
        return player, stream_id

    def assert_starts_at_a_keyframe_with_everything_since(self, player, first_ms, last_ms):
        media = player.media()
        self.assertTrue(is_header(media[0]) and is_header(media[1]), media[:2])
        pictures = [m for m in media[2:] if m.type_id == VIDEO]
        self.assertTrue(is_keyframe(pictures[0]))
        self.assertEqual([stamp(m.payload) for m in pictures], list(range(first_ms, last_ms + 1, 100)))
        times = [m.timestamp for m in media[2:]]
        self.assertEqual(times, sorted(times))
        self.assertEqual(player.data()[1], ["onMetaData", METADATA])

    # -- the stream reaches the other node ---------------------------------------------------------

    @inlineCallbacks
    def test_a_player_on_b_gets_metadata_headers_then_the_stream_from_the_last_keyframe_on_a(self):
        publisher, pub_id = yield self.publish_on_a(2000)
        player, _ = yield self.play_on_b(1900)
        self.assertIn("NetStream.Play.Start", player.codes())
        publisher.send(pub_id, live_messages(2000, 3000))
        yield player._wait(lambda: any(stamp(m.payload) == 2950 for m in player.media()))
        self.assert_starts_at_a_keyframe_with_everything_since(player, 1000, 2900)

    @inlineCallbacks
    def test_the_players_node_runs_on_play_and_the_origin_runs_no_hook_for_the_relay(self):
        yield self.publish_on_a()
        yield self.play_on_b(1900)
        self.assertEqual((self.b.app.connects, self.b.app.plays), (1, 1))
        self.assertEqual((self.a.app.connects, self.a.app.plays), (1, 0))       # the publisher's connect only
        (relay,) = self.a.relay_sessions()
        self.assertEqual(self.a.players_of("cam")[0].session, relay)
        rooms = yield self.a.app.rooms()
        self.assertEqual([(r.name, r.clients) for r in rooms], [("", 1)])        # the relay is in no room

    @inlineCallbacks
    def test_a_late_joiner_on_b_shares_the_pull_and_starts_at_a_keyframe(self):
        publisher, pub_id = yield self.publish_on_a(2000)
        first, _ = yield self.play_on_b(1900)
        publisher.send(pub_id, live_messages(2000, 2500))
        # Node B has the keyframe at 2000 (its first player got what follows it): the late joiner starts there.
        yield first._wait(lambda: any(stamp(m.payload) == 2450 for m in first.media()))
        late = yield self.client(self.b)
        yield late.play("cam")
        publisher.send(pub_id, live_messages(2500, 3100))
        yield late._wait(lambda: any(stamp(m.payload) == 3050 for m in late.media()))
        self.assert_starts_at_a_keyframe_with_everything_since(late, 2000, 3000)
        self.assertEqual(len(self.a.players_of("cam")), 1)                       # one pull for both players
        self.assertEqual(len(self.a.relay_sessions()), 1)

    @inlineCallbacks
    def test_the_pull_is_dropped_when_the_last_player_on_b_leaves(self):
        yield self.publish_on_a()
        first, first_id = yield self.play_on_b(1900)
        second, second_id = yield self.play_on_b(1900)
        first.command(0, "deleteStream", first_id)
        yield first.barrier()
        self.assertEqual(len(self.a.relay_sessions()), 1)
        second.command(0, "deleteStream", second_id)
        yield until("node A has no relay connection", lambda: not self.a.relay_sessions())
        self.assertEqual(self.a.players_of("cam"), [])
        self.assertIsNone(self.b.app.live.get("cam"))
        self.assertEqual(self.b.relay.pulls, {})

    # -- the origin goes away ------------------------------------------------------------------------

    @inlineCallbacks
    def test_players_on_b_are_told_when_the_publisher_on_a_stops(self):
        publisher, pub_id = yield self.publish_on_a()
        player, play_id = yield self.play_on_b(1900)
        mark = player.mark()
        publisher.command(pub_id, "deleteStream", pub_id)
        yield player.wait_code("NetStream.Play.UnpublishNotify", mark)
        yield player._wait(lambda: ("StreamEOF", play_id) in player.since(mark))
        yield until("node B stopped pulling", lambda: not self.b.relay.pulls and not self.a.relay_sessions())

    @inlineCallbacks
    def test_players_on_b_are_told_when_node_a_goes_away(self):
        yield self.publish_on_a()
        player, play_id = yield self.play_on_b(1900)
        mark = player.mark()
        for session in self.a.relay_sessions():         # node A dies: its sockets close under the relay
            session.abort("node A killed")
        yield player.wait_code("NetStream.Play.UnpublishNotify", mark)
        yield player._wait(lambda: ("StreamEOF", play_id) in player.since(mark))
        self.assertEqual(self.b.relay.pulls, {})

    @inlineCallbacks
    def test_a_player_on_b_is_told_when_the_origin_advertises_no_address(self):
        yield self.publish_on_a()
        self.b.hub.addresses.pop("node-a")
        player = yield self.client(self.b)
        mark = player.mark()
        play_id = yield player.play("cam")
        yield player.wait_code("NetStream.Play.UnpublishNotify", mark)
        yield player._wait(lambda: ("StreamEOF", play_id) in player.since(mark))

    @inlineCallbacks
    def test_a_play_on_b_when_the_hub_cannot_answer_waits_there_and_the_log_says_why(self):
        yield self.publish_on_a()
        self.b.hub.find = lambda application, name: fail(ConnectionError("Redis is lost"))
        capture = LogCapture()
        logging.getLogger("fmspy_gateway").addHandler(capture)
        self.addCleanup(logging.getLogger("fmspy_gateway").removeHandler, capture)
        player = yield self.client(self.b)
        yield player.play("cam")
        self.assertIn("NetStream.Play.Start", player.codes())       # waiting for a publisher here, as before
        self.assertEqual(self.b.relay.pulls, {})
        self.assertTrue(any("cannot look cam up on other nodes: Redis is lost" in line for line in capture.lines),
                        capture.lines)

    # -- one publisher in the cluster ----------------------------------------------------------------

    @inlineCallbacks
    def test_a_second_publisher_of_the_name_on_b_gets_bad_name(self):
        yield self.publish_on_a()
        second = yield self.client(self.b)
        _, answer = yield second.publish("cam")
        self.assertEqual(answer, "NetStream.Publish.BadName")

    # -- the origin's side: the secret ----------------------------------------------------------------

    @inlineCallbacks
    def test_a_relay_connection_with_a_wrong_secret_is_refused_and_logged(self):
        capture = LogCapture()
        logging.getLogger("fmspy_gateway").addHandler(capture)
        self.addCleanup(logging.getLogger("fmspy_gateway").removeHandler, capture)
        failure = yield self.assertFailure(
            connect_client(self.a.url, reactor=reactor, **{RELAY_CREDENTIAL: "a guess"}), CallFailed)
        self.assertEqual(failure.code, "NetConnection.Connect.Rejected")
        self.assertEqual(self.a.app.connects, 0)
        self.assertTrue(any("relay connection to live refused" in line for line in capture.lines), capture.lines)

    @inlineCallbacks
    def test_a_relay_connection_reads_codec_entries_within_the_bound_too(self):
        capture = LogCapture()
        logging.getLogger("fmspy_gateway").addHandler(capture)
        self.addCleanup(logging.getLogger("fmspy_gateway").removeHandler, capture)
        many = [f"c{i:03d}" for i in range(70)]
        relay = yield connect_client(self.a.url, reactor=reactor, fourCcList=many, **{RELAY_CREDENTIAL: SECRET})
        self.addCleanup(relay.close)
        self.assertEqual((yield relay.call("getStreamLength", "cam")), 0)     # a round trip: connected, served
        self.assertTrue(any("connect declared 6 Enhanced RTMP codec entries past maxFourCcEntries" in line
                            for line in capture.lines), capture.lines)

    @inlineCallbacks
    def test_a_relay_connection_may_play_but_not_publish(self):
        relay = yield connect_client(self.a.url, reactor=reactor, handlers={"onStatus": lambda *a: None},
                                     **{RELAY_CREDENTIAL: SECRET})
        self.addCleanup(relay.close)
        statuses = []
        relay.handlers["onStatus"] = statuses.append
        stream_id = yield relay.call("createStream")
        relay.stream_command(stream_id, "publish", "cam", "live")
        yield relay.call("getStreamLength", "cam")        # a round trip: the answer to publish came before
        self.assertEqual([s["code"] for s in statuses], ["NetStream.Publish.Denied"])
        self.assertIsNone(self.a.app.live.get("cam"))

    @inlineCallbacks
    def test_a_relay_play_of_a_name_not_published_there_is_stream_not_found_at_once(self):
        relay = yield connect_client(self.a.url, reactor=reactor, **{RELAY_CREDENTIAL: SECRET})
        self.addCleanup(relay.close)
        statuses = []
        relay.handlers["onStatus"] = statuses.append
        stream_id = yield relay.call("createStream")
        relay.stream_command(stream_id, "play", "nothing", -1000)
        yield relay.call("getStreamLength", "nothing")
        self.assertEqual([s["code"] for s in statuses], ["NetStream.Play.StreamNotFound"])


def test_relay_accepts_only_the_clusters_secret():
    relay = Relay(SECRET)
    assert relay.accepts(SECRET)
    assert not relay.accepts(SECRET + "x")
    assert not relay.accepts("")
    assert not relay.accepts(None)
    assert not relay.accepts(42)
    assert not Relay("").accepts("")        # no secret configured: nothing is a relay
