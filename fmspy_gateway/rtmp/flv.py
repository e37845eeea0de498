"""FLV: codec facts of RTMP audio/video payloads, and the FLV file format.

An RTMP audio (8), video (9) or AMF0 data (18) message payload is exactly the
body of an FLV tag of the same type, so one module owns both: the codec facts
the live relay needs (is this a keyframe, a sequence header to replay to late
subscribers, which codec for the log) and the container the recorder writes
and VOD playback reads.

Payloads are read as the legacy FLV layout or as Enhanced RTMP (veovera v1/v2:
the IsExHeader bit of video, SoundFormat 9 for audio, then packet types,
ModEx prefixes, Multitrack and a FourCC).  Nothing here raises on a short or
strange payload: the facts are what a relay needs to route media it does not
decode, so an unreadable payload is simply "not a keyframe", "unknown".

File functions take a binary file object (``open(..., "rb")``, ``io.BytesIO``)
and never read more than one tag at a time.  A file whose tail is cut (being
recorded, or a crash) ends at its last complete tag; a file that is not FLV at
all raises ``ValueError``.  Standard library only, plus ``.amf`` for script
data: no sockets, no clock.
"""
import struct
from dataclasses import dataclass
from typing import Iterator, Optional

from .amf import encode_values, decode_values
from .errors import RemoteProtocolError
from .messages import MessageType

# FLV tag types are RTMP's message types (rtmp/messages.py); plain ints, compared per tag.
AUDIO = int(MessageType.AUDIO)
VIDEO = int(MessageType.VIDEO)
SCRIPT = int(MessageType.DATA_AMF0)

TAG_HEADER_SIZE = 11
MAX_BODY_SIZE = 0xFFFFFF
MAX_TIMESTAMP = 0xFFFFFFFF
#: Bytes of each body ``scan_tags`` reads: enough for every codec fact of a
#: tag without a big ModEx prefix, and for the start of an onMetaData body.
HEAD_SIZE = 64

# -- codec facts --------------------------------------------------------------

KEYFRAME, INTER_FRAME, DISPOSABLE_INTER_FRAME, GENERATED_KEYFRAME, INFO_FRAME = 1, 2, 3, 4, 5

# Enhanced VideoPacketType / AudioPacketType values.
SEQUENCE_START, CODED_FRAMES, SEQUENCE_END, CODED_FRAMES_X = 0, 1, 2, 3
VIDEO_METADATA, MPEG2TS_SEQUENCE_START, VIDEO_MULTITRACK, VIDEO_MOD_EX = 4, 5, 6, 7
AUDIO_MULTICHANNEL_CONFIG, AUDIO_MULTITRACK, AUDIO_MOD_EX = 4, 5, 7
MANY_TRACKS_MANY_CODECS = 2

_LEGACY_VIDEO = {1: "JPEG", 2: "H.263", 3: "ScreenVideo", 4: "VP6", 5: "VP6A",
                 6: "ScreenVideo2", 7: "AVC", 12: "HEVC"}
#: Legacy codec ids whose second byte is an AVCPacketType (0 seq header, 1 NALU, 2 end).
#: 12 is the non-standard HEVC id of Chinese CDNs and SRS, used before Enhanced RTMP.
_PACKET_TYPED_VIDEO = {7, 12}
_VIDEO_FOURCC = {b"avc1": "AVC", b"hvc1": "HEVC", b"av01": "AV1", b"vp09": "VP9", b"vp08": "VP8"}

_LEGACY_AUDIO = {0: "PCM", 1: "ADPCM", 2: "MP3", 3: "PCM", 4: "Nellymoser", 5: "Nellymoser",
                 6: "Nellymoser", 7: "G.711A", 8: "G.711U", 10: "AAC", 11: "Speex", 14: "MP3",
                 15: "DeviceSpecific"}
_AUDIO_EX_HEADER = 9
_AAC = 10
_AUDIO_FOURCC = {b"Opus": "Opus", b"fLaC": "FLAC", b"ac-3": "AC-3", b"ec-3": "E-AC-3",
                 b".mp3": "MP3", b"mp4a": "AAC"}


