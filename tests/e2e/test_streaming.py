"""Live streaming, recording and VOD end to end, with real ffmpeg, rtmpdump and ffprobe on loopback.

What the players write is checked with ffprobe's packets (not the metadata):
both codecs, the duration, timestamps that never go back, and a first video
packet that is a keyframe.  ffmpeg players run with ``-copyinkf`` so that
ffmpeg itself does not hide non-keyframes the server sent first.

The server's timers (VOD pacing, ``slowPlayerTimeout``) run on a
``task.Clock`` (``clocked.ClockedServerMixin``); the sockets and the tools are
real.  One test is a real-time smoke test: ffmpeg encoding a live source at
its own pace (``-re``) to ffmpeg and rtmpdump.  Every other live test paces
the publisher by events instead of time: our publisher (``publish_flv``)
sends each tag once the server handled the one before and no player that
should keep up is blocked, and holds where the test needs players joined;
ffmpeg publishing from a pipe publishes only what the test wrote.  So what
each player gets is known from the source file (ffprobe's packets), exactly.
"""
import itertools
import json
import os
import shlex
import subprocess
import shutil
import tempfile
import socket
from collections import Counter
from unittest import mock

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.application import Application, Services, StreamRejected
from fmspy_gateway.app.live import LiveStream, LiveStreams
from fmspy_gateway.app.live_application import LiveApplication
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.playback import VOD_TICK
from fmspy_gateway.config import ApplicationConfig, RTMPConfig
from fmspy_gateway.rtmp.events import MediaReceived
from fmspy_gateway.rtmp.flv import is_sequence_header, is_video_keyframe, iter_tags
from fmspy_gateway.rtmp.messages import MessageType
from fmspy_gateway.server.client import RTMPClientProtocol, parse_rtmp_url
from fmspy_gateway.server.protocol import TurnWrites

from ..conftest import require_tool
from .clocked import ClockedServerMixin, TappedConnection
from .publisher import publish_flv

SLOW_PLAYER_TIMEOUT = 2.0
#: Seconds of the generated sources.
SOURCE_SECONDS = 6
#: An external tool still running after this many seconds is killed and the test fails.
TOOL_DEADLINE = 25
#: Waits on what a tool makes the server do (its first keyframe arriving...).
WAIT = 15

LAVFI_SOURCE = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
                "-t", str(SOURCE_SECONDS)]
#: -pix_fmt yuv420p: lavfi's RGB would otherwise become H.264 High 4:4:4, which Flash and browsers cannot decode.
H264_AAC = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25",
            "-c:a", "aac"]


# -- the server side ---------------------------------------------------------------------

class WatchedStream(LiveStream):
    def publish(self, type_id, timestamp, payload):
        super().publish(type_id, timestamp, payload)
        self.registry.published(self.name, type_id, payload)

    def add_player(self, player, reset=True):
        super().add_player(player, reset)
        self.registry.player_added(self.name)


class WatchedStreams(LiveStreams):
    """LiveStreams that tell the test what publishers sent: keyframes and bytes per stream name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.keyframes = Counter()
        self.media_bytes = Counter()
        self._waiting = []
        self.players_added = Counter()
        self._waiting_players = []
        self._waiting_unblocked = []

    def player_added(self, name):
        self.players_added[name] += 1
        for entry in list(self._waiting_players):
            if entry[0] == name and self.players_added[name] >= entry[1]:
                self._waiting_players.remove(entry)
                entry[2].callback(name)

    def wait_player(self, name, count=1, timeout=WAIT) -> Deferred:
        """Fires once ``count`` players of ``name`` joined (at once if they did)."""
        if self.players_added[name] >= count:
            return succeed(name)
        d = Deferred()
        self._waiting_players.append((name, count, d))
        return d.addTimeout(timeout, reactor)

    def unblock(self, session):
        super().unblock(session)
        for entry in list(self._waiting_unblocked):
            if not entry[0] & self.blocked.keys():
                self._waiting_unblocked.remove(entry)
                entry[1].callback(None)

    def wait_unblocked(self, sessions, timeout=WAIT) -> Deferred:
        """Fires once none of ``sessions`` is blocked (its socket drained)."""
        sessions = set(sessions)
        if not sessions & self.blocked.keys():
            return succeed(None)
        d = Deferred()
        self._waiting_unblocked.append((sessions, d))
        return d.addTimeout(timeout, reactor)

    def stream(self, name):
        live = self.streams.get(name)
        if live is None:
            live = self.streams[name] = WatchedStream(self, name)
        return live

    def published(self, name, type_id, payload):
        self.media_bytes[name] += len(payload)
        if type_id == MessageType.VIDEO and is_video_keyframe(payload):
            self.keyframes[name] += 1
            for entry in list(self._waiting):
                if entry[0] == name and self.keyframes[name] >= entry[1]:
                    self._waiting.remove(entry)
                    entry[2].callback(self.keyframes[name])

    def wait_keyframes(self, name, count, timeout=WAIT) -> Deferred:
        """Fires once ``count`` keyframes of ``name`` were published (the stream is that far in)."""
        if self.keyframes[name] >= count:
            return succeed(self.keyframes[name])
        d = Deferred()
        self._waiting.append((name, count, d))
        return d.addTimeout(timeout, reactor)


class PlayWatch:
    """Wraps applications' ``on_play`` to tell the test which plays were asked for."""

    def __init__(self):
        self.asked = Counter()
        self._waiting = []

    def watch(self, application):
        on_play = application.on_play

        def watched(client, name, query=""):
            self.asked[application.name, name] += 1
            for entry in list(self._waiting):
                if entry[0] == (application.name, name):
                    self._waiting.remove(entry)
                    entry[1].callback(name)
            return on_play(client, name, query)

        application.on_play = watched
        return application

    def wait(self, application, name, timeout=WAIT) -> Deferred:
        """Fires once a play of ``name`` on ``application`` was asked for (at once if it was)."""
        if self.asked[application.name, name]:
            return succeed(name)
        d = Deferred()
        self._waiting.append(((application.name, name), d))
        return d.addTimeout(timeout, reactor)


