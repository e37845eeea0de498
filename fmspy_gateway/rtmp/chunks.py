"""The chunk stream layer: RTMP messages cut into chunks and put back together.

``ChunkReader`` turns a byte stream into whole ``Message`` objects; ``ChunkWriter``
turns messages into bytes, compressing headers (formats 0-3) as the spec allows.
Both are pure: bytes in, messages or bytes out.  The reader owns the incoming
chunk size and Abort because they change how the very next chunk is parsed.
"""
import struct
from dataclasses import dataclass

from .errors import LimitExceeded, LocalProtocolError, RemoteProtocolError
from .limits import Limits
from .messages import MAX_CHUNK_SIZE, MAX_MESSAGE_SIZE, MessageType

DEFAULT_CHUNK_SIZE = 128
EXTENDED_TIMESTAMP = 0xFFFFFF
FIRST_CHUNK_STREAM_ID = 2          # 0 and 1 only introduce the longer basic headers
LAST_CHUNK_STREAM_ID = 65599

# The two protocol control messages the reader acts on itself (plain ints: compared per message).
SET_CHUNK_SIZE = int(MessageType.SET_CHUNK_SIZE)
ABORT = int(MessageType.ABORT)

_U24 = struct.Struct(">I")


@dataclass(frozen=True)
class Message:
    """One RTMP message, as assembled from (or cut into) chunks."""

    #: Message type id (1-22; see ``messages``).
    type_id: int
    #: Message stream id; 0 is the NetConnection itself.
    stream_id: int
    #: Absolute timestamp in milliseconds, modulo 2**32.
    timestamp: int
    #: The message body.
    payload: bytes
    #: Chunk stream it travelled on; senders use it to keep media apart from commands.
    chunk_stream_id: int = 3


class _InboundChunkStream:
    """What the reader remembers of one chunk stream: the last header and a partial message."""

    __slots__ = ("type_id", "stream_id", "length", "timestamp", "timestamp_field",
                 "extended", "parts", "received")

    def __init__(self):
        self.type_id = 0
        self.stream_id = 0
        self.length = 0
        self.timestamp = 0
        self.timestamp_field = 0   # the last delta (formats 1, 2) or absolute value (format 0)
        self.extended = False      # the last header carried an extended timestamp
        self.parts = None          # list of payload pieces while a message is incomplete
        self.received = 0


