"""LiveStreams, LiveStream and Player without sockets.

Each player's session holds a fake peer with a real server ``Connection``
paired to a client ``Connection``, so what a player would receive is decoded
from the bytes actually queued for it.  Time is a ``task.Clock``.
"""
import os
import shutil
import tempfile
import time

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.application import Application
from fmspy_gateway.app.live import LiveStreams, MediaMessage, Player
from fmspy_gateway.app.recording import RecordedStream, RecordPolicy, Recorder
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.session import Session, SessionOutput
from fmspy_gateway.rtmp import amf
from fmspy_gateway.rtmp.connection import VIDEO_CHUNK_STREAM, Connection, Role
from fmspy_gateway.rtmp.events import CommandReceived, DataReceived, MediaReceived, UserControlReceived
from fmspy_gateway.rtmp.flv import is_video_keyframe
from fmspy_gateway.rtmp.messages import MessageType, UserControl

AUDIO, VIDEO = MessageType.AUDIO, MessageType.VIDEO

# Legacy FLV payloads: AVC (codec 7) and AAC (sound format 10) with their packet types.
VIDEO_HEADER = b"\x17\x00\x00\x00\x00" + b"avcC-config"
AUDIO_HEADER = b"\xaf\x00" + b"\x12\x10"


def keyframe(size=1000, fill=b"K"):
    return b"\x17\x01\x00\x00\x00" + fill * size


def inter(size=300, fill=b"P"):
    return b"\x27\x01\x00\x00\x00" + fill * size


def audio(size=50, fill=b"A"):
    return b"\xaf\x01" + fill * size


class FakePeer:
    """A Peer: a server Connection paired with a client one, handshake done."""

    def __init__(self, address="127.0.0.1:1000", chunk_size=None, media_waits=False):
        self.connection = Connection(Role.SERVER)
        self.media_waits = media_waits
        self.aborted_because = None
        self.client = Connection(Role.CLIENT)
        self.address = address
        self.closed_because = None
        self.flushes = 0
        while True:
            out = self.client.data_to_send()
            if out:
                self.connection.receive_data(out)
            back = self.connection.data_to_send()
            if back:
                self.client.receive_data(back)
            if not out and not back:
                break
        if chunk_size is not None:
            self.connection.set_chunk_size(chunk_size)
            self.received()

    def flush(self):
        self.flushes += 1

    def flush_media(self):
        self.flush()

    def close(self, reason):
        self.closed_because = reason

    def abort(self, reason):
        self.aborted_because = reason

    def received(self):
        """Decode what the server queued for this peer since the last call (events the client would see)."""
        data = self.connection.data_to_send()
        return self.client.receive_data(data) if data else []


class FakeSession(SessionOutput):
    def __init__(self, **peer_options):
        super().__init__(FakePeer(**peer_options))
        self.closed = False
        self.limit_log = None

    def _may_switch(self):
        return True


def media(events):
    return [e for e in events if isinstance(e, MediaReceived)]


def codes(events):
    return [e.arguments[0]["code"] for e in events if isinstance(e, CommandReceived) and e.name == "onStatus"]


class LiveStreamTestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.registry = LiveStreams(self.clock, max_gop_bytes=64 * 1024, slow_player_timeout=5)
        self.live = self.registry.stream("cam")
        self.publisher = object()

    def add(self, stream_id=1, **peer_options):
        session = FakeSession(**peer_options)
        player = Player(session, stream_id)
        self.live.add_player(player)
        return player

    def publish(self, type_id, timestamp, payload):
        self.live.publish(type_id, timestamp, payload)
        self.registry.flush()

    def start_with_headers(self):
        self.live.start(self.publisher)
        self.live.set_metadata(("onMetaData", {"width": 320.0, "height": 240.0}))
        self.publish(VIDEO, 0, VIDEO_HEADER)
        self.publish(AUDIO, 0, AUDIO_HEADER)


class FanOutTests(LiveStreamTestCase):
    def test_one_message_is_cut_once_per_chunk_size_and_shared(self):
        self.start_with_headers()
        # Two players with the default chunk size of 128, one with 4096.
        small = [self.add(stream_id=1), self.add(stream_id=7)]
        large = self.add(stream_id=3, chunk_size=4096)
        players = small + [large]
        for player in players:
            player.session.peer.received()

        payload = keyframe(size=9000)
        self.live.publish(VIDEO, 40, payload)
        message = self.live.gop[-1]
        self.assertIsInstance(message, MediaMessage)
        self.assertEqual(message.payload, payload)
        # One cut per (chunk stream, chunk size), not one per player.
        self.assertEqual(sorted(message.shared), [(VIDEO_CHUNK_STREAM, 128), (VIDEO_CHUNK_STREAM, 4096)])
        # Every player of a chunk size has that very body object queued, not a copy.
        for player in players:
            size = player.session.peer.connection.chunk_size
            body = message.shared[(VIDEO_CHUNK_STREAM, size)]
            queued = player.session.peer.connection._outgoing
            self.assertTrue(any(part is body for part in queued), f"player {player.stream_id} got its own copy")

        self.registry.flush()
        for player in players:
            got = media(player.session.peer.received())
            self.assertEqual(len(got), 1)
            self.assertEqual(got[0].payload, payload)
            self.assertEqual(got[0].type_id, VIDEO)
            self.assertEqual(got[0].stream_id, player.stream_id)
            self.assertEqual(got[0].timestamp, 40)
            self.assertGreaterEqual(player.session.peer.flushes, 1)

    def test_audio_and_small_video_reach_every_player(self):
        self.start_with_headers()
        players = [self.add(stream_id=n) for n in (1, 2, 5)]
        for player in players:
            player.session.peer.received()
        self.publish(VIDEO, 0, keyframe(size=100))
        self.publish(AUDIO, 23, audio())
        self.publish(VIDEO, 40, inter(size=100))
        for player in players:
            got = media(player.session.peer.received())
            self.assertEqual([(m.type_id, m.timestamp, m.stream_id) for m in got],
                             [(VIDEO, 0, player.stream_id), (AUDIO, 23, player.stream_id),
                              (VIDEO, 40, player.stream_id)])
            self.assertEqual([m.payload for m in got], [keyframe(size=100), audio(), inter(size=100)])

    def test_flush_happens_once_per_read_and_skips_closed_sessions(self):
        self.start_with_headers()
        open_player, closed_player = self.add(stream_id=1), self.add(stream_id=1)
        self.registry.flush()
        before = open_player.session.peer.flushes, closed_player.session.peer.flushes
        closed_player.session.closed = True
        for t in (0, 10, 20):
            self.live.publish(AUDIO, t, audio())
        self.registry.flush()
        self.assertEqual(open_player.session.peer.flushes, before[0] + 1)
        self.assertEqual(closed_player.session.peer.flushes, before[1])


