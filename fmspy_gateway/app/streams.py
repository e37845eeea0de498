"""NetStream commands of one session: create, publish, play, pause, seek, close.

Live streams are the application's ``LiveStreams``; recordings go to the
application's record directory (``recordDir``) and play back from it.  Each
command gets the replies and onStatus codes Flash clients, ffmpeg and OBS
wait for; publish and play pass through the application's hooks first.
"""
import logging
import math
import os
import time
from typing import Dict, Optional

from twisted.internet.defer import maybeDeferred

from ..rtmp.budget import brief, brief_name
from ..rtmp.events import CommandReceived, DataReceived, MediaReceived
from ..rtmp.flv import is_video_keyframe
from ..rtmp.messages import UserControl
from .application import StreamRejected
from .hub import StreamTaken
from .live import AUDIO, VIDEO, LiveStream, Player, send_data_amf0_safe
from .logs import RateLimitedLog, log_failure
from .recording import RECORD_CHOICES, RecordedStream, Recorder
from .replies import error, status

log = logging.getLogger(__name__)

#: Longest stream name accepted (query string excluded).
MAX_STREAM_NAME = 256
#: How far ahead of real time recorded streams are sent, in ms.
VOD_LEAD_MS = 1000
#: How often a recorded stream's sender wakes up, in seconds.
VOD_TICK = 0.1


