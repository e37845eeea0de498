"""Tests of fmspy_gateway.rtmp.flv: codec facts of payloads, and FLV files written and read back."""
import io
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmspy_gateway.rtmp import flv
from fmspy_gateway.rtmp.flv import AUDIO, SCRIPT, VIDEO, Tag
from tests.conftest import require_tool
from tests.media import probe_packets

# -- codec facts ------------------------------------------------------------------

HVC = b"hvc1"
MOD_EX_3 = b"\x02abc"                       # modExDataSize 3 (UI8 + 1), then 3 bytes of data
MOD_EX_257 = b"\xff\x01\x00" + bytes(257)   # UI8 255 -> UI16 follows: 0x0100 + 1 = 257

# (name, type, payload, keyframe, sequence header, info frame, codec)
CASES = [
    # legacy video
    ("AVC keyframe", VIDEO, b"\x17\x01\x00\x00\x00\x00\x00\x00\x05\x65", True, False, False, "AVC"),
    ("AVC inter", VIDEO, b"\x27\x01\x00\x00\x00\x00\x00\x00\x05\x41", False, False, False, "AVC"),
    ("AVC disposable inter", VIDEO, b"\x37\x01\x00\x00\x00", False, False, False, "AVC"),
    ("AVC sequence header", VIDEO, b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f", False, True, False, "AVC"),
    ("AVC end of sequence", VIDEO, b"\x17\x02\x00\x00\x00", False, False, False, "AVC"),
    ("AVC without packet type", VIDEO, b"\x17", False, False, False, "AVC"),
    ("AVC info frame", VIDEO, b"\x57\x00", False, False, True, "AVC"),
    ("legacy HEVC id 12 seq header", VIDEO, b"\x1c\x00\x00\x00\x00\x01", False, True, False, "HEVC"),
    ("legacy HEVC id 12 keyframe", VIDEO, b"\x1c\x01\x00\x00\x00", True, False, False, "HEVC"),
    ("H.263 keyframe", VIDEO, b"\x12\x00\x00\x84", True, False, False, "H.263"),
    ("VP6 inter", VIDEO, b"\x24\x00", False, False, False, "VP6"),
    ("unknown legacy codec", VIDEO, b"\x1f\x00", True, False, False, "unknown"),
    # enhanced video
    ("HEVC SequenceStart", VIDEO, b"\x90" + HVC + b"\x01\x01\x60", False, True, False, "HEVC"),
    ("HEVC CodedFrames keyframe", VIDEO, b"\x91" + HVC + b"\x00\x00\x00\x00\x00\x00\x05\x26", True, False, False, "HEVC"),
    ("HEVC CodedFramesX keyframe", VIDEO, b"\x93" + HVC + b"\x00\x00\x00\x05\x26", True, False, False, "HEVC"),
    ("HEVC CodedFrames inter", VIDEO, b"\xa1" + HVC + b"\x00\x00\x00\x00\x00\x00\x05\x02", False, False, False, "HEVC"),
    ("HEVC CodedFramesX inter", VIDEO, b"\xa3" + HVC + b"\x00\x00\x00\x05\x02", False, False, False, "HEVC"),
    ("HEVC SequenceEnd", VIDEO, b"\x92" + HVC, False, False, False, "HEVC"),
    ("HEVC Metadata", VIDEO, b"\x94" + HVC + b"\x02\x00\x09colorInfo", False, False, False, "HEVC"),
    ("AV1 SequenceStart", VIDEO, b"\x90av01\x81\x00\x0c", False, True, False, "AV1"),
    ("AV1 keyframe", VIDEO, b"\x91av01\x12\x00", True, False, False, "AV1"),
    ("AV1 inter", VIDEO, b"\xa1av01\x12\x00", False, False, False, "AV1"),
    ("VP9 keyframe", VIDEO, b"\x91vp09\x82\x49", True, False, False, "VP9"),
    ("VP9 inter", VIDEO, b"\xa1vp09\x86\x00", False, False, False, "VP9"),
    ("VP9 SequenceStart", VIDEO, b"\x90vp09\x01", False, True, False, "VP9"),
    ("enhanced AVC keyframe", VIDEO, b"\x91avc1\x00\x00\x00\x00", True, False, False, "AVC"),
    ("enhanced command frame", VIDEO, b"\xd1\x00", False, False, True, "unknown"),
    ("enhanced command, seq start type", VIDEO, b"\xd0\x01", False, False, True, "unknown"),
    ("enhanced command byte is not a FourCC", VIDEO, b"\xd1hvc1", False, False, True, "unknown"),
    ("enhanced Metadata in a command frame", VIDEO, b"\xd4" + HVC + b"\x02", False, False, True, "HEVC"),
    ("ModEx then CodedFrames keyframe", VIDEO, b"\x97" + MOD_EX_3 + b"\x01" + HVC + b"\0\0\0", True, False, False, "HEVC"),
    ("ModEx 16-bit size then SequenceStart", VIDEO, b"\x97" + MOD_EX_257 + b"\x00av01\x81", False, True, False, "AV1"),
    ("two ModEx then CodedFramesX", VIDEO, b"\x97" + MOD_EX_3 + b"\x07" + MOD_EX_3 + b"\x03vp09", True, False, False, "VP9"),
    ("ModEx cut short", VIDEO, b"\x97\x02ab", False, False, False, "unknown"),
    ("ModEx 16-bit size cut short", VIDEO, b"\x97\xff\x01", False, False, False, "unknown"),
    ("Multitrack OneTrack keyframe", VIDEO, b"\x96\x01" + HVC + b"\x00\0\0\0", True, False, False, "HEVC"),
    ("Multitrack ManyTracks inter", VIDEO, b"\xa6\x11" + HVC + b"\x00\x00\x00\x05", False, False, False, "HEVC"),
    ("Multitrack ManyCodecs SequenceStart", VIDEO, b"\x96\x20av01\x00\x00\x00\x03", False, True, False, "AV1"),
    ("Multitrack cut before inner type", VIDEO, b"\x96", False, False, False, "unknown"),
    ("unknown printable FourCC", VIDEO, b"\x91xyzw", True, False, False, "xyzw"),
    ("unknown binary FourCC", VIDEO, b"\x91\x00\x01\x02\x03", True, False, False, "unknown"),
    ("enhanced, FourCC cut", VIDEO, b"\x91hv", True, False, False, "unknown"),
    ("enhanced, one byte", VIDEO, b"\x91", True, False, False, "unknown"),
    ("empty video", VIDEO, b"", False, False, False, "unknown"),
    # legacy audio
    ("AAC sequence header", AUDIO, b"\xaf\x00\x12\x10", False, True, False, "AAC"),
    ("AAC raw", AUDIO, b"\xaf\x01\x21\x00\x49", False, False, False, "AAC"),
    ("AAC without packet type", AUDIO, b"\xaf", False, False, False, "AAC"),
    ("MP3", AUDIO, b"\x2f\xff\xfb\x90\x64", False, False, False, "MP3"),
    ("MP3 8 kHz", AUDIO, b"\xe2\xff\xf3", False, False, False, "MP3"),
    ("Speex", AUDIO, b"\xb2\x00", False, False, False, "Speex"),
    ("Nellymoser", AUDIO, b"\x6e\x00", False, False, False, "Nellymoser"),
    ("G.711 mu-law", AUDIO, b"\x82\x00", False, False, False, "G.711U"),
    # enhanced audio
    ("Opus SequenceStart", AUDIO, b"\x90OpusOpusHead\x01\x02", False, True, False, "Opus"),
    ("Opus CodedFrames", AUDIO, b"\x91Opus\xfc\xff\xfe", False, False, False, "Opus"),
    ("Opus SequenceEnd", AUDIO, b"\x92Opus", False, False, False, "Opus"),
    ("FLAC MultichannelConfig", AUDIO, b"\x94fLaC\x01\x02", False, False, False, "FLAC"),
    ("enhanced AAC SequenceStart", AUDIO, b"\x90mp4a\x12\x10", False, True, False, "AAC"),
    ("AC-3", AUDIO, b"\x91ac-3\x0b\x77", False, False, False, "AC-3"),
    ("E-AC-3", AUDIO, b"\x91ec-3\x0b\x77", False, False, False, "E-AC-3"),
    ("enhanced MP3", AUDIO, b"\x91.mp3\xff\xfb", False, False, False, "MP3"),
    ("audio ModEx then SequenceStart", AUDIO, b"\x97" + MOD_EX_3 + b"\x00Opus", False, True, False, "Opus"),
    ("audio Multitrack SequenceStart", AUDIO, b"\x95\x10Opus\x00\x00\x00\x13", False, True, False, "Opus"),
    ("audio Multitrack cut", AUDIO, b"\x95", False, False, False, "unknown"),
    ("enhanced audio, one byte", AUDIO, b"\x90", False, True, False, "unknown"),
    ("empty audio", AUDIO, b"", False, False, False, "unknown"),
]


@pytest.mark.parametrize("name,type_id,payload,keyframe,seq,info,codec", CASES, ids=[c[0] for c in CASES])
def test_codec_facts(name, type_id, payload, keyframe, seq, info, codec):
    for given_payload in (payload, bytearray(payload), memoryview(payload)):
        assert flv.codec_name(type_id, given_payload) == codec
        assert flv.is_sequence_header(type_id, given_payload) is seq
        if type_id == VIDEO:
            assert flv.is_video_keyframe(given_payload) is keyframe
            assert flv.is_video_info_frame(given_payload) is info


def test_enhanced_one_byte_sequence_start_is_a_sequence_header_but_has_no_codec():
    # The packet type is in the first byte; only the codec needs the FourCC.
    assert flv.audio_header(b"\x90") == flv.AudioHeader(True, 9, 0, "unknown", False)


def test_headers_expose_packet_type_and_multitrack():
    assert flv.video_header(b"\xa6\x13" + HVC) == flv.VideoHeader(True, 2, 3, "HEVC", True)
    assert flv.video_header(b"\x17\x02") == flv.VideoHeader(False, 1, 2, "AVC", False)
    assert flv.video_header(b"\x22") == flv.VideoHeader(False, 2, None, "H.263", False)
    assert flv.audio_header(b"\xaf\x01") == flv.AudioHeader(False, 10, 1, "AAC", False)
    assert flv.video_header(b"") is None and flv.audio_header(b"") is None


@pytest.mark.parametrize("type_id", [SCRIPT, 20, 0])
def test_other_message_types_are_never_media(type_id):
    assert flv.codec_name(type_id, b"\x17\x00") == "unknown"
    assert flv.is_sequence_header(type_id, b"\x17\x00") is False
    assert flv.is_sequence_header(type_id, b"\xaf\x00") is False


@given(st.binary(max_size=40))
def test_codec_facts_never_raise(payload):
    for type_id in (AUDIO, VIDEO):
        assert isinstance(flv.codec_name(type_id, payload), str)
        assert isinstance(flv.is_sequence_header(type_id, payload), bool)
    assert isinstance(flv.is_video_keyframe(payload), bool)
    assert isinstance(flv.is_video_info_frame(payload), bool)
    # never both: a sequence header is not a picture
    assert not (flv.is_video_keyframe(payload) and flv.is_sequence_header(VIDEO, payload))


# -- writing ------------------------------------------------------------------------

def test_flv_header_bytes():
    assert flv.flv_header() == b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    assert flv.flv_header(has_audio=True, has_video=False)[4] == 0x04
    assert flv.flv_header(has_audio=False, has_video=True)[4] == 0x01
    assert flv.flv_header(False, False)[4] == 0x00
    assert flv.FLV_HEADER is flv.flv_header


def test_tag_bytes():
    assert flv.tag_bytes(VIDEO, 0x000102, b"ab") == (
        b"\x09" b"\x00\x00\x02" b"\x00\x01\x02" b"\x00" b"\x00\x00\x00" b"ab" b"\x00\x00\x00\x0d")
    # timestamps above 24 bits: low 24 bits first, the upper 8 in the extended byte
    assert flv.tag_bytes(AUDIO, 0x12345678, b"")[:11] == (
        b"\x08" b"\x00\x00\x00" b"\x34\x56\x78" b"\x12" b"\x00\x00\x00")
    assert flv.tag_bytes(SCRIPT, 0, bytearray(300))[-4:] == struct.pack(">I", 311)


@pytest.mark.parametrize("type_id,timestamp,size", [
    (VIDEO, -1, 0), (VIDEO, 2 ** 32, 0), (VIDEO, 0, 0x1000000), (256, 0, 0), (-1, 0, 0)])
def test_tag_header_range(type_id, timestamp, size):
    with pytest.raises(ValueError):
        flv.tag_header(type_id, timestamp, size)


# -- reading ---------------------------------------------------------------------------

def flv_file(tags, **flags):
    return flv.flv_header(**flags) + b"".join(flv.tag_bytes(*t) for t in tags)


TAGS = [(SCRIPT, 0, b"\x02\x00\x0aonMetaData\x05"), (VIDEO, 0, b"\x17\x00\x01"),
        (AUDIO, 0, b"\xaf\x00\x12\x10"), (VIDEO, 0xFFFFFF, b"\x17\x01" + bytes(100)),
        (AUDIO, 0x01000000, b"\xaf\x01" + bytes(7)), (VIDEO, 0xFFFFFFFF, b"")]


def test_read_back_what_was_written():
    data = flv_file(TAGS, has_audio=False)
    f = io.BytesIO(data)
    header = flv.read_header(f)
    assert header == flv.FLVHeader(version=1, has_audio=False, has_video=True, data_offset=9)
    assert f.tell() == 13
    tags = list(flv.iter_tags(io.BytesIO(data)))
    assert [(t.type_id, t.timestamp, t.body) for t in tags] == TAGS
    offsets = [13]
    for t in TAGS[:-1]:
        offsets.append(offsets[-1] + 11 + len(t[2]) + 4)
    assert [t.offset for t in tags] == offsets
    assert tags[-1].end == len(data)


def test_read_header_skips_a_longer_header():
    data = b"FLV\x01\x05\x00\x00\x00\x0cXYZ\x00\x00\x00\x00" + flv.tag_bytes(AUDIO, 5, b"\xaf\x01")
    f = io.BytesIO(data)
    assert flv.read_header(f).data_offset == 12
    assert flv.read_tag(f) == Tag(AUDIO, 5, b"\xaf\x01", 16)


@pytest.mark.parametrize("data", [b"", b"FL", b"GIF89a" + bytes(20), b"FLV\x01\x05\x00\x00\x00\x05\x00\x00\x00\x00",
                                  b"\x00" * 13, b"flv\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"])
def test_not_flv_raises_value_error(data):
    with pytest.raises(ValueError):
        flv.read_header(io.BytesIO(data))
    with pytest.raises(ValueError):
        list(flv.iter_tags(io.BytesIO(data)))


def test_truncated_file_stops_at_the_last_complete_tag():
    data = flv_file(TAGS)
    ends = [t.end for t in flv.iter_tags(io.BytesIO(data))]
    for cut in range(13, len(data) + 1):
        complete = sum(1 for end in ends if end <= cut)
        tags = list(flv.iter_tags(io.BytesIO(data[:cut])))
        assert len(tags) == complete, cut
        scanned = list(flv.scan_tags(_after_header(data[:cut])))
        assert len(scanned) == complete, cut


def _after_header(data):
    f = io.BytesIO(data)
    flv.read_header(f)
    return f


def test_read_tag_leaves_the_position_at_an_incomplete_tag_so_a_growing_file_can_be_retried():
    whole = flv_file(TAGS[:3])
    f = io.BytesIO(whole[:-2])
    flv.read_header(f)
    assert flv.read_tag(f).type_id == SCRIPT
    assert flv.read_tag(f).type_id == VIDEO
    position = f.tell()
    assert flv.read_tag(f) is None
    assert f.tell() == position
    f.seek(0, 2)
    f.write(whole[-2:])             # the writer finishes the tag
    f.seek(position)
    assert flv.read_tag(f) == Tag(AUDIO, 0, b"\xaf\x00\x12\x10", position)


class CountingReader(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_scan_tags_reads_heads_only():
    big = [(VIDEO, i * 40, b"\x27\x01" + bytes(50_000)) for i in range(20)]
    data = flv_file(big)
    f = CountingReader(data)
    flv.read_header(f)
    headers = list(flv.scan_tags(f, head_size=16))
    assert [(h.type_id, h.timestamp, h.size) for h in headers] == [(t, ts, len(b)) for t, ts, b in big]
    assert all(h.head == b"\x27\x01" + bytes(14) for h in headers)
    assert f.bytes_read < 20 * (11 + 16) + 13
    assert f.tell() == len(data)


tag_lists = st.lists(st.tuples(st.sampled_from([AUDIO, VIDEO, SCRIPT]) | st.integers(0, 255),
                               st.integers(0, flv.MAX_TIMESTAMP), st.binary(max_size=200)),
                     max_size=20)


@settings(max_examples=200)
@given(tag_lists, st.data())
def test_round_trip(tags, data):
    raw = flv_file(tags)
    read = list(flv.iter_tags(io.BytesIO(raw)))
    assert [(t.type_id, t.timestamp, t.body) for t in read] == tags
    scanned = list(flv.scan_tags(_after_header(raw)))
    assert [(h.type_id, h.timestamp, h.size, h.offset, h.head) for h in scanned] == [
        (t.type_id, t.timestamp, len(t.body), t.offset, t.body[:flv.HEAD_SIZE]) for t in read]
    cut = data.draw(st.integers(13, len(raw)))
    assert list(flv.iter_tags(io.BytesIO(raw[:cut]))) == [t for t in read if t.end <= cut]


def test_script_bodies():
    body = flv.script_body("onMetaData", {"width": 320, "encoder": "x"})
    assert body.startswith(b"\x02\x00\x0aonMetaData")
    assert flv.parse_script_body(body) == ["onMetaData", {"width": 320, "encoder": "x"}]
    assert flv.parse_script_body(b"\x02\x00\x7fshort") is None
    assert flv.parse_script_body(b"\x00" + struct.pack(">d", 1.0)) is None   # no name first
    assert flv.parse_script_body(b"") is None


# -- a real file ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ffmpeg_flv(tmp_path_factory):
    ffmpeg = require_tool("ffmpeg")
    path = tmp_path_factory.mktemp("flv") / "in.flv"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440", "-t", "3", "-c:v", "libx264", "-g", "25",
                    "-c:a", "aac", "-f", "flv", str(path)], check=True)
    return path


