"""Live streams: one publisher's audio, video and metadata fanned out to many players.

Each published message becomes a ``MediaMessage`` whose chunk bodies are cut
once and shared by every player (``ChunkWriter.write_parts``); per player only
a first chunk header is written, with the player's stream id and a timestamp
rebased so its stream starts at 0.  A new player gets the metadata, the codec
sequence headers and the frames since the latest keyframe (the GOP cache),
then the live messages.  A player whose socket cannot keep up is never queued
for without bound: while its transport asks us to pause, media for it is
dropped and it resumes at the next keyframe; one that stays behind longer than
``slow_player_timeout`` is disconnected.
"""
import logging
import time
from typing import Dict, List, Optional

from ..rtmp.flv import is_sequence_header, is_video_info_frame, is_video_keyframe
from ..rtmp.messages import MessageType
from .recording import RecordingIndexes
from .replies import play_started, publish_notified, unpublish_notified

log = logging.getLogger(__name__)

AUDIO, VIDEO = MessageType.AUDIO, MessageType.VIDEO


class MediaMessage:
    """One published audio or video message, shared by every player."""

    __slots__ = ("type_id", "timestamp", "payload", "keyframe", "shared")

    def __init__(self, type_id: int, timestamp: int, payload: bytes, keyframe: bool = False):
        self.type_id = type_id
        self.timestamp = timestamp
        self.payload = payload
        #: A video keyframe: where a player may start.
        self.keyframe = keyframe
        #: Chunk bodies by (chunk stream, chunk size), cut for the first player and reused by the rest.
        self.shared = {}


class Player:
    """One NetStream playing a live stream.

    ``duration_ms`` is play's third argument: FMS plays a live stream "for
    that many seconds after it becomes available", so it counts the media
    this player was sent (its own time line, from the keyframe it started
    at, across republishes), not the wall clock it waited.  When a message
    would take it past the duration the player ends: it is sent nothing
    more and ``on_end`` is called at the next flush (not in the middle of
    the fan-out loop that noticed).  0 plays the first frame only.
    """

    __slots__ = ("session", "stream_id", "base", "need_keyframe", "paused", "audio", "video", "live",
                 "duration_ms", "played_ms", "last_ms", "ended", "on_end")

    def __init__(self, session, stream_id: int, duration_ms: Optional[int] = None):
        self.session = session
        self.stream_id = stream_id
        #: Publisher timestamp that is this player's 0; set by the first message sent.
        self.base = None
        self.need_keyframe = True
        #: Paused by the client (NetStream.pause).
        self.paused = False
        self.audio = True
        self.video = True
        self.live = None
        self.duration_ms = duration_ms
        #: ms played under earlier publishers (each republish restarts the time line at 0).
        self.played_ms = 0
        #: The time line's position: the rebased timestamp last sent.
        self.last_ms = 0
        self.ended = False
        #: Called (no arguments) once the duration is reached; None: the player just leaves its stream.
        self.on_end = None

    def send_data(self, values):
        """Relay a data message (the publisher's, or metadata); AMF0 only to a client that reads only AMF0.

        A value only AMF3 can carry (a ByteArray, say) is never switched with
        0x11 for such a client (``Session.send_data``).
        """
        self.session.send_data(values, self.stream_id, "data message")

    def deliver(self, message: MediaMessage, force: bool = False) -> bool:
        """Send one message if this player can take it now; returns whether it was sent."""
        if self.paused or self.ended:
            return False
        if message.type_id == VIDEO:
            if not self.video:
                return False
            if self.need_keyframe and not (message.keyframe or force):
                return False
            if message.keyframe:
                self.need_keyframe = False
        elif not self.audio:
            return False
        if self.base is None:
            self.base = message.timestamp
        timestamp = (message.timestamp - self.base) & 0xFFFFFFFF
        if timestamp >= 0x80000000:
            # Before this player's 0 (sequence headers, audio interleaved just ahead of the
            # keyframe it started at): 0, not 49 days later.
            timestamp = 0
        if self.duration_ms is not None and self.played_ms + timestamp > self.duration_ms:
            self.ended = True
            if self.live is not None:
                self.live.registry.ended.append(self)
            return False
        self.last_ms = timestamp
        self.session.send_media(message.type_id, self.stream_id, timestamp, message.payload, message.shared)
        return True


