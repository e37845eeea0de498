"""Message type ids and the fixed binary layouts of RTMP's small messages.

Protocol control, user control and aggregate bodies are plain structs;
AMF-bodied messages are encoded by ``amf`` (commands, data) and
``sharedobject`` (shared objects).
"""
import enum
import struct
from typing import Iterator, List, Tuple

from .errors import RemoteProtocolError


class MessageType(enum.IntEnum):
    SET_CHUNK_SIZE = 1
    ABORT = 2
    ACKNOWLEDGEMENT = 3
    USER_CONTROL = 4
    WINDOW_ACK_SIZE = 5
    SET_PEER_BANDWIDTH = 6
    AUDIO = 8
    VIDEO = 9
    DATA_AMF3 = 15
    SHARED_OBJECT_AMF3 = 16
    COMMAND_AMF3 = 17
    DATA_AMF0 = 18
    SHARED_OBJECT_AMF0 = 19
    COMMAND_AMF0 = 20
    AGGREGATE = 22


#: The largest chunk size Set Chunk Size can carry: its 31-bit field (the top bit must be 0).
MAX_CHUNK_SIZE = 0x7FFFFFFF
#: The largest message body: the chunk header's 24-bit length.
MAX_MESSAGE_SIZE = 0xFFFFFF


class UserControl(enum.IntEnum):
    STREAM_BEGIN = 0
    STREAM_EOF = 1
    STREAM_DRY = 2
    SET_BUFFER_LENGTH = 3
    STREAM_IS_RECORDED = 4
    PING_REQUEST = 6
    PING_RESPONSE = 7


class PeerBandwidthLimit(enum.IntEnum):
    HARD = 0
    SOFT = 1
    DYNAMIC = 2


_U32 = struct.Struct(">I")
_U16_U32 = struct.Struct(">HI")
_U16_U32_U32 = struct.Struct(">HII")
_U32_U8 = struct.Struct(">IB")


def u32(value: int) -> bytes:
    """A 4-byte big-endian body: Set Chunk Size, Abort, Acknowledgement, Window Ack Size."""
    return _U32.pack(value & 0xFFFFFFFF)


def read_u32(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise RemoteProtocolError(f"{what} message shorter than 4 bytes")
    return _U32.unpack_from(payload)[0]


def peer_bandwidth(size: int, limit_type: int) -> bytes:
    return _U32_U8.pack(size, limit_type)


def read_peer_bandwidth(payload: bytes) -> Tuple[int, int]:
    if len(payload) < 5:
        raise RemoteProtocolError("Set Peer Bandwidth message shorter than 5 bytes")
    return _U32_U8.unpack_from(payload)


def user_control(event_type: int, value: int, buffer_length: int = None) -> bytes:
    if event_type == UserControl.SET_BUFFER_LENGTH:
        return _U16_U32_U32.pack(event_type, value, buffer_length or 0)
    return _U16_U32.pack(event_type, value & 0xFFFFFFFF)


def read_user_control(payload: bytes) -> Tuple[int, int, int]:
    """(event type, stream id or timestamp, buffer length or None)."""
    if len(payload) < 6:
        raise RemoteProtocolError("User Control message shorter than 6 bytes")
    event_type, value = _U16_U32.unpack_from(payload)
    if event_type == UserControl.SET_BUFFER_LENGTH:
        if len(payload) < 10:
            raise RemoteProtocolError("SetBufferLength event shorter than 10 bytes")
        return event_type, value, _U32.unpack_from(payload, 6)[0]
    return event_type, value, None


def split_aggregate(payload: bytes, timestamp: int) -> Iterator[Tuple[int, int, int, bytes]]:
    """Yield (type id, stream id, timestamp, body) for each part of an aggregate message.

    Parts are FLV tags: type u8, size u24, timestamp u24 + extension u8,
    stream id u24, body, back pointer u32.  Part timestamps are rebased so the
    first part has the aggregate's own timestamp.
    """
    pos = 0
    end = len(payload)
    base = None
    while pos < end:
        if end - pos < 11:
            raise RemoteProtocolError("aggregate message ends inside a part header")
        type_id = payload[pos]
        size = int.from_bytes(payload[pos + 1:pos + 4], "big")
        part_time = int.from_bytes(payload[pos + 4:pos + 7], "big") | (payload[pos + 7] << 24)
        stream_id = int.from_bytes(payload[pos + 8:pos + 11], "big")
        body_start = pos + 11
        if body_start + size + 4 > end:
            raise RemoteProtocolError("aggregate part overruns its message")
        if base is None:
            base = part_time
        yield type_id, stream_id, (timestamp + part_time - base) & 0xFFFFFFFF, payload[body_start:body_start + size]
        pos = body_start + size + 4


def aggregate(parts: List[Tuple[int, int, int, bytes]]) -> bytes:
    """Build an aggregate body from (type id, stream id, timestamp, body) parts."""
    out = []
    for type_id, stream_id, timestamp, body in parts:
        out.append(bytes((type_id,)) + len(body).to_bytes(3, "big") + (timestamp & 0xFFFFFF).to_bytes(3, "big")
                   + bytes(((timestamp >> 24) & 0xFF,)) + stream_id.to_bytes(3, "big"))
        out.append(body)
        out.append((11 + len(body)).to_bytes(4, "big"))
    return b"".join(out)