class FastPathTests(LiveStreamTestCase):
    """Players in step share one chunk header per message (``LiveStream.publish``): what each decodes is unchanged."""

    def feed(self, start, count, players):
        """``count`` video and audio messages from ``start`` ms; checks each player decodes them on its own time line."""
        sent = []
        for n in range(count):
            t = start + 40 * n
            video = keyframe(size=5000, fill=b"%d" % (n % 10)) if n % 10 == 0 else inter(size=2000 + n)
            self.publish(VIDEO, t, video)
            self.publish(AUDIO, t + 7, audio(size=40 + n % 3))
            sent += [(VIDEO, t, video), (AUDIO, t + 7, audio(size=40 + n % 3))]
        for player in players:
            got = media(player.session.peer.received())
            self.assertEqual([(m.type_id, m.stream_id, m.timestamp, m.payload) for m in got],
                             [(kind, player.stream_id, t - player.base, payload) for kind, t, payload in sent])
        return sent

    def queued_parts(self, player):
        """What ``player``'s connection has queued, including what it would take from the batch at its write."""
        connection = player.session.peer.connection
        if connection._batch is not None:
            connection.take_batch()
        return connection._outgoing

    def test_players_that_joined_at_different_times_get_their_own_time_lines_from_one_header(self):
        self.start_with_headers()
        self.publish(VIDEO, 0, keyframe())
        first = self.add(stream_id=1, chunk_size=4096)
        first.session.peer.received()
        self.feed(40, 30, [first])
        second = self.add(stream_id=5, chunk_size=4096)     # joins 1.2 s later: another base, another stream id
        second.session.peer.received()
        self.assertNotEqual(first.base, second.base)
        self.feed(1240, 30, [first, second])
        # In step now: the same header object and body object queued for both, built once.
        self.publish(VIDEO, 2440, inter(size=6000))
        a, b = self.queued_parts(first), self.queued_parts(second)
        self.assertEqual(len(a), 2)
        self.assertIs(a[0], b[0])
        self.assertIs(a[1], b[1])
        self.feed(2480, 5, [])
        for player in (first, second):
            got = media(player.session.peer.received())
            self.assertEqual([(m.stream_id, m.timestamp) for m in got][0], (player.stream_id, 2440 - player.base))

    def test_a_member_that_is_paused_muted_or_blocked_leaves_and_the_rules_still_hold(self):
        self.start_with_headers()
        self.publish(VIDEO, 0, keyframe())
        plain, changing = self.add(stream_id=1), self.add(stream_id=2)
        for player in (plain, changing):
            player.session.peer.received()
        self.feed(40, 12, [plain, changing])

        self.registry.block(changing.session)
        self.publish(VIDEO, 520, inter(fill=b"y"))
        self.assertEqual(media(changing.session.peer.received()), [])
        self.registry.unblock(changing.session)
        self.publish(VIDEO, 560, inter(fill=b"z"))       # dropped: it waits for a keyframe
        self.publish(VIDEO, 1000, keyframe(fill=b"k"))
        got = media(changing.session.peer.received())
        self.assertEqual([(m.payload, m.timestamp) for m in got], [(keyframe(fill=b"k"), 1000 - changing.base)])
        self.assertEqual(len(media(plain.session.peer.received())), 3)
        self.feed(1040, 12, [plain, changing])

        changing.video = False
        self.publish(VIDEO, 1520, inter(fill=b"x"))
        self.publish(AUDIO, 1527, audio(fill=b"x"))
        self.assertEqual([m.type_id for m in media(changing.session.peer.received())], [AUDIO])
        changing.video = True
        self.publish(VIDEO, 2000, keyframe(fill=b"K"))
        self.assertEqual([m.timestamp for m in media(changing.session.peer.received())], [2000 - changing.base])
        self.assertEqual(len(media(plain.session.peer.received())), 3)
        self.feed(2040, 12, [plain, changing])

    def test_anything_else_on_the_media_chunk_stream_takes_a_player_out_and_it_still_decodes(self):
        self.start_with_headers()
        self.publish(VIDEO, 0, keyframe())
        player, other = self.add(stream_id=1), self.add(stream_id=2)
        for p in (player, other):
            p.session.peer.received()
        self.feed(40, 12, [player, other])
        # Another stream of the same connection (a recording played, say) sends on the same chunk stream.
        player.session.send_media(VIDEO, 9, 77, inter(fill=b"r"))
        self.publish(VIDEO, 520, inter(fill=b"n"))
        got = media(player.session.peer.received())
        self.assertEqual([(m.stream_id, m.timestamp, m.payload) for m in got],
                         [(9, 77, inter(fill=b"r")), (1, 520 - player.base, inter(fill=b"n"))])
        media(other.session.peer.received())
        self.feed(560, 12, [player, other])

    def test_audio_from_before_a_players_start_is_sent_at_0_and_the_next_at_its_own_time(self):
        self.start_with_headers()
        self.publish(VIDEO, 1000, keyframe())
        players = [self.add(stream_id=n) for n in (1, 2)]
        for p in players:
            p.session.peer.received()
        # Audio interleaved just ahead of the keyframe they started at: 0 on their time line, not 49 days.
        for t in (990, 1003, 1016, 1029):
            self.publish(AUDIO, t, audio())
        for p in players:
            self.assertEqual([m.timestamp for m in media(p.session.peer.received())], [0, 3, 16, 29])
        self.feed(1040, 12, players)

    def test_a_publisher_clock_going_back_is_sent_to_each_with_a_header_of_its_own(self):
        self.start_with_headers()
        self.publish(VIDEO, 5000, keyframe())
        players = [self.add(stream_id=n) for n in (1, 2)]
        for p in players:
            p.session.peer.received()
        self.feed(5040, 12, players)
        self.publish(VIDEO, 6000, keyframe(fill=b"b"))
        self.publish(VIDEO, 5500, inter(fill=b"b"))      # back in time: no delta carries it
        for p in players:
            got = media(p.session.peer.received())
            self.assertEqual([m.timestamp for m in got], [6000 - p.base, 5500 - p.base])
        self.feed(5540, 12, players)