class LiveStream:
    """A named live stream of one application: at most one publisher, any number of players."""

    def __init__(self, registry: "LiveStreams", name: str):
        self.registry = registry
        self.name = name
        #: The session publishing, or None while players wait for one.
        self.publisher = None
        self.players: List[Player] = []
        #: The onMetaData values from the publisher's @setDataFrame.
        self.metadata: Optional[tuple] = None
        self.audio_header: Optional[MediaMessage] = None
        self.video_header: Optional[MediaMessage] = None
        #: Messages since the latest video keyframe, for players that join now.
        self.gop: List[MediaMessage] = []
        self._gop_bytes = 0
        #: Listeners of each published message (the recorder).
        self.taps = []
        #: When the current publisher started (epoch seconds) and the media bytes it sent, for the status API.
        self.published_at: Optional[float] = None
        self.bytes_in = 0

    # -- the publisher's side --------------------------------------------------------

    def start(self, publisher):
        self.publisher = publisher
        self.published_at, self.bytes_in = time.time(), 0
        for player in self.players:
            player.need_keyframe, player.base = True, None
            player.played_ms, player.last_ms = player.played_ms + player.last_ms, 0
            publish_notified(player.session, player.stream_id, self.name)
        self.registry.touch(self.players)

    def set_metadata(self, values: tuple):
        self.metadata = values
        for player in self.players:
            player.send_data(values)
        self.registry.touch(self.players)

    def publish(self, type_id: int, timestamp: int, payload: bytes):
        self.bytes_in += len(payload)
        if type_id == VIDEO and is_video_info_frame(payload):
            return
        if is_sequence_header(type_id, payload):
            message = MediaMessage(type_id, timestamp, payload)
            for tap in self.taps:
                tap(message)       # a recording without its sequence headers cannot be decoded
            if type_id == VIDEO:
                self.video_header = message
            else:
                self.audio_header = message
            for player in self.players:
                player.deliver(message, force=True)
            self.registry.touch(self.players)
            return
        keyframe = type_id == VIDEO and is_video_keyframe(payload)
        message = MediaMessage(type_id, timestamp, payload, keyframe)
        self._cache(message)
        for tap in self.taps:
            tap(message)
        registry = self.registry
        blocked, dirty = registry.blocked, registry.dirty
        for player in self.players:
            session = player.session
            if session in blocked:
                # Its socket is full: drop, and start again at a keyframe (or give up on it).
                player.need_keyframe = True
                registry.check_slow(session)
            elif player.deliver(message):
                dirty.add(session)

    def _cache(self, message: MediaMessage):
        if message.keyframe:
            self.gop = []
            self._gop_bytes = 0
        elif message.type_id == VIDEO and not self.gop:
            return          # no keyframe to start from yet
        if self._gop_bytes + len(message.payload) > self.registry.max_gop_bytes:
            # A GOP larger than we keep: new players wait for the next keyframe instead.
            self.gop = []
            self._gop_bytes = 0
            return
        self.gop.append(message)
        self._gop_bytes += len(message.payload)

    def stop(self):
        """The publisher is gone: players are told, state is dropped, the stream waits for the next one."""
        self.publisher = None
        self.metadata = self.audio_header = self.video_header = None
        self.gop = []
        self._gop_bytes = 0
        for player in self.players:
            unpublish_notified(player.session, player.stream_id, self.name)
        self.registry.touch(self.players)
        # A dropped publisher is no read of anyone's, so no flush would follow: flush now.
        self.registry.flush()

    # -- the players' side -----------------------------------------------------------------

    def add_player(self, player: Player, reset: bool = True):
        player.live = self
        self.players.append(player)
        play_started(player.session, player.stream_id, self.name, reset)
        if self.publisher is not None:
            self._catch_up(player)
        self.registry.touch([player])

    def _catch_up(self, player: Player):
        """What a player joining now needs: metadata, sequence headers, the frames since the last keyframe."""
        if self.metadata is not None:
            player.send_data(self.metadata)
        start = self.gop[0].timestamp if self.gop else None
        for header in (self.video_header, self.audio_header):
            if header is not None:
                if player.base is None and start is not None:
                    player.base = start
                player.deliver(header, force=True)
        for message in self.gop:
            player.deliver(message)

    def remove_player(self, player: Player):
        if player in self.players:
            self.players.remove(player)
        player.live = None
        self.registry.forget_if_idle(self)


class LiveStreams:
    """The live streams of one application, and the players to flush after each publisher read.

    ``clock`` (``seconds()``) times how long a player has been blocked;
    without one, ``time.monotonic`` does.
    """

    def __init__(self, clock=None, max_gop_bytes: int = 8 * 1024 * 1024, slow_player_timeout: float = 10.0):
        #: Bytes of the GOP cache per stream (``maxGopBytes``).
        self.max_gop_bytes = max_gop_bytes
        #: Seconds a player may stay unable to take data before it is disconnected (``slowPlayerTimeout``).
        self.slow_player_timeout = slow_player_timeout
        self._now = clock.seconds if clock is not None else time.monotonic
        self.streams: Dict[str, LiveStream] = {}
        #: Sessions that got messages and need a flush once the current read is handled.
        self.dirty = set()
        #: Sessions whose transport asked us to pause writing, and since when.
        self.blocked: Dict[object, float] = {}
        #: Players whose play duration ran out during the current read; ended at the next flush.
        self.ended: List[Player] = []
        #: The FLV indexes of the application's recordings, built once per file version (app/playback.py).
        self.recorded_indexes = RecordingIndexes()

    def block(self, session):
        self.blocked.setdefault(session, self._now())

    def unblock(self, session):
        self.blocked.pop(session, None)

    def check_slow(self, session):
        since = self.blocked.get(session)
        if since is not None and self._now() - since > self.slow_player_timeout:
            del self.blocked[session]
            log.warning("%s: player could not keep up for %.0f s (slowPlayerTimeout); disconnecting",
                        session.peer.address, self.slow_player_timeout)
            # Not close(): that lets the socket drain first, which a player that stopped reading never does.
            session.abort("limit hit: slowPlayerTimeout")

    def get(self, name: str) -> Optional[LiveStream]:
        return self.streams.get(name)

    def stream(self, name: str) -> LiveStream:
        live = self.streams.get(name)
        if live is None:
            live = self.streams[name] = LiveStream(self, name)
        return live

    def forget_if_idle(self, live: LiveStream):
        if live.publisher is None and not live.players and self.streams.get(live.name) is live:
            del self.streams[live.name]

    def touch(self, players):
        for player in players:
            self.dirty.add(player.session)

    def flush(self):
        ended, self.ended = self.ended, []
        for player in ended:
            if player.on_end is not None:
                player.on_end()
            elif player.live is not None:
                player.live.remove_player(player)
        dirty, self.dirty = self.dirty, set()
        for session in dirty:
            if not session.closed:
                session.flush()