class GuardedApplication(Application):
    """Refuses every publish, and playing "secret"."""

    def on_publish(self, client, name, mode, query=""):
        raise StreamRejected("no publishing here")

    def on_play(self, client, name, query=""):
        if name == "secret":
            raise StreamRejected("secret is not for you")
        return True


# -- external tools ----------------------------------------------------------------------

class _Collected(ProcessProtocol):
    def __init__(self, tool):
        self.tool = tool
        self.out, self.err = [], []

    def outReceived(self, data):
        self.out.append(data)

    def errReceived(self, data):
        self.err.append(data)

    def processEnded(self, reason):
        self.tool._ended(b"".join(self.out), b"".join(self.err), reason.value.exitCode)


class Tool:
    """A running process, killed if it outlives its deadline; ``done`` fires with the Tool when it ended."""

    def __init__(self, path, args, deadline=TOOL_DEADLINE):
        self.name = os.path.basename(path)
        self.args = args
        self.out = self.err = b""
        self.code = None
        self.overdue = False
        self.done = Deferred()
        self._timer = reactor.callLater(deadline, self._overdue)
        self.transport = reactor.spawnProcess(_Collected(self), path, [path, *args], env=dict(os.environ))

    @property
    def running(self):
        return self.code is None and not self.done.called

    def write(self, data: bytes):
        """To the process's standard input."""
        self.transport.write(data)

    def kill(self):
        try:
            self.transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass

    def _overdue(self):
        self.overdue = True
        self.kill()

    def _ended(self, out, err, code):
        if self._timer.active():
            self._timer.cancel()
        self.out, self.err, self.code = out, err, code
        self.done.callback(self)

    @property
    def log(self):
        return self.err.decode(errors="replace")

    def describe(self):
        return f"{self.name} {' '.join(self.args)}\nexit {self.code}, overdue {self.overdue}\n{self.log[-3000:]}"


class Probe:
    """ffprobe's streams and packets of one file."""

    def __init__(self, data):
        self.streams = {s["index"]: s for s in data.get("streams", [])}
        self.packets = data.get("packets", [])

    def codec(self, kind):
        return sorted(s.get("codec_name") for s in self.streams.values() if s.get("codec_type") == kind)

    def packets_of(self, kind):
        return [p for p in self.packets if self.streams[p["stream_index"]].get("codec_type") == kind]

    def times(self, kind):
        """Decoding times in seconds, in file order."""
        return [float(p["dts_time"]) for p in self.packets_of(kind) if p.get("dts_time", "N/A") != "N/A"]

    def span(self, kind):
        times = self.times(kind)
        return times[-1] - times[0] if times else 0.0

    def keyframe_times(self):
        return [float(p["dts_time"]) for p in self.packets_of("video") if "K" in p.get("flags", "")]


# -- our own client, keeping media ---------------------------------------------------------

class MediaClient(RTMPClientProtocol):
    """Our client, also keeping the audio and video it receives (the base class handles commands only)."""

    def __init__(self):
        super().__init__(reactor, handlers={"onStatus": self._on_status})
        self.connection = TappedConnection(self._on_events)
        self.statuses = []
        self.media = []
        self._waiting = []

    def _on_status(self, info=None, *rest):
        self.statuses.append(info)
        self._check()

    def _on_events(self, events):
        self.media.extend(e for e in events if isinstance(e, MediaReceived))
        self._check()

    def _check(self):
        for entry in list(self._waiting):
            found = entry[0]()
            if found is not None:
                self._waiting.remove(entry)
                entry[1].callback(found)

    def wait(self, find, timeout=WAIT) -> Deferred:
        found = find()
        if found is not None:
            return succeed(found)
        d = Deferred()
        self._waiting.append((find, d))
        return d.addTimeout(timeout, reactor)

    def wait_status(self, code):
        return self.wait(lambda: next((s for s in self.statuses if s.get("code") == code), None))

    def first_video_frame(self):
        """The first video message that is a picture (not a sequence header), or None yet."""
        return next((m for m in self.media if m.type_id == MessageType.VIDEO
                     and not is_sequence_header(MessageType.VIDEO, m.payload)), None)

    @inlineCallbacks
    def play(self, name, start=-2):
        stream_id = yield self.call("createStream")
        self.connection.send_command("play", 0, None, [name, start], stream_id=stream_id)
        self.flush()
        return stream_id


@inlineCallbacks
def connect_media_client(url):
    host, port, app = parse_rtmp_url(url)
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=10)
    client = yield endpoint.connect(Factory.forProtocol(MediaClient))
    yield client.connect(app, tc_url=url)
    return client


# -- the tests ---------------------------------------------------------------------------------