class MediaBatchTests(LiveStreamTestCase):
    """Members in step on both media chunk streams take every message from one ``MediaBatch`` at their write."""

    feed = FastPathTests.feed

    def in_step(self, count):
        self.start_with_headers()
        self.publish(VIDEO, 0, keyframe())
        players = [self.add(stream_id=n + 1, media_waits=True) for n in range(count)]
        for player in players:
            player.session.peer.received()
        self.feed(40, 3, players)
        for player in players:
            self.assertIs(player.session.peer.connection._batch, self.live._batch, "not in the batch")
        return players

    def test_a_message_is_added_once_and_each_member_takes_it_when_written(self):
        players = self.in_step(3)
        self.publish(VIDEO, 160, inter(size=3000))
        self.publish(AUDIO, 167, audio())
        # Nothing was copied into any player's queue: the batch holds each message's header and body once.
        self.assertEqual([len(p.session.peer.connection._outgoing) for p in players], [0, 0, 0])
        self.assertEqual(len(self.live._batch.parts), 4)
        for player in players:
            got = media(player.session.peer.received())
            self.assertEqual([(m.type_id, m.timestamp, m.stream_id, m.payload) for m in got],
                             [(VIDEO, 160 - player.base, player.stream_id, inter(size=3000)),
                              (AUDIO, 167 - player.base, player.stream_id, audio())])
        self.assertEqual(self.live._batch.parts, [], "taken by every member, the batch keeps nothing")

    def test_members_with_nothing_else_queued_write_one_bytes_object_joined_once(self):
        players = self.in_step(3)
        self.publish(VIDEO, 160, inter(size=3000))
        self.publish(AUDIO, 167, audio())
        first, second, third = (p.session.peer.connection for p in players)
        third.send_command("onStatus", 0, None, [{"code": "NetStream.Data.Start"}])   # its own, after the media
        joined = first.data_to_send()
        self.assertIs(second.data_to_send(), joined, "the second member got its own copy")
        own = third.data_to_send()
        self.assertTrue(own.startswith(joined) and len(own) > len(joined), "the same media, then its own message")
        self.assertEqual(self.live._batch.parts, [], "taken by every member, the batch keeps nothing")
        self.assertEqual([first.data_to_send(), second.data_to_send()], [b"", b""], "nothing is written twice")
        self.publish(AUDIO, 187, audio())
        later = [c.data_to_send() for c in (first, second, third)]
        self.assertIs(later[1], later[0])
        self.assertIs(later[2], later[0])
        self.assertNotEqual(later[0], joined)

    def test_a_player_written_at_each_read_is_fed_message_by_message_instead(self):
        self.start_with_headers()
        self.publish(VIDEO, 0, keyframe())
        player = self.add(stream_id=1)            # mediaFlushInterval 0: its media is written after each read
        player.session.peer.received()
        self.feed(40, 3, [player])
        self.assertIsNone(player.session.peer.connection._batch)
        self.assertIn(player, self.live._members[AUDIO])
        self.assertIn(player, self.live._members[VIDEO])
        self.publish(VIDEO, 160, inter())
        self.assertEqual(len(player.session.peer.connection._outgoing), 2, "queued at once, header and body")

    def test_a_member_is_flushed_once_until_it_is_written(self):
        players = self.in_step(2)
        before = [p.session.peer.flushes for p in players]
        for t in (160, 200, 240):
            self.publish(VIDEO, t, inter())
        self.assertEqual([p.session.peer.flushes - b for p, b in zip(players, before)], [1, 1])
        players[0].session.peer.received()          # written: the next message asks for a write again
        self.publish(AUDIO, 247, audio())
        self.assertEqual([p.session.peer.flushes - b for p, b in zip(players, before)], [2, 1])
        self.assertEqual(len(media(players[1].session.peer.received())), 4)

    def test_what_a_member_is_sent_meanwhile_comes_after_the_media_before_it(self):
        player, other = self.in_step(2)
        self.publish(VIDEO, 160, inter(fill=b"1"))
        player.session.send_status(player.stream_id, "NetStream.Data.Start", "between")
        self.publish(VIDEO, 200, inter(fill=b"2"))
        got = [e for e in player.session.peer.received() if isinstance(e, (MediaReceived, CommandReceived))]
        self.assertEqual([getattr(e, "payload", None) or e.arguments[0]["code"] for e in got],
                         [inter(fill=b"1"), "NetStream.Data.Start", inter(fill=b"2")])
        self.assertIs(player.session.peer.connection._batch, self.live._batch, "a command keeps it in the batch")
        self.assertEqual(len(media(other.session.peer.received())), 2)

    def test_a_connection_that_plays_a_second_stream_leaves_the_batch_and_both_decode(self):
        player, other = self.in_step(2)
        self.publish(VIDEO, 160, inter(fill=b"a"))
        second = self.registry.stream("cam2")
        second.start(object())
        second.publish(VIDEO, 0, VIDEO_HEADER)
        second.publish(VIDEO, 5, keyframe(fill=b"b"))
        elsewhere = Player(player.session, 9)
        second.add_player(elsewhere)          # its catch-up goes out on the same video chunk stream
        self.assertIsNone(player.session.peer.connection._batch)
        self.publish(VIDEO, 200, inter(fill=b"c"))
        got = media(player.session.peer.received())
        self.assertEqual([(m.stream_id, m.payload) for m in got],
                         [(1, inter(fill=b"a")), (9, VIDEO_HEADER), (9, keyframe(fill=b"b")), (1, inter(fill=b"c"))])
        self.assertEqual(got[-1].timestamp, 200 - player.base)
        self.assertEqual(len(media(other.session.peer.received())), 2)

    def test_a_member_whose_socket_fills_leaves_the_batch_and_restarts_at_a_keyframe(self):
        player, other = self.in_step(2)
        self.publish(VIDEO, 160, inter(fill=b"1"))
        self.registry.block(player.session)     # what it was sent so far is its own now
        self.assertIsNone(player.session.peer.connection._batch)
        self.publish(VIDEO, 200, inter(fill=b"2"))
        self.registry.unblock(player.session)
        self.publish(VIDEO, 240, inter(fill=b"3"))
        self.publish(VIDEO, 280, keyframe(fill=b"4"))
        got = media(player.session.peer.received())
        self.assertEqual([m.payload for m in got], [inter(fill=b"1"), keyframe(fill=b"4")])
        self.assertEqual(len(media(other.session.peer.received())), 4)

    def test_a_player_out_of_step_on_one_chunk_stream_is_not_batched_when_it_joins_the_other(self):
        self.in_step(1)
        late = self.add(stream_id=4, media_waits=True)          # joins mid-GOP: every message looked at one by one first
        self.publish(AUDIO, 167, audio(fill=b"a"))         # in step on audio now
        self.assertIn(late, self.live._members[AUDIO])
        late.session.send_media(AUDIO, 9, 5000, audio(fill=b"o"))   # its audio chunk stream is its own again
        self.publish(VIDEO, 200, inter(fill=b"v"))         # in step on video: not on both
        self.assertIsNone(late.session.peer.connection._batch)
        self.publish(AUDIO, 207, audio(fill=b"b"))
        got = media(late.session.peer.received())
        self.assertEqual([(m.stream_id, m.timestamp, m.payload) for m in got][-4:],
                         [(4, 167 - late.base, audio(fill=b"a")), (9, 5000, audio(fill=b"o")),
                          (4, 200 - late.base, inter(fill=b"v")), (4, 207 - late.base, audio(fill=b"b"))])

    def test_a_member_that_leaves_its_stream_takes_what_it_was_sent_first(self):
        player, other = self.in_step(2)
        self.publish(VIDEO, 160, inter(fill=b"1"))
        self.live.remove_player(player)
        self.assertIsNone(player.session.peer.connection._batch)
        self.publish(VIDEO, 200, inter(fill=b"2"))
        self.assertEqual([m.payload for m in media(player.session.peer.received())], [inter(fill=b"1")])
        self.assertEqual(len(media(other.session.peer.received())), 2)
        self.assertEqual(self.live._batch.parts, [])