def test_reads_an_ffmpeg_file(ffmpeg_flv):
    with open(ffmpeg_flv, "rb") as f:
        tags = list(flv.iter_tags(f))
    assert tags[-1].end == ffmpeg_flv.stat().st_size
    name, metadata = flv.parse_script_body(tags[0].body)
    assert name == "onMetaData" and metadata["width"] == 320 and metadata["videocodecid"] == 7
    video = [t for t in tags if t.type_id == VIDEO]
    audio = [t for t in tags if t.type_id == AUDIO]
    assert {flv.codec_name(VIDEO, t.body) for t in video} == {"AVC"}
    assert {flv.codec_name(AUDIO, t.body) for t in audio} == {"AAC"}
    assert flv.is_sequence_header(VIDEO, video[0].body) and flv.is_sequence_header(AUDIO, audio[0].body)
    assert sum(flv.is_sequence_header(VIDEO, t.body) for t in video) == 1
    # What to expect comes from ffprobe reading the same file, not from one ffmpeg version's output.
    probed = probe_packets(ffmpeg_flv)
    pictures = [t for t in video if flv.video_header(t.body).packet_type == 1]
    assert [t.timestamp for t in pictures] == [ms for ms, _ in probed]
    assert [t.timestamp for t in video if flv.is_video_keyframe(t.body)] == [ms for ms, key in probed if key]
    assert len(pictures) == 75                      # -t 3 at rate=25: the command, not the encoder, says so
    assert pictures[0].timestamp == 0 and flv.is_video_keyframe(pictures[0].body)
    # Besides the one sequence header: at most an AVC end of sequence (frame type 1, not a keyframe).
    others = [t for t in video[1:] if t not in pictures]
    assert len(others) <= 1
    assert all(flv.video_header(t.body) == flv.VideoHeader(False, 1, 2, "AVC") for t in others)
    assert not any(flv.is_video_keyframe(t.body) for t in others)
