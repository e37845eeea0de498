"""NetStream commands end to end: pause, seek, receiveAudio/receiveVideo, play2, BadName, Record.Failed,
and the maxStreams / maxQueuedCommands limits, as a client on a socket sees them.

Everything is driven by our own client with media we build here (no ffmpeg),
so each test knows exactly what was sent.  The server listens on 127.0.0.1
port 0; its timers, VOD pacing included, run on a ``task.Clock`` the test
advances, so "the stream went on for five seconds" costs no real time.
Ordering is proven with round trips, not waits: a call answered on a
connection comes after every byte the server wrote to it before, and the
publisher's answer comes after the server handled its media and fed the
players (one reactor callback does both).
"""
import os
import struct

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from fmspy_gateway.app import publishing as publishing_module
from fmspy_gateway.app.application import Application, Services, StreamRejected
from fmspy_gateway.app.calls import CallFailed, ConnectionClosed
from fmspy_gateway.app.live_application import LiveApplication
from fmspy_gateway.app.recording import Recorder
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.playback import VOD_LEAD_MS
from fmspy_gateway.config import RTMPConfig
from fmspy_gateway.rtmp import flv
from fmspy_gateway.rtmp.events import CommandReceived, DataReceived, MediaReceived
from fmspy_gateway.rtmp.messages import MessageType
from fmspy_gateway.server.client import RTMPClientProtocol

from .clocked import ClockedServerMixin, TappedConnection

AUDIO, VIDEO = MessageType.AUDIO, MessageType.VIDEO
#: Real seconds any single wait may take before the test fails (nothing here waits on real time).
WAIT = 10

# -- media we build: every payload names its own timestamp ------------------------------------

VIDEO_HEADER = b"\x17\x00\x00\x00\x00\x01\x42\x00\x1e\xff\xe1\x00\x00\x01\x00\x00"   # AVC sequence header
AUDIO_HEADER = b"\xaf\x00\x12\x10"                                                   # AAC AudioSpecificConfig


def keyframe(ts):
    return b"\x17\x01\x00\x00\x00" + struct.pack(">I", ts)


def interframe(ts):
    return b"\x27\x01\x00\x00\x00" + struct.pack(">I", ts)


def audio_frame(ts):
    return b"\xaf\x01" + struct.pack(">I", ts)


def stamp(payload):
    """The timestamp a payload built above carries (None for sequence headers)."""
    if payload in (VIDEO_HEADER, AUDIO_HEADER):
        return None
    return struct.unpack(">I", payload[-4:])[0]


def is_header(message):
    return message.payload in (VIDEO_HEADER, AUDIO_HEADER)


def is_keyframe(message):
    return message.type_id == VIDEO and message.payload[:2] == b"\x17\x01"


#: The recording: 10 s, video every 100 ms with a keyframe each second, audio 50 ms after each picture.
RECORDING_MS = 10_000
KEYFRAME_EVERY_MS = 1000


def recording_tags():
    tags = [(VIDEO, 0, VIDEO_HEADER), (AUDIO, 0, AUDIO_HEADER)]
    for ts in range(0, RECORDING_MS, 100):
        tags.append((VIDEO, ts, keyframe(ts) if ts % KEYFRAME_EVERY_MS == 0 else interframe(ts)))
        tags.append((AUDIO, ts + 50, audio_frame(ts + 50)))
    return tags


def write_recording(path):
    """An FLV file written with the format's own primitives (not the Recorder under test)."""
    with open(path, "wb") as f:
        f.write(flv.flv_header())
        body = flv.script_body("onMetaData", {"duration": RECORDING_MS / 1000, "width": 320.0})
        f.write(flv.tag_header(flv.SCRIPT, 0, len(body)) + body + flv.previous_tag_size(len(body)))
        for type_id, ts, payload in recording_tags():
            f.write(flv.tag_header(type_id, ts, len(payload)) + payload + flv.previous_tag_size(len(payload)))


def keyframe_at_or_before(ms):
    return max(0, min(ms, RECORDING_MS - 1)) // KEYFRAME_EVERY_MS * KEYFRAME_EVERY_MS


# -- our client, keeping what arrives in order -----------------------------------------------