class JoiningTests(LiveStreamTestCase):
    def publish_two_gops(self):
        self.start_with_headers()
        self.publish(VIDEO, 0, keyframe(fill=b"1"))
        self.publish(AUDIO, 20, audio())
        self.publish(VIDEO, 1000, keyframe(fill=b"2"))
        self.publish(AUDIO, 1020, audio(fill=b"a"))
        self.publish(VIDEO, 1040, inter(fill=b"p"))
        self.publish(AUDIO, 1043, audio(fill=b"b"))

    def test_player_joining_mid_stream_gets_metadata_headers_then_the_gop_rebased_to_zero(self):
        self.publish_two_gops()
        player = self.add(stream_id=4)
        events = player.session.peer.received()
        self.assertEqual(codes(events), ["NetStream.Play.Reset", "NetStream.Play.Start"])
        begin = [e for e in events if isinstance(e, UserControlReceived)]
        self.assertEqual([(e.event_type, e.value) for e in begin], [(UserControl.STREAM_BEGIN, 4)])
        data = [e.values for e in events if isinstance(e, DataReceived)]
        self.assertEqual(data[-1], ("onMetaData", {"width": 320.0, "height": 240.0}))
        # After the play replies: metadata, then media; nothing out of that order.
        kinds = [type(e).__name__ for e in events if isinstance(e, (DataReceived, MediaReceived))]
        self.assertEqual(kinds, ["DataReceived", "DataReceived"] + ["MediaReceived"] * 6)
        got = media(events)
        self.assertEqual([(m.type_id, m.payload) for m in got],
                         [(VIDEO, VIDEO_HEADER), (AUDIO, AUDIO_HEADER), (VIDEO, keyframe(fill=b"2")),
                          (AUDIO, audio(fill=b"a")), (VIDEO, inter(fill=b"p")), (AUDIO, audio(fill=b"b"))])
        self.assertTrue(is_video_keyframe(got[2].payload))
        # The GOP's keyframe is the player's 0; the headers cannot be before it.
        self.assertEqual([m.timestamp for m in got], [0, 0, 0, 20, 40, 43])
        self.assertEqual({m.stream_id for m in got}, {4})

        # Live messages after the catch-up continue on the same time line.
        self.publish(VIDEO, 1080, inter(fill=b"q"))
        self.assertEqual([(m.timestamp, m.payload) for m in media(player.session.peer.received())],
                         [(80, inter(fill=b"q"))])

    def test_audio_slightly_before_the_keyframe_is_not_sent_wrapped_around(self):
        self.start_with_headers()
        self.publish(VIDEO, 2000, keyframe())
        player = self.add()
        player.session.peer.received()
        # Interleaving may put an audio frame a few ms before the video a player started at.
        self.publish(AUDIO, 1990, audio())
        got = media(player.session.peer.received())
        self.assertEqual(len(got), 1)
        self.assertLess(got[0].timestamp, 1000)

    def test_player_joining_before_any_keyframe_waits_for_one(self):
        self.start_with_headers()
        self.publish(VIDEO, 0, inter())         # a stream joined between keyframes has no GOP yet
        self.assertEqual(self.live.gop, [])
        player = self.add()
        got = media(player.session.peer.received())
        self.assertEqual([m.payload for m in got], [VIDEO_HEADER, AUDIO_HEADER])
        self.publish(VIDEO, 40, inter())
        self.assertEqual(media(player.session.peer.received()), [])
        self.publish(AUDIO, 50, audio())
        self.publish(VIDEO, 80, keyframe())
        got = media(player.session.peer.received())
        self.assertEqual([m.payload for m in got], [audio(), keyframe()])

    def test_gop_cache_is_bounded_by_max_gop_bytes(self):
        self.registry.max_gop_bytes = 5000
        self.start_with_headers()
        self.publish(VIDEO, 0, keyframe(size=2000))
        self.publish(VIDEO, 40, inter(size=2000))
        self.assertEqual(len(self.live.gop), 2)
        self.assertLessEqual(sum(len(m.payload) for m in self.live.gop), 5000)
        self.publish(VIDEO, 80, inter(size=2000))     # would pass 5000 bytes: the cache is dropped
        self.assertEqual(self.live.gop, [])
        self.publish(VIDEO, 120, inter(size=10))       # no keyframe to start from: not kept
        self.assertEqual(self.live.gop, [])

        late = self.add()
        got = media(late.session.peer.received())
        self.assertEqual([m.payload for m in got], [VIDEO_HEADER, AUDIO_HEADER])
        self.publish(VIDEO, 160, inter(size=10))
        self.assertEqual(media(late.session.peer.received()), [])

        self.publish(VIDEO, 1000, keyframe(size=100))
        self.assertEqual([m.payload for m in self.live.gop], [keyframe(size=100)])
        self.assertEqual([m.payload for m in media(late.session.peer.received())], [keyframe(size=100)])
        # A keyframe alone larger than the bound is not kept either.
        self.publish(VIDEO, 2000, keyframe(size=6000))
        self.assertEqual(self.live.gop, [])

    def test_sequence_headers_and_media_reach_the_taps(self):
        tapped = []
        self.live.taps.append(lambda message: tapped.append((message.type_id, message.timestamp,
                                                             message.payload)))
        self.start_with_headers()
        self.publish(VIDEO, 0, keyframe())
        self.publish(AUDIO, 10, audio())
        # A recording without the sequence headers could not be decoded.
        self.assertEqual(tapped, [(VIDEO, 0, VIDEO_HEADER), (AUDIO, 0, AUDIO_HEADER),
                                  (VIDEO, 0, keyframe()), (AUDIO, 10, audio())])

    def test_new_sequence_header_replaces_the_cached_one_and_reaches_players(self):
        self.start_with_headers()
        player = self.add()
        player.session.peer.received()
        new_header = b"\x17\x00\x00\x00\x00" + b"other-config"
        self.publish(VIDEO, 500, new_header)
        self.assertEqual([m.payload for m in media(player.session.peer.received())], [new_header])
        late = self.add(stream_id=2)
        self.assertEqual([m.payload for m in media(late.session.peer.received())], [new_header, AUDIO_HEADER])