class ChunkReader:
    """Reassembles messages from chunks within the configured ``Limits``.

    Feed bytes with ``feed``; it returns the messages completed so far and
    keeps any incomplete chunk for the next call.  A broken or hostile stream
    raises ``RemoteProtocolError`` (``LimitExceeded`` for a crossed limit).
    """

    __slots__ = ("limits", "chunk_size", "_pending", "_pending_size", "_needed", "_streams", "_buffered")

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self.chunk_size = DEFAULT_CHUNK_SIZE
        # Bytes of a chunk not yet whole.  They are joined only once ``_needed``
        # bytes are here, so a large chunk arriving in many reads costs one copy.
        # Held at most one chunk (header + chunk_size), bounded by max_chunk_size.
        self._pending = []
        self._pending_size = 0
        self._needed = 1
        self._streams = {}
        self._buffered = 0   # bytes held in incomplete messages, across chunk streams

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for incomplete messages and a partial chunk."""
        return self._buffered + self._pending_size

    def feed(self, data: bytes) -> list:
        if not data:
            return []
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size < self._needed:
            return []
        buf = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        messages = []
        pos = 0
        end = len(buf)
        while pos < end:
            consumed = self._read_chunk(buf, pos, end, messages)
            if consumed <= 0:
                self._needed = -consumed
                break
            pos += consumed
        else:
            self._needed = 1
        rest = buf[pos:]
        self._pending = [rest] if rest else []
        self._pending_size = len(rest)
        return messages

    def _read_chunk(self, buf: bytes, pos: int, end: int, messages: list) -> int:
        """Parse one chunk at ``pos``.

        Returns the bytes consumed, or, when the chunk is not all here yet, minus
        the number of bytes (from ``pos``) known to be needed before trying again.
        """
        start = pos
        first = buf[pos]
        fmt = first >> 6
        csid = first & 0x3F
        pos += 1
        if csid == 0:
            if end - pos < 1:
                return -2
            csid = 64 + buf[pos]
            pos += 1
        elif csid == 1:
            if end - pos < 2:
                return -3
            csid = 64 + buf[pos] + (buf[pos + 1] << 8)
            pos += 2

        header_size = (11, 7, 3, 0)[fmt]
        if end - pos < header_size:
            return start - pos - header_size
        stream = self._streams.get(csid)
        if stream is None:
            if fmt != 0:
                raise RemoteProtocolError(
                    f"chunk stream {csid} starts with a format {fmt} header; the first must be format 0")
            if len(self._streams) >= self.limits.max_chunk_streams:
                raise LimitExceeded(
                    "max_chunk_streams",
                    f"peer opened more than {self.limits.max_chunk_streams} chunk streams (maxChunkStreams)")

        # Read the header into locals; the stream's state changes only once the
        # chunk's payload is here too, so a chunk split across reads parses the same.
        if fmt < 3:
            field = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            if fmt < 2:
                length = (buf[pos + 3] << 16) | (buf[pos + 4] << 8) | buf[pos + 5]
                type_id = buf[pos + 6]
                if fmt == 0:
                    stream_id = int.from_bytes(buf[pos + 7:pos + 11], "little")
            pos += header_size
            extended = field == EXTENDED_TIMESTAMP
            if extended:
                if end - pos < 4:
                    return start - pos - 4
                field = int.from_bytes(buf[pos:pos + 4], "big")
                pos += 4
        else:
            extended = stream.extended
            field = stream.timestamp_field
            if extended:
                # Extended timestamps repeat on format 3 chunks (spec 5.3.1.3, librtmp, ffmpeg).
                if end - pos < 4:
                    return start - pos - 4
                pos += 4

        starts_message = stream is None or stream.parts is None
        if starts_message:
            if fmt < 2:
                if length > self.limits.max_message_size:
                    raise LimitExceeded(
                        "max_message_size",
                        f"peer announced a {length}-byte message on chunk stream {csid}; "
                        f"the limit is {self.limits.max_message_size} (maxMessageSize)")
            else:
                length, type_id = stream.length, stream.type_id
            if fmt == 0:
                timestamp = field
            else:
                timestamp = (stream.timestamp + field) & 0xFFFFFFFF
                stream_id = stream.stream_id
            received = 0
        elif fmt != 3:
            raise RemoteProtocolError(
                f"chunk stream {csid}: a format {fmt} header arrived in the middle of a message")
        else:
            length, received = stream.length, stream.received

        take = min(self.chunk_size, length - received)
        if end - pos < take:
            return start - pos - take
        piece = buf[pos:pos + take]
        pos += take

        if starts_message:
            if stream is None:
                stream = self._streams[csid] = _InboundChunkStream()
            if fmt < 3:
                stream.timestamp_field = field
                stream.extended = extended
            stream.length = length
            stream.type_id = type_id
            stream.stream_id = stream_id
            stream.timestamp = timestamp
            if take == length:
                # The whole message in one chunk: the common case, no bookkeeping.
                self._complete(csid, stream, piece, messages)
                return pos - start
            stream.parts = []
            stream.received = 0
        stream.parts.append(piece)
        stream.received += take
        self._buffered += take
        if self._buffered > self.limits.max_buffered_bytes:
            raise LimitExceeded(
                "max_buffered_bytes",
                f"peer left more than {self.limits.max_buffered_bytes} bytes in incomplete messages "
                f"(maxBufferedBytes)")
        if stream.received == length:
            payload = b"".join(stream.parts)
            self._buffered -= length
            stream.parts = None
            self._complete(csid, stream, payload, messages)
        return pos - start

    def _complete(self, csid, stream, payload, messages):
        message = Message(stream.type_id, stream.stream_id, stream.timestamp, payload, csid)
        if stream.type_id == SET_CHUNK_SIZE:
            self._set_chunk_size(payload)
        elif stream.type_id == ABORT:
            self._abort(payload)
        messages.append(message)

    def _set_chunk_size(self, payload: bytes):
        if len(payload) < 4:
            raise RemoteProtocolError("Set Chunk Size message shorter than 4 bytes")
        size = int.from_bytes(payload[:4], "big")
        if size > MAX_CHUNK_SIZE or size < 1:
            raise RemoteProtocolError(f"invalid chunk size {size}")
        if size > self.limits.max_chunk_size:
            raise LimitExceeded(
                "max_chunk_size",
                f"peer set chunk size {size}; the limit is {self.limits.max_chunk_size} (maxChunkSize)")
        self.chunk_size = size

    def _abort(self, payload: bytes):
        if len(payload) < 4:
            raise RemoteProtocolError("Abort message shorter than 4 bytes")
        stream = self._streams.get(int.from_bytes(payload[:4], "big"))
        if stream is not None and stream.parts is not None:
            self._buffered -= stream.received
            stream.parts = None
            stream.received = 0


class _OutboundChunkStream:
    """What one writer last sent on one chunk stream: its own, changed in place by ``write_parts``."""

    __slots__ = ("type_id", "stream_id", "length", "timestamp", "delta")

    def __init__(self, type_id: int, stream_id: int, length: int, timestamp: int):
        self.type_id = type_id
        self.stream_id = stream_id
        self.length = length
        self.timestamp = timestamp
        self.delta = None   # None after a format 0 header: format 3 is then never used


class SharedChunkStream:
    """One chunk stream's state shared by many writers that were all sent the same messages on it.

    The live fan-out's fast path (``app/live.py``, ``LiveStream.publish``).
    After a format 1, 2 or 3 header a chunk stream's state at the receiver is
    (type, length, timestamp delta) plus its own running timestamp; the
    header of the next message depends on the first three only.  Players of
    one live stream that started at different moments have different
    timestamps (each starts at 0) but, once they were sent the same
    messages, the same deltas: the publisher's.  So the next header is the
    same bytes for all of them, and is built here once per message
    (``next_parts``) instead of once per player.

    Writers in step hold this very object as their state for ``csid``
    (``Connection.join_shared``); anything else they send on the chunk
    stream replaces it with state of their own, which is how the fan-out
    tells a writer has left.  A writer never changes it: ``write_parts``
    treats it as unknown and starts again with a format 0 header, which
    does not depend on what came before.
    """

    __slots__ = ("csid", "chunk_size", "type_id", "length", "delta", "source_timestamp")

    def __init__(self, csid: int, chunk_size: int, type_id: int, length: int, delta: int, source_timestamp: int):
        self.csid = csid
        self.chunk_size = chunk_size
        self.type_id = type_id
        self.length = length
        #: The delta of the last header sent: format 3 repeats it.
        self.delta = delta
        #: The publisher's timestamp of the last message: deltas are taken on the publisher's time line.
        self.source_timestamp = source_timestamp

    def matches(self, own: "_OutboundChunkStream", source_timestamp: int) -> bool:
        """Whether a writer whose own state is ``own`` just after the message at ``source_timestamp`` is in step."""
        return (own.__class__ is _OutboundChunkStream and own.delta is not None and own.delta == self.delta
                and own.type_id == self.type_id and own.length == self.length
                and source_timestamp == self.source_timestamp)

    def next_parts(self, type_id: int, source_timestamp: int, payload: bytes, shared: dict):
        """(first chunk header, the rest) of the next message for every writer in step, and the state moved on.

        None when the delta cannot be sent this way (the publisher's clock
        went back, or a gap needs an extended timestamp): every writer then
        starts again with a format 0 header of its own.  ``shared`` caches the
        body by (chunk stream, chunk size), as ``ChunkWriter.write_parts``.
        """
        delta = (source_timestamp - self.source_timestamp) & 0xFFFFFFFF
        if delta >= EXTENDED_TIMESTAMP:
            return None
        length = len(payload)
        csid = self.csid
        if type_id != self.type_id or length != self.length:
            header = _header(1, csid, delta, length, type_id, 0)
        elif delta != self.delta:
            header = _header(2, csid, delta, length, type_id, 0)
        else:
            header = _basic_header(3, csid)
        self.type_id, self.length, self.delta, self.source_timestamp = type_id, length, delta, source_timestamp
        size = self.chunk_size
        if length <= size:
            return header, payload
        key = (csid, size)
        body = shared.get(key)
        if body is None:
            body = shared[key] = _chunk_body(payload, csid, size, b"")
        return header, body


class MediaBatch:
    """The live fan-out's messages queued once for all its players in step, each taking them at its write.

    Why: adding each message to each player's queue, and asking for each
    player's write, was Python work per player per message, even where a
    player is written ten times a second (``mediaFlushInterval`` 0.1):
    taking it out cut the server's CPU by about a seventh at 100 players
    of a 2 Mbit/s stream and by 8% at 400 (bench/streaming.py, five
    interleaved runs each way).
    Here the fan-out (``app/live.py``, ``LiveStream.publish``) adds a
    message's parts once (``add``), and each member connection copies what
    it has not taken yet into its own queue (``Connection.take_batch``)
    before anything else is queued there and when its bytes are written:
    its bytes are then exactly those and in exactly the order that queueing
    each message at once would have given.

    A member's position is absolute (``base`` + index); the parts are
    dropped once every member has taken them.  A member with nothing else
    queued writes exactly the parts from its position on, which for members
    in step are the same bytes: ``joined_from`` joins them once per write of
    them all and hands each the one bytes object (a copy of some 25 KB per
    player per write at 100 ms of a 2 Mbit/s stream, saved).  ``ready``
    are the members that had taken everything: ``add`` hands them back,
    since they now have something to write.  ``detached`` are members that left on their own by
    sending something else on a media chunk stream, for the fan-out to move
    back to its one-by-one path at its next message.  Members are known by
    the token they joined with (the fan-out's session).
    """

    __slots__ = ("parts", "base", "members", "ready", "detached", "_joined")

    def __init__(self):
        self.parts = []
        self.base = 0
        self.members = set()
        self.ready = {}         # an ordered set, handed out whole by ``add``
        self.detached = []
        #: (start, end, bytes): the parts between those positions, joined for the first member that wrote them.
        #: Positions are never reused, so it cannot go stale; it lasts until the next join (one per stream).
        self._joined = None

    @property
    def end(self) -> int:
        return self.base + len(self.parts)

    def joined_from(self, position: int) -> bytes:
        """The parts from absolute ``position`` to the end as one bytes object, joined once for every member."""
        end = self.base + len(self.parts)
        joined = self._joined
        if joined is not None and joined[0] == position and joined[1] == end:
            return joined[2]
        data = b"".join(self.parts[position - self.base:])
        self._joined = (position, end, data)
        return data

    def add(self, parts) -> dict:
        """Queue one message's (header, body) for every member; returns the members that now have something
        to write and had nothing before."""
        self.parts += parts
        ready = self.ready
        if ready:
            self.ready = {}
        return ready

    def taken(self, token) -> None:
        """``token``'s connection has everything (``Connection.take_batch`` does this itself, inline)."""
        self.ready[token] = None
        self._drop_if_all_took()

    def join(self, token) -> int:
        self.members.add(token)
        self.taken(token)
        return self.end

    def leave(self, token) -> None:
        self.members.discard(token)
        self.ready.pop(token, None)
        self._drop_if_all_took()

    def _drop_if_all_took(self) -> None:
        if len(self.ready) == len(self.members):
            self.base += len(self.parts)
            self.parts = []


def _basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes(((fmt << 6) | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    rest = csid - 64
    return bytes(((fmt << 6) | 1, rest & 0xFF, rest >> 8))


def _header(fmt: int, csid: int, wire_field: int, length: int, type_id: int, stream_id: int) -> bytes:
    """A chunk header of format 0, 1 or 2 (format 3 is the basic header alone)."""
    header = _basic_header(fmt, csid) + wire_field.to_bytes(3, "big")
    if fmt < 2:
        header += length.to_bytes(3, "big") + bytes((type_id,))
        if fmt == 0:
            header += stream_id.to_bytes(4, "little")
    return header


class ChunkWriter:
    """Cuts messages into chunks, choosing the smallest header that is unambiguous.

    Format 3 is used for a new message only after a format 1 or 2 header with
    the same delta, the one reading every implementation agrees on.
    """

    __slots__ = ("chunk_size", "_streams")

    def __init__(self):
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._streams = {}

    def write(self, message: Message, shared: dict = None) -> bytes:
        """The chunks of one message, as bytes."""
        header, body = self.write_parts(message, shared)
        return header + body

    def share(self, csid: int, shared: "SharedChunkStream", source_timestamp: int):
        """Hand our state of ``csid`` to a fan-out: ``shared``, or a new one if None; returns it, or None.

        Only when the message just written (at ``source_timestamp`` on the
        publisher's time line) left us in step with ``shared`` (see
        ``SharedChunkStream.matches``), or, for a new one, after a format 1,
        2 or 3 header.  From then on ``_streams[csid] is shared`` says we are
        still in step; ``table`` is that dict, for the fan-out to look at.
        """
        own = self._streams.get(csid)
        if own.__class__ is not _OutboundChunkStream or own.delta is None:
            return None
        if shared is None:
            shared = SharedChunkStream(csid, self.chunk_size, own.type_id, own.length, own.delta, source_timestamp)
        elif shared.csid != csid or shared.chunk_size != self.chunk_size or not shared.matches(own, source_timestamp):
            return None
        self._streams[csid] = shared
        return shared

    @property
    def table(self) -> dict:
        """The state of each chunk stream, by id (what ``SharedChunkStream`` members are checked against)."""
        return self._streams

    def leave_shared(self) -> None:
        """Forget every shared state (the chunk size changed: its bodies no longer fit); format 0 follows.

        The entry stays, as None: a fan-out looks its members' entries up without a default.
        """
        for csid, state in self._streams.items():
            if state.__class__ is SharedChunkStream:
                self._streams[csid] = None

    def write_parts(self, message: Message, shared: dict = None):
        """(first chunk header, the rest) of one message.

        Everything after the first header depends only on the payload, the
        chunk stream and the chunk size, so a message sent to many peers is cut
        once: pass the same ``shared`` dict for each peer and the body is
        reused for every peer with the same chunk size and chunk stream.
        """
        return self.write_fields(message.type_id, message.stream_id, message.timestamp, message.payload,
                                 message.chunk_stream_id, shared)

    def write_fields(self, type_id: int, stream_id: int, timestamp: int, payload: bytes, csid: int,
                     shared: dict = None):
        """``write_parts`` of the message these fields make, without making it.

        What the core sends goes through here: a frozen ``Message`` costs
        more to build (about 0.5 us) than the header it turns into.
        """
        if not FIRST_CHUNK_STREAM_ID <= csid <= LAST_CHUNK_STREAM_ID:
            raise LocalProtocolError(f"chunk stream id {csid} outside 2..65599")
        length = len(payload)
        if length > MAX_MESSAGE_SIZE:
            raise LocalProtocolError(f"message of {length} bytes does not fit RTMP's 24-bit length")
        prev = self._streams.get(csid)
        timestamp &= 0xFFFFFFFF
        # A SharedChunkStream is the fan-out's, not ours to change (and knows no timestamp of ours): format 0.
        own = prev.__class__ is _OutboundChunkStream
        delta = (timestamp - prev.timestamp) & 0xFFFFFFFF if own else None
        if not own or prev.stream_id != stream_id or delta >= 0x80000000:
            fmt, field = 0, timestamp
            self._streams[csid] = _OutboundChunkStream(type_id, stream_id, length, timestamp)
        else:
            if prev.type_id != type_id or prev.length != length:
                fmt = 1
            elif prev.delta != delta:
                fmt = 2
            else:
                fmt = 3
            field = delta
            prev.type_id, prev.length, prev.timestamp, prev.delta = type_id, length, timestamp, delta
        extended = field >= EXTENDED_TIMESTAMP
        wire_field = EXTENDED_TIMESTAMP if extended else field
        if fmt < 3:
            header = _header(fmt, csid, wire_field, length, type_id, stream_id)
        else:
            header = _basic_header(fmt, csid)
        size = self.chunk_size
        if extended:
            # Continuation chunks repeat the extended timestamp: this body is ours alone.
            ext = field.to_bytes(4, "big")
            return header + ext, _chunk_body(payload, csid, size, ext)
        if shared is None or length <= size:
            return header, _chunk_body(payload, csid, size, b"")
        key = (csid, size)
        body = shared.get(key)
        if body is None:
            body = shared[key] = _chunk_body(payload, csid, size, b"")
        return header, body


def _chunk_body(payload: bytes, csid: int, size: int, ext: bytes) -> bytes:
    """The payload cut into chunks after the first header: format 3 headers in between."""
    if len(payload) <= size:
        return payload
    continuation = _basic_header(3, csid) + ext
    out = [payload[:size]]
    for offset in range(size, len(payload), size):
        out.append(continuation)
        out.append(payload[offset:offset + size])
    return b"".join(out)