class StreamClient(RTMPClientProtocol):
    """Our client; ``timeline`` holds onStatus infos and media in the order they arrived."""

    def __init__(self):
        super().__init__(reactor, handlers={"onStatus": lambda *args: None})
        self.connection = TappedConnection(self._on_events)
        self.timeline = []
        #: Commands other than onStatus (onFCPublish, _result...).
        self.commands = []
        self._waiting = []
        #: Bytes written to the socket so far.
        self.sent = 0

    def flush(self):
        data = self.connection.data_to_send()
        if data:
            self.sent += len(data)
            self.transport.write(data)

    def _on_events(self, events):
        for event in events:
            if isinstance(event, (MediaReceived, DataReceived)):
                self.timeline.append(event)
            elif isinstance(event, CommandReceived) and event.name == "onStatus" and event.arguments:
                self.timeline.append(event.arguments[0])
            elif isinstance(event, CommandReceived):
                self.commands.append(event)

    def dataReceived(self, data):
        super().dataReceived(data)
        for entry in list(self._waiting):
            if entry[0]():
                self._waiting.remove(entry)
                entry[1].callback(None)

    # -- what arrived --------------------------------------------------------------------------

    def mark(self):
        """A position in the timeline: what arrives later is ``since(mark)``."""
        return len(self.timeline)

    def since(self, mark=0):
        return self.timeline[mark:]

    def media(self, mark=0, stream_id=None):
        return [e for e in self.since(mark) if isinstance(e, MediaReceived)
                and (stream_id is None or e.stream_id == stream_id)]

    def codes(self, mark=0):
        return [e.get("code") for e in self.since(mark) if isinstance(e, dict)]

    def wait_code(self, code, mark=0) -> Deferred:
        return self._wait(lambda: code in self.codes(mark))

    def _wait(self, found) -> Deferred:
        if found():
            return succeed(None)
        d = Deferred()
        self._waiting.append((found, d))
        return d.addTimeout(WAIT, reactor)

    # -- what it sends ---------------------------------------------------------------------------

    @inlineCallbacks
    def barrier(self):
        """A round trip: once answered, everything the server wrote to us before it has arrived."""
        yield self.call("getStreamLength", "no-such-recording", timeout=WAIT)

    def command(self, stream_id, name, *args):
        self.connection.send_command(name, 0, None, list(args), stream_id=stream_id)
        self.flush()

    @inlineCallbacks
    def play(self, name, *args, command="play"):
        stream_id = yield self.call("createStream", timeout=WAIT)
        mark = self.mark()
        self.command(stream_id, command, name, *args)
        yield self._wait(lambda: any(c in self.codes(mark) for c in (
            "NetStream.Play.Start", "NetStream.Play.StreamNotFound", "NetStream.Play.Failed")))
        return stream_id

    @inlineCallbacks
    def publish(self, name, mode="live"):
        """createStream + publish; fires with (stream id, the code that answered)."""
        stream_id = yield self.call("createStream", timeout=WAIT)
        mark = self.mark()
        self.command(stream_id, "publish", name, mode)
        answers = ("NetStream.Publish.Start", "NetStream.Publish.BadName", "NetStream.Record.Failed")
        yield self._wait(lambda: any(c in self.codes(mark) for c in answers))
        return stream_id, next(c for c in self.codes(mark) if c in answers)

    def send(self, stream_id, messages):
        for type_id, ts, payload in messages:
            self.connection.send_media(type_id, stream_id, ts, payload)
        self.flush()