class SlowPlayerTests(LiveStreamTestCase):
    def test_blocked_player_gets_nothing_then_resumes_at_the_next_keyframe(self):
        self.start_with_headers()
        self.publish(VIDEO, 0, keyframe())
        slow, fast = self.add(stream_id=1), self.add(stream_id=2)
        slow.session.peer.received(), fast.session.peer.received()

        self.registry.block(slow.session)
        self.assertIn(slow.session, self.registry.blocked)
        self.publish(VIDEO, 40, inter(fill=b"1"))
        self.publish(AUDIO, 50, audio(fill=b"1"))
        self.publish(VIDEO, 1000, keyframe(fill=b"2"))
        self.publish(VIDEO, 1040, inter(fill=b"2"))
        self.assertEqual(media(slow.session.peer.received()), [])
        self.assertEqual(len(media(fast.session.peer.received())), 4)

        self.registry.unblock(slow.session)
        self.publish(VIDEO, 1080, inter(fill=b"3"))    # mid-GOP: its references were dropped
        self.publish(AUDIO, 1090, audio(fill=b"3"))    # audio needs no keyframe
        self.publish(VIDEO, 2000, keyframe(fill=b"4"))
        self.publish(VIDEO, 2040, inter(fill=b"4"))
        got = media(slow.session.peer.received())
        self.assertEqual([(m.type_id, m.timestamp, m.payload) for m in got],
                         [(AUDIO, 1090, audio(fill=b"3")), (VIDEO, 2000, keyframe(fill=b"4")),
                          (VIDEO, 2040, inter(fill=b"4"))])
        self.assertEqual(len(media(fast.session.peer.received())), 4)
        self.assertIsNone(slow.session.peer.closed_because)

    def test_player_blocked_longer_than_slow_player_timeout_is_disconnected(self):
        self.start_with_headers()
        slow, fast = self.add(stream_id=1), self.add(stream_id=2)
        self.registry.block(slow.session)
        self.clock.advance(4.9)
        self.publish(VIDEO, 0, keyframe())
        self.assertIsNone(slow.session.peer.closed_because)
        self.assertIn(slow.session, self.registry.blocked)
        self.clock.advance(0.2)
        self.publish(VIDEO, 40, inter())
        # Aborted, not closed: a close would wait for its full socket to drain, which it never does.
        self.assertIsNone(slow.session.peer.closed_because)
        self.assertIn("slowPlayerTimeout", slow.session.peer.aborted_because)
        self.assertIsNone(fast.session.peer.aborted_because)
        self.assertNotIn(slow.session, self.registry.blocked)
        self.assertIsNone(fast.session.peer.closed_because)

    def test_block_keeps_the_first_time_and_unblock_resets_it(self):
        self.start_with_headers()
        player = self.add()
        self.registry.block(player.session)
        self.clock.advance(3)
        self.registry.block(player.session)       # paused again while still paused: same episode
        self.clock.advance(3)
        self.publish(AUDIO, 0, audio())
        self.assertIsNotNone(player.session.peer.aborted_because)

        other = self.add(stream_id=2)
        self.registry.block(other.session)
        self.clock.advance(4)
        self.registry.unblock(other.session)
        self.registry.block(other.session)         # a new episode starts its own count
        self.clock.advance(4)
        self.publish(AUDIO, 10, audio())
        self.assertIsNone(other.session.peer.closed_because)

    def test_paused_and_muted_players(self):
        self.start_with_headers()
        player = self.add()
        player.session.peer.received()
        player.paused = True
        self.publish(VIDEO, 0, keyframe())
        self.publish(AUDIO, 10, audio())
        self.assertEqual(media(player.session.peer.received()), [])
        player.paused, player.need_keyframe = False, True
        player.audio = False
        self.publish(AUDIO, 20, audio())
        self.publish(VIDEO, 40, inter())
        self.publish(VIDEO, 1000, keyframe())
        self.assertEqual([m.timestamp for m in media(player.session.peer.received())], [1000])


class PublisherTests(LiveStreamTestCase):
    def test_stop_tells_players_and_flushes_them(self):
        self.start_with_headers()
        self.publish(VIDEO, 0, keyframe())
        players = [self.add(stream_id=1), self.add(stream_id=6)]
        for player in players:
            player.session.peer.received()
        flushes = [p.session.peer.flushes for p in players]
        # The publisher's connection dropped: no read of any player's is under way to flush after.
        self.live.stop()
        for player, before in zip(players, flushes):
            self.assertGreater(player.session.peer.flushes, before)
            events = player.session.peer.received()
            self.assertEqual(codes(events), ["NetStream.Play.UnpublishNotify"])
            eof = [(e.event_type, e.value) for e in events if isinstance(e, UserControlReceived)]
            self.assertEqual(eof, [(UserControl.STREAM_EOF, player.stream_id)])
            status = [e for e in events if isinstance(e, CommandReceived)][0]
            self.assertEqual(status.stream_id, player.stream_id)
        self.assertIsNone(self.live.publisher)
        self.assertEqual(self.live.gop, [])
        self.assertIsNone(self.live.video_header)
        self.assertIsNone(self.live.metadata)
        # The players wait on: the stream stays known until they leave.
        self.assertIs(self.registry.get("cam"), self.live)
        for player in players:
            self.live.remove_player(player)
        self.assertIsNone(self.registry.get("cam"))

    def test_waiting_players_get_publish_notify_then_the_stream(self):
        waiting = self.add(stream_id=2)
        events = waiting.session.peer.received()
        self.assertEqual(codes(events), ["NetStream.Play.Reset", "NetStream.Play.Start"])
        self.assertEqual(media(events), [])

        self.live.start(self.publisher)
        self.registry.flush()
        events = waiting.session.peer.received()
        self.assertEqual(codes(events), ["NetStream.Play.PublishNotify"])
        self.assertEqual([(e.event_type, e.value) for e in events if isinstance(e, UserControlReceived)],
                         [(UserControl.STREAM_BEGIN, 2)])

        self.live.set_metadata(("onMetaData", {"duration": 0.0}))
        self.publish(VIDEO, 5000, VIDEO_HEADER)
        self.publish(AUDIO, 5000, AUDIO_HEADER)
        self.publish(VIDEO, 5000, inter())          # before the first keyframe: not for a new player
        self.publish(VIDEO, 5040, keyframe())
        events = waiting.session.peer.received()
        self.assertEqual([e.values[0] for e in events if isinstance(e, DataReceived)], ["onMetaData"])
        got = media(events)
        self.assertEqual([(m.payload, m.timestamp) for m in got],
                         [(VIDEO_HEADER, 0), (AUDIO_HEADER, 0), (keyframe(), 40)])

    def test_republish_restarts_players_at_a_keyframe_and_at_zero(self):
        self.start_with_headers()
        self.publish(VIDEO, 0, keyframe())
        player = self.add()
        self.publish(VIDEO, 40, inter())
        self.live.stop()
        player.session.peer.received()
        self.live.start(object())
        self.publish(VIDEO, 7000, inter())
        self.publish(VIDEO, 7040, keyframe())
        got = media(player.session.peer.received())
        self.assertEqual([(m.timestamp, m.payload) for m in got], [(0, keyframe())])

    def test_idle_streams_are_forgotten(self):
        live = self.registry.stream("other")
        self.assertIs(self.registry.get("other"), live)
        self.registry.forget_if_idle(live)
        self.assertIsNone(self.registry.get("other"))


