"""NetStream commands of one session: create, delete, close, play, pause, seek, receiveAudio/Video.

The commands of publishing (publish, releaseStream, FCPublish, FCUnpublish)
and the publisher's media and data are ``Publishing``'s (``app/publishing.py``);
live fan-out is ``app/live.py``'s; recorded playback is ``app/playback.py``'s.
Here a command finds its stream, passes the application's hooks and hands
the stream to the one that does the work.  Each command gets the replies and
onStatus codes Flash clients, ffmpeg and OBS wait for (``app/replies.py``).
"""
import logging
from dataclasses import dataclass
from typing import Dict, Optional

from twisted.internet.defer import maybeDeferred, succeed

from ..config import RTMPConfig
from ..rtmp.budget import brief, brief_name
from ..rtmp.events import CommandReceived
from .application import StreamRejected
from .fileio import SerialQueue, SynchronousExecutor
from .live import LiveStream, Player
from .logs import log_failure
from .playback import RecordedPlayback, is_finite, open_recording, recording_length
from .publishing import Publishing
from .replies import NetConnectionCode, NetStreamCode, error, play_stopped, status
from .states import IGNORE, STREAM_COMMANDS, Refuse, stream_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamLimits:
    """What one connection's NetStreams may ask for; one object shared by every session of a server.

    Its defaults are [RTMP]'s (``RTMPConfig``), the one owner of the documented values.
    """

    #: Streams the connection may have open (``maxStreams``); createStream beyond is refused.
    max_streams: int = RTMPConfig.max_streams
    #: Characters of a stream name in play or publish, its query string excluded (``maxStreamNameLength``):
    #: a name is kept with the stream, logged and sent back in status events.
    max_stream_name_length: int = RTMPConfig.max_stream_name_length


def split_stream_name(name) -> tuple:
    """'cam1?key=abc' -> ('cam1', 'key=abc'): the query is for hooks, not part of the name."""
    name = name if isinstance(name, str) else ""
    base, _, query = name.partition("?")
    return base, query


class NetStream:
    """One stream id of a connection and what it is doing."""

    __slots__ = ("stream_id", "live", "player", "recording", "vod", "name", "turn")

    def __init__(self, stream_id: int):
        self.stream_id = stream_id
        self.live: Optional[LiveStream] = None    # the stream this NetStream publishes
        self.player: Optional[Player] = None      # set while it plays a live stream
        #: The recording of what it publishes (``publishing.Recording``), if any.
        self.recording = None
        self.vod: Optional[RecordedPlayback] = None
        self.name = None
        #: Bumped at every stop: an answer (a hook's, a file opened) for an earlier command is stale.
        self.turn = 0

    @property
    def recorder(self):
        return self.recording.recorder if self.recording is not None else None