class StreamingTests(ClockedServerMixin, TestCase):
    timeout = 60
    rtmp_config = RTMPConfig(slow_player_timeout=SLOW_PLAYER_TIMEOUT)
    #: ``publish_live`` waits one ``mediaFlushInterval`` after every that many tags (0: never waits).
    pause_every = 0

    def applications(self):
        self.plays = PlayWatch()
        live = self.plays.watch(LiveApplication("live"))
        # The wiring every configured application gets: its LiveStreams from [RTMP].
        live.configure_streaming(object(), Services(LocalHub(), clock=self.clock, rtmp=self.rtmp_config))
        self.assertEqual(live.live.slow_player_timeout, SLOW_PLAYER_TIMEOUT)
        live.live = WatchedStreams(self.clock, self.rtmp_config.max_gop_bytes, self.rtmp_config.slow_player_timeout)
        live.record_dir = self.record_dir
        self.live_app = live
        # What fmspy.cfg's [LiveApplication:rec] section with record = all builds (item 15).
        self.auto_record_dir = os.path.join(self.work, "auto")
        section = ApplicationConfig(class_name="LiveApplication", label="rec", enabled=True, name="rec",
                                    options={"recordDir": "auto", "record": "all",
                                             "recordSuffix": "-%Y%m%d-%H%M%S"},
                                    source=os.path.join(self.work, "fmspy.cfg"))
        self.rec_app = self.plays.watch(LiveApplication.from_config(
            section, Services(LocalHub(), clock=self.clock, rtmp=self.rtmp_config)))
        self.rec_app.live = WatchedStreams(self.clock, self.rtmp_config.max_gop_bytes,
                                           self.rtmp_config.slow_player_timeout)
        return {"live": live, "guarded": GuardedApplication("guarded"), "rec": self.rec_app}

    def setUp(self):
        self.ffmpeg = require_tool("ffmpeg")
        self.ffprobe = require_tool("ffprobe")
        super().setUp()
        self.tools = []
        self.addCleanup(self._stop_tools)

    def _stop_tools(self):
        running = [t for t in self.tools if t.running]
        for tool in running:
            tool.kill()
        return gatherResults([t.done for t in running])

    def run_tool(self, path, args, deadline=TOOL_DEADLINE) -> Tool:
        tool = Tool(path, args, deadline)
        self.tools.append(tool)
        return tool

    def path(self, name):
        return os.path.join(self.work, name)

    def ffmpeg_args(self, *args):
        return ["-hide_banner", "-nostdin", "-loglevel", "verbose", "-y", *args]

    def publish_ffmpeg(self, name, source=None) -> Tool:
        """ffmpeg publishing live, as an encoder would: the lavfi source in real time, or a file copied (-re)."""
        if source is None:
            args = ["-re", *LAVFI_SOURCE, *H264_AAC]
        else:
            args = ["-re", "-i", source, "-c", "copy"]
        return self.run_tool(self.ffmpeg, self.ffmpeg_args(*args, "-f", "flv", self.url(f"live/{name}")))

    def play_ffmpeg(self, name, out, *extra, app="live") -> Tool:
        return self.run_tool(self.ffmpeg, self.ffmpeg_args(
            "-rw_timeout", "10000000", "-i", self.url(f"{app}/{name}"), *extra,
            "-c", "copy", "-copyinkf", "-f", "flv", out))

    @inlineCallbacks
    def make_source(self, name="source.flv", filters="", seconds=SOURCE_SECONDS, quality=()):
        """An H.264/AAC FLV file, generated as fast as ffmpeg can (no -re)."""
        out = self.path(name)
        video = "testsrc=size=320x240:rate=25" if not filters else filters
        tool = self.run_tool(self.ffmpeg, self.ffmpeg_args(
            "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", "sine=frequency=440", "-t", str(seconds),
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-g", "25", *quality, "-c:a", "aac",
            "-f", "flv", out))
        yield tool.done
        self.assertEqual(tool.code, 0, tool.describe())
        return out

    @inlineCallbacks
    def probe(self, path):
        tool = self.run_tool(self.ffprobe, ["-v", "error", "-show_streams", "-show_packets", "-of", "json", path])
        yield tool.done
        self.assertEqual(tool.code, 0, tool.describe())
        return Probe(json.loads(tool.out))

    @inlineCallbacks
    def check_media_file(self, path, min_seconds, max_seconds, why=""):
        """Both codecs, a duration (from packet times) within bounds, monotonic times, a keyframe first."""
        self.assertTrue(os.path.isfile(path) and os.path.getsize(path) > 0, f"{path} missing or empty. {why}")
        probe = yield self.probe(path)
        self.assertEqual(probe.codec("video"), ["h264"], why)
        self.assertEqual(probe.codec("audio"), ["aac"], why)
        for kind in ("video", "audio"):
            times = probe.times(kind)
            self.assertGreater(len(times), 10, f"{kind} packets of {path}. {why}")
            backwards = [(a, b) for a, b in zip(times, times[1:]) if b < a]
            self.assertEqual(backwards, [], f"{kind} timestamps go back in {path}. {why}")
            self.assertGreaterEqual(probe.span(kind), min_seconds, f"{kind} of {path}. {why}")
            self.assertLessEqual(probe.span(kind), max_seconds, f"{kind} of {path}. {why}")
        first_video = probe.packets_of("video")[0]
        self.assertIn("K", first_video["flags"], f"first video packet of {path}. {why}")
        return probe

    # -- pacing by events, not time ---------------------------------------------------------------

    def flow(self, live, hold=None, exempt=()):
        """A ``publish_flv`` gate: each tag waits until the server handled the ones before (a round
        trip) and no player of ``live`` outside ``exempt`` is blocked, so that no player that reads
        misses a frame however fast this machine is.  ``hold(type_id, timestamp)`` may return a
        Deferred to wait for first (players joining, a test's own step)."""
        tags = itertools.count(1)

        @inlineCallbacks
        def gate(client, type_id, timestamp, body):
            if self.pause_every and next(tags) % self.pause_every == 0:
                yield deferLater(reactor, self.rtmp_config.media_flush_interval, lambda: None)
            yield client.call("getStreamLength", "-", timeout=WAIT)
            if hold is not None:
                yield hold(type_id, timestamp, body)
            blocked = set(live.blocked) - {session for session in exempt}
            if blocked:
                yield live.wait_unblocked(blocked)
        return gate

    def hold_until_players(self, live, name, count=1, after_ms=0):
        """A ``flow`` hold: the picture after the first keyframe at or after ``after_ms`` waits for
        ``count`` players of ``name``: they join with the stream from that keyframe."""
        keyframe_sent = []

        def hold(type_id, timestamp, body):
            if type_id != MessageType.VIDEO or is_sequence_header(type_id, body):
                return None
            if keyframe_sent:
                return live.wait_player(name, count)
            if is_video_keyframe(body) and timestamp >= after_ms:
                keyframe_sent.append(timestamp)
            return None
        return hold

    def publish_live(self, name, source, hold=None, exempt=(), **kwargs) -> Deferred:
        """Our publisher on live/``name``: the FLV ``source`` as fast as the players take it."""
        live = self.live_app.live
        return publish_flv(self.url("live"), name, source, "live", reactor=reactor,
                           gate=self.flow(live, hold, exempt), **kwargs)

    def publish_ffmpeg_from_pipe(self, name) -> Tool:
        """ffmpeg publishing what the test writes to its standard input (``Tool.write``), no more."""
        return self.run_tool(self.ffmpeg, self.ffmpeg_args(
            # It reads 1 s of the stream to learn both codecs (the test writes more than that first).
            "-analyzeduration", "1000000", "-i", "pipe:0", "-map", "0:v", "-map", "0:a", "-c", "copy", "-f", "flv",
            self.url(f"live/{name}")))

    @inlineCallbacks
    def play_through(self, application, name, seconds):
        """Once a play of the recording ``name`` was asked for, let ``seconds`` of it go by on the clock,
        a VOD tick at a time; while the player's socket is full the clock waits for it to drain."""
        yield self.plays.wait(application, name)
        yield deferLater(reactor, 0, lambda: None)      # the play is set up in the read that asked for it
        self.clock.advance(1e-6)
        for _ in range(round(seconds / VOD_TICK)):
            if application.live.blocked:
                yield application.live.wait_unblocked(list(application.live.blocked))
            self.clock.advance(VOD_TICK)

    @inlineCallbacks
    def check_packets(self, path, source_probe, since=0.0, why=""):
        """``path`` holds exactly the source's video packets from its first keyframe at or after
        ``since`` s on, spaced as in the source, and its audio from there.  (ffmpeg's output starts at
        0 whatever it received; rtmpdump's has the times as received.)"""
        probe = yield self.check_media_file(path, 0, SOURCE_SECONDS * 10, why)
        since = min(t for t in source_probe.keyframe_times() if t >= since - 0.0005)
        expected = [t for t in source_probe.times("video") if since <= t]
        got = probe.times("video")
        self.assertEqual(len(got), len(expected), why)
        for a, b in zip(got, expected):
            self.assertAlmostEqual(a - got[0], b - expected[0], delta=0.0015, msg=why)   # FLV times: whole ms
        audio = [t for t in source_probe.times("audio") if since <= t]
        # The audio interleaved just before the keyframe at ``since`` may or may not be in the GOP.
        self.assertLessEqual(abs(len(probe.times("audio")) - len(audio)), 2, why)
        return probe

    # -- live ------------------------------------------------------------------------------

    @inlineCallbacks
    def test_ffmpeg_publishes_and_ffmpeg_and_rtmpdump_play(self):
        # The one real-time smoke test: ffmpeg as a live encoder (-re), players at the pace it sends.
        # Its duration windows are the encoder's wall-clock pace; every other test is exact.
        rtmpdump = require_tool("rtmpdump")
        publisher = self.publish_ffmpeg("cam")
        yield self.live_app.live.wait_keyframes("cam", 1)
        ffmpeg_out, dump_out = self.path("ffmpeg.flv"), self.path("dump.flv")
        player = self.play_ffmpeg("cam", ffmpeg_out, "-t", "3")
        # Live (-v), ends at NetStream.Play.UnpublishNotify; -m bounds its network waits.
        dump = self.run_tool(rtmpdump, ["-r", self.url("live/cam"), "-v", "-m", "10", "-o", dump_out])
        yield gatherResults([publisher.done, player.done, dump.done])

        self.assertEqual(publisher.code, 0, publisher.describe())
        self.assertEqual(player.code, 0, player.describe())
        self.assertFalse(dump.overdue, dump.describe())
        self.assertIn(dump.code, (0, 2), dump.describe())       # 2: "incomplete", as live streams always are
        yield self.check_media_file(ffmpeg_out, 2.5, 3.5, player.describe())
        # rtmpdump joined at the first keyframe and stayed to the end: the whole stream, as sent.
        probe = yield self.check_media_file(dump_out, SOURCE_SECONDS - 1.5, SOURCE_SECONDS + 0.5, dump.describe())
        self.assertLess(probe.times("video")[0], 0.5)
        self.assertIsNone(self.live_app.live.get("cam"))

    @inlineCallbacks
    def test_player_joining_mid_stream_starts_on_a_keyframe(self):
        rtmpdump = require_tool("rtmpdump")
        source = yield self.make_source()
        source_probe = yield self.probe(source)
        # The players join once the third keyframe (2 s in) was published, before the next picture.
        joined_at = source_probe.keyframe_times()[2]
        live = self.live_app.live
        publishing = self.publish_live("cam", source, self.hold_until_players(live, "cam", 2,
                                                                             after_ms=round(joined_at * 1000)))
        yield live.wait_keyframes("cam", 3)
        ffmpeg_out, dump_out = self.path("late-ffmpeg.flv"), self.path("late-dump.flv")
        player = self.play_ffmpeg("cam", ffmpeg_out)
        dump = self.run_tool(rtmpdump, ["-r", self.url("live/cam"), "-v", "-m", "10", "-o", dump_out])
        result = yield publishing
        yield gatherResults([player.done, dump.done])

        self.assertEqual(result.answer, "NetStream.Publish.Start", result.codes)
        self.assertEqual(player.code, 0, player.describe())
        self.assertFalse(dump.overdue, dump.describe())
        # They missed the first 2 s: every picture from that keyframe on, none before, rebased to their 0
        # (rtmpdump writes times as received).
        for out, tool in ((ffmpeg_out, player), (dump_out, dump)):
            probe = yield self.check_packets(out, source_probe, since=joined_at, why=tool.describe())
            if tool is dump:
                self.assertLess(probe.times("video")[0], 0.05, tool.describe())
                self.assertLess(probe.times("audio")[0], 0.05, tool.describe())
        # Every tag as rtmpdump received it, sequence headers included (ffprobe shows those as no packet).
        with open(dump_out, "rb") as f:
            stamps = [(tag.type_id, tag.timestamp) for tag in iter_tags(f) if tag.type_id in (8, 9)]
        self.assertLessEqual(max(t for _, t in stamps), round((source_probe.times("video")[-1] - joined_at) * 1000)
                             + 50, stamps[:5])

    @inlineCallbacks
    def test_players_hear_at_once_when_the_publisher_is_killed(self):
        source = yield self.make_source()
        with open(source, "rb") as f:
            data = f.read()
        publisher = self.publish_ffmpeg_from_pipe("cam")
        publisher.write(data[:len(data) // 2])      # it publishes that much and waits for more
        yield self.live_app.live.wait_keyframes("cam", 1)
        player = yield connect_media_client(self.url("live"))
        self.addCleanup(self._close_paused, player)
        yield player.play("cam", -1)
        yield player.wait(player.first_video_frame)
        self.assertTrue(publisher.running)
        publisher.kill()            # no FCUnpublish, no deleteStream: the socket just goes
        yield publisher.done
        notify = yield player.wait_status("NetStream.Play.UnpublishNotify")
        self.assertEqual(notify["level"], "status")
        self.assertTrue(player.connected)
        # It waits for the next publisher, as FMS players do.
        self.assertIsNotNone(self.live_app.live.get("cam"))
        self.assertIsNone(self.live_app.live.get("cam").publisher)
        yield player.close()

    @inlineCallbacks
    def test_slow_player_stays_bounded_and_is_dropped_while_a_fast_one_gets_everything(self):
        # About 4 MB of video in 6 s, so that a player that stops reading falls behind quickly.
        source = yield self.make_source("heavy.flv", "testsrc=size=640x360:rate=25,noise=alls=40:allf=t",
                                        quality=("-qp", "30"))
        source_probe = yield self.probe(source)
        live = self.live_app.live
        closings = []
        observer = lambda event: closings.append(event) if "slowPlayerTimeout" in str(event.get("reason")) else None
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

        slow = yield connect_media_client(self.url("live"))
        self.addCleanup(self._close_paused, slow)
        server_side = self.factory.protocol_of(slow)
        # Small socket buffers at both ends of this one connection stand in for a slow link: otherwise
        # the kernel's autotuning (megabytes on loopback) absorbs the stream before our buffer fills.
        slow.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        server_side.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        lost = Deferred()
        connection_lost = server_side.connectionLost
        server_side.connectionLost = lambda reason: (connection_lost(reason), lost.callback(None))
        yield slow.play("heavy", -1)
        yield slow.wait_status("NetStream.Play.Start")
        slow.transport.pauseProducing()          # from now on it reads nothing

        fast_out = self.path("fast.flv")
        fast = self.play_ffmpeg("heavy", fast_out)
        yield live.wait_player("heavy", 2)

        seen = {"max_queued": 0, "sent_when_blocked": None, "while_blocked": 0, "kept_while_clock_stood": None,
                "after_drop": 0}

        def hold(type_id, timestamp, body):
            # The server handled every tag before this one (flow's round trip): look at the slow player.
            if lost.called:
                seen["after_drop"] += 1
                return
            seen["max_queued"] = max(seen["max_queued"], server_side.queued_bytes)
            if server_side.session not in live.blocked:
                return
            if seen["sent_when_blocked"] is None:
                seen["sent_when_blocked"] = live.media_bytes["heavy"]
            seen["while_blocked"] += 1
            if seen["while_blocked"] == 25:
                # 25 tags published to a blocked player with the clock standing still: still connected.
                seen["kept_while_clock_stood"] = not server_side.session.closed
                self.clock.advance(SLOW_PLAYER_TIMEOUT + 0.1)      # the next tag finds it blocked too long

        result = yield self.publish_live("heavy", source, hold, exempt=[server_side.session])
        yield fast.done

        self.assertEqual(result.answer, "NetStream.Publish.Start", result.codes)
        self.assertEqual(fast.code, 0, fast.describe())
        self.assertIsNotNone(seen["sent_when_blocked"], "the slow player's socket never filled up")
        self.assertTrue(seen["kept_while_clock_stood"], "dropped before slowPlayerTimeout had passed")
        self.assertTrue(lost.called, "the slow player was not dropped")
        self.assertGreater(seen["after_drop"], 0, "the slow player was not dropped while the stream went on")
        self.assertEqual(len(closings), 1, "no close for slowPlayerTimeout was logged")
        self.assertEqual(closings[0].get("address"), server_side.address)
        total = live.media_bytes["heavy"]
        self.assertGreater(total, 3_000_000, "the publisher was meant to send several MB")
        # What waited for it stayed bounded: frames were dropped for it, not queued.
        self.assertLess(seen["max_queued"], 1_000_000)
        self.assertLess(seen["sent_when_blocked"], total // 2)
        # The fast player got every frame.
        yield self.check_packets(fast_out, source_probe, why=fast.describe())
        # Reading again, the client finds its connection closed.
        slow.transport.resumeProducing()
        yield slow.closed.addTimeout(WAIT, reactor)

    def _close_paused(self, client):
        if client.connected:
            client.transport.resumeProducing()
            client.transport.abortConnection()
            return client.closed

    # -- hooks ---------------------------------------------------------------------------------

    @inlineCallbacks
    def test_publish_refused_by_the_application_hook(self):
        publisher = self.run_tool(self.ffmpeg, self.ffmpeg_args(
            *LAVFI_SOURCE, *H264_AAC, "-f", "flv", self.url("guarded/cam")))
        yield publisher.done
        self.assertNotEqual(publisher.code, 0, publisher.describe())
        self.assertIn("no publishing here", publisher.log)
        self.assertIn("Server error", publisher.log)

    @inlineCallbacks
    def test_play_refused_by_the_application_hook(self):
        client = yield connect_media_client(self.url("guarded"))
        yield client.play("secret")
        refused = yield client.wait_status("NetStream.Play.Failed")
        self.assertEqual(refused["description"], "secret is not for you")
        self.assertEqual(refused["level"], "error")
        yield client.close()
        player = self.play_ffmpeg("secret", self.path("secret.flv"), app="guarded")
        yield player.done
        self.assertNotEqual(player.code, 0, player.describe())
        self.assertIn("secret is not for you", player.log)
        # Refused before any media: ffmpeg never got far enough to create its output (empty or not).
        self.assertFalse(os.path.exists(self.path("secret.flv")), player.describe())

    # -- recording and VOD -------------------------------------------------------------------

    @inlineCallbacks
    def test_record_then_play_back_and_seek(self):
        source = yield self.make_source()
        source_probe = yield self.probe(source)
        result = yield publish_flv(self.url("live"), "show", source, "record", reactor=reactor)
        self.assertEqual(result.answer, "NetStream.Publish.Start", result.codes)
        self.assertIn("NetStream.Record.Start", result.codes)
        self.assertGreater(result.messages, 200)
        recorded = os.path.join(self.record_dir, "show.flv")
        self.assertEqual(os.listdir(self.record_dir), ["show.flv"])
        expected = source_probe.span("video")
        yield self.check_media_file(recorded, expected - 0.1, expected + 0.1, "the recording")
        self.assertIsNone(self.live_app.live.get("show"))

        # Nothing is live under that name: ffmpeg's default play ("any", -2000) plays the recording.
        vod_out = self.path("vod.flv")
        player = self.play_ffmpeg("show", vod_out)
        yield self.play_through(self.live_app, "show", SOURCE_SECONDS + 2)
        yield player.done
        self.assertEqual(player.code, 0, player.describe())
        yield self.check_packets(vod_out, source_probe, why=player.describe())

        # Playing from 2 s starts at the keyframe at or before it.
        client = yield connect_media_client(self.url("live"))
        yield client.play("show", 2000)
        yield client.wait_status("NetStream.Play.Start")
        frame = yield client.wait(client.first_video_frame)
        self.assertTrue(is_video_keyframe(frame.payload))
        keyframe_ms = max(round(t * 1000) for t in source_probe.keyframe_times() if t <= 2.0)
        self.assertGreater(keyframe_ms, 1000)
        self.assertEqual(frame.timestamp, keyframe_ms)
        headers = [m for m in client.media if is_sequence_header(m.type_id, m.payload)]
        self.assertEqual(sorted(m.type_id for m in headers), [MessageType.AUDIO, MessageType.VIDEO])
        self.assertLess(client.media.index(headers[-1]), client.media.index(frame))
        yield client.close()

    @inlineCallbacks
    def test_record_name_escaping_the_record_dir_is_refused(self):
        source = yield self.make_source(seconds=1)
        before = sorted(os.listdir(self.work))
        for name in ("../evil", "../records/evil", "/tmp/evil"):
            result = yield publish_flv(self.url("live"), name, source, "record", reactor=reactor)
            self.assertEqual(result.answer, "NetStream.Publish.BadName", (name, result.codes))
            self.assertEqual(result.messages, 0)
        self.assertEqual(os.listdir(self.record_dir), [])
        self.assertEqual(sorted(os.listdir(self.work)), before)
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.work), "evil.flv")))
        self.assertEqual(self.live_app.live.streams, {})

    @inlineCallbacks
    def test_rtmpdump_stop_plays_that_much_of_a_recording(self):
        # Item 13: play's duration (rtmpdump --stop sends it, in ms) ends a recording's playback early.
        rtmpdump = require_tool("rtmpdump")
        source = yield self.make_source(seconds=10)
        source_probe = yield self.probe(source)
        result = yield publish_flv(self.url("live"), "long", source, "record", reactor=reactor)
        self.assertEqual(result.answer, "NetStream.Publish.Start", result.codes)
        out = self.path("stop.flv")
        dump = self.run_tool(rtmpdump, ["-r", self.url("live/long"), "--stop", "3", "-m", "10", "-o", out])
        yield self.play_through(self.live_app, "long", 5)
        yield dump.done
        self.assertFalse(dump.overdue, dump.describe())
        self.assertIn(dump.code, (0, 2), dump.describe())       # 2: "incomplete": less than the metadata says
        probe = yield self.check_media_file(out, 0, 3.0, dump.describe())
        # 3 s of it, to the frame: nothing past 3 s, and what comes before it all there.
        self.assertGreaterEqual(probe.times("video")[-1], 3.0 - 1 / 25 - 0.002, dump.describe())
        self.assertEqual(len(probe.times("video")), len([t for t in source_probe.times("video") if t <= 3.0]),
                         dump.describe())

    @inlineCallbacks
    def test_rtmpdump_stop_plays_that_much_of_a_live_stream(self):
        # On a live stream, as on FMS, the duration is how much media the player gets.
        rtmpdump = require_tool("rtmpdump")
        source = yield self.make_source()
        live = self.live_app.live
        publishing = self.publish_live("cam", source, self.hold_until_players(live, "cam"))
        yield live.wait_keyframes("cam", 1)
        out = self.path("live-stop.flv")
        dump = self.run_tool(rtmpdump, ["-r", self.url("live/cam"), "-v", "--stop", "2", "-m", "10", "-o", out])
        yield gatherResults([dump.done, publishing])
        self.assertFalse(dump.overdue, dump.describe())
        self.assertIn(dump.code, (0, 2), dump.describe())
        probe = yield self.check_media_file(out, 0, 2.0, dump.describe())
        self.assertGreaterEqual(probe.times("video")[-1], 2.0 - 1 / 25 - 0.002, dump.describe())

    # -- record = all: ffmpeg's live publish, recorded (item 15) ------------------------------------

    @inlineCallbacks
    def test_record_all_records_what_ffmpeg_publishes_live_and_it_plays_back(self):
        publisher = self.run_tool(self.ffmpeg, self.ffmpeg_args(
            *LAVFI_SOURCE, *H264_AAC, "-f", "flv", self.url("rec/cam")))
        yield publisher.done
        self.assertEqual(publisher.code, 0, publisher.describe())
        [recording] = os.listdir(self.auto_record_dir)
        self.assertRegex(recording, r"^cam-\d{8}-\d{6}\.flv$")
        yield self.check_media_file(os.path.join(self.auto_record_dir, recording), SOURCE_SECONDS - 0.5,
                                    SOURCE_SECONDS + 0.1, "the recording")
        recorded_probe = yield self.probe(os.path.join(self.auto_record_dir, recording))
        out = self.path("replay.flv")
        player = self.play_ffmpeg(recording[:-4], out, app="rec")
        yield self.play_through(self.rec_app, recording[:-4], SOURCE_SECONDS + 2)
        yield player.done
        self.assertEqual(player.code, 0, player.describe())
        yield self.check_packets(out, recorded_probe, why=player.describe())

    # -- media on message stream 0 (node-media-server's relay; item 10) --------------------------------

    @inlineCallbacks
    def test_media_sent_on_stream_0_plays_in_ffmpeg(self):
        source = yield self.make_source()
        source_probe = yield self.probe(source)
        live = self.live_app.live
        publishing = self.publish_live("relay", source, self.hold_until_players(live, "relay"), media_stream_id=0)
        yield live.wait_keyframes("relay", 1)
        out = self.path("relay.flv")
        player = self.play_ffmpeg("relay", out)
        result = yield publishing
        yield player.done
        self.assertEqual(result.answer, "NetStream.Publish.Start", result.codes)
        self.assertEqual(player.code, 0, player.describe())
        yield self.check_packets(out, source_probe, why=player.describe())

    # -- GStreamer: rtmp2sink and rtmp2src (its own RTMP code), rtmpsrc (librtmp) ----------------------

    def gst_launch(self, *pipeline, deadline=TOOL_DEADLINE) -> Tool:
        """gst-launch-1.0 -e with the pipeline's words (shell quoting: a value with a space in quotes)."""
        gst = require_tool("gst-launch-1.0")
        return self.run_tool(gst, ["-e", *shlex.split(" ".join(pipeline))], deadline)

    @inlineCallbacks
    def test_rtmp2sink_publishes_and_ffmpeg_plays(self):
        video_buffers, audio_buffers = SOURCE_SECONDS * 25, SOURCE_SECONDS * 44100 // 1024
        # The player first, waiting for the stream as FMS players do; then GStreamer, as fast as it encodes.
        out = self.path("from-gst.flv")
        player = self.play_ffmpeg("gst", out)
        yield self.live_app.live.wait_player("gst")
        publisher = self.gst_launch(
            f"videotestsrc num-buffers={video_buffers}",
            "! video/x-raw,format=I420,width=320,height=240,framerate=25/1",
            "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 ! h264parse",
            # sync=false: as fast as it encodes, not at the pipeline clock's pace.
            f"! flvmux name=mux streamable=true ! rtmp2sink sync=false location={self.url('live/gst')}",
            f"audiotestsrc num-buffers={audio_buffers} ! audioconvert ! audioresample",
            "! audio/x-raw,rate=44100,channels=2 ! voaacenc ! aacparse ! mux.")
        yield gatherResults([publisher.done, player.done])
        self.assertEqual(publisher.code, 0, publisher.describe())
        self.assertEqual(player.code, 0, player.describe())
        probe = yield self.check_media_file(out, SOURCE_SECONDS - 0.1, SOURCE_SECONDS, player.describe())
        self.assertEqual(len(probe.times("video")), video_buffers, player.describe())

    @inlineCallbacks
    def test_rtmp2src_plays_what_we_publish(self):
        source = yield self.make_source()
        source_probe = yield self.probe(source)
        live = self.live_app.live
        publishing = self.publish_live("cam", source, self.hold_until_players(live, "cam"))
        yield live.wait_keyframes("cam", 1)
        out = self.path("rtmp2src.flv")
        player = self.gst_launch(f"rtmp2src location={self.url('live/cam')} ! filesink location={out}")
        yield gatherResults([publishing, player.done])
        self.assertEqual(player.code, 0, player.describe())
        yield self.check_packets(out, source_probe, why=player.describe())

    @inlineCallbacks
    def test_rtmpsrc_plays_to_the_publishers_end(self):
        source = yield self.make_source()
        source_probe = yield self.probe(source)
        live = self.live_app.live
        publishing = self.publish_live("cam", source, self.hold_until_players(live, "cam"))
        yield live.wait_keyframes("cam", 1)
        out = self.path("rtmpsrc.flv")
        player = self.gst_launch(f"rtmpsrc location=\"{self.url('live/cam')} live=1\" ! filesink location={out}")
        yield gatherResults([publishing, player.done])
        self.assertEqual(player.code, 0, player.describe())
        self.assertFalse(player.overdue, player.describe())
        yield self.check_packets(out, source_probe, why=player.describe())

    @inlineCallbacks
    def test_rtmpsrc_stopped_by_its_user_ends_at_once(self):
        # Item 11: on EOS rtmpsrc (librtmp) sends deleteStream and reads on until the server ends the
        # stream; without StreamEOF and Play.Stop it waited for the next ping, 60 s on.  The deadline is
        # far below that: a process still running then is killed and the test fails.  The publisher is
        # held 3 s into the stream until the player ended, so it cannot be the stream's end that stops it.
        source = yield self.make_source(seconds=10)
        live = self.live_app.live
        release = Deferred()

        until_player = self.hold_until_players(live, "long")

        def hold(type_id, timestamp, body):
            if type_id == MessageType.VIDEO and timestamp > 3000:
                return release
            return until_player(type_id, timestamp, body)

        publishing = self.publish_live("long", source, hold)
        self.addCleanup(lambda: release.called or release.callback(None))
        yield live.wait_keyframes("long", 1)
        player = self.gst_launch(f"rtmpsrc location=\"{self.url('live/long')} live=1\" ! flvdemux ! fakesink",
                                 deadline=20)
        yield live.wait_keyframes("long", 3)        # it is playing by now, 2 s in
        player.transport.signalProcess("INT")
        yield player.done
        self.assertFalse(player.overdue, player.describe())
        self.assertEqual(player.code, 0, player.describe())
        self.assertFalse(publishing.called, "the publisher ended: the stream's end stopped rtmpsrc, not its own")
        self.assertEqual(live.get("long").players, [])
        release.callback(None)
        result = yield publishing
        self.assertEqual(result.answer, "NetStream.Publish.Start", result.codes)


