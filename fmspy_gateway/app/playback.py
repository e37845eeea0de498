"""Recorded playback: a recording sent at its own pace, a little ahead of real time; seek and pause move it.

Every read of the file (opening and indexing it, the sequence headers at a
position, the tags of each tick, closing it) runs through the session's
executor, one ``SerialQueue`` per playback (``app/fileio.py``); the reactor
only sends what a read brought back.  A read that comes back after a seek,
a pause or a stop made it stale is dropped (``_generation``).
"""
import math
import os
from typing import Optional

from ..rtmp.budget import brief_name
from ..rtmp.flv import is_video_keyframe
from ..rtmp.messages import MessageType
from .fileio import SerialQueue
from .recording import DEFAULT_MAX_METADATA_SIZE, RecordedStream
from .replies import NetStreamCode, play_completed, play_started

#: How far ahead of real time recorded streams are sent, in ms.
VOD_LEAD_MS = 1000
#: How often a recorded stream's sender wakes up, in seconds.
VOD_TICK = 0.1

_AUDIO, _VIDEO, _DATA = MessageType.AUDIO, MessageType.VIDEO, MessageType.DATA_AMF0


def is_finite(value) -> bool:
    """A number a time can be made of: not a bool, not NaN, not infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def open_recording(path: str, indexes=None, max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE
                   ) -> Optional[RecordedStream]:
    """Runs in the executor: the recording at ``path`` opened (its index kept in ``indexes``), None if no file."""
    if not os.path.isfile(path):
        return None
    return RecordedStream(path, indexes, max_metadata_size)


def recording_length(path: str, indexes=None, max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE) -> float:
    """Runs in the executor: getStreamLength's answer, in seconds (0 when it cannot be read)."""
    try:
        recorded = open_recording(path, indexes, max_metadata_size)
    except (OSError, ValueError):
        return 0
    if recorded is None:
        return 0
    with recorded:
        return recorded.duration_ms / 1000