def live_messages(start, end, step=100):
    """Publisher messages from ``start`` to ``end`` ms: a keyframe each second, audio between pictures."""
    out = []
    for ts in range(start, end, step):
        out.append((VIDEO, ts, keyframe(ts) if ts % KEYFRAME_EVERY_MS == 0 else interframe(ts)))
        out.append((AUDIO, ts + step // 2, audio_frame(ts + step // 2)))
    return out


# -- the server ----------------------------------------------------------------------------------

class NetStreamServer(ClockedServerMixin):
    """A real server on loopback whose timers (VOD pacing among them) run on ``self.clock``."""

    def applications(self):
        live = LiveApplication("live")
        live.configure_streaming(object(), Services(LocalHub(), clock=self.clock, rtmp=self.rtmp_config))
        live.record_dir = self.record_dir
        return {"live": live}

    @inlineCallbacks
    def client(self, app="live", connect=True):
        port = self.listening.getHost().port
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=WAIT)
        client = yield endpoint.connect(Factory.forProtocol(StreamClient))
        self.addCleanup(self._close, client)
        if connect:
            yield client.connect(app, tc_url=f"rtmp://127.0.0.1:{port}/{app}")
        return client

    def _close(self, client):
        if client.connected:
            return client.close()
        return None


# -- live streams --------------------------------------------------------------------------------

class LiveCommandTests(NetStreamServer, TestCase):
    timeout = 60

    @inlineCallbacks
    def start_live(self, name="cam", until=2000):
        """A publisher on ``name`` that sent headers and ``until`` ms of media, and a player that has it all."""
        publisher = yield self.client()
        pub_id, answer = yield publisher.publish(name)
        self.assertEqual(answer, "NetStream.Publish.Start")
        player = yield self.client()
        play_id = yield player.play(name)
        publisher.send(pub_id, [(VIDEO, 0, VIDEO_HEADER), (AUDIO, 0, AUDIO_HEADER)] + live_messages(0, until))
        yield self.sync(publisher, player)
        return publisher, pub_id, player, play_id

    @inlineCallbacks
    def sync(self, publisher, *players):
        yield publisher.barrier()
        for player in players:
            yield player.barrier()

    @inlineCallbacks
    def test_pause_stops_live_media_and_unpause_resumes_at_a_keyframe_on_the_same_timeline(self):
        publisher, pub_id, player, play_id = yield self.start_live(until=2000)
        before = [m for m in player.media() if not is_header(m)]
        self.assertEqual(len(before), 40)
        # The player's 0 is the publisher's first picture (0 here): received == published.
        self.assertEqual([m.timestamp for m in before], [stamp(m.payload) for m in before])

        mark = player.mark()
        player.command(play_id, "pause", True, 2000)
        yield player.wait_code("NetStream.Pause.Notify", mark)
        publisher.send(pub_id, live_messages(2000, 4000))
        yield self.sync(publisher, player)
        self.assertEqual(player.media(mark), [], "media arrived while paused")

        mark = player.mark()
        player.command(play_id, "pause", False, 2000)
        yield player.wait_code("NetStream.Unpause.Notify", mark)
        publisher.send(pub_id, live_messages(4100, 6000))      # mid-GOP: pictures of 4.1-4.9 s cannot be decoded
        yield self.sync(publisher, player)
        after = player.media(mark)
        pictures = [m for m in after if m.type_id == VIDEO]
        # Video resumes at the next keyframe, not with a picture that cannot be decoded.
        self.assertTrue(is_keyframe(pictures[0]), pictures[0].payload)
        self.assertEqual(stamp(pictures[0].payload), 5000)
        self.assertEqual(len(pictures), 10)
        # Same timeline as before the pause: not rebased to 0, nothing skipped or shifted.
        self.assertEqual([m.timestamp for m in after], [stamp(m.payload) for m in after])
        self.assertTrue(all(4100 <= m.timestamp < 6000 for m in after))
        self.assertEqual(len(after), 10 + 19)       # the audio of 4.15-5.95 s is not held back

    @inlineCallbacks
    def test_receive_audio_false_leaves_only_video_and_true_brings_it_back(self):
        publisher, pub_id, player, play_id = yield self.start_live()
        mark = player.mark()
        player.command(play_id, "receiveAudio", False)
        yield player.barrier()
        publisher.send(pub_id, live_messages(2000, 3000))
        yield self.sync(publisher, player)
        got = player.media(mark)
        self.assertEqual({m.type_id for m in got}, {VIDEO})
        self.assertEqual([stamp(m.payload) for m in got], list(range(2000, 3000, 100)))

        mark = player.mark()
        player.command(play_id, "receiveAudio", True)
        yield player.barrier()
        publisher.send(pub_id, live_messages(3000, 3500))
        yield self.sync(publisher, player)
        self.assertEqual([m.type_id for m in player.media(mark)], [VIDEO, AUDIO] * 5)

    @inlineCallbacks
    def test_receive_video_false_leaves_only_audio_and_true_resumes_at_a_keyframe(self):
        publisher, pub_id, player, play_id = yield self.start_live()
        mark = player.mark()
        player.command(play_id, "receiveVideo", False)
        yield player.barrier()
        publisher.send(pub_id, live_messages(2000, 3000))
        yield self.sync(publisher, player)
        got = player.media(mark)
        self.assertEqual({m.type_id for m in got}, {AUDIO})
        self.assertEqual([stamp(m.payload) for m in got], list(range(2050, 3000, 100)))

        mark = player.mark()
        player.command(play_id, "receiveVideo", True)
        yield player.barrier()
        publisher.send(pub_id, live_messages(3000, 4500))
        yield self.sync(publisher, player)
        video = [m for m in player.media(mark) if m.type_id == VIDEO]
        # Not the pictures of 3.1-3.9 s: they need the keyframe of 3 s... which is the first one sent.
        self.assertTrue(is_keyframe(video[0]))
        self.assertEqual([stamp(m.payload) for m in video], list(range(3000, 4500, 100)))
        self.assertEqual(len([m for m in player.media(mark) if m.type_id == AUDIO]), 15)

    @inlineCallbacks
    def test_receive_video_true_mid_gop_waits_for_the_next_keyframe(self):
        publisher, pub_id, player, play_id = yield self.start_live()
        player.command(play_id, "receiveVideo", False)
        yield player.barrier()
        publisher.send(pub_id, live_messages(2000, 2500))
        yield self.sync(publisher, player)
        mark = player.mark()
        player.command(play_id, "receiveVideo", True)
        yield player.barrier()
        publisher.send(pub_id, live_messages(2500, 4000))
        yield self.sync(publisher, player)
        video = [stamp(m.payload) for m in player.media(mark) if m.type_id == VIDEO]
        self.assertEqual(video, list(range(3000, 4000, 100)))

    @inlineCallbacks
    def test_seek_on_a_live_stream_fails_and_the_stream_goes_on(self):
        publisher, pub_id, player, play_id = yield self.start_live()
        mark = player.mark()
        player.command(play_id, "seek", 500)
        yield player.wait_code("NetStream.Seek.Failed", mark)
        self.assertNotIn("NetStream.Seek.Notify", player.codes(mark))
        publisher.send(pub_id, live_messages(2000, 2500))
        yield self.sync(publisher, player)
        self.assertEqual([stamp(m.payload) for m in player.media(mark)],
                         [stamp(p) for _, _, p in live_messages(2000, 2500)])

    @inlineCallbacks
    def test_play2_switches_a_netstream_to_another_live_stream(self):
        publisher, pub_id, player, play_id = yield self.start_live("one")
        other = yield self.client()
        other_id, answer = yield other.publish("two")
        self.assertEqual(answer, "NetStream.Publish.Start")
        other.send(other_id, [(VIDEO, 0, VIDEO_HEADER), (AUDIO, 0, AUDIO_HEADER)] + live_messages(7000, 8000))
        yield other.barrier()

        mark = player.mark()
        player.command(play_id, "play2", {"streamName": "two", "oldStreamName": "one", "start": -2,
                                          "transition": "switch"})
        yield player.wait_code("NetStream.Play.Start", mark)
        publisher.send(pub_id, live_messages(2000, 3000))
        other.send(other_id, live_messages(8000, 9000))
        yield self.sync(publisher, player)
        yield self.sync(other, player)
        got = player.media(mark, stream_id=play_id)
        pictures = [stamp(m.payload) for m in got if not is_header(m)]
        # Only "two" from now on: its cached GOP (7 s on) then live; nothing more of "one".
        self.assertTrue(all(ts >= 7000 for ts in pictures), pictures)
        self.assertEqual([ts for ts in pictures if ts % 100 == 0], list(range(7000, 9000, 100)))
        self.assertEqual(self.apps["live"].live.get("one").players, [])
        self.assertEqual(len(self.apps["live"].live.get("two").players), 1)

    @inlineCallbacks
    def test_a_second_publisher_of_a_live_name_gets_bad_name_and_the_first_goes_on(self):
        publisher, pub_id, player, play_id = yield self.start_live("cam")
        intruder = yield self.client()
        intruder_id, answer = yield intruder.publish("cam")
        self.assertEqual(answer, "NetStream.Publish.BadName")
        self.assertNotIn("NetStream.Publish.Start", intruder.codes())
        # What the intruder sends reaches no one; the first publisher still does.
        mark = player.mark()
        intruder.send(intruder_id, [(VIDEO, 9000, keyframe(9000))])
        yield self.sync(intruder, player)
        publisher.send(pub_id, live_messages(2000, 2200))
        yield self.sync(publisher, player)
        self.assertEqual([stamp(m.payload) for m in player.media(mark)], [2000, 2050, 2100, 2150])
        self.assertNotIn("NetStream.Play.UnpublishNotify", player.codes(mark))


# -- recorded streams --------------------------------------------------------------------------

class RecordedCommandTests(NetStreamServer, TestCase):
    timeout = 60

    def setUp(self):
        super().setUp()
        write_recording(os.path.join(self.record_dir, "show.flv"))

    @inlineCallbacks
    def play_recording(self, start=0, command="play"):
        player = yield self.client()
        if command == "play2":
            stream_id = yield player.play({"streamName": "show", "start": start}, command="play2")
        else:
            stream_id = yield player.play("show", start)
        yield player.barrier()
        return player, stream_id

    def assert_plays_from(self, media, position, until):
        """Sequence headers stamped with the start, then every tag from the keyframe at or before ``position``."""
        start = keyframe_at_or_before(position)
        self.assertEqual([(m.type_id, m.timestamp) for m in media[:2]], [(VIDEO, start), (AUDIO, start)])
        self.assertTrue(all(is_header(m) for m in media[:2]))
        self.assertTrue(is_keyframe(media[2]), media[2].payload)
        expected = [(t, ts, p) for t, ts, p in recording_tags()[2:] if start <= ts <= until]
        self.assertEqual([(m.type_id, m.timestamp, m.payload) for m in media[2:]], expected)

    @inlineCallbacks
    def test_play_of_a_recording_is_paced_by_the_clock(self):
        player, stream_id = yield self.play_recording()
        codes = player.codes()
        self.assertEqual(codes[:2], ["NetStream.Play.Reset", "NetStream.Play.Start"])
        self.assert_plays_from(player.media(), 0, VOD_LEAD_MS)
        mark = player.mark()
        self.advance(1.0)
        yield player.barrier()
        self.assertEqual([m.timestamp for m in player.media(mark)],
                         [ts for _, ts, _ in recording_tags()[2:] if VOD_LEAD_MS < ts <= 2 * VOD_LEAD_MS])

    @inlineCallbacks
    def test_a_recording_whose_onmetadata_passes_record_max_metadata_size_plays_without_it(self):
        player, _ = yield self.play_recording()
        self.assertIn("onMetaData", [e.values[0] for e in player.since() if isinstance(e, DataReceived)])
        self.assertFalse(any("recordMaxMetadataSize" in line for line in self.log.lines))
        self.apps["live"].record_max_metadata_size = 16        # the file's onMetaData body is some 40 bytes
        player, _ = yield self.play_recording()
        for _ in range(3):          # played again and again: logged once per interval (the connection's limit log)
            mark = player.mark()
            yield player.play("show", 0)
            yield player.barrier()
            self.assertNotIn("onMetaData", [e.values[0] for e in player.since(mark) if isinstance(e, DataReceived)])
            self.assert_plays_from(player.media(mark), 0, VOD_LEAD_MS)
        self.assertNotIn("onMetaData", [e.values[0] for e in player.since() if isinstance(e, DataReceived)])
        lines = [line for line in self.log.lines if "recordMaxMetadataSize" in line]
        self.assertEqual(len(lines), 1, self.log.lines)
        self.assertIn("show.flv played without its onMetaData of", lines[0])
        self.assertIn("more than recordMaxMetadataSize (16)", lines[0])

    @inlineCallbacks
    def test_seek_notify_then_media_from_the_keyframe_at_or_before_the_target(self):
        player, stream_id = yield self.play_recording()
        for target in (5500, 5000, 999, 3001, 20000):
            mark = player.mark()
            player.command(stream_id, "seek", target)
            yield player.wait_code("NetStream.Play.Start", mark)
            yield player.barrier()
            codes = player.codes(mark)
            self.assertEqual(codes[:2], ["NetStream.Seek.Notify", "NetStream.Play.Start"], target)
            # Nothing from before the seek arrives after Seek.Notify.
            seek_at = next(i for i, e in enumerate(player.since(mark)) if isinstance(e, dict))
            media = [e for e in player.since(mark)[seek_at:] if isinstance(e, MediaReceived)]
            start = keyframe_at_or_before(target)
            self.assert_plays_from(media, target, start + VOD_LEAD_MS)
        # The last seek (past the end) went to the last keyframe, whose lead reaches the end.
        self.assertEqual(player.media()[-1].timestamp, RECORDING_MS - 50)
        self.assertIn("NetStream.Play.Stop", player.codes(mark))

    @inlineCallbacks
    def test_after_a_seek_it_plays_on_from_there_as_the_clock_goes(self):
        player, stream_id = yield self.play_recording()
        mark = player.mark()
        player.command(stream_id, "seek", 5500)
        yield player.wait_code("NetStream.Seek.Notify", mark)
        yield player.barrier()
        self.advance(1.0)
        yield player.barrier()
        media = player.media(mark)
        self.assert_plays_from(media, 5500, 5000 + VOD_LEAD_MS + 1000)
        self.assertNotIn("NetStream.Play.Stop", player.codes(mark))

    @inlineCallbacks
    def test_pause_stops_recorded_media_and_unpause_resumes_where_it_was(self):
        player, stream_id = yield self.play_recording()
        self.advance(2.0)          # the playhead is at 2 s; sent up to 3 s (the lead)
        yield player.barrier()
        mark = player.mark()
        player.command(stream_id, "pause", True, 2000)
        yield player.wait_code("NetStream.Pause.Notify", mark)
        self.advance(5.0)
        yield player.barrier()
        self.assertEqual(player.media(mark), [], "media arrived while paused")

        mark = player.mark()
        player.command(stream_id, "pause", False, 2500)
        yield player.wait_code("NetStream.Unpause.Notify", mark)
        yield player.barrier()
        # The five paused seconds do not count: it goes on from the keyframe at or before 2.5 s.
        self.assert_plays_from(player.media(mark), 2500, 2000 + VOD_LEAD_MS)
        mark = player.mark()
        self.advance(1.0)
        yield player.barrier()
        self.assertEqual([m.timestamp for m in player.media(mark)],
                         [ts for _, ts, _ in recording_tags()[2:] if 3000 < ts <= 4000])

    @inlineCallbacks
    def test_unpause_without_a_position_resumes_at_the_playhead(self):
        player, stream_id = yield self.play_recording()
        self.advance(4.0)          # the playhead is at 4 s
        yield player.barrier()
        player.command(stream_id, "pause", True)
        yield player.wait_code("NetStream.Pause.Notify")
        mark = player.mark()
        player.command(stream_id, "pause", False)
        yield player.wait_code("NetStream.Unpause.Notify", mark)
        yield player.barrier()
        media = player.media(mark)
        self.assertTrue(media, "nothing after unpause")
        self.assertEqual(media[0].timestamp, 4000, "resumed elsewhere than the playhead")

    @inlineCallbacks
    def test_a_seek_while_paused_sends_nothing_until_unpause_then_plays_from_there(self):
        player, stream_id = yield self.play_recording()
        player.command(stream_id, "pause", True)
        yield player.wait_code("NetStream.Pause.Notify")
        mark = player.mark()
        player.command(stream_id, "seek", 5500)
        yield player.wait_code("NetStream.Seek.Notify", mark)
        self.advance(2.0)
        yield player.barrier()
        self.assertEqual([m for m in player.media(mark) if not is_header(m)], [], "pictures while paused")
        mark = player.mark()
        player.command(stream_id, "pause", False)
        yield player.wait_code("NetStream.Unpause.Notify", mark)
        yield player.barrier()
        self.assert_plays_from(player.media(mark), 5500, 5000 + VOD_LEAD_MS)

    @inlineCallbacks
    def test_receive_video_false_on_a_recording_leaves_only_audio(self):
        player, stream_id = yield self.play_recording()
        mark = player.mark()
        player.command(stream_id, "receiveVideo", False)
        yield player.barrier()
        self.advance(1.0)
        yield player.barrier()
        got = player.media(mark)
        self.assertTrue(got)
        self.assertEqual({m.type_id for m in got}, {AUDIO})

    @inlineCallbacks
    def test_receive_video_back_on_a_recording_resumes_at_a_keyframe(self):
        player, stream_id = yield self.play_recording()
        player.command(stream_id, "receiveVideo", False)
        yield player.barrier()
        self.advance(0.5)                          # sent up to 1.5 s, without video
        yield player.barrier()
        mark = player.mark()
        player.command(stream_id, "receiveVideo", True)
        yield player.barrier()
        self.advance(1.0)                          # up to 2.5 s
        yield player.barrier()
        video = [m.timestamp for m in player.media(mark) if m.type_id == VIDEO]
        self.assertEqual(video, list(range(2000, 2600, 100)))     # not the pictures of 1.6-1.9 s
        self.assertEqual(len([m for m in player.media(mark) if m.type_id == AUDIO]), 10)

    @inlineCallbacks
    def test_receive_audio_false_on_a_recording_leaves_only_video(self):
        player, stream_id = yield self.play_recording()
        mark = player.mark()
        player.command(stream_id, "receiveAudio", False)
        yield player.barrier()
        self.advance(1.0)
        yield player.barrier()
        got = player.media(mark)
        self.assertTrue(got)
        self.assertEqual({m.type_id for m in got}, {VIDEO})

    @inlineCallbacks
    def test_play2_with_a_start_plays_the_recording_from_the_keyframe_before_it(self):
        player, stream_id = yield self.play_recording(6200, command="play2")
        self.assertIn("NetStream.Play.Start", player.codes())
        self.assert_plays_from(player.media(), 6200, 6000 + VOD_LEAD_MS)


# -- recording failures ------------------------------------------------------------------------

class FailingRecorder(Recorder):
    """A Recorder whose disk fills up after its first tag."""

    def _write(self, type_id, timestamp, body):
        if self._last is not None:
            raise OSError(28, "No space left on device")
        super()._write(type_id, timestamp, body)


class RecordFailedTests(NetStreamServer, TestCase):
    timeout = 60

    @inlineCallbacks
    def test_append_onto_a_file_that_is_not_flv_gets_record_failed_and_keeps_the_file(self):
        path = os.path.join(self.record_dir, "notes.flv")
        with open(path, "wb") as f:
            f.write(b"not a video, someone's notes")
        publisher = yield self.client()
        stream_id, answer = yield publisher.publish("notes", "append")
        self.assertEqual(answer, "NetStream.Record.Failed")
        self.assertNotIn("NetStream.Publish.Start", publisher.codes())
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"not a video, someone's notes")
        self.assertIsNone(self.apps["live"].live.get("notes"))
        self.assertTrue(any("cannot record" in line and "notes.flv" in line for line in self.log.lines),
                        self.log.lines)

    @inlineCallbacks
    def test_a_full_disk_ends_the_recording_with_record_failed_but_not_the_live_stream(self):
        self.patch(publishing_module, "Recorder", FailingRecorder)
        publisher = yield self.client()
        pub_id, answer = yield publisher.publish("show", "record")
        self.assertEqual(answer, "NetStream.Publish.Start")
        yield publisher.wait_code("NetStream.Record.Start")
        player = yield self.client()
        yield player.play("show", -1)
        mark = publisher.mark()
        publisher.send(pub_id, [(VIDEO, 0, VIDEO_HEADER), (AUDIO, 0, AUDIO_HEADER)] + live_messages(0, 1000))
        yield publisher.wait_code("NetStream.Record.Failed", mark)
        yield self.sync_all(publisher, player)
        self.assertNotIn("NetStream.Unpublish.Success", publisher.codes(mark))
        self.assertEqual(len([m for m in player.media() if not is_header(m)]), 20)
        self.assertTrue(any("recording show failed" in line for line in self.log.lines), self.log.lines)
        # Publishing goes on, to the players only.
        mark = player.mark()
        publisher.send(pub_id, live_messages(1000, 1200))
        yield self.sync_all(publisher, player)
        self.assertEqual(len(player.media(mark)), 4)
        self.assertEqual(publisher.codes(mark), [])

    @inlineCallbacks
    def sync_all(self, *clients):
        for client in clients:
            yield client.barrier()