# -- the documented ffmpeg commands (item 17) ---------------------------------------------------------

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def documented_ffmpeg_encoders():
    """(document, argv) of every ffmpeg command in the READMEs' sh blocks that encodes with libx264."""
    found = []
    for document in ("README.md", os.path.join("examples", "README.md")):
        with open(os.path.join(REPOSITORY, document)) as f:
            blocks = f.read().split("```sh\n")[1:]
        for block in blocks:
            text = block.split("```", 1)[0].replace("\\\n", " ")
            for line in text.splitlines():
                words = shlex.split(line.split(" # ", 1)[0].split("  #", 1)[0])
                if words[:1] == ["ffmpeg"] and "libx264" in words:
                    found.append((document, words))
    return found


class MergedWriteStreamingTests(StreamingTests):
    """Every streaming test again with ``mediaFlushInterval``: players written once per 100 ms, not per read.

    The same third-party publishers and players, the same keyframe start,
    slow-player drop and recordings: only when the bytes leave changes.
    """

    rtmp_config = RTMPConfig(slow_player_timeout=SLOW_PLAYER_TIMEOUT, media_flush_interval=0.1)

    # Two tests time their checks by the publisher itself: ``publish_live`` sends each tag once the one
    # before made a round trip, so the whole source would go by in about one interval, before the first
    # merged write (the slow player's socket would fill only after the stream ended, and rtmpsrc would be
    # stopped before its first media).  For them the publisher also waits an interval every 10 tags.

    def test_slow_player_stays_bounded_and_is_dropped_while_a_fast_one_gets_everything(self):
        self.pause_every = 10
        return super().test_slow_player_stays_bounded_and_is_dropped_while_a_fast_one_gets_everything()

    def test_rtmpsrc_stopped_by_its_user_ends_at_once(self):
        self.pause_every = 10
        return super().test_rtmpsrc_stopped_by_its_user_ends_at_once()