class PlayCommandTests(SynchronousTestCase):
    """How play's start argument and a late on_play answer reach live players (through a Session)."""

    def setUp(self):
        self.clock = Clock()
        test = self

        class App(Application):
            def on_play(self, client, name, query=""):
                return test.decision

        self.decision = True
        self.app = App("live", hub=LocalHub())
        self.app.live = LiveStreams(self.clock)
        self.app.record_dir = tempfile.mkdtemp(prefix="fmspy-live-")
        self.addCleanup(shutil.rmtree, self.app.record_dir, True)
        with Recorder(self.app.record_path("cam")) as recorder:
            recorder.write(VIDEO, 0, VIDEO_HEADER)
            recorder.write(VIDEO, 0, keyframe())
        self.peer = FakePeer()
        self.session = Session({"live": self.app}, self.peer, clock=self.clock)
        self.send("connect", 1, {"app": "live", "tcUrl": "rtmp://h/live"})
        self.send("createStream", 2, None)
        self.addCleanup(self.session.connection_lost, "test over")

    def send(self, name, transaction_id, command_object, *args, stream_id=0):
        self.peer.client.send_command(name, transaction_id, command_object, args, stream_id=stream_id)
        for event in self.peer.connection.receive_data(self.peer.client.data_to_send()):
            self.session.handle(event)
        self.session.events_handled()
        return self.peer.received()

    def recorded(self, events):
        return [e for e in events if isinstance(e, UserControlReceived)
                and e.event_type == UserControl.STREAM_IS_RECORDED]

    def test_minus_1000_means_live_only_as_ffmpeg_and_librtmp_send_it(self):
        events = self.send("play", 0, None, "cam", -1000, stream_id=1)
        self.assertEqual(codes(events), ["NetStream.Play.Reset", "NetStream.Play.Start"])
        self.assertEqual(self.recorded(events), [])
        self.assertIsNotNone(self.app.live.get("cam"))      # waiting for a publisher

    def test_minus_2000_plays_the_recording_when_nothing_is_live(self):
        events = self.send("play", 0, None, "cam", -2000, stream_id=1)
        self.assertEqual(len(self.recorded(events)), 1)
        self.assertIsNone(self.app.live.get("cam"))

    def test_a_late_on_play_answer_is_flushed(self):
        self.decision = Deferred()
        self.send("play", 0, None, "cam", -1, stream_id=1)
        flushes = self.peer.flushes
        self.decision.callback(True)
        self.assertGreater(self.peer.flushes, flushes)
        self.assertEqual(codes(self.peer.received()), ["NetStream.Play.Reset", "NetStream.Play.Start"])


class Conversation:
    """One client's Session on a shared application, fed through a real client Connection."""

    def __init__(self, app, clock, address):
        self.peer = FakePeer(address=address)
        self.session = Session({"live": app}, self.peer, clock=clock)
        self.events = []
        self.send("connect", 1, {"app": "live", "tcUrl": "rtmp://h/live"})

    def _deliver(self):
        for event in self.peer.connection.receive_data(self.peer.client.data_to_send()):
            self.session.handle(event)
        self.session.events_handled()
        return self.received()

    def received(self):
        """What the server queued for this client since the last look (also kept in ``events``)."""
        got = self.peer.received()
        self.events.extend(got)
        return got

    def everything(self):
        """Every event this client was sent so far."""
        self.received()
        return self.events

    def send(self, name, transaction_id, command_object, *args, stream_id=0):
        self.peer.client.send_command(name, transaction_id, command_object, args, stream_id=stream_id)
        return self._deliver()

    def media(self, type_id, timestamp, payload, stream_id):
        self.peer.client.send_media(type_id, stream_id, timestamp, payload)
        return self._deliver()

    def data(self, values, stream_id):
        self.peer.client.send_data(values, stream_id=stream_id)
        return self._deliver()

    def user_controls(self, events=None):
        return [(e.event_type, e.value) for e in (self.everything() if events is None else events)
                if isinstance(e, UserControlReceived) and e.event_type != UserControl.STREAM_BEGIN]

    def status_codes(self, events=None):
        return codes(self.everything() if events is None else events)


class StreamCommandsTestCase(SynchronousTestCase):
    """A publisher and players as Sessions of one application, time on a ``task.Clock``."""

    def setUp(self):
        self.clock = Clock()
        self.app = Application("live", hub=LocalHub())
        self.app.live = LiveStreams(self.clock)
        self.app.record_dir = tempfile.mkdtemp(prefix="fmspy-live-")
        self.addCleanup(shutil.rmtree, self.app.record_dir, True)
        self.count = 0

    def client(self):
        self.count += 1
        conversation = Conversation(self.app, self.clock, f"127.0.0.1:{2000 + self.count}")
        self.addCleanup(conversation.session.connection_lost, "test over")
        conversation.send("createStream", 2, None)
        conversation.received()
        return conversation

    def publisher(self, name="cam", media_stream=1):
        """Publishes ``name`` on stream 1; its media go on ``media_stream``."""
        publisher = self.client()
        publisher.send("publish", 0, None, name, "live", stream_id=1)
        self.assertIn("NetStream.Publish.Start", publisher.status_codes())
        publisher.data(["@setDataFrame", "onMetaData", {"width": 320.0}], media_stream)
        publisher.media(VIDEO, 0, VIDEO_HEADER, media_stream)
        publisher.media(AUDIO, 0, AUDIO_HEADER, media_stream)
        return publisher

    def player(self, name="cam", *args):
        player = self.client()
        player.send("play", 0, None, name, *args, stream_id=1)
        return player

    def gop(self, publisher, start, media_stream=1, seconds=1):
        """``seconds`` of media from ``start`` ms: a keyframe a second, video every 40 ms, audio every 20."""
        for t in range(start, start + seconds * 1000, 20):
            if t % 40 == 0:
                publisher.media(VIDEO, t, keyframe() if t % 1000 == 0 else inter(), media_stream)
            publisher.media(AUDIO, t, audio(), media_stream)


class StreamZeroMediaTests(StreamCommandsTestCase):
    """Item 10: node-media-server's relay publishes on stream 1 but sends its media on stream 0."""

    def test_media_on_stream_0_reaches_the_players_of_the_single_publishing_stream(self):
        publisher = self.publisher(media_stream=0)
        player = self.player("cam", -1000)
        self.gop(publisher, 0, media_stream=0)
        got = media(player.everything())
        self.assertEqual([m.payload for m in got[:2]], [VIDEO_HEADER, AUDIO_HEADER])
        self.assertEqual(len([m for m in got if m.type_id == VIDEO]), 1 + 25)
        self.assertEqual(len([m for m in got if m.type_id == AUDIO]), 1 + 50)
        self.assertEqual({m.stream_id for m in got}, {1})
        self.assertEqual([e.values[0] for e in player.everything() if isinstance(e, DataReceived)][-1], "onMetaData")
        self.assertEqual(publisher.session.streams.dropped.counts, {})

    def test_media_no_stream_takes_is_counted_and_logged_once_per_interval(self):
        idle = self.client()                 # created a stream, publishes nothing
        with self.assertLogs("fmspy_gateway.app", "WARNING") as logged:
            for t in range(0, 100):
                idle.media(AUDIO, t, audio(), 0)
                idle.media(VIDEO, t, inter(), 1)
        self.assertEqual(idle.session.streams.dropped.counts, {"media dropped": 200})
        self.assertEqual(len(logged.records), 1, logged.output)
        self.assertIn(idle.peer.address, logged.output[0])
        self.assertIn("stream 0", logged.output[0])
        self.clock.advance(11)
        with self.assertLogs("fmspy_gateway.app", "WARNING") as logged:
            idle.media(VIDEO, 200, inter(), 1)
        self.assertIn("199 more", logged.output[0])
        self.assertIn("stream 1 does not publish", logged.output[0])

    def test_stream_0_media_with_two_streams_publishing_is_dropped(self):
        publisher = self.publisher("one")
        publisher.send("createStream", 3, None)
        publisher.send("publish", 0, None, "two", "live", stream_id=2)
        player = self.player("one", -1000)
        before = len(media(player.everything()))
        publisher.media(VIDEO, 0, keyframe(), 0)
        self.assertEqual(len(media(player.everything())), before)
        self.assertEqual(publisher.session.streams.dropped.counts, {"media dropped": 1})