# -- limits --------------------------------------------------------------------------------------

class HeldConnectApplication(Application):
    """Decides a connect only when the test fires ``decision``."""

    def __init__(self, name):
        super().__init__(name)
        self.decisions = []
        self._asked = []

    def on_connect(self, client, *args):
        d = Deferred()
        self.decisions.append(d)
        for waiting in self._asked[:]:
            if len(self.decisions) >= waiting[0]:
                self._asked.remove(waiting)
                waiting[1].callback(None)
        return d

    @inlineCallbacks
    def decision(self, index):
        """Fires with the Deferred of the ``index``-th connect once it was asked for."""
        if len(self.decisions) <= index:
            d = Deferred()
            self._asked.append((index + 1, d))
            yield d.addTimeout(WAIT, reactor)
        return self.decisions[index]

    def invoke_echo(self, client, value):
        return value


class MaxStreamsTests(NetStreamServer, TestCase):
    timeout = 60
    rtmp_config = RTMPConfig(max_streams=2)

    @inlineCallbacks
    def test_create_stream_beyond_max_streams_is_refused_logged_and_the_connection_goes_on(self):
        client = yield self.client()
        first = yield client.call("createStream")
        second = yield client.call("createStream")
        self.assertEqual((first, second), (1, 2))
        d = client.call("createStream")
        failure = yield self.assertFailure(d, CallFailed)
        self.assertNotIsInstance(failure, ConnectionClosed)
        self.assertEqual(failure.code, "NetConnection.Call.Failed")
        self.assertIn("Too many streams", failure.description)
        self.assertTrue(any("maxStreams" in line for line in self.log.lines), self.log.lines)
        self.assertTrue(client.connected)
        # A stream deleted frees its place.
        client.command(0, "deleteStream", first)
        third = yield client.call("createStream")
        self.assertEqual(third, 3)
        d = client.call("createStream")
        yield self.assertFailure(d, CallFailed)
        # Refused again and again: one log line per interval, not one per refusal.
        self.assertEqual(sum("maxStreams" in line for line in self.log.lines), 1, self.log.lines)
        # Another connection has its own budget.
        other = yield self.client()
        self.assertEqual((yield other.call("createStream")), 1)