@dataclass(frozen=True)
class VideoHeader:
    """What the first bytes of a video payload say."""
    #: Enhanced RTMP (IsExHeader bit set) rather than the legacy layout.
    enhanced: bool
    #: 1 keyframe, 2 inter, 3 disposable inter, 4 generated keyframe, 5 info/command.
    frame_type: int
    #: Enhanced: the VideoPacketType after any ModEx prefix, the inner one of a
    #: Multitrack packet.  Legacy AVC/HEVC: the AVCPacketType.  None when the
    #: codec has none or the payload is too short to carry it.
    packet_type: Optional[int]
    #: "AVC", "HEVC", "AV1", ...; a printable unknown FourCC as is; else "unknown".
    codec: str
    multitrack: bool = False


@dataclass(frozen=True)
class AudioHeader:
    """What the first bytes of an audio payload say."""
    enhanced: bool
    #: The legacy SoundFormat (9 for every enhanced payload).
    sound_format: int
    #: Enhanced: the AudioPacketType (after ModEx, inside Multitrack).  AAC:
    #: the AACPacketType (0 AudioSpecificConfig, 1 raw).  Else None.
    packet_type: Optional[int]
    codec: str
    multitrack: bool = False


def _byte(payload, index):
    return payload[index] if index < len(payload) else None


def _skip_mod_ex(payload, pos, packet_type):
    """Skip ModEx prefixes (v2): (position after them, the real packet type), or None if cut."""
    while packet_type == VIDEO_MOD_EX:     # 7 is ModEx for audio and video alike
        size = _byte(payload, pos)
        if size is None:
            return None
        size, pos = size + 1, pos + 1
        if size == 256:
            if pos + 2 > len(payload):
                return None
            size, pos = int.from_bytes(payload[pos:pos + 2], "big") + 1, pos + 2
        pos += size
        last = _byte(payload, pos)
        if last is None:
            return None
        packet_type, pos = last & 0x0F, pos + 1
    return pos, packet_type


def _fourcc_name(payload, pos, names):
    fourcc = bytes(payload[pos:pos + 4])
    if len(fourcc) < 4:
        return "unknown"
    if fourcc in names:
        return names[fourcc]
    return fourcc.decode("ascii") if all(0x20 < b < 0x7F for b in fourcc) else "unknown"


def _enhanced(payload, packet_type, multitrack_type, names, command_frame=False):
    """(packet type, codec, multitrack) of an enhanced payload, or None if cut short."""
    skipped = _skip_mod_ex(payload, 1, packet_type)
    if skipped is None:
        return None
    pos, packet_type = skipped
    if command_frame and packet_type != VIDEO_METADATA:
        return packet_type, "unknown", False        # a VideoCommand byte, no FourCC
    multitrack = packet_type == multitrack_type
    if multitrack:
        inner = _byte(payload, pos)
        if inner is None:
            return None
        # ManyTracksManyCodecs puts each track's FourCC before it: the first
        # track's sits where the shared one would, so the codec read is the first's.
        packet_type, pos = inner & 0x0F, pos + 1
    return packet_type, _fourcc_name(payload, pos, names), multitrack


def video_header(payload) -> Optional[VideoHeader]:
    """The header facts of a video payload, or None when it is empty or cut inside them."""
    first = _byte(payload, 0)
    if first is None:
        return None
    if first & 0x80:
        frame_type = (first >> 4) & 0x07
        found = _enhanced(payload, first & 0x0F, VIDEO_MULTITRACK, _VIDEO_FOURCC,
                          command_frame=frame_type == INFO_FRAME)
        if found is None:
            return None
        return VideoHeader(True, frame_type, found[0], found[1], found[2])
    codec_id = first & 0x0F
    packet_type = _byte(payload, 1) if codec_id in _PACKET_TYPED_VIDEO else None
    return VideoHeader(False, first >> 4, packet_type, _LEGACY_VIDEO.get(codec_id, "unknown"))


def audio_header(payload) -> Optional[AudioHeader]:
    """The header facts of an audio payload, or None when it is empty or cut inside them."""
    first = _byte(payload, 0)
    if first is None:
        return None
    sound_format = first >> 4
    if sound_format == _AUDIO_EX_HEADER:
        found = _enhanced(payload, first & 0x0F, AUDIO_MULTITRACK, _AUDIO_FOURCC)
        if found is None:
            return None
        return AudioHeader(True, sound_format, found[0], found[1], found[2])
    packet_type = _byte(payload, 1) if sound_format == _AAC else None
    return AudioHeader(False, sound_format, packet_type, _LEGACY_AUDIO.get(sound_format, "unknown"))