class PlayStopTests(StreamCommandsTestCase):
    """Item 11: a player's deleteStream/closeStream ends its stream with StreamEOF and Play.Stop."""

    def check_stopped(self, player, events):
        self.assertEqual(player.user_controls(events), [(UserControl.STREAM_EOF, 1)])
        self.assertEqual(player.status_codes(events), ["NetStream.Play.Stop"])
        [stop] = [e for e in events if isinstance(e, CommandReceived)]
        self.assertEqual(stop.stream_id, 1)
        self.assertEqual(stop.arguments[0]["level"], "status")

    def test_delete_stream_of_a_live_player(self):
        publisher = self.publisher()
        self.gop(publisher, 0)
        player = self.player("cam", -1000)
        self.assertEqual(player.user_controls(), [])
        events = player.send("deleteStream", 0, None, 1)
        self.check_stopped(player, events)
        self.assertEqual(self.app.live.get("cam").players, [])
        self.gop(publisher, 1000)
        self.assertEqual(media(player.received()), [])

    def test_close_stream_of_a_player_waiting_for_a_publisher(self):
        player = self.player("nobody", -1000)
        events = player.send("closeStream", 0, None, stream_id=1)
        self.check_stopped(player, events)
        self.assertIsNone(self.app.live.get("nobody"))

    def test_delete_stream_of_a_recording_being_played(self):
        with Recorder(self.app.record_path("show")) as recorder:
            recorder.write(VIDEO, 0, VIDEO_HEADER)
            for t in range(0, 10_000, 40):
                recorder.write(VIDEO, t, keyframe() if t % 1000 == 0 else inter())
        player = self.player("show", 0)
        self.assertIn("NetStream.Play.Start", player.status_codes())
        events = player.send("deleteStream", 0, None, 1)
        self.check_stopped(player, events)
        self.clock.advance(20)
        self.assertEqual(media(player.received()), [])

    def test_a_publishers_delete_stream_gets_unpublish_success_only(self):
        publisher = self.publisher()
        events = publisher.send("deleteStream", 0, None, 1)
        self.assertEqual(publisher.status_codes(events), ["NetStream.Unpublish.Success"])
        self.assertEqual(publisher.user_controls(events), [])


class PlayDurationTests(StreamCommandsTestCase):
    """Item 13: play(name, start, duration): duration in ms, as librtmp (rtmpdump --stop) sends it."""

    def record(self, name="show", seconds=6):
        with Recorder(self.app.record_path(name)) as recorder:
            recorder.write(VIDEO, 0, VIDEO_HEADER)
            recorder.write(AUDIO, 0, AUDIO_HEADER)
            for t in range(0, seconds * 1000, 20):
                if t % 40 == 0:
                    recorder.write(VIDEO, t, keyframe() if t % 1000 == 0 else inter())
                recorder.write(AUDIO, t, audio())

    def play_to_the_end(self, player):
        stops = player.status_codes().count("NetStream.Play.Stop")
        for _ in range(200):
            self.clock.advance(0.1)
            if player.status_codes().count("NetStream.Play.Stop") > stops:
                break
        return [m.timestamp for m in media(player.everything()) if m.payload not in (VIDEO_HEADER, AUDIO_HEADER)]

    def completes(self, player):
        return [e.arguments[0]["code"] for e in player.everything()
                if isinstance(e, CommandReceived) and e.name == "onPlayStatus"]

    def test_recording_played_for_a_duration_stops_with_play_stop_and_complete(self):
        self.record()
        player = self.player("show", 1000, 2500)
        times = self.play_to_the_end(player)
        self.assertEqual((min(times), max(times)), (1000, 3500))
        self.assertEqual(player.status_codes()[-1], "NetStream.Play.Stop")
        self.assertEqual(self.completes(player), ["NetStream.Play.Complete"])
        self.assertIn((UserControl.STREAM_EOF, 1), player.user_controls())
        self.clock.advance(10)
        self.assertEqual(media(player.received()), [])

    def test_recording_without_a_duration_or_with_minus_one_plays_to_its_end(self):
        self.record()
        for args in ((0,), (0, -1), (0, -1000)):
            player = self.player("show", *args)
            times = self.play_to_the_end(player)
            self.assertEqual(max(times), 5980, args)
            self.assertEqual(self.completes(player), ["NetStream.Play.Complete"], args)

    def test_duration_0_plays_the_frame_at_start(self):
        self.record()
        player = self.player("show", 2000, 0)
        self.assertEqual(self.play_to_the_end(player), [2000, 2000])      # the keyframe and its audio
        self.assertEqual(self.completes(player), ["NetStream.Play.Complete"])

    def test_a_seek_starts_the_duration_again_where_it_lands(self):
        self.record()
        player = self.player("show", 0, 1000)
        self.play_to_the_end(player)
        player.send("seek", 0, None, 3000, stream_id=1)
        times = self.play_to_the_end(player)
        self.assertEqual(max(times), 4000)
        self.assertEqual(player.status_codes().count("NetStream.Play.Stop"), 2)
        self.assertEqual(self.completes(player), ["NetStream.Play.Complete"] * 2)

    def test_live_play_for_a_duration_counts_the_media_it_was_sent(self):
        publisher = self.publisher()
        self.gop(publisher, 5000)                       # joins mid-stream: its 0 is the keyframe at 5000
        self.clock.advance(3600)                        # waiting costs nothing: only media counts
        player = self.player("cam", -1000, 1500)
        self.gop(publisher, 6000, seconds=2)
        times = [m.timestamp for m in media(player.everything())]
        self.assertEqual(max(times), 1500)
        self.assertEqual(player.status_codes()[-1], "NetStream.Play.Stop")
        self.assertEqual(player.user_controls(), [(UserControl.STREAM_EOF, 1)])
        self.assertEqual(self.app.live.get("cam").players, [])
        self.gop(publisher, 8000)
        self.assertEqual(media(player.received()), [])

    def test_live_duration_adds_up_across_republishes(self):
        player = self.player("cam", -1000, 1500)
        publisher = self.publisher()
        self.gop(publisher, 0)                          # 0-980 played
        publisher.send("deleteStream", 0, None, 1)
        publisher = self.publisher()
        self.gop(publisher, 0)                          # a new time line from 0: 520 ms left
        times = [m.timestamp for m in media(player.everything()) if m.payload not in (VIDEO_HEADER, AUDIO_HEADER)]
        self.assertEqual(max(times), 980)
        self.assertEqual(times[-1], 520)
        self.assertEqual(player.status_codes()[-1], "NetStream.Play.Stop")