class MaxStreamNameLengthTests(NetStreamServer, TestCase):
    timeout = 60
    rtmp_config = RTMPConfig(max_stream_name_length=8)

    def status_of(self, client, mark):
        [info] = [e for e in client.since(mark) if isinstance(e, dict)]
        return info["code"], info["description"]

    @inlineCallbacks
    def test_names_over_the_configured_length_are_refused_with_a_reason_and_logged_once(self):
        publisher = yield self.client()
        mark = publisher.mark()
        _, answer = yield publisher.publish("ninechars")
        self.assertEqual(self.status_of(publisher, mark),
                         ("NetStream.Publish.BadName", "Stream name longer than 8 characters."))
        # The query string is not part of the name: eight characters and a long query are fine.
        _, answer = yield publisher.publish("eightchr?token=" + "t" * 100)
        self.assertEqual(answer, "NetStream.Publish.Start")
        self.assertIsNotNone(self.apps["live"].live.get("eightchr"))
        player = yield self.client()
        for _ in range(5):      # refused each time, logged once per interval
            mark = player.mark()
            yield player.play("ninechars")
            self.assertEqual(self.status_of(player, mark),
                             ("NetStream.Play.StreamNotFound", "Stream name longer than 8 characters."))
        hits = [line for line in self.log.lines if "maxStreamNameLength" in line]
        self.assertEqual(len(hits), 2, self.log.lines)      # the publisher's and the player's connection
        self.assertTrue(any("publish refused: a stream name of 9 characters" in line for line in hits), hits)
        self.assertTrue(any("play refused: a stream name of 9 characters" in line for line in hits), hits)
        mark = player.mark()
        player.command(999, "play", "ninechars")       # a stream never created: that comes first, as in publish
        yield player.wait_code("NetStream.Play.StreamNotFound", mark)
        self.assertEqual(self.status_of(player, mark)[1], "Stream 'ninechars' not found.")
        self.assertEqual(sum("maxStreamNameLength" in line for line in self.log.lines), 2, self.log.lines)
        mark = player.mark()
        yield player.play("eightchr")
        self.assertEqual(player.codes(mark)[0], "NetStream.Play.Reset")
        self.assertTrue(player.connected and publisher.connected)