class RecordedPlayback:
    """Sends a recorded stream at its own pace, a little ahead of real time; seek and pause move it.

    ``duration_ms`` is play's third argument (``rtmpdump --stop``): playback
    ends, as at the end of the file, after the tags up to that many ms past
    where it started (0: the frame at the start).  A seek starts that span
    again from where it lands, as a new play would.
    """

    def __init__(self, commands, stream, name: str, recorded: RecordedStream, clock,
                 duration_ms: Optional[int] = None, queue: Optional[SerialQueue] = None):
        self.commands = commands
        self.session = commands.session
        self.stream = stream
        self.name = name
        self.recorded = recorded
        self.clock = clock
        self.duration_ms = duration_ms
        self.queue = queue if queue is not None else SerialQueue(commands.executor)
        # Touched only by the file tasks (one at a time, in the executor).
        self._tags = None
        self._pending = None
        self._origin = 0.0       # clock time at which the playhead was at _start_ms
        self._paused_at = 0      # file time of the playhead when pause came
        self._start_ms = 0
        self._end_ms = None      # file time past which nothing is sent (None: the end of the file)
        self._timer = None
        #: Bumped by every seek, pause and stop: a read answering for an older one is dropped.
        self._generation = 0
        self.paused = False
        #: receiveAudio / receiveVideo: what the client wants; video back on waits for a keyframe.
        self.audio = self.video = True
        self.need_keyframe = False
        #: Play.Stop / Play.Complete were sent: the end of the file or of the duration was reached.
        self.finished = False

    def start(self, start_ms: int, reset: bool):
        session, stream_id = self.session, self.stream.stream_id
        play_started(session, stream_id, self.name, reset, recorded=True)
        if self.recorded.metadata is not None:
            session.send_data(["onMetaData", self.recorded.metadata], stream_id,
                              f"onMetaData of {brief_name(self.name)}")
        self._limit(start_ms)
        self._position(start_ms)

    def _limit(self, start_ms: int):
        self._end_ms = start_ms + self.duration_ms if self.duration_ms is not None else None

    # -- file tasks (in the executor) ------------------------------------------------------------

    def _read_position(self, start_ms: int):
        self._tags = self.recorded.tags_from(start_ms)
        self._pending = next(self._tags, None)
        return self._pending, self.recorded.sequence_headers_at(start_ms)

    def _read_until(self, horizon: float, end_ms):
        """The tags up to ``horizon``; and whether the file (or the duration) ended."""
        tags = []
        while True:
            tag = self._pending if self._pending is not None else next(self._tags, None)
            self._pending = None
            if tag is None or (end_ms is not None and tag.timestamp > end_ms):
                return tags, True
            if tag.timestamp > horizon:
                self._pending = tag
                return tags, False
            tags.append(tag)

    # -- on the reactor ---------------------------------------------------------------------------

    def _position(self, start_ms: int):
        """Read where ``start_ms`` starts, then send its headers and go on (unless paused meanwhile)."""
        self._generation += 1
        d = self.queue.run(self._read_position, start_ms)
        d.addCallback(self._positioned, self._generation, start_ms)
        d.addErrback(self._failed, self._generation)

    def _positioned(self, read, generation: int, start_ms: int, go_on: bool = True):
        """Send the sequence headers in force at the new position; then the tags, unless ``go_on`` is False."""
        if generation != self._generation:
            return
        first_tag, headers = read
        # The stream restarts at a keyframe at or before start_ms: headers go out stamped with its time.
        first = first_tag.timestamp if first_tag is not None else start_ms
        send, stream_id = self.session.send_media, self.stream.stream_id
        for tag in headers:
            send(tag.type_id, stream_id, first, tag.body)
        self._start_ms = self._paused_at = first       # an unpause without a position goes on from here
        self._origin = self.clock.seconds()
        if go_on:
            self._tick()

    def _tick(self):
        # Never runs paused or after the connection closed: pause, seek and stop (which close_all
        # calls) cancel the timer and make reads in flight stale.
        self._timer = None
        if self.session in self.commands.application.live.blocked:
            self._timer = self.clock.callLater(VOD_TICK, self._tick)
            return
        horizon = self._start_ms + (self.clock.seconds() - self._origin) * 1000 + VOD_LEAD_MS
        d = self.queue.run(self._read_until, horizon, self._end_ms)
        d.addCallback(self._send, self._generation)
        d.addErrback(self._failed, self._generation)

    def _send(self, read, generation: int):
        if generation != self._generation:
            return
        tags, ended = read
        send, stream_id = self.session.send_media, self.stream.stream_id
        for tag in tags:
            type_id = tag.type_id
            if type_id == _DATA:
                continue       # metadata was sent at start
            if type_id == _AUDIO and not self.audio:
                continue
            if type_id == _VIDEO:
                if not self.video:
                    continue
                if self.need_keyframe:
                    if not is_video_keyframe(tag.body):
                        continue
                    self.need_keyframe = False
            send(type_id, stream_id, tag.timestamp, tag.body)
        if ended:
            self._complete()
            return
        self.session.flush()
        self._timer = self.clock.callLater(VOD_TICK, self._tick)

    def _failed(self, failure, generation: int):
        """A read failed (the file went bad under us): the play ends as at the end of the file."""
        failure.trap(OSError, ValueError)
        if generation == self._generation and not self.session.closed:
            self.session.limit_log.hit("recording unreadable", f"playing {brief_name(self.name)} failed: "
                                                               f"{brief_name(str(failure.value), 200)}")
            self._complete()

    def _complete(self):
        self.finished = True
        play_completed(self.session, self.stream.stream_id, self.name, self.recorded.duration_ms / 1000)
        self.session.flush()

    def seek(self, position_ms: int):
        self._cancel()
        stream_id = self.stream.stream_id
        self.session.send_status(stream_id, NetStreamCode.SEEK_NOTIFY,
                                 f"Seeking {position_ms} (stream ID: {stream_id}).")
        self.session.send_status(stream_id, NetStreamCode.PLAY_START, f"Started playing {self.name}.")
        self.finished = False
        self._limit(max(0, position_ms))
        if self.paused:
            # Headers go out now; the tags once unpaused.
            self._generation += 1
            d = self.queue.run(self._read_position, max(0, position_ms))
            d.addCallback(self._positioned, self._generation, max(0, position_ms), False)
            d.addErrback(self._failed, self._generation)
        else:
            self._position(max(0, position_ms))

    def pause(self, paused: bool, position_ms=None):
        """``position_ms``: where the client's playhead is (Flash and librtmp send it); else ours."""
        self._cancel()
        if paused and not self.paused:
            self._paused_at = int(self._start_ms + (self.clock.seconds() - self._origin) * 1000)
        was_paused, self.paused = self.paused, paused
        if not paused:
            if not is_finite(position_ms):
                position_ms = self._paused_at if was_paused else self._start_ms
            self._position(max(0, int(position_ms)))

    def _cancel(self):
        self._generation += 1
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def stop(self):
        self._cancel()
        self.paused = True
        self.queue.run(self.recorded.close)