def is_video_keyframe(payload) -> bool:
    """A keyframe carrying picture data: where a late subscriber or a seek may start.

    Sequence headers (legacy AVCPacketType 0, enhanced SequenceStart) have
    frame type 1 too but are not pictures.  Legacy codecs without a packet type
    (H.263, VP6, ScreenVideo) are keyframes by frame type alone.
    """
    header = video_header(payload)
    if header is None or header.frame_type != KEYFRAME:
        return False
    if header.enhanced:
        return header.packet_type in (CODED_FRAMES, CODED_FRAMES_X)
    if header.codec in ("AVC", "HEVC"):
        return header.packet_type == 1
    return True


def is_sequence_header(type_id: int, payload) -> bool:
    """A decoder configuration to replay before anything else to a new subscriber.

    Video: legacy AVC/HEVC AVCPacketType 0, enhanced SequenceStart.  Audio:
    AAC AudioSpecificConfig (AACPacketType 0), enhanced SequenceStart.
    Enhanced MultichannelConfig and video Metadata are *not* counted: they
    come alongside a SequenceStart, and a cache of "the" header per type must
    not let them replace it (callers wanting them read ``packet_type``).
    """
    if type_id == VIDEO:
        header = video_header(payload)
        if header is None or header.frame_type == INFO_FRAME:
            return False
        if header.enhanced:
            return header.packet_type == SEQUENCE_START
        return header.codec in ("AVC", "HEVC") and header.packet_type == 0
    if type_id == AUDIO:
        header = audio_header(payload)
        if header is None:
            return False
        if header.enhanced:
            return header.packet_type == SEQUENCE_START
        return header.codec == "AAC" and header.packet_type == 0
    return False


def is_video_info_frame(payload) -> bool:
    """Frame type 5 (video info / command frame, e.g. seek markers): no picture to decode."""
    header = video_header(payload)
    return header is not None and header.frame_type == INFO_FRAME


def codec_name(type_id: int, payload) -> str:
    """The codec of an audio or video payload for the log; "unknown" when it cannot be told."""
    header = video_header(payload) if type_id == VIDEO else (
        audio_header(payload) if type_id == AUDIO else None)
    return header.codec if header is not None else "unknown"


# -- the FLV file format --------------------------------------------------------

_HEADER = struct.Struct(">3sBBI")      # "FLV", version, flags, data offset
_TAG_HEADER = struct.Struct(">II3s")   # type << 24 | size, ts24 << 8 | ts_ext, stream id
_FLAG_AUDIO, _FLAG_VIDEO = 0x04, 0x01


@dataclass(frozen=True)
class FLVHeader:
    version: int
    has_audio: bool
    has_video: bool
    #: Where the first PreviousTagSize field starts (9 in every file seen in practice).
    data_offset: int


@dataclass(frozen=True)
class Tag:
    """One complete FLV tag."""
    #: The full type byte: 8 audio, 9 video, 18 script data; a set Filter bit
    #: (encrypted tag) gives another value, which callers then ignore.
    type_id: int
    #: Milliseconds, 32 bits (the 24-bit field plus its extended upper byte).
    timestamp: int
    body: bytes
    #: File offset of the tag header.
    offset: int

    @property
    def end(self) -> int:
        """File offset just after this tag's PreviousTagSize field."""
        return self.offset + TAG_HEADER_SIZE + len(self.body) + 4


@dataclass(frozen=True)
class TagHeader:
    """A tag seen by ``scan_tags``: its header, and only the first bytes of its body."""
    type_id: int
    timestamp: int
    size: int
    offset: int
    #: The first ``HEAD_SIZE`` bytes of the body (all of it when shorter).
    head: bytes

    @property
    def end(self) -> int:
        return self.offset + TAG_HEADER_SIZE + self.size + 4


def flv_header(has_audio: bool = True, has_video: bool = True) -> bytes:
    """The 9-byte file header followed by PreviousTagSize0 (0): what precedes the first tag."""
    flags = (_FLAG_AUDIO if has_audio else 0) | (_FLAG_VIDEO if has_video else 0)
    return _HEADER.pack(b"FLV", 1, flags, 9) + b"\0\0\0\0"


#: The name the streaming brief used; same function.
FLV_HEADER = flv_header