class MaxQueuedCommandsTests(NetStreamServer, TestCase):
    timeout = 60
    rtmp_config = RTMPConfig(max_queued_commands=3)

    def applications(self):
        return {"held": HeldConnectApplication("held")}

    @inlineCallbacks
    def connect_and_send_early_calls(self, count):
        client = yield self.client(connect=False)
        yield client._wait(lambda: client.handshake is not None)
        connected = client.connect("held")
        calls = [client.call("echo", i, timeout=WAIT) for i in range(count)]
        yield self.factory.wait_received(client, client.sent)
        return client, connected, calls

    @inlineCallbacks
    def test_commands_up_to_the_limit_wait_for_the_connect_and_are_answered_in_order(self):
        client, connected, calls = yield self.connect_and_send_early_calls(3)
        self.assertFalse(connected.called)
        decision = yield self.apps["held"].decision(0)
        decision.callback(True)
        yield connected
        results = []
        for d in calls:
            results.append((yield d))
        self.assertEqual(results, [0, 1, 2])
        self.assertFalse(any("maxQueuedCommands" in line for line in self.log.lines))

    @inlineCallbacks
    def test_one_command_more_closes_the_connection_and_logs_the_option(self):
        bystander = yield self.client(connect=False)
        client, connected, calls = yield self.connect_and_send_early_calls(4)
        yield client.closed.addTimeout(WAIT, reactor)
        yield self.assertFailure(connected, ConnectionClosed)
        for d in calls:
            yield self.assertFailure(d, ConnectionClosed)
        self.assertTrue(any("maxQueuedCommands" in line for line in self.log.lines), self.log.lines)
        # The application's answer, when it comes, is for no one; another client is still served.
        self.apps["held"].decisions[0].callback(True)
        self.assertTrue(bystander.connected)
        connected = bystander.connect("held")
        decision = yield self.apps["held"].decision(1)
        decision.callback(True)
        yield connected
        self.assertEqual((yield bystander.call("echo", "still here")), "still here")


