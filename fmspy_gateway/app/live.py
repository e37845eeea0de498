"""Live streams: one publisher's audio, video and metadata fanned out to many players.

Each published message becomes a ``MediaMessage`` whose chunk bodies are cut
once and shared by every player (``ChunkWriter.write_parts``).  Each player's
time line starts at 0 (timestamps rebased to the keyframe it started at);
players in step share one chunk header per message as well, which carries
the publisher's delta and so suits every time line, and with
``mediaFlushInterval`` take each message from one batch when they are
written (the fast path, ``LiveStream.publish``); the others get one each.  A new player gets the metadata, the codec
sequence headers and the frames since the latest keyframe (the GOP cache),
then the live messages.  A player whose socket cannot keep up is never queued
for without bound: while its transport asks us to pause, media for it is
dropped and it resumes at the next keyframe; one that stays behind longer than
``slow_player_timeout`` is disconnected.
"""
import logging
import time
from typing import Dict, List, Optional

from ..rtmp.chunks import MediaBatch
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

    ``paused``, ``audio``, ``video`` and ``need_keyframe`` are properties:
    changing any of them takes the player out of its stream's fast path
    (``LiveStream.publish``), so that every message is looked at for it
    again until it is a plain player once more.
    """

    __slots__ = ("session", "stream_id", "base", "_need_keyframe", "_paused", "_audio", "_video", "live",
                 "duration_ms", "played_ms", "last_ms", "ended", "on_end")

    def __init__(self, session, stream_id: int, duration_ms: Optional[int] = None):
        self.live = None
        self.session = session
        self.stream_id = stream_id
        #: Publisher timestamp that is this player's 0; set by the first message sent.
        self.base = None
        self._need_keyframe = True
        #: Paused by the client (NetStream.pause).
        self._paused = False
        self._audio = True
        self._video = True
        self.duration_ms = duration_ms
        #: ms played under earlier publishers (each republish restarts the time line at 0).
        self.played_ms = 0
        #: The time line's position: the rebased timestamp last sent (kept for players with a duration).
        self.last_ms = 0
        self.ended = False
        #: Called (no arguments) once the duration is reached; None: the player just leaves its stream.
        self.on_end = None

    def _flag(name):
        slot = "_" + name

        def get(self):
            return getattr(self, slot)

        def set_(self, value):
            setattr(self, slot, value)
            if self.live is not None:
                self.live.release(self)

        return property(get, set_)

    need_keyframe = _flag("need_keyframe")
    paused = _flag("paused")
    audio = _flag("audio")
    video = _flag("video")
    del _flag

    @property
    def plain(self) -> bool:
        """Nothing about this player needs a look at each message: it may take the fast path."""
        return not (self._paused or self._need_keyframe or self.ended or self.duration_ms is not None
                    or not self._audio or not self._video)

    def send_data(self, values):
        """Relay a data message (the publisher's, or metadata); AMF0 only to a client that reads only AMF0.

        A value only AMF3 can carry (a ByteArray, say) is never switched with
        0x11 for such a client (``Session.send_data``).
        """
        self.session.send_data(values, self.stream_id, "data message")

    def deliver(self, message: MediaMessage, force: bool = False) -> bool:
        """Send one message if this player can take it now; returns whether it was sent."""
        if self._paused or self.ended:
            return False
        if message.type_id == VIDEO:
            if not self._video:
                return False
            if self._need_keyframe and not (message.keyframe or force):
                return False
            if message.keyframe:
                self._need_keyframe = False
        elif not self._audio:
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
        #: The pull feeding this stream from the node publishing it (app/relay.py), or None.
        self.upstream = None
        #: The fast path, per media type (see ``publish``): the chunk stream state its members share ...
        self._shared: Dict[int, object] = {AUDIO: None, VIDEO: None}
        #: ... its members: player -> (chunk stream table, queue extend, session) ...
        self._members: Dict[int, Dict[Player, tuple]] = {AUDIO: {}, VIDEO: {}}
        #: ... the sessions of its members (one connection playing this stream twice stays out) ...
        self._member_sessions: Dict[int, set] = {AUDIO: set(), VIDEO: set()}
        #: ... and the players each message is looked at for, one by one (an ordered set).
        self._others: Dict[int, Dict[Player, None]] = {AUDIO: {}, VIDEO: {}}
        #: Members of both types' fast paths take every message from one batch, at their writes (``publish``):
        #: session -> player.
        self._batch = MediaBatch()
        self._batched: Dict[object, Player] = {}

    # -- the publisher's side --------------------------------------------------------

    def start(self, publisher):
        self.publisher = publisher
        self.published_at, self.bytes_in = time.time(), 0
        self._end_fast_path()       # a new publisher's time line: every player starts again
        for player in self.players:
            player.need_keyframe, player.base = True, None
            player.played_ms, player.last_ms = player.played_ms + player.last_ms, 0
            publish_notified(player.session, player.stream_id, self.name)
        self.registry.touch(self.players)

    def set_metadata(self, values: tuple):
        self.metadata = values
        self.send_data(values)

    def send_data(self, values: tuple):
        """A data message of the publisher's other than onMetaData: relayed to every player, not kept."""
        for player in self.players:
            player.send_data(values)
        self.registry.touch(self.players)

    def publish(self, type_id: int, timestamp: int, payload: bytes):
        """Fan one published message out to every player.

        This is the server's hottest loop, shaped for it (issue 14: the cost
        was Python work per player per message).  A player in step (it was
        sent the same messages as the others on this media type's chunk
        stream, and nothing about it needs a look: ``Player.plain``) is a
        member of the type's fast path: the message's chunk header and body
        are built once (``SharedChunkStream.next_parts``); its connection's
        state of the chunk stream *is* the shared one, so nothing per member
        changes.  A member of both types' fast paths whose media waits for
        ``mediaFlushInterval`` (``Session.media_waits``) costs nothing per
        message at all: the two bytes objects go into the stream's
        ``MediaBatch`` once, and each such connection copies what it has not
        taken when it is written or queues anything else
        (``Connection.take_batch``), so its bytes are what queueing each
        message at once would have given; it asks for a write once per
        write, not once per message (``MediaBatch.add``).  Any other member
        gets the two objects appended to its queue: a player written after
        each read costs less that way than taking from the batch each time.  A member whose connection sent anything else on a media
        chunk stream (``MediaBatch.detached``), or whose socket is full
        (``LiveStreams.block``), or that changed (paused, muted, a
        republish) is put back with the others, for whom every message goes
        through ``Player.deliver`` as before (keyframe start, drop to the
        next keyframe when blocked, ``slowPlayerTimeout``, durations); one
        of those that is plain again joins after a message that left it in
        step.
        """
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
        others = self._others[type_id]
        members = self._members[type_id]
        shared = self._shared[type_id]
        if shared is not None:
            batch = self._batch
            if batch.detached:
                self._drop_detached()
            parts = shared.next_parts(type_id, timestamp, payload, message.shared)
            if parts is None:
                self._end_fast_path()       # a delta the shared header cannot carry: each on its own
            else:
                if self._batched:
                    # Once for every member of both fast paths: they take it when they are written.
                    ready = batch.add(parts)
                    if ready:
                        dirty.update(ready)
                csid, left = shared.csid, []
                for player, (table, extend, session) in members.items():
                    if table[csid] is shared and session not in blocked:
                        extend(parts)
                    else:
                        left.append(player)
                for player in left:
                    self._leave_fast_path(player, type_id)
                dirty.update(self._member_sessions[type_id])
        joining = []
        for player in tuple(others):        # a copy: an aborted slow player may leave its stream meanwhile
            session = player.session
            if session in blocked:
                # Its socket is full: drop, and start again at a keyframe (or give up on it).
                player.need_keyframe = True
                registry.check_slow(session)
            elif player.deliver(message):
                dirty.add(session)
                if player.plain and (timestamp - player.base) & 0xFFFFFFFF < 0x80000000:
                    joining.append(player)      # not rebased to 0 (before its start): its deltas are the publisher's
        for player in joining:
            self._join_fast_path(player, type_id, timestamp)

    def _join_fast_path(self, player: Player, type_id: int, timestamp: int):
        """After a message left ``player`` in step with the others, take it into the fast path if it can."""
        session = player.session
        if session in self._member_sessions[type_id] or session in self._batched:
            return      # one connection playing this stream twice: the fast path would send it everything twice
        joined = session.share_media(type_id, self._shared[type_id], timestamp)
        if joined is None:
            return
        self._shared[type_id], table, extend = joined
        del self._others[type_id][player]
        self._members[type_id][player] = (table, extend, session)
        self._member_sessions[type_id].add(session)
        other = VIDEO if type_id == AUDIO else AUDIO
        member = self._members[other].get(player)
        if member is not None and session.media_waits:
            other_shared = self._shared[other]
            if member[0][other_shared.csid] is not other_shared or session in self.registry.blocked:
                # Out of step on the other chunk stream since its last message (or blocked): not in both.
                self._leave_fast_path(player, other)
                return
            # In step on both chunk streams, written once per interval: from the next message on it takes
            # them from the batch (a player written at each read is cheaper fed message by message).
            for kind in (AUDIO, VIDEO):
                del self._members[kind][player]
                self._member_sessions[kind].discard(session)
            self._batched[session] = player
            session.join_batch(self._batch)

    def _leave_fast_path(self, player: Player, type_id: int):
        session = player.session
        if self._batched.get(session) is player:
            # Out of the batch (after taking what it holds for it) and out of both fast paths.
            del self._batched[session]
            session.leave_batch()
            for kind in (AUDIO, VIDEO):
                self._others[kind][player] = None
            return
        member = self._members[type_id].pop(player, None)
        if member is not None:
            self._member_sessions[type_id].discard(member[2])
            self._others[type_id][player] = None

    def _drop_detached(self):
        """Members that sent something of their own on a media chunk stream left the batch: one by one again."""
        detached, self._batch.detached = self._batch.detached, []
        for session in detached:
            player = self._batched.pop(session, None)
            if player is not None:
                for kind in (AUDIO, VIDEO):
                    self._others[kind][player] = None

    def release_session(self, session):
        """``session``'s socket is full: its player leaves the batch, so that the next messages look at it."""
        player = self._batched.get(session)
        if player is not None:
            self._leave_fast_path(player, AUDIO)

    def release(self, player: Player):
        """``player`` changed (``Player`` flags): every message is looked at for it again."""
        for type_id in (AUDIO, VIDEO):
            self._leave_fast_path(player, type_id)

    def _end_fast_path(self):
        for player in list(self._batched.values()):
            self._leave_fast_path(player, AUDIO)
        for type_id in (AUDIO, VIDEO):
            for player in list(self._members[type_id]):
                self._leave_fast_path(player, type_id)
            self._shared[type_id] = None

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
        self._end_fast_path()
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
        for type_id in (AUDIO, VIDEO):
            self._others[type_id][player] = None
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
            for type_id in (AUDIO, VIDEO):
                self._leave_fast_path(player, type_id)
                del self._others[type_id][player]
        player.live = None
        if not self.players and self.upstream is not None:
            # Nobody here watches a stream pulled from another node: stop pulling it.
            self.upstream.drop("its last player left")
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
        if session not in self.blocked:
            for live in self.streams.values():
                live.release_session(session)
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
        # After every read of every connection: nothing is made when there is nothing to do (most reads).
        if self.ended:
            ended, self.ended = self.ended, []
            for player in ended:
                if player.on_end is not None:
                    player.on_end()
                elif player.live is not None:
                    player.live.remove_player(player)
        if self.dirty:
            dirty, self.dirty = self.dirty, set()
            for session in dirty:
                if not session.closed:
                    session.flush_media()