class MergedReadStreamingTests(StreamingTests):
    """The encoders' tests again with ``mergedReads`` too: the publisher's socket read once per 100 ms.

    Only the tests whose publisher streams as an encoder does: the others'
    publisher (``publish_live``) waits for a round trip before each tag,
    which merged reads hold for up to an interval each (as they hold any
    command of a publisher's, by design).  ffmpeg publishes in real time
    (``-re``); GStreamer's rtmp2sink as fast as it encodes, so its reads
    fill the buffer and are followed at once.  Each test also checks that
    the publisher's reads did wait.
    """

    rtmp_config = RTMPConfig(slow_player_timeout=SLOW_PLAYER_TIMEOUT, media_flush_interval=0.1, merged_reads=True)
    merged_read_tests = ("test_ffmpeg_publishes_and_ffmpeg_and_rtmpdump_play", "test_rtmp2sink_publishes_and_ffmpeg_plays")

    def setUp(self):
        # Whether each wait had really stopped the reactor reading that socket when it began.
        still_read = []
        real = TurnWrites.read_first
        patcher = mock.patch.object(TurnWrites, "read_first", autospec=True,
                                    side_effect=lambda writes, protocol: (
                                        still_read.append(protocol.transport in reactor.getReaders()),
                                        real(writes, protocol)))
        patcher.start()
        self.addCleanup(patcher.stop)
        self.addCleanup(lambda: self.assertTrue(still_read and not any(still_read),
                                                f"reads of the publisher that waited for a media write: "
                                                f"{len(still_read)}, still read by the reactor: {sum(still_read)}"))
        return super().setUp()