# -- the rest of a NetStream's life: hooks, set-up and tear-down commands ---------------------------

class HookedApplication(LiveApplication):
    """Refuses by name, in each of the ways a hook can: StreamRejected, False, an exception."""

    def __init__(self, name):
        super().__init__(name)
        self.unpublished = []

    def _decide(self, name):
        if name == "rejected":
            raise StreamRejected("not this one")
        if name == "false":
            return False
        if name == "broken":
            raise RuntimeError("a bug in the application")
        return True

    def on_publish(self, client, name, mode, query=""):
        return self._decide(name)

    def on_play(self, client, name, query=""):
        return self._decide(name)

    def on_unpublish(self, client, name):
        self.unpublished.append(name)


class StreamLifecycleTests(NetStreamServer, TestCase):
    timeout = 60

    def applications(self):
        live = HookedApplication("live")
        live.configure_streaming(object(), Services(LocalHub(), clock=self.clock, rtmp=self.rtmp_config))
        live.record_dir = self.record_dir
        return {"live": live}

    @inlineCallbacks
    def test_publish_refusals_reach_the_publisher_as_publish_denied(self):
        publisher = yield self.client()
        for name, description in (("rejected", "not this one"), ("false", "Publishing false is not allowed."),
                                  ("broken", "Publishing broken is not allowed.")):
            stream_id = yield publisher.call("createStream")
            mark = publisher.mark()
            publisher.command(stream_id, "publish", name, "live")
            yield publisher.wait_code("NetStream.Publish.Denied", mark)
            [info] = [e for e in publisher.since(mark) if isinstance(e, dict)]
            self.assertEqual((info["level"], info["description"]), ("error", description))
            self.assertIsNone(self.apps["live"].live.get(name))
        # The exception is logged with its traceback, for the server's log only.
        self.assertTrue(any("on_publish of live raised" in line and "a bug in the application" in line
                            for line in self.log.lines))
        self.assertTrue(publisher.connected)

    @inlineCallbacks
    def test_play_refusals_reach_the_player_as_play_failed(self):
        player = yield self.client()
        for name, description in (("rejected", "not this one"), ("false", "Playing false is not allowed."),
                                  ("broken", "Playing broken is not allowed.")):
            mark = player.mark()
            yield player.play(name)
            [info] = [e for e in player.since(mark) if isinstance(e, dict)]
            self.assertEqual((info["code"], info["level"], info["description"]),
                             ("NetStream.Play.Failed", "error", description))
        self.assertTrue(any("on_play of live raised" in line for line in self.log.lines))

    @inlineCallbacks
    def test_publish_on_a_stream_never_created_is_bad_name(self):
        publisher = yield self.client()
        mark = publisher.mark()
        publisher.command(7, "publish", "cam", "live")
        yield publisher.wait_code("NetStream.Publish.BadName", mark)
        publisher.command(0, "publish", "", "live")
        yield publisher.barrier()
        stream_id = yield publisher.call("createStream")
        for bad in ("", "x" * 300):
            mark = publisher.mark()
            publisher.command(stream_id, "publish", bad, "live")
            yield publisher.wait_code("NetStream.Publish.BadName", mark)
        self.assertEqual(self.apps["live"].live.streams, {})

    @inlineCallbacks
    def test_record_without_a_usable_file_name_is_bad_name(self):
        publisher = yield self.client()
        _, answer = yield publisher.publish("../escape", "record")
        self.assertEqual(answer, "NetStream.Publish.BadName")
        self.apps["live"].record_dir = None
        _, answer = yield publisher.publish("fine", "record")
        self.assertEqual(answer, "NetStream.Publish.BadName")
        self.assertEqual(os.listdir(self.record_dir), [])

    @inlineCallbacks
    def test_a_waiting_player_hears_publish_and_unpublish_and_gets_data_messages(self):
        player = yield self.client()
        yield player.play("cam")                     # nobody publishes yet: it waits, as on FMS
        self.assertEqual(player.codes()[-1], "NetStream.Play.Start")
        publisher = yield self.client()
        pub_id, answer = yield publisher.publish("cam")
        self.assertEqual(answer, "NetStream.Publish.Start")
        yield player.wait_code("NetStream.Play.PublishNotify")
        mark = player.mark()
        publisher.send(pub_id, [(VIDEO, 0, VIDEO_HEADER), (VIDEO, 0, keyframe(0))])
        publisher.connection.send_data(["onCuePoint", {"name": "chapter 2"}], stream_id=pub_id)
        publisher.flush()
        yield self.sync(publisher, player)
        self.assertEqual([stamp(m.payload) for m in player.media(mark)], [None, 0])
        data = [list(e.values) for e in player.since(mark) if isinstance(e, DataReceived)]
        self.assertEqual(data, [["onCuePoint", {"name": "chapter 2"}]])
        # FCUnpublish ends it: Unpublish.Success to the publisher, UnpublishNotify to the player.
        mark, pub_mark = player.mark(), publisher.mark()
        result = yield publisher.call("FCUnpublish", "cam")
        self.assertIsNone(result)
        yield publisher.wait_code("NetStream.Unpublish.Success", pub_mark)
        yield player.wait_code("NetStream.Play.UnpublishNotify", mark)
        self.assertEqual(self.apps["live"].unpublished, ["cam"])
        # It goes on waiting for the next publisher.
        self.assertEqual(len(self.apps["live"].live.get("cam").players), 1)

    @inlineCallbacks
    def sync(self, *clients):
        for client in clients:
            yield client.barrier()

    @inlineCallbacks
    def test_publish_on_a_stream_that_plays_stops_the_play(self):
        client = yield self.client()
        stream_id = yield client.play("other")
        self.assertEqual(len(self.apps["live"].live.get("other").players), 1)
        mark = client.mark()
        client.command(stream_id, "publish", "cam", "live")
        yield client.wait_code("NetStream.Publish.Start", mark)
        self.assertIsNone(self.apps["live"].live.get("other"))
        self.assertIsNotNone(self.apps["live"].live.get("cam").publisher)

    @inlineCallbacks
    def test_close_stream_and_delete_stream_end_a_publish(self):
        publisher = yield self.client()
        for command in ("closeStream", "deleteStream"):
            stream_id, answer = yield publisher.publish("cam")
            self.assertEqual(answer, "NetStream.Publish.Start")
            mark = publisher.mark()
            if command == "closeStream":
                publisher.command(stream_id, "closeStream")
            else:
                publisher.command(0, "deleteStream", stream_id)
            yield publisher.wait_code("NetStream.Unpublish.Success", mark)
            self.assertIsNone(self.apps["live"].live.get("cam"))
        self.assertEqual(self.apps["live"].unpublished, ["cam", "cam"])

    @inlineCallbacks
    def test_get_stream_length_of_recordings(self):
        write_recording(os.path.join(self.record_dir, "show.flv"))
        with open(os.path.join(self.record_dir, "junk.flv"), "wb") as f:
            f.write(b"no FLV here")
        client = yield self.client()
        self.assertEqual((yield client.call("getStreamLength", "show")), (RECORDING_MS - 50) / 1000)
        self.assertEqual((yield client.call("getStreamLength", "flv:show.flv")), (RECORDING_MS - 50) / 1000)
        self.assertEqual((yield client.call("getStreamLength", "junk")), 0)
        self.assertEqual((yield client.call("getStreamLength", "missing")), 0)
        self.assertEqual((yield client.call("getStreamLength", "../show")), 0)

    @inlineCallbacks
    def test_playing_recordings_that_are_missing_or_broken(self):
        with open(os.path.join(self.record_dir, "junk.flv"), "wb") as f:
            f.write(b"no FLV here")
        player = yield self.client()
        mark = player.mark()
        yield player.play("missing", 0)           # start >= 0: a recording, and there is none
        self.assertEqual(player.codes(mark), ["NetStream.Play.StreamNotFound"])
        mark = player.mark()
        yield player.play("junk", 0)
        self.assertEqual(player.codes(mark), ["NetStream.Play.Failed"])
        self.assertTrue(any("cannot play" in line and "junk.flv" in line for line in self.log.lines))
        for _ in range(20):                     # asked again and again: answered each time, logged once
            mark = player.mark()
            yield player.play("junk", 0)
            self.assertEqual(player.codes(mark), ["NetStream.Play.Failed"])
        self.assertEqual(sum("cannot play" in line for line in self.log.lines), 1, self.log.lines)
        mark = player.mark()
        player.command(999, "play", "show")       # a stream id never created
        yield player.wait_code("NetStream.Play.StreamNotFound", mark)

    @inlineCallbacks
    def test_commands_on_streams_that_do_not_exist_or_cannot_do_them(self):
        write_recording(os.path.join(self.record_dir, "show.flv"))
        client = yield self.client()
        mark = client.mark()
        for name, args in (("pause", (True,)), ("seek", (100,)), ("receiveAudio", (False,)),
                           ("receiveVideo", (False,)), ("closeStream", ())):
            client.command(5, name, *args)             # never created: nothing happens, no answer
        client.command(0, "deleteStream", 5)
        yield client.barrier()
        self.assertEqual(client.codes(mark), [])
        stream_id = yield client.play("show", 0)
        mark = client.mark()
        client.command(stream_id, "seek", "soon")      # not a number
        yield client.wait_code("NetStream.Seek.Failed", mark)
        self.assertTrue(client.connected)

    @inlineCallbacks
    def test_play_with_reset_false_has_no_play_reset(self):
        write_recording(os.path.join(self.record_dir, "show.flv"))
        player = yield self.client()
        for args in (("show", 0, -1, False), ("cam", -1, -1, False)):     # a recording, then live
            mark = player.mark()
            yield player.play(*args)
            self.assertEqual(player.codes(mark), ["NetStream.Play.Start"], args)
        for args in (("show", 0, -1, True), ("cam", -1)):
            mark = player.mark()
            yield player.play(*args)
            self.assertEqual(player.codes(mark), ["NetStream.Play.Reset", "NetStream.Play.Start"], args)

    @inlineCallbacks
    def test_fc_subscribe_and_release_stream_are_answered(self):
        client = yield self.client()
        self.assertIsNone((yield client.call("releaseStream", "cam")))
        self.assertIsNone((yield client.call("FCPublish", "cam")))
        client.command(0, "FCSubscribe", "cam")
        yield client.barrier()
        answers = {c.name: c.arguments[0]["code"] for c in client.commands if c.name.startswith("onFC")}
        self.assertEqual(answers, {"onFCPublish": "NetStream.Publish.Start", "onFCSubscribe": "NetStream.Play.Start"})