def _is_finite(value) -> bool:
    """A number a time can be made of: not a bool, not NaN, not infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def split_stream_name(name) -> tuple:
    """'cam1?key=abc' -> ('cam1', 'key=abc'): the query is for hooks, not part of the name."""
    name = name if isinstance(name, str) else ""
    base, _, query = name.partition("?")
    return base, query


class NetStream:
    """One stream id of a connection and what it is doing."""

    __slots__ = ("stream_id", "live", "player", "recorder", "record_kind", "vod", "name")

    def __init__(self, stream_id: int):
        self.stream_id = stream_id
        self.live: Optional[LiveStream] = None    # the stream this NetStream publishes
        self.player: Optional[Player] = None      # set while it plays a live stream
        self.recorder: Optional[Recorder] = None
        #: Why it records: "record"/"append" (the publisher asked) or the application's ``record`` option.
        self.record_kind: Optional[str] = None
        self.vod: Optional["RecordedPlayback"] = None
        self.name = None


class StreamCommands:
    """The stream-level commands of one session."""

    def __init__(self, session, max_streams: int, clock=None):
        self.session = session
        #: Streams the connection may have open (``maxStreams``); createStream beyond is refused.
        self.max_streams = max_streams
        self.clock = clock
        self._next_stream_id = 1
        self._streams: Dict[int, NetStream] = {}
        #: Media that no publishing stream takes (its count per kind in ``counts``), one log line per interval.
        self.dropped = RateLimitedLog(log, clock, prefix=f"{session.peer.address}: ")

    @property
    def application(self):
        return self.session.application

    @property
    def connection(self):
        return self.session.peer.connection

    def handles(self, name) -> bool:
        return name in _COMMANDS

    def handle(self, command: CommandReceived):
        _COMMANDS[command.name](self, command)

    # -- replies ---------------------------------------------------------------------------

    def _reply(self, command, value=None):
        if command.transaction_id:
            self.connection.send_command("_result", command.transaction_id, None, [value], amf3=command.amf3)

    def _status(self, stream_id, code, description, level="status", **extra):
        self.connection.send_command("onStatus", 0, None, [status(code, description, level, **extra)],
                                     stream_id=stream_id)
        self.session.peer.flush()

    @staticmethod
    def _argument(command, index, default=None):
        return command.arguments[index] if len(command.arguments) > index else default

    # -- stream ids -------------------------------------------------------------------------

    def create_stream(self, command):
        if len(self._streams) >= self.max_streams:
            log.warning("%s: createStream refused: %d streams open (maxStreams)",
                        self.session.peer.address, len(self._streams))
            self.session.send_call_error(command, error("NetConnection.Call.Failed", "Too many streams."))
            return
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        self._streams[stream_id] = NetStream(stream_id)
        self._reply(command, stream_id)

    def delete_stream(self, command):
        stream_id = self._argument(command, 0, command.stream_id)
        stream = self._streams.pop(stream_id, None) if isinstance(stream_id, (int, float)) else None
        if stream is not None:
            self._stop(stream, "deleteStream")

    def close_stream(self, command):
        stream = self._streams.get(command.stream_id)
        if stream is not None:
            self._stop(stream, "closeStream")

    def close_all(self):
        """The connection is gone: end whatever its streams were doing."""
        for stream in list(self._streams.values()):
            self._stop(stream, "disconnect", quiet=True)
        self._streams.clear()
        self.dropped.close()

    def _stop(self, stream: NetStream, why: str, quiet: bool = False):
        playing = stream.player is not None or (stream.vod is not None and not stream.vod.finished)
        if stream.live is not None:
            self._unpublish(stream, quiet)
        if stream.player is not None:
            stream.player.live.remove_player(stream.player)
            stream.player = None
        if stream.vod is not None:
            stream.vod.stop()
            stream.vod = None
        if playing and why in ("deleteStream", "closeStream"):
            self._play_stopped(stream)

    def _play_stopped(self, stream: NetStream):
        """Tell a player its stream is over, as nginx-rtmp and FMS do: StreamEOF, then NetStream.Play.Stop.

        librtmp (rtmpdump, GStreamer's ``rtmpsrc``) sends deleteStream and
        reads on until the server says the stream ended; without this it
        waited for the next ping (``pingInterval``, 60 s) before it stopped.
        """
        self.connection.send_user_control(UserControl.STREAM_EOF, stream.stream_id)
        self._status(stream.stream_id, "NetStream.Play.Stop", f"Stopped playing {stream.name}.")

    # -- publishing -------------------------------------------------------------------------

    def release_stream(self, command):
        self._reply(command)

    def fc_publish(self, command):
        self._reply(command)
        name = self._argument(command, 0, "")
        self.connection.send_command("onFCPublish", 0, None, [status("NetStream.Publish.Start", f"FCPublish to {brief_name(name)}")])

    def fc_unpublish(self, command):
        self._reply(command)
        name, _ = split_stream_name(self._argument(command, 0, ""))
        for stream in self._streams.values():
            if stream.live is not None and stream.name == name:
                self._unpublish(stream)
        self.connection.send_command("onFCUnpublish", 0, None, [status("NetStream.Unpublish.Success", brief_name(name))])

    def publish(self, command):
        stream = self._streams.get(command.stream_id)
        raw = self._argument(command, 0, "")
        name, query = split_stream_name(raw)
        mode = self._argument(command, 1, "live")
        mode = mode if mode in ("live", "record", "append") else "live"
        if stream is None:
            self._status(command.stream_id, "NetStream.Publish.BadName", "publish on a stream that was not created",
                         "error")
            return
        if not name or len(name) > MAX_STREAM_NAME:
            self._status(stream.stream_id, "NetStream.Publish.BadName", f"Invalid stream name {brief(raw)}.", "error")
            return
        d = maybeDeferred(self.application.on_publish, self.session.client, name, mode, query)
        d.addCallback(self._announce, name)
        d.addCallbacks(self._publish_allowed, self._publish_refused, (stream, name, mode), None, (stream, name))
        d.addErrback(log_failure(log, f"publish {name!r}"))

    def _announce(self, decision, name: str):
        """An allowed publish claims ``name`` through the hub: one publisher in the whole cluster.

        Fails with ``StreamTaken`` (answered BadName) when it is published
        anywhere; every way out of ``_publish_allowed`` that does not publish
        gives the claim back (``_withdraw``).
        """
        if decision is False or self.session.closed:
            return decision
        d = self.application.hub.announce(self.application.name, name, self.session.client.id)
        return d.addCallback(lambda _: decision)

    def _withdraw(self, name: str):
        d = self.application.hub.withdraw(self.application.name, name, self.session.client.id)
        d.addErrback(log_failure(log, f"withdrawing {name!r}"))

    def _publish_allowed(self, decision, stream: NetStream, name: str, mode: str):
        if self.session.closed:
            if decision is not False:
                self._withdraw(name)
            return
        if decision is False:
            return self._publish_refused(None, stream, name)
        live = self.application.live.stream(name)
        if live.publisher is not None:
            self._withdraw(name)
            self._status(stream.stream_id, "NetStream.Publish.BadName", f"{name} is already being published.",
                         "error")
            self.application.live.forget_if_idle(live)
            return
        if stream.live is not None or stream.player is not None:
            self._stop(stream, "publish")
        stream.record_kind = None
        if mode in ("record", "append"):
            path = self.application.record_path(name)
            if path is None:
                self._status(stream.stream_id, "NetStream.Publish.BadName",
                             f"Cannot record {name!r} here (no record directory, or not a valid file name).", "error")
                self.application.live.forget_if_idle(live)
                self._withdraw(name)
                return
            try:
                stream.recorder = Recorder(path, mode)
            except (OSError, ValueError) as e:
                log.warning("%s: cannot record to %s: %s", self.application.name, path, e)
                self._status(stream.stream_id, "NetStream.Record.Failed", f"Cannot record {name}.", "error")
                self.application.live.forget_if_idle(live)
                self._withdraw(name)
                return
            stream.record_kind = mode
            live.taps.append(lambda message: self._record(stream, message))
        elif self.application.record_policy.kind != "off":
            self._record_automatically(stream, live, name)
        stream.live, stream.name = live, name
        live.start(self)
        self.connection.send_user_control(UserControl.STREAM_BEGIN, stream.stream_id)
        self._status(stream.stream_id, "NetStream.Publish.Start", f"{name} is now published.")
        if stream.recorder is not None and stream.record_kind in ("record", "append"):
            self._status(stream.stream_id, "NetStream.Record.Start", f"Recording {name}.")
        log.info("client %s publishes %s/%s (%s)", self.session.client.id, self.application.name, name, mode)

    def _record_automatically(self, stream: NetStream, live: LiveStream, name: str):
        """The application's ``record`` option: a live publish is recorded too, unasked.

        The publisher did not ask, so nothing about it reaches the publisher:
        a name that cannot be a file, or a file that cannot be opened, is
        logged and the stream goes on live (ffmpeg stops at an error status).
        """
        policy = self.application.record_policy
        now = self.clock.seconds() if self.clock is not None else time.time()
        path = self.application.record_path(policy.file_name(name, now))
        if path is None:
            log.warning("%s: %r is not recorded (record = %s): not a valid file name", self.application.name,
                        name, policy.kind)
            return
        kinds = policy.types
        try:
            stream.recorder = Recorder(path, "record", has_audio=AUDIO in kinds, has_video=VIDEO in kinds)
        except (OSError, ValueError) as e:
            log.warning("%s: cannot record to %s: %s", self.application.name, path, e)
            return
        stream.record_kind = policy.kind
        live.taps.append(lambda message: self._record(stream, message))
        log.info("%s: recording %s to %s (record = %s)", self.application.name, name, path, policy.kind)

    def _record(self, stream: NetStream, message):
        kinds = RECORD_CHOICES.get(stream.record_kind)
        if kinds and message.type_id not in kinds:
            return
        try:
            stream.recorder.write(message.type_id, message.timestamp, message.payload)
            limit = self.application.record_policy.over(stream.recorder)
            if limit is not None:
                # A limit ends the recording, not the live stream.
                log.warning("%s: recording of %s stopped at %s: limit hit: %s", self.application.name,
                            stream.name, stream.recorder.path, limit)
                stream.live.taps.clear()
                self._close_recorder(stream)
                if stream.record_kind in ("record", "append"):
                    self._status(stream.stream_id, "NetStream.Record.Stop", f"Stopped recording {stream.name}.")
        except OSError as e:
            # A full disk ends the recording, not the live stream.
            log.warning("%s: recording %s failed: %s", self.application.name, stream.name, e)
            stream.live.taps.clear()
            self._close_recorder(stream)
            if stream.record_kind in ("record", "append"):
                self._status(stream.stream_id, "NetStream.Record.Failed", f"Recording {stream.name} failed.",
                             "error")

    def _close_recorder(self, stream: NetStream):
        recorder, stream.recorder = stream.recorder, None
        if recorder is not None:
            try:
                recorder.close()
            except OSError as e:
                log.warning("%s: closing the recording of %s failed: %s", self.application.name, stream.name, e)

    def _publish_refused(self, failure, stream: NetStream, name: str):
        if self.session.closed:
            return
        reason = failure.value if failure is not None else None
        if isinstance(reason, StreamTaken):
            # Published elsewhere (this node or another, the hub says): as a second local publisher is told.
            self._status(stream.stream_id, "NetStream.Publish.BadName", f"{name} is already being published.",
                         "error")
            return
        if failure is not None and not isinstance(reason, StreamRejected):
            log.error("on_publish of %s raised:\n%s", self.application.name, failure.getTraceback())
        description = reason.reason if isinstance(reason, StreamRejected) else f"Publishing {name} is not allowed."
        self._status(stream.stream_id, "NetStream.Publish.Denied", description, "error")

    def _unpublish(self, stream: NetStream, quiet: bool = False):
        live, name = stream.live, stream.name
        stream.live = None
        if stream.recorder is not None:
            live.taps.clear()
            self._close_recorder(stream)
        live.stop()
        self.application.live.forget_if_idle(live)
        self._withdraw(name)
        if not quiet:
            self._status(stream.stream_id, "NetStream.Unpublish.Success", f"{name} is now unpublished.")
        d = maybeDeferred(self.application.on_unpublish, self.session.client, name)
        d.addErrback(log_failure(log, f"on_unpublish of {name!r}"))

    def _publishing(self, stream_id) -> Optional[NetStream]:
        """The stream that a media or data message on ``stream_id`` is for, or None.

        Stream 0 is the connection's own, never a NetStream: a message there
        means the connection's one published stream.  ffmpeg may send
        ``@setDataFrame`` there (as Red5 notes), and node-media-server's relay
        publishes on stream 1 but sends every audio and video message on
        stream 0; nginx-rtmp plays both.  With no or several streams
        publishing, which one is meant cannot be told.
        """
        stream = self._streams.get(stream_id)
        if stream is None and stream_id == 0:
            publishing = [s for s in self._streams.values() if s.live is not None]
            stream = publishing[0] if len(publishing) == 1 else None
        return stream if stream is not None and stream.live is not None else None

    def on_media(self, event: MediaReceived):
        stream = self._publishing(event.stream_id)
        if stream is not None:
            stream.live.publish(event.type_id, event.timestamp, event.payload)
            return
        # Counted and logged (rate-limited): a relay whose media goes nowhere must show in the log.
        if event.stream_id == 0:
            count = sum(1 for s in self._streams.values() if s.live is not None)
            why = f"stream 0 stands for the one publishing stream, and {count} streams publish"
        else:
            why = f"stream {event.stream_id} does not publish"
        self.dropped.hit("media dropped", f"audio/video message dropped: {why}")

    def on_data(self, event: DataReceived):
        stream = self._publishing(event.stream_id)
        if stream is None or not event.values:
            return
        values = event.values
        if values[0] == "@setDataFrame":
            values = values[1:]
        if values and values[0] == "onMetaData":
            stream.live.set_metadata(tuple(values))
            if stream.recorder is not None:
                stream.recorder.write_metadata(values)
        elif values and values[0] != "@clearDataFrame":
            for player in stream.live.players:
                player.send_data(values)
            stream.live.registry.touch(stream.live.players)

    # -- playing ------------------------------------------------------------------------------

    def play(self, command):
        stream = self._streams.get(command.stream_id)
        raw = self._argument(command, 0, "")
        start = self._argument(command, 1, -2)
        duration = self._argument(command, 2, -1)
        if isinstance(raw, dict):      # play2 passes NetStreamPlayOptions
            raw, start, duration = raw.get("streamName", ""), raw.get("start", -2), raw.get("len", -1)
        name, query = split_stream_name(raw)
        start = start if _is_finite(start) else -2
        if start in (-1000, -2000):
            start //= 1000      # ffmpeg and librtmp send FMS's -1 (live only) and -2 (any) times 1000
        # ms, as librtmp (rtmpdump --stop) sends it; negative (FMS's -1, or -1000): to the end.
        duration = int(duration) if _is_finite(duration) and duration >= 0 else None
        reset = self._argument(command, 3, True) is not False
        if stream is None or not name or len(name) > MAX_STREAM_NAME:
            self._status(command.stream_id, "NetStream.Play.StreamNotFound", f"Stream {brief(raw)} not found.", "error")
            return
        d = maybeDeferred(self.application.on_play, self.session.client, name, query)
        d.addCallbacks(self._play_allowed, self._play_refused, (stream, name, start, reset, duration), None,
                       (stream, name))
        d.addErrback(log_failure(log, f"play {name!r}"))

    def _play_allowed(self, decision, stream: NetStream, name: str, start, reset: bool,
                      duration: Optional[int] = None):
        if self.session.closed:
            return
        if decision is False:
            return self._play_refused(None, stream, name)
        self._stop(stream, "play")
        stream.name = name
        live = self.application.live.get(name)
        if live is not None and live.publisher is not None and start < 0:
            return self._play_live(stream, live, reset, duration)
        path = self.application.record_path(name) if start != -1 else None
        if path is not None and os.path.isfile(path):
            return self._play_recorded(stream, name, path, max(start, 0), reset, duration)
        if start >= 0:
            self._status(stream.stream_id, "NetStream.Play.StreamNotFound", f"Stream {name!r} not found.", "error")
            return
        # Live, not published yet: wait for it, as FMS does.
        self._play_live(stream, self.application.live.stream(name), reset, duration)

    def _play_live(self, stream: NetStream, live: LiveStream, reset: bool, duration: Optional[int] = None):
        player = stream.player = Player(self.session, stream.stream_id, duration)
        player.on_end = lambda: self._live_play_ended(stream, player)
        live.add_player(player, reset)
        # on_play may have answered later than the read that asked: nothing else would flush this.
        self.session.peer.flush()

    def _live_play_ended(self, stream: NetStream, player: Player):
        """A live play with a duration has had it: the player leaves, told as at a deleteStream."""
        if stream.player is not player or self.session.closed:
            return
        player.live.remove_player(player)
        stream.player = None
        self._play_stopped(stream)

    def _play_recorded(self, stream: NetStream, name: str, path: str, start_ms, reset: bool,
                       duration: Optional[int] = None):
        try:
            recorded = RecordedStream(path)
        except (OSError, ValueError) as e:
            log.warning("%s: cannot play %s: %s", self.application.name, path, e)
            self._status(stream.stream_id, "NetStream.Play.Failed", f"Cannot play {name}.", "error")
            return
        stream.vod = RecordedPlayback(self, stream, name, recorded, self.clock, duration)
        stream.vod.start(int(start_ms), reset)

    def _play_refused(self, failure, stream: NetStream, name: str):
        if self.session.closed:
            return
        reason = failure.value if failure is not None else None
        if failure is not None and not isinstance(reason, StreamRejected):
            log.error("on_play of %s raised:\n%s", self.application.name, failure.getTraceback())
        description = reason.reason if isinstance(reason, StreamRejected) else f"Playing {name} is not allowed."
        self._status(stream.stream_id, "NetStream.Play.Failed", description, "error")

    def pause(self, command):
        stream = self._streams.get(command.stream_id)
        if stream is None:
            return
        paused = bool(self._argument(command, 0, True))
        if stream.player is not None:
            stream.player.paused = paused
            if not paused:
                stream.player.need_keyframe = True
        elif stream.vod is not None:
            stream.vod.pause(paused, self._argument(command, 1))
        code = "NetStream.Pause.Notify" if paused else "NetStream.Unpause.Notify"
        self._status(stream.stream_id, code, f"{'Paused' if paused else 'Unpaused'} {stream.name}.")

    def seek(self, command):
        stream = self._streams.get(command.stream_id)
        if stream is None:
            return
        position = self._argument(command, 0, 0)
        if stream.vod is None or not isinstance(position, (int, float)):
            self._status(stream.stream_id, "NetStream.Seek.Failed", "Only recorded streams can seek.", "error")
            return
        stream.vod.seek(int(position))

    def receive_audio(self, command):
        stream = self._streams.get(command.stream_id)
        target = stream.player or stream.vod if stream is not None else None
        if target is not None:
            target.audio = bool(self._argument(command, 0, True))

    def receive_video(self, command):
        stream = self._streams.get(command.stream_id)
        target = stream.player or stream.vod if stream is not None else None
        if target is not None:
            target.video = bool(self._argument(command, 0, True))
            target.need_keyframe = True

    def get_stream_length(self, command):
        name, _ = split_stream_name(self._argument(command, 0, ""))
        path = self.application.record_path(name) if name else None
        length = 0
        if path is not None and os.path.isfile(path):
            try:
                with RecordedStream(path) as recorded:
                    length = recorded.duration_ms / 1000
            except (OSError, ValueError):
                length = 0
        self._reply(command, length)

    def fc_subscribe(self, command):
        name = self._argument(command, 0, "")
        self.connection.send_command("onFCSubscribe", 0, None,
                                     [status("NetStream.Play.Start", f"Subscribed to {brief_name(name)}.")])


class RecordedPlayback:
    """Sends a recorded stream at its own pace, a little ahead of real time; seek and pause move it.

    ``duration_ms`` is play's third argument (``rtmpdump --stop``): playback
    ends, as at the end of the file, after the tags up to that many ms past
    where it started (0: the frame at the start).  A seek starts that span
    again from where it lands, as a new play would.
    """

    def __init__(self, commands: StreamCommands, stream: NetStream, name: str, recorded: RecordedStream, clock,
                 duration_ms: Optional[int] = None):
        self.commands = commands
        self.stream = stream
        self.name = name
        self.recorded = recorded
        self.clock = clock
        self.duration_ms = duration_ms
        self._tags = None
        self._pending = None
        self._origin = 0.0       # clock time at which the playhead was at _start_ms
        self._paused_at = 0      # file time of the playhead when pause came
        self._start_ms = 0
        self._end_ms = None      # file time past which nothing is sent (None: the end of the file)
        self._timer = None
        self.paused = False
        #: receiveAudio / receiveVideo: what the client wants; video back on waits for a keyframe.
        self.audio = self.video = True
        self.need_keyframe = False
        #: Play.Stop / Play.Complete were sent: the end of the file or of the duration was reached.
        self.finished = False

    @property
    def connection(self):
        return self.commands.connection

    def start(self, start_ms: int, reset: bool):
        connection = self.connection
        connection.send_user_control(UserControl.STREAM_BEGIN, self.stream.stream_id)
        connection.send_user_control(UserControl.STREAM_IS_RECORDED, self.stream.stream_id)
        if reset:
            self._send_status("NetStream.Play.Reset", f"Playing and resetting {self.name}.")
        self._send_status("NetStream.Play.Start", f"Started playing {self.name}.")
        connection.send_data(["|RtmpSampleAccess", True, True], stream_id=self.stream.stream_id)
        if self.recorded.metadata is not None:
            send_data_amf0_safe(self.commands.session, ["onMetaData", self.recorded.metadata],
                                self.stream.stream_id, f"onMetaData of {brief_name(self.name)}")
        self._limit(start_ms)
        self._position(start_ms)
        self._tick()

    def _limit(self, start_ms: int):
        self._end_ms = start_ms + self.duration_ms if self.duration_ms is not None else None

    def _send_status(self, code, description, level="status"):
        self.connection.send_command("onStatus", 0, None, [status(code, description, level)],
                                     stream_id=self.stream.stream_id)

    def _position(self, start_ms: int):
        self._tags = self.recorded.tags_from(start_ms)
        self._pending = next(self._tags, None)
        # The stream restarts at a keyframe at or before start_ms: headers go out stamped with its time.
        first = self._pending.timestamp if self._pending is not None else start_ms
        for tag in self.recorded.sequence_headers_at(start_ms):
            self.connection.send_media(tag.type_id, self.stream.stream_id, first, tag.body)
        self._start_ms = first
        self._origin = self.clock.seconds()

    def _tick(self):
        # Never runs paused or after the connection closed: pause, seek and stop (which close_all
        # calls) cancel the timer, and the calls from start, seek and unpause are made unpaused.
        self._timer = None
        if self.commands.session in self.commands.application.live.blocked:
            self._timer = self.clock.callLater(VOD_TICK, self._tick)
            return
        horizon = self._start_ms + (self.clock.seconds() - self._origin) * 1000 + VOD_LEAD_MS
        while True:
            tag = self._pending if self._pending is not None else next(self._tags, None)
            self._pending = None
            if tag is None or (self._end_ms is not None and tag.timestamp > self._end_ms):
                self._complete()
                return
            if tag.timestamp > horizon:
                self._pending = tag
                break
            if tag.type_id == 18:
                continue       # metadata was sent at start
            if tag.type_id == 8 and not self.audio:
                continue
            if tag.type_id == 9:
                if not self.video:
                    continue
                if self.need_keyframe:
                    if not is_video_keyframe(tag.body):
                        continue
                    self.need_keyframe = False
            self.connection.send_media(tag.type_id, self.stream.stream_id, tag.timestamp, tag.body)
        self.commands.session.peer.flush()
        self._timer = self.clock.callLater(VOD_TICK, self._tick)

    def _complete(self):
        self.finished = True
        self._send_status("NetStream.Play.Stop", f"Stopped playing {self.name}.")
        self.connection.send_user_control(UserControl.STREAM_EOF, self.stream.stream_id)
        self.connection.send_command("onPlayStatus", 0, None,
                                     [{"level": "status", "code": "NetStream.Play.Complete", "duration":
                                       self.recorded.duration_ms / 1000, "bytes": 0}], stream_id=self.stream.stream_id)
        self.commands.session.peer.flush()

    def seek(self, position_ms: int):
        self._cancel()
        self._send_status("NetStream.Seek.Notify", f"Seeking {position_ms} (stream ID: {self.stream.stream_id}).")
        self._send_status("NetStream.Play.Start", f"Started playing {self.name}.")
        self.finished = False
        self._limit(max(0, position_ms))
        self._position(max(0, position_ms))
        self._paused_at = self._start_ms      # an unpause without a position goes on from here
        if not self.paused:
            self._tick()

    def pause(self, paused: bool, position_ms=None):
        """``position_ms``: where the client's playhead is (Flash and librtmp send it); else ours."""
        self._cancel()
        if paused and not self.paused:
            self._paused_at = int(self._start_ms + (self.clock.seconds() - self._origin) * 1000)
        was_paused, self.paused = self.paused, paused
        if not paused:
            if not _is_finite(position_ms):
                position_ms = self._paused_at if was_paused else self._start_ms
            self._position(max(0, int(position_ms)))
            self._tick()

    def _cancel(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def stop(self):
        self._cancel()
        self.paused = True
        self.recorded.close()


_COMMANDS = {
    "createStream": StreamCommands.create_stream,
    "deleteStream": StreamCommands.delete_stream,
    "closeStream": StreamCommands.close_stream,
    "getStreamLength": StreamCommands.get_stream_length,
    "releaseStream": StreamCommands.release_stream,
    "FCPublish": StreamCommands.fc_publish,
    "FCUnpublish": StreamCommands.fc_unpublish,
    "FCSubscribe": StreamCommands.fc_subscribe,
    "publish": StreamCommands.publish,
    "play": StreamCommands.play,
    "play2": StreamCommands.play,
    "pause": StreamCommands.pause,
    "seek": StreamCommands.seek,
    "receiveAudio": StreamCommands.receive_audio,
    "receiveVideo": StreamCommands.receive_video,
}