class StreamCommands:
    """The stream-level commands of one session.

    ``executor`` runs the file I/O of recording and playback
    (``app/fileio.py``); without one it runs synchronously.
    """

    def __init__(self, session, limits: StreamLimits, clock=None, executor=None):
        self.session = session
        #: ``maxStreams`` and ``maxStreamNameLength`` (the server's one ``StreamLimits``).
        self.limits = limits
        self.clock = clock
        self.executor = executor if executor is not None else SynchronousExecutor()
        self._next_stream_id = 1
        self.streams: Dict[int, NetStream] = {}
        #: A publisher's media and data go straight to it (``session.handle``).
        self.publishing = Publishing(self)

    @property
    def dropped(self):
        """Media that no publishing stream takes, counted per kind: the session's limit log."""
        return self.session.limit_log

    @property
    def application(self):
        return self.session.application

    @staticmethod
    def handles(name) -> bool:
        """Whether ``name`` is a stream command (createStream, play, publish...)."""
        return name in _COMMANDS

    def handle(self, command: CommandReceived):
        """Run ``command`` as ``STREAM_COMMANDS`` says for its stream's state (``app/states.py``).

        A command on a stream that does not exist goes to its handler, which
        answers as each command does (onStatus publish: BadName, play:
        StreamNotFound; the rest: none).

        A command sent with a transaction id waits for ``_result`` or
        ``_error`` (ffmpeg and librtmp keep a table of them): the handlers in
        ``_ANSWER_THEMSELVES`` answer it with their value; every other command
        is answered here, ``_result`` null before it runs (or is ignored), or
        ``_error`` with the refusal.
        """
        stream = self.streams.get(command.stream_id) if command.stream_id else None
        entry = STREAM_COMMANDS[command.name][stream_state(stream)] if stream is not None else None
        if isinstance(entry, Refuse):
            self.session.send_call_error(command, error(entry.code, entry.description))
            self.status(stream.stream_id, entry.code, entry.description, "error")
            return
        if command.name not in _ANSWER_THEMSELVES:
            self.reply(command)
        if entry is not IGNORE:
            _COMMANDS[command.name](self, command)

    # -- replies ---------------------------------------------------------------------------

    def reply(self, command, value=None):
        self.session.send_result(command, value)

    def status(self, stream_id, code, description, level="status", **extra):
        self.session.send_status(stream_id, code, description, level, **extra)
        self.session.flush()

    @staticmethod
    def argument(command, index, default=None):
        return command.arguments[index] if len(command.arguments) > index else default

    def name_too_long(self, name: str, command: str) -> bool:
        """Whether ``name`` is over ``maxStreamNameLength``; if so, that is logged (rate-limited)."""
        if len(name) <= self.limits.max_stream_name_length:
            return False
        self.session.limit_log.hit("maxStreamNameLength",
                                   f"{command} refused: a stream name of {len(name)} characters, more than "
                                   f"maxStreamNameLength ({self.limits.max_stream_name_length})")
        return True

    # -- stream ids -------------------------------------------------------------------------

    def create_stream(self, command):
        if len(self.streams) >= self.limits.max_streams:
            self.session.limit_log.hit("maxStreams", f"createStream refused: {len(self.streams)} streams open "
                                                     f"(maxStreams)")
            self.session.send_call_error(command, error(NetConnectionCode.CALL_FAILED, "Too many streams."))
            return
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        self.streams[stream_id] = NetStream(stream_id)
        self.reply(command, stream_id)

    def delete_stream(self, command):
        stream_id = self.argument(command, 0, command.stream_id)
        stream = self.streams.pop(stream_id, None) if isinstance(stream_id, (int, float)) else None
        if stream is not None:
            self.stop(stream, "deleteStream")

    def close_stream(self, command):
        stream = self.streams.get(command.stream_id)
        if stream is not None:
            self.stop(stream, "closeStream")

    def close_all(self):
        """The connection is gone: end whatever its streams were doing."""
        for stream in list(self.streams.values()):
            self.stop(stream, "disconnect", quiet=True)
        self.streams.clear()
        self.dropped.close()

    def stop(self, stream: NetStream, why: str, quiet: bool = False):
        stream.turn += 1
        playing = stream.player is not None or (stream.vod is not None and not stream.vod.finished)
        if stream.live is not None:
            self.publishing.unpublish(stream, quiet)
        if stream.player is not None:
            stream.player.live.remove_player(stream.player)
            stream.player = None
        if stream.vod is not None:
            stream.vod.stop()
            stream.vod = None
        if playing and why in ("deleteStream", "closeStream"):
            self._play_stopped(stream)

    def _play_stopped(self, stream: NetStream):
        """Tell a player its stream is over, as nginx-rtmp and FMS do (``replies.play_stopped``)."""
        play_stopped(self.session, stream.stream_id, stream.name)
        self.session.flush()

    # -- playing ------------------------------------------------------------------------------

    def play(self, command):
        stream = self.streams.get(command.stream_id)
        raw = self.argument(command, 0, "")
        start = self.argument(command, 1, -2)
        duration = self.argument(command, 2, -1)
        if isinstance(raw, dict):      # play2 passes NetStreamPlayOptions
            raw, start, duration = raw.get("streamName", ""), raw.get("start", -2), raw.get("len", -1)
        name, query = split_stream_name(raw)
        start = start if is_finite(start) else -2
        if start in (-1000, -2000):
            start //= 1000      # ffmpeg and librtmp send FMS's -1 (live only) and -2 (any) times 1000
        # ms, as librtmp (rtmpdump --stop) sends it; negative (FMS's -1, or -1000): to the end.
        duration = int(duration) if is_finite(duration) and duration >= 0 else None
        reset = self.argument(command, 3, True) is not False
        # In publish's order (app/publishing.py): no stream, then too long a name, then none.
        if stream is not None and self.name_too_long(name, "play"):
            self.status(command.stream_id, NetStreamCode.PLAY_STREAM_NOT_FOUND,
                        f"Stream name longer than {self.limits.max_stream_name_length} characters.", "error")
            return
        if stream is None or not name:
            self.status(command.stream_id, NetStreamCode.PLAY_STREAM_NOT_FOUND, f"Stream {brief(raw)} not found.",
                        "error")
            return
        if self.session.is_relay:
            d = succeed(True)       # a node pulling for its players: it ran on_play there (app/relay.py)
        else:
            d = maybeDeferred(self.application.on_play, self.session.client, name, query)
        d.addCallbacks(self._play_allowed, self._play_refused, (stream, name, start, reset, duration), None,
                       (stream, name))
        d.addErrback(log_failure(log, "play %r", name))

    def _play_allowed(self, decision, stream: NetStream, name: str, start, reset: bool,
                      duration: Optional[int] = None):
        if self.session.closed:
            return
        if decision is False:
            return self._play_refused(None, stream, name)
        self.stop(stream, "play")
        stream.name = name
        live = self.application.live.get(name)
        if live is not None and live.publisher is not None and start < 0:
            return self._play_live(stream, live, reset, duration)
        if start < 0 and self.application.relay is not None and not self.session.is_relay:
            # Not published here: maybe on another node of the cluster, which the hub knows.
            turn = stream.turn
            d = self.application.hub.find(self.application.name, name)
            d.addCallbacks(self._found, self._look_up_failed, (stream, turn, name, start, reset, duration), None,
                           (stream, turn, name, start, reset, duration))
            d.addErrback(log_failure(log, "play %r", name))
            return
        self._play_here(stream, name, start, reset, duration)

    def _found(self, publication, stream: NetStream, turn: int, name: str, start, reset: bool,
               duration: Optional[int]):
        """The hub said where ``name`` is published: pull it from that node, or play what this node has."""
        if self.session.closed or stream.turn != turn:
            return
        application = self.application
        live = application.live.get(name)
        if live is not None and live.publisher is not None:
            # Published here meanwhile, or another player's pull is already under way.
            return self._play_live(stream, live, reset, duration)
        if publication is not None and publication.node != application.hub.node:
            live = application.live.stream(name)
            application.relay.pull(application, live, publication)
            return self._play_live(stream, live, reset, duration)
        self._play_here(stream, name, start, reset, duration)

    def _look_up_failed(self, failure, stream: NetStream, turn: int, name: str, start, reset: bool,
                        duration: Optional[int]):
        """The hub cannot answer (Redis lost): what this node has still plays; the connection's log says why."""
        self.dropped.hit("stream look-up failed",
                         f"cannot look {brief_name(name)} up on other nodes: {failure.getErrorMessage()}")
        if not self.session.closed and stream.turn == turn:
            self._play_here(stream, name, start, reset, duration)

    def _play_here(self, stream: NetStream, name: str, start, reset: bool, duration: Optional[int]):
        """A play of what this node has: a recording (unless live only), else a live stream waited for."""
        path = self.application.record_path(name) if start != -1 else None
        if path is None:
            return self._play_not_recorded(stream, name, start, reset, duration)
        turn = stream.turn
        queue = SerialQueue(self.executor)
        d = queue.run(open_recording, path, _indexes(self.application), self.application.record_max_metadata_size)
        d.addCallbacks(self._recording_opened, self._recording_failed,
                       (stream, turn, name, start, reset, duration, queue), None, (stream, turn, name, path))
        d.addErrback(log_failure(log, "play %r", name))

    def _play_not_recorded(self, stream: NetStream, name: str, start, reset: bool, duration: Optional[int]):
        # A relay never waits: its node's players must hear at once that the origin has no such stream.
        if start >= 0 or self.session.is_relay:
            self.status(stream.stream_id, NetStreamCode.PLAY_STREAM_NOT_FOUND, f"Stream {name!r} not found.",
                        "error")
            return
        # Live, not published yet: wait for it, as FMS does.
        self._play_live(stream, self.application.live.stream(name), reset, duration)

    def _recording_opened(self, recorded, stream: NetStream, turn: int, name: str, start, reset: bool,
                          duration: Optional[int], queue: SerialQueue):
        if self.session.closed or stream.turn != turn:
            if recorded is not None:
                queue.run(recorded.close)
            return
        if recorded is None:
            return self._play_not_recorded(stream, name, start, reset, duration)
        if recorded.metadata_skipped:
            limit = self.application.record_max_metadata_size
            self.session.limit_log.hit("recordMaxMetadataSize",
                                       f"{self.application.name}: {brief_name(recorded.path)} played without its "
                                       f"onMetaData of {recorded.metadata_skipped} bytes, more than "
                                       f"recordMaxMetadataSize ({limit})")
        stream.vod = RecordedPlayback(self, stream, name, recorded, self.clock, duration, queue)
        stream.vod.start(int(max(start, 0)), reset)

    def _recording_failed(self, failure, stream: NetStream, turn: int, name: str, path: str):
        failure.trap(OSError, ValueError)
        # A client may ask for it again and again: one line per interval (the session's limit log).
        self.session.limit_log.hit("cannot play", f"{self.application.name}: cannot play {brief_name(path)}: "
                                                  f"{brief_name(str(failure.value))}")
        if not self.session.closed and stream.turn == turn:
            self.status(stream.stream_id, NetStreamCode.PLAY_FAILED, f"Cannot play {name}.", "error")

    def _play_live(self, stream: NetStream, live: LiveStream, reset: bool, duration: Optional[int] = None):
        player = stream.player = Player(self.session, stream.stream_id, duration)
        player.on_end = lambda: self._live_play_ended(stream, player)
        live.add_player(player, reset)
        # on_play may have answered later than the read that asked: nothing else would flush this.
        self.session.flush()

    def _live_play_ended(self, stream: NetStream, player: Player):
        """A live play with a duration has had it: the player leaves, told as at a deleteStream."""
        if stream.player is not player or self.session.closed:
            return
        player.live.remove_player(player)
        stream.player = None
        self._play_stopped(stream)

    def _play_refused(self, failure, stream: NetStream, name: str):
        if self.session.closed:
            return
        reason = failure.value if failure is not None else None
        if failure is not None and not isinstance(reason, StreamRejected):
            log.error("on_play of %s raised:\n%s", self.application.name, failure.getTraceback())
        description = reason.reason if isinstance(reason, StreamRejected) else f"Playing {name} is not allowed."
        self.status(stream.stream_id, NetStreamCode.PLAY_FAILED, description, "error")

    def pause(self, command):
        stream = self.streams.get(command.stream_id)
        if stream is None:
            return
        paused = bool(self.argument(command, 0, True))
        if stream.player is not None:
            stream.player.paused = paused
            if not paused:
                stream.player.need_keyframe = True
        elif stream.vod is not None:
            stream.vod.pause(paused, self.argument(command, 1))
        code = NetStreamCode.PAUSE_NOTIFY if paused else NetStreamCode.UNPAUSE_NOTIFY
        self.status(stream.stream_id, code, f"{'Paused' if paused else 'Unpaused'} {stream.name}.")

    def seek(self, command):
        stream = self.streams.get(command.stream_id)
        if stream is None:
            return
        position = self.argument(command, 0, 0)
        if stream.vod is None or not is_finite(position):
            self.status(stream.stream_id, NetStreamCode.SEEK_FAILED, "Only recorded streams can seek.", "error")
            return
        stream.vod.seek(int(position))

    def receive_audio(self, command):
        stream = self.streams.get(command.stream_id)
        target = stream.player or stream.vod if stream is not None else None
        if target is not None:
            target.audio = bool(self.argument(command, 0, True))

    def receive_video(self, command):
        stream = self.streams.get(command.stream_id)
        target = stream.player or stream.vod if stream is not None else None
        if target is not None:
            target.video = bool(self.argument(command, 0, True))
            target.need_keyframe = True

    def get_stream_length(self, command):
        name, _ = split_stream_name(self.argument(command, 0, ""))
        path = self.application.record_path(name) if name else None
        if path is None:
            self.reply(command, 0)
            return
        d = self.executor.run(recording_length, path, _indexes(self.application),
                              self.application.record_max_metadata_size)
        d.addCallbacks(lambda length: None if self.session.closed else self._length(command, length),
                       self._length_failed, errbackArgs=(command,))
        d.addErrback(log_failure(log, "getStreamLength"))

    def _length(self, command, length):
        self.reply(command, length)
        self.session.flush()

    def _length_failed(self, failure, command):
        """Logged for us; the client still gets its answer, a plain ``_error``."""
        log_failure(log, "getStreamLength")(failure)
        self.session.send_call_error(command, error(NetConnectionCode.CALL_FAILED, "The stream length could not "
                                                                                  "be read."))
        self.session.flush()

    def fc_subscribe(self, command):
        name = self.argument(command, 0, "")
        self.session.send_command("onFCSubscribe",
                                  [status(NetStreamCode.PLAY_START, f"Subscribed to {brief_name(name)}.")])


def _indexes(application):
    """The kept FLV indexes of ``application``'s recordings, shared by its sessions (kept with its live streams)."""
    return application.live.recorded_indexes


#: Commands whose handler answers a transaction id with a value of its own (StreamCommands.handle answers the rest).
_ANSWER_THEMSELVES = frozenset({"createStream", "getStreamLength", "releaseStream", "FCPublish", "FCUnpublish"})

_COMMANDS = {
    "createStream": StreamCommands.create_stream,
    "deleteStream": StreamCommands.delete_stream,
    "closeStream": StreamCommands.close_stream,
    "getStreamLength": StreamCommands.get_stream_length,
    "releaseStream": lambda self, command: self.publishing.release_stream(command),
    "FCPublish": lambda self, command: self.publishing.fc_publish(command),
    "FCUnpublish": lambda self, command: self.publishing.fc_unpublish(command),
    "FCSubscribe": StreamCommands.fc_subscribe,
    "publish": lambda self, command: self.publishing.publish(command),
    "play": StreamCommands.play,
    "play2": StreamCommands.play,
    "pause": StreamCommands.pause,
    "seek": StreamCommands.seek,
    "receiveAudio": StreamCommands.receive_audio,
    "receiveVideo": StreamCommands.receive_video,
}