def tag_header(type_id: int, timestamp: int, size: int) -> bytes:
    """The 11-byte header of a tag; the body and ``previous_tag_size`` follow it."""
    if not 0 <= type_id <= 0xFF:
        raise ValueError(f"FLV tag type {type_id} out of range")
    if not 0 <= size <= MAX_BODY_SIZE:
        raise ValueError(f"FLV tag body of {size} bytes exceeds {MAX_BODY_SIZE}")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"FLV timestamp {timestamp} outside 0..2**32-1")
    return _TAG_HEADER.pack(type_id << 24 | size, (timestamp & 0xFFFFFF) << 8 | timestamp >> 24,
                            b"\0\0\0")


def previous_tag_size(size: int) -> bytes:
    """The PreviousTagSize field following a tag with a body of ``size`` bytes."""
    return struct.pack(">I", TAG_HEADER_SIZE + size)


def tag_bytes(type_id: int, timestamp: int, body) -> bytes:
    """One whole tag: header, body, PreviousTagSize."""
    return tag_header(type_id, timestamp, len(body)) + bytes(body) + previous_tag_size(len(body))


def _parse_tag_header(raw: bytes):
    word, ts, _stream_id = _TAG_HEADER.unpack(raw)
    return word >> 24, (ts >> 8) | (ts & 0xFF) << 24, word & 0xFFFFFF


def read_header(f) -> FLVHeader:
    """Read the file header at the current position and leave ``f`` at the first tag.

    ``ValueError`` when this is not an FLV file (or is shorter than its header).
    """
    raw = f.read(_HEADER.size)
    if len(raw) < _HEADER.size or raw[:3] != b"FLV":
        raise ValueError("not an FLV file (no FLV signature)")
    _, version, flags, data_offset = _HEADER.unpack(raw)
    if data_offset < _HEADER.size:
        raise ValueError(f"not an FLV file (header size {data_offset} < 9)")
    f.seek(data_offset - _HEADER.size + 4, 1)     # extra header bytes, PreviousTagSize0
    return FLVHeader(version, bool(flags & _FLAG_AUDIO), bool(flags & _FLAG_VIDEO), data_offset)


def read_tag(f) -> Optional[Tag]:
    """The complete tag at the current position, leaving ``f`` after it.

    None at the end of the file or when the tag (with its PreviousTagSize) is
    cut short; ``f`` is then left where the tag starts, so a reader of a file
    still being written can try again later.  PreviousTagSize is not checked:
    old writers got it wrong and nothing depends on it.
    """
    offset = f.tell()
    raw = f.read(TAG_HEADER_SIZE)
    if len(raw) == TAG_HEADER_SIZE:
        type_id, timestamp, size = _parse_tag_header(raw)
        rest = f.read(size + 4)
        if len(rest) == size + 4:
            return Tag(type_id, timestamp, rest[:size], offset)
    f.seek(offset)
    return None


def iter_tags(f) -> Iterator[Tag]:
    """Every complete tag of a whole file, ``f`` being at its start (header read here)."""
    read_header(f)
    while True:
        tag = read_tag(f)
        if tag is None:
            return
        yield tag


def scan_tags(f, head_size: int = HEAD_SIZE) -> Iterator[TagHeader]:
    """Tag headers from the current position (after ``read_header``), skipping bodies.

    Indexing a file this way reads ``11 + head_size`` bytes a tag and seeks
    over the rest, so opening a long recording costs little.  Stops at the
    last tag that is complete in the file as it is when the scan starts.
    """
    offset = f.tell()
    file_size = f.seek(0, 2)
    while offset + TAG_HEADER_SIZE <= file_size:
        f.seek(offset)
        raw = f.read(TAG_HEADER_SIZE)
        type_id, timestamp, size = _parse_tag_header(raw)
        end = offset + TAG_HEADER_SIZE + size + 4
        if end > file_size:
            break
        yield TagHeader(type_id, timestamp, size, offset, f.read(min(size, head_size)))
        offset = end
    f.seek(offset)


# -- script data ------------------------------------------------------------------

def script_body(name: str, value) -> bytes:
    """An AMF0 script tag body ``[name, value]``, e.g. ``script_body("onMetaData", obj)``."""
    return encode_values([name, value], amf3=False)


def parse_script_body(body) -> Optional[list]:
    """The AMF0 values of a script tag (name first), or None when they do not decode."""
    try:
        values = decode_values(bytes(body), amf3=False)
    except RemoteProtocolError:
        return None
    return values if values and isinstance(values[0], str) else None