for _name in [name for name in dir(StreamingTests)
              if name.startswith("test_") and name not in MergedReadStreamingTests.merged_read_tests]:
    setattr(MergedReadStreamingTests, _name, None)      # not a test of this class (see its docstring)
del _name


class DocumentedCommandTests(TestCase):
    def test_every_documented_ffmpeg_publish_makes_h264_flash_players_and_browsers_decode(self):
        # Without -pix_fmt yuv420p, lavfi's RGB test source becomes H.264 High 4:4:4 Predictive.
        ffmpeg, ffprobe = require_tool("ffmpeg"), require_tool("ffprobe")
        commands = documented_ffmpeg_encoders()
        self.assertGreaterEqual(len({document for document, _ in commands}), 2, commands)
        work = tempfile.mkdtemp(prefix="fmspy-docs-")
        self.addCleanup(shutil.rmtree, work, True)
        for document, words in commands:
            # The same encoding, for a second, into a file instead of the server.
            out = os.path.join(work, "out.flv")
            args = [w for w in words[1:] if w != "-re"]
            url = next(w for w in args if w.startswith("rtmp://"))
            args[args.index(url)] = out
            args = ["-v", "error", "-y", *args[:-3], "-t", "1", *args[-3:]]
            subprocess.run([ffmpeg, *args], check=True, timeout=TOOL_DEADLINE)
            probe = subprocess.run([ffprobe, "-v", "error", "-select_streams", "v", "-show_entries",
                                    "stream=profile,pix_fmt", "-of", "json", out], check=True,
                                   capture_output=True, timeout=TOOL_DEADLINE)
            [stream] = json.loads(probe.stdout)["streams"]
            self.assertEqual(stream["pix_fmt"], "yuv420p", (document, " ".join(words)))
            self.assertNotIn("4:4:4", stream["profile"], (document, " ".join(words)))