class AutomaticRecordingTests(StreamCommandsTestCase):
    """Item 15: ``record = all | audio | video`` records every live publish (ffmpeg and OBS publish "live")."""

    def tags(self, name):
        path = self.app.record_path(name)
        self.assertTrue(os.path.isfile(path), os.listdir(self.app.record_dir))
        with RecordedStream(path) as recorded:
            return [(tag.type_id, tag.timestamp) for tag in recorded.tags_from(0)], recorded.metadata

    def publish_and_stop(self, seconds=2):
        publisher = self.publisher()
        player = self.player("cam", -1000)
        self.gop(publisher, 0, seconds=seconds)
        publisher.send("deleteStream", 0, None, 1)
        return publisher, player

    def test_off_records_nothing(self):
        self.publish_and_stop()
        self.assertEqual(os.listdir(self.app.record_dir), [])

    def test_all_records_a_live_publish_without_telling_the_publisher(self):
        self.app.record_policy = RecordPolicy("all")
        publisher, player = self.publish_and_stop()
        tags, metadata = self.tags("cam")
        self.assertEqual(len([t for t in tags if t[0] == VIDEO]), 50)
        self.assertEqual(len([t for t in tags if t[0] == AUDIO]), 100)
        self.assertEqual(metadata["width"], 320.0)
        self.assertEqual(metadata["duration"], 1.98)
        self.assertNotIn("NetStream.Record.Start", publisher.status_codes())
        self.assertEqual(len([m for m in media(player.everything()) if m.type_id == VIDEO]), 51)

    def test_audio_or_video_only(self):
        for kind, kept in (("audio", AUDIO), ("video", VIDEO)):
            self.app.record_policy = RecordPolicy(kind)
            self.publish_and_stop()
            tags, _ = self.tags("cam")
            self.assertEqual({t[0] for t in tags}, {kept}, kind)

    def test_suffix_names_each_publish_its_own_file(self):
        self.app.record_policy = RecordPolicy("all", "-%Y%m%d-%H%M%S")
        self.clock.advance(1_000_000_000)
        self.publish_and_stop()
        self.clock.advance(3600)
        self.publish_and_stop()
        names = [time.strftime("cam-%Y%m%d-%H%M%S.flv", time.localtime(t))
                 for t in (1_000_000_000, 1_000_003_600)]
        self.assertEqual(sorted(os.listdir(self.app.record_dir)), names)

    def test_a_name_that_cannot_be_a_file_is_published_unrecorded(self):
        self.app.record_policy = RecordPolicy("all")
        publisher = self.client()
        # The connection's limit log (the session's logger): a client may publish such names again and again.
        with self.assertLogs("fmspy_gateway.app", "WARNING") as logged:
            publisher.send("publish", 0, None, "../evil", "live", stream_id=1)
        self.assertIn("not recorded", logged.output[0])
        self.assertEqual(publisher.status_codes(), ["NetStream.Publish.Start"])
        self.assertEqual(os.listdir(self.app.record_dir), [])

    def test_record_max_size_closes_the_file_and_the_stream_goes_on(self):
        self.app.record_policy = RecordPolicy("all", max_size=20_000)
        publisher = self.publisher()
        player = self.player("cam", -1000)
        with self.assertLogs("fmspy_gateway.app.publishing", "WARNING") as logged:
            self.gop(publisher, 0, seconds=3)
        self.assertEqual(len(logged.records), 1, logged.output)
        self.assertIn("limit hit: recordMaxSize (20000 bytes)", logged.output[0])
        size = os.path.getsize(self.app.record_path("cam"))
        self.assertGreaterEqual(size, 20_000)
        self.assertLess(size, 20_000 + len(keyframe()) + 15)
        self.assertEqual(len([m for m in media(player.everything()) if m.type_id == VIDEO]), 1 + 75)
        publisher.send("deleteStream", 0, None, 1)
        tags, _ = self.tags("cam")            # a whole file, closed properly
        self.assertGreater(len(tags), 10)

    def test_record_max_duration_applies_to_publish_record_too_and_says_record_stop(self):
        self.app.record_policy = RecordPolicy("off", max_duration=1.5)
        publisher = self.client()
        publisher.send("publish", 0, None, "cam", "record", stream_id=1)
        self.assertEqual(publisher.status_codes(), ["NetStream.Publish.Start", "NetStream.Record.Start"])
        with self.assertLogs("fmspy_gateway.app.publishing", "WARNING") as logged:
            self.gop(publisher, 0, seconds=3)
        self.assertIn("limit hit: recordMaxDuration (1.5 s)", logged.output[0])
        self.assertEqual(publisher.status_codes()[-1], "NetStream.Record.Stop")
        tags, metadata = self.tags("cam")
        self.assertEqual(max(t for _, t in tags), 1500)


class Amf0PlayerTests(StreamCommandsTestCase):
    """Item 12: a player that connected with objectEncoding 0 is sent AMF0 only, relayed data and metadata too."""

    def data(self, conversation):
        return [e.values for e in conversation.everything() if isinstance(e, DataReceived)]

    def test_publisher_data_needing_amf3_is_dropped_for_an_amf0_player(self):
        publisher = self.publisher()
        player = self.player("cam", -1000)
        with self.assertLogs("fmspy_gateway.app", "WARNING") as logged:
            publisher.data(["onCuePoint", amf.ByteArray(b"\x00\x01")], 1)   # 0x11 + AMF3 from the publisher
        publisher.data(["onTextData", {"text": "hi"}], 1)
        self.assertEqual(list(self.data(player)[-1]), ["onTextData", {"text": "hi"}])
        self.assertNotIn("onCuePoint", [values[0] for values in self.data(player)])
        self.assertFalse(player.peer.client.peer_sent_amf3)
        self.assertIn("data message not sent: a ByteArray cannot be sent to an AMF0 client", logged.output[0])

    def test_metadata_reaches_an_amf0_player_without_the_members_needing_amf3(self):
        publisher = self.publisher()
        publisher.data(["@setDataFrame", "onMetaData", {"width": 320.0, "blob": amf.ByteArray(b"x")}], 1)
        with self.assertLogs("fmspy_gateway.app", "WARNING") as logged:
            player = self.player("cam", -1000)
        self.assertEqual(list(self.data(player)[-1]), ["onMetaData", {"width": 320.0}])
        self.assertFalse(player.peer.client.peer_sent_amf3)
        self.assertIn("sent without the values it cannot carry", logged.output[0])

    def test_recorded_metadata_needing_amf3_is_not_switched_to_an_amf0_player(self):
        with Recorder(self.app.record_path("show")) as recorder:
            recorder.write_metadata(["onMetaData", {"width": 320.0, "blob": amf.ByteArray(b"x")}])
            recorder.write(VIDEO, 0, VIDEO_HEADER)
            recorder.write(VIDEO, 0, keyframe())
        with self.assertLogs("fmspy_gateway.app", "WARNING") as logged:
            player = self.player("show", 0)
        self.assertIn("NetStream.Play.Start", player.status_codes())
        (metadata,) = [e.values for e in player.everything()
                       if isinstance(e, DataReceived) and e.values[0] == "onMetaData"]
        self.assertEqual(metadata[1]["width"], 320.0)
        self.assertNotIn("blob", metadata[1])
        self.assertFalse(player.peer.client.peer_sent_amf3)
        self.assertIn("onMetaData of show sent without the values it cannot carry", logged.output[0])

    def test_a_player_that_switches_itself_still_gets_amf3(self):
        publisher = self.publisher()
        player = self.player("cam", -1000)
        player.send("noop", 0, None, amf.ByteArray(b"x"))                 # it writes 0x11: it reads it too
        publisher.data(["onCuePoint", amf.ByteArray(b"\x00\x01")], 1)
        self.assertEqual(self.data(player)[-1][0], "onCuePoint")
        self.assertTrue(player.peer.client.peer_sent_amf3)
