"""Tests of fmspy_gateway.app.recording: safe paths, Recorder, RecordedStream, and ffprobe's verdict."""
import dataclasses
import json
import os
import subprocess

import pytest

from fmspy_gateway.app.recording import Recorder, RecordedStream, safe_stream_path
from fmspy_gateway.rtmp import flv
from fmspy_gateway.rtmp.flv import AUDIO, SCRIPT, VIDEO
from tests.conftest import require_tool
from tests.media import keyframe_times, probe_packets

# -- safe_stream_path ------------------------------------------------------------------

HOSTILE = [
    "../x", "..", ".", "", "/etc/passwd", "a/../../b", "a/b", "a\\b", "..\\x", "%2e%2e", "%2e%2e%2fx",
    "a\x00b", "x\x00", "x" * 129, "flv:" + "x" * 129, "ｘ", "аbc", "١٢٣", "a\u2024\u2024b", "x\n",
    "\nx", " x", "x y", "-x", "_x", ".hidden", "a..b", "flv:../x", "flv:/etc/passwd", "flv:", ".flv",
    "flv:.flv", "mp4:x", "mp3:x", "FLV:x", "x?token=1", "x#y", "x:y", "~root", "$HOME", "x*",
    None, b"x", 123, ["x"],
]


@pytest.mark.parametrize("name", HOSTILE, ids=repr)
def test_hostile_names_are_refused(tmp_path, name):
    assert safe_stream_path(str(tmp_path), name) is None


@pytest.mark.parametrize("name,file", [
    ("live", "live.flv"), ("flv:live", "live.flv"), ("live.flv", "live.flv"), ("flv:live.flv", "live.flv"),
    ("cam-1_hd.v2", "cam-1_hd.v2.flv"), ("x" * 128, "x" * 128 + ".flv"), ("flv:" + "9" * 128 + ".flv", "9" * 128 + ".flv"),
    ("a.flv.flv", "a.flv.flv"),
])
def test_good_names_map_into_the_directory(tmp_path, name, file):
    assert safe_stream_path(str(tmp_path), name) == os.path.join(os.path.realpath(tmp_path), file)


def test_symlink_pointing_outside_is_refused(tmp_path):
    streams, outside = tmp_path / "streams", tmp_path / "outside"
    streams.mkdir()
    outside.mkdir()
    (outside / "secret.flv").write_bytes(b"secret")
    os.symlink(outside / "secret.flv", streams / "evil.flv")
    os.symlink(outside / "missing.flv", streams / "dangling.flv")
    os.symlink("../outside/secret.flv", streams / "relative.flv")
    for name in ("evil", "dangling", "relative", "flv:evil.flv"):
        assert safe_stream_path(str(streams), name) is None, name


def test_symlink_inside_resolves_to_its_target_and_a_linked_directory_is_fine(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real / "target.flv", real / "alias.flv")
    os.symlink(real, tmp_path / "link")
    assert safe_stream_path(str(real), "alias") == str(real / "target.flv")
    assert safe_stream_path(str(tmp_path / "link"), "x") == str(real / "x.flv")


def test_a_symlink_planted_after_the_check_is_not_followed(tmp_path):
    outside = tmp_path / "outside.flv"
    outside.write_bytes(b"do not touch")
    path = safe_stream_path(str(tmp_path), "late")
    os.symlink(outside, path)
    with pytest.raises(OSError):
        Recorder(path, "append")
    with pytest.raises(OSError):
        RecordedStream(path)
    Recorder(path, "record").close()            # replaces the link itself
    assert outside.read_bytes() == b"do not touch"
    assert not os.path.islink(path)


# -- Recorder ----------------------------------------------------------------------------------

AVC_HEADER = b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f"
AAC_HEADER = b"\xaf\x00\x12\x10"


def keyframe(n=0):
    return b"\x17\x01\x00\x00\x00" + bytes([n]) * 20


def inter(n=0):
    return b"\x27\x01\x00\x00\x00" + bytes([n]) * 10


def aac(n=0):
    return b"\xaf\x01" + bytes([n]) * 6


def read_tags(path):
    with open(path, "rb") as f:
        return list(flv.iter_tags(f))


def metadata_of(tag):
    name, value = flv.parse_script_body(tag.body)
    assert name == "onMetaData"
    return value


def publish(recorder, start, seconds=3, gop_ms=1000):
    """Seq headers, 25 fps video with a keyframe every gop_ms, audio every 23 ms; relative to start."""
    recorder.write(VIDEO, start, AVC_HEADER)
    recorder.write(AUDIO, start, AAC_HEADER)
    for t in range(0, seconds * 1000, 40):
        recorder.write(VIDEO, start + t, keyframe() if t % gop_ms == 0 else inter())
    for t in range(0, seconds * 1000, 23):
        recorder.write(AUDIO, start + t, aac())


def test_record_rebases_to_zero_with_metadata_first(tmp_path):
    path = str(tmp_path / "r.flv")
    with Recorder(path, "record") as recorder:
        recorder.write_metadata(["@setDataFrame", "onMetaData",
                                 {"width": 640, "duration": 99.0, "filesize": 12345, "encoder": "obs"}])
        recorder.write(VIDEO, 5000, AVC_HEADER)
        recorder.write(AUDIO, 5000, AAC_HEADER)
        recorder.write(VIDEO, 5000, keyframe())
        recorder.write(AUDIO, 5021, aac())
        recorder.write(VIDEO, 5040, inter())
        recorder.write(AUDIO, 4990, aac())         # a little behind the first: clamped to 0
        recorder.write(SCRIPT, 5041, flv.script_body("onCuePoint", {"name": "x"}))
    with open(path, "rb") as f:
        assert f.read(13) == flv.flv_header()
    tags = read_tags(path)
    assert [(t.type_id, t.timestamp) for t in tags] == [
        (SCRIPT, 0), (VIDEO, 0), (AUDIO, 0), (VIDEO, 0), (AUDIO, 21), (VIDEO, 40), (AUDIO, 0), (SCRIPT, 41)]
    assert tags[3].body == keyframe()
    metadata = metadata_of(tags[0])
    assert list(metadata)[0] == "duration" and metadata["duration"] == 0.041
    assert metadata["width"] == 640 and metadata["encoder"] == "obs" and "filesize" not in metadata


@pytest.mark.parametrize("values", [{"width": 1}, ["onMetaData", {"width": 1}],
                                    ["@setDataFrame", "onMetaData", {"width": 1}]])
def test_metadata_spellings(tmp_path, values):
    path = str(tmp_path / "m.flv")
    with Recorder(path) as recorder:
        recorder.write_metadata(values)
    assert metadata_of(read_tags(path)[0]) == {"duration": 0, "width": 1}


def test_metadata_without_an_object_is_refused(tmp_path):
    with Recorder(str(tmp_path / "m.flv")) as recorder:
        with pytest.raises(ValueError):
            recorder.write_metadata(["onMetaData"])


def test_video_before_the_first_keyframe_is_dropped(tmp_path):
    path = str(tmp_path / "k.flv")
    with Recorder(path) as recorder:
        recorder.write(VIDEO, 100, inter(1))         # joined mid-GOP: undecodable
        recorder.write(AUDIO, 110, aac())
        recorder.write(VIDEO, 120, AVC_HEADER)
        recorder.write(VIDEO, 140, inter(2))
        recorder.write(VIDEO, 160, keyframe())
        recorder.write(VIDEO, 200, inter(3))
    assert [(t.type_id, t.timestamp, t.body) for t in read_tags(path)] == [
        (AUDIO, 0, aac()), (VIDEO, 10, AVC_HEADER), (VIDEO, 50, keyframe()), (VIDEO, 90, inter(3))]


def test_record_replaces_the_file_but_an_open_reader_keeps_the_old_one(tmp_path):
    path = str(tmp_path / "r.flv")
    with Recorder(path) as recorder:
        publish(recorder, 0, seconds=2)
    with RecordedStream(path) as old:
        with Recorder(path, "record") as recorder:
            recorder.write(AUDIO, 0, aac(9))
        assert [t.body for t in read_tags(path)] == [aac(9)]
        assert sum(1 for _ in old.tags_from(0)) > 100
        assert old.duration_ms == 1978


def test_an_onmetadata_over_the_limit_is_left_undecoded_and_its_size_told(tmp_path):
    path = str(tmp_path / "m.flv")
    with Recorder(path, "record") as recorder:
        recorder.write_metadata({"width": 320, "keyframes": {"times": [float(t) for t in range(100)]}})
        publish(recorder, 0, seconds=1)
    size = len(next(t for t in read_tags(path) if t.type_id == SCRIPT).body)
    with RecordedStream(path) as recorded:             # the default, 1 MB: decoded
        assert recorded.metadata["width"] == 320 and recorded.metadata_skipped == 0
    with RecordedStream(path, max_metadata_size=size) as recorded:     # the limit is inclusive
        assert recorded.metadata["width"] == 320 and recorded.metadata_skipped == 0
    with RecordedStream(path, max_metadata_size=size - 1) as recorded:
        assert recorded.metadata is None and recorded.metadata_skipped == size
        assert recorded.duration_ms > 900 and sum(1 for _ in recorded.tags_from(0)) > 50     # the media plays


def test_append_continues_after_the_last_timestamp(tmp_path):
    path = str(tmp_path / "a.flv")
    with Recorder(path, "record") as recorder:
        recorder.write_metadata({"width": 320})
        publish(recorder, 1000, seconds=2)
    first = read_tags(path)
    last = max(t.timestamp for t in first)
    assert last == 1978
    with Recorder(path, "append") as recorder:
        assert recorder.duration_ms == last
        recorder.write_metadata({"width": 640})
        publish(recorder, 70000, seconds=1)
    tags = read_tags(path)
    assert tags[1:len(first)] == first[1:]
    appended = tags[len(first):]
    assert appended[0].type_id == SCRIPT and appended[0].timestamp == last + 1
    assert metadata_of(appended[0])["width"] == 640
    media = [t.timestamp for t in appended[1:] if t.type_id == VIDEO]
    assert media[0] == last + 1 and media == sorted(media)
    # the first metadata now states the whole file's duration
    assert max(t.timestamp for t in tags) == last + 1 + 989
    assert metadata_of(tags[0])["duration"] == (last + 1 + 989) / 1000


def test_append_drops_a_cut_tail(tmp_path):
    path = str(tmp_path / "cut.flv")
    with Recorder(path) as recorder:
        for t in range(4):
            recorder.write(AUDIO, t * 10, aac(t))
        recorder.write(VIDEO, 40, keyframe() + bytes(1000))
    size = os.path.getsize(path)
    os.truncate(path, size - 3)                  # the server died inside the last tag
    with Recorder(path, "append") as recorder:
        recorder.write(AUDIO, 0, aac(7))
    assert [(t.timestamp, t.body) for t in read_tags(path)] == [
        (0, aac(0)), (10, aac(1)), (20, aac(2)), (30, aac(3)), (31, aac(7))]
    assert read_tags(path)[-1].end == os.path.getsize(path)


@pytest.mark.parametrize("content", [None, b"", b"FLV\x01\x05\x00\x00\x00\x09"])
def test_append_to_a_missing_empty_or_headers_only_file_starts_at_zero(tmp_path, content):
    path = tmp_path / "new.flv"
    if content is not None:
        path.write_bytes(content)
    with Recorder(str(path), "append") as recorder:
        recorder.write(AUDIO, 500, aac())
    assert path.read_bytes() == flv.flv_header() + flv.tag_bytes(AUDIO, 0, aac())


@pytest.mark.parametrize("content", [b"not an flv file at all", b"FL", b"FLV\x01\x05\xff\xff\xff\xff"])
def test_append_refuses_a_file_that_is_not_flv_and_leaves_it_alone(tmp_path, content):
    path = tmp_path / "other.flv"
    path.write_bytes(content)
    with pytest.raises(ValueError):
        Recorder(str(path), "append")
    assert path.read_bytes() == content


def test_recorder_misuse(tmp_path):
    path = str(tmp_path / "x.flv")
    with pytest.raises(ValueError):
        Recorder(path, "live")
    with pytest.raises(ValueError):
        Recorder(path, buffer_size=1)
    recorder = Recorder(path)
    with pytest.raises(ValueError):
        recorder.write(20, 0, b"")
    recorder.close()
    recorder.close()
    assert recorder.closed
    with pytest.raises(ValueError):
        recorder.write(AUDIO, 0, aac())


def test_writes_are_buffered_and_flushed_on_close(tmp_path):
    path = str(tmp_path / "b.flv")
    recorder = Recorder(path, buffer_size=4096)
    recorder.write(AUDIO, 0, aac())
    assert os.path.getsize(path) == 0               # still in the buffer
    for t in range(300):
        recorder.write(AUDIO, t, aac())
    total = 13 + 301 * (11 + len(aac()) + 4)
    on_disk = os.path.getsize(path)
    # What is not on disk yet is what one 4096-byte buffer holds: some, and at most that much.
    assert 0 < total - on_disk <= 4096, (total, on_disk)
    recorder.flush()
    assert os.path.getsize(path) == total
    assert len(read_tags(path)) == 301
    recorder.close()
    assert len(read_tags(path)) == 301


# -- RecordedStream ------------------------------------------------------------------------------

@pytest.fixture
def recorded(tmp_path):
    path = str(tmp_path / "vod.flv")
    with Recorder(path) as recorder:
        recorder.write_metadata({"width": 320, "duration": 0.0})
        publish(recorder, 0, seconds=3)
    return path


def test_index_and_facts(recorded):
    with RecordedStream(recorded) as stream:
        assert stream.has_keyframes
        assert stream.duration_ms == 2990
        assert stream.metadata["width"] == 320 and stream.metadata["duration"] == 2.99
        assert [(t.type_id, t.body) for t in stream.sequence_headers] == [(VIDEO, AVC_HEADER), (AUDIO, AAC_HEADER)]


@pytest.mark.parametrize("ms,start", [(0, 0), (-5, 0), (999, 0), (1000, 1000), (1500, 1000), (2039, 2000),
                                      (2990, 2000), (10 ** 9, 2000)])
def test_tags_from_starts_at_the_keyframe_at_or_before(recorded, ms, start):
    with RecordedStream(recorded) as stream:
        tags = list(stream.tags_from(ms))
    assert tags[0].type_id == VIDEO and tags[0].timestamp == start and flv.is_video_keyframe(tags[0].body)
    assert tags[-1].end == os.path.getsize(recorded)
    assert all(t.type_id != SCRIPT and not flv.is_sequence_header(t.type_id, t.body) for t in tags)


def test_tags_from_agrees_with_a_full_read(recorded):
    everything = read_tags(recorded)
    with RecordedStream(recorded) as stream:
        tags = list(stream.tags_from(1500))
    assert tags == everything[everything.index(tags[0]):]


def test_iterators_interleave(recorded):
    with RecordedStream(recorded) as stream:
        a, b = stream.tags_from(0), stream.tags_from(2000)
        pairs = list(zip(a, b))
    assert pairs[0][0].timestamp == 0 and pairs[0][1].timestamp == 2000
    assert all(x.offset < y.offset for x, y in pairs)
    assert len({x.offset for x, _ in pairs}) == len(pairs)


def test_sequence_headers_at_follow_an_appended_session(tmp_path):
    path = str(tmp_path / "two.flv")
    with Recorder(path) as recorder:
        publish(recorder, 0, seconds=2)
    new_header = b"\x17\x00\x00\x00\x00\x01\x4d\x00\x28"
    with Recorder(path, "append") as recorder:
        recorder.write(VIDEO, 0, new_header)
        recorder.write(VIDEO, 0, keyframe(5))
        recorder.write(VIDEO, 40, inter(5))
    with RecordedStream(path) as stream:
        assert [t.body for t in stream.sequence_headers] == [AVC_HEADER, AAC_HEADER]
        assert [t.body for t in stream.sequence_headers_at(500)] == [AVC_HEADER, AAC_HEADER]
        assert [t.body for t in stream.sequence_headers_at(5000)] == [AAC_HEADER, new_header]
        first = next(stream.tags_from(5000))
        assert first.body == keyframe(5) and first.timestamp == 1979


def test_audio_only_seeks_to_the_first_tag_at_or_after(tmp_path):
    path = str(tmp_path / "radio.flv")
    with Recorder(path) as recorder:
        recorder.write(AUDIO, 0, AAC_HEADER)
        for t in range(0, 5000, 23):
            recorder.write(AUDIO, t, aac(t % 256))
    everything = read_tags(path)
    with RecordedStream(path) as stream:
        assert not stream.has_keyframes
        assert [t.body for t in stream.sequence_headers] == [AAC_HEADER]
        for ms in (0, 1, 22, 23, 500, 1234, 4991, 4992):
            tags = list(stream.tags_from(ms))
            expected = [t for t in everything[1:] if t.timestamp >= ms]
            assert tags == expected, ms
        assert list(stream.tags_from(5000)) == []


def test_recorded_stream_of_a_cut_file_stops_at_the_last_complete_tag(tmp_path):
    path = str(tmp_path / "cut.flv")
    with Recorder(path) as recorder:
        publish(recorder, 0, seconds=1)
    complete = read_tags(path)
    os.truncate(path, os.path.getsize(path) - 1)
    with RecordedStream(path) as stream:
        assert stream.duration_ms == max(t.timestamp for t in complete[:-1])
        assert list(stream.tags_from(0)) == complete[2:-1]      # after the two sequence headers


def test_a_file_still_being_recorded_is_read_to_its_current_end(tmp_path):
    path = str(tmp_path / "live.flv")
    recorder = Recorder(path)
    publish(recorder, 0, seconds=1)
    recorder.flush()
    with RecordedStream(path) as stream:
        before = list(stream.tags_from(0))
        recorder.write(VIDEO, 2000, keyframe(8))
        recorder.write(VIDEO, 2040, inter(8))
        recorder.flush()
        after = list(stream.tags_from(0))
        assert after[:len(before)] == before
        assert [(t.timestamp, t.body) for t in after[len(before):]] == [(2000, keyframe(8)), (2040, inter(8))]
        assert stream.duration_ms == 989                 # the index is the file as opened
    recorder.close()


def test_recorded_stream_refuses_a_non_flv_file(tmp_path):
    path = tmp_path / "bad.flv"
    path.write_bytes(b"<html>")
    with pytest.raises(ValueError):
        RecordedStream(str(path))


def test_metadata_missing_or_undecodable(tmp_path):
    path = tmp_path / "nometa.flv"
    path.write_bytes(flv.flv_header() + flv.tag_bytes(SCRIPT, 0, b"\x02\x00\x0aonMetaData\x03\x00")
                     + flv.tag_bytes(AUDIO, 0, aac()))
    with RecordedStream(str(path)) as stream:
        assert stream.metadata is None
        assert stream.duration_ms == 0


# -- real files: ffmpeg makes one, we copy it through Recorder, ffprobe judges -------------------

@pytest.fixture(scope="module")
def ffmpeg_flv(tmp_path_factory):
    ffmpeg = require_tool("ffmpeg")
    path = tmp_path_factory.mktemp("rec") / "in.flv"
    subprocess.run([ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440", "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-g", "25",
                    "-c:a", "aac", "-f", "flv", str(path)], check=True)
    return str(path)


def ffprobe(path):
    result = subprocess.run([require_tool("ffprobe"), "-v", "error", "-count_packets",
                             "-show_entries", "format=duration",
                             "-show_entries", "stream=codec_name,nb_read_packets", "-of", "json", path],
                            check=True, capture_output=True, text=True)
    assert result.stderr == ""
    info = json.loads(result.stdout)
    return ({s["codec_name"]: int(s["nb_read_packets"]) for s in info["streams"]},
            float(info["format"]["duration"]))


def decode_errors(path):
    result = subprocess.run([require_tool("ffmpeg"), "-v", "error", "-i", path, "-f", "null", "-"],
                            capture_output=True, text=True)
    return result.returncode, result.stderr


def copy_through_recorder(tags, out, start=12345):
    """As a publish would arrive: metadata from @setDataFrame (stale duration), media relative to a start."""
    with Recorder(out, "record") as recorder:
        for tag in tags:
            if tag.type_id == SCRIPT:
                name, values = flv.parse_script_body(tag.body)
                recorder.write_metadata(["@setDataFrame", name, dict(values, duration=100.0)])
            else:
                recorder.write(tag.type_id, start + tag.timestamp, tag.body)


def test_ffprobe_accepts_a_recorded_file(ffmpeg_flv, tmp_path):
    out = str(tmp_path / "out.flv")
    tags = read_tags(ffmpeg_flv)
    copy_through_recorder(tags, out)
    packets, duration = ffprobe(out)
    assert packets == ffprobe(ffmpeg_flv)[0]           # every packet of the source, counted by ffprobe
    assert packets["h264"] == 75                        # -t 3 at rate=25
    assert duration == pytest.approx(3.0, abs=0.15)       # not the stale 100 s
    assert decode_errors(out) == (0, "")
    assert [t.timestamp for t in read_tags(out)] == [t.timestamp for t in tags]


def test_a_seek_into_a_real_recording_plays(ffmpeg_flv, tmp_path):
    last = max(t.timestamp for t in read_tags(ffmpeg_flv))
    with RecordedStream(ffmpeg_flv) as stream:
        assert stream.duration_ms == last
        assert stream.metadata["duration"] == last / 1000 and stream.metadata["width"] == 320
        assert [flv.codec_name(t.type_id, t.body) for t in stream.sequence_headers] == ["AVC", "AAC"]
        assert stream.sequence_headers_at(1500) == stream.sequence_headers
        metadata = flv.Tag(SCRIPT, 0, flv.script_body("onMetaData", stream.metadata), 0)
        headers, tags = stream.sequence_headers_at(1500), list(stream.tags_from(1500))
    # The keyframe at or before 1.5 s, wherever this ffmpeg's x264 put it.
    start = max(ms for ms in keyframe_times(ffmpeg_flv) if ms <= 1500)
    assert tags[0].timestamp == start and flv.is_video_keyframe(tags[0].body)
    # as a VOD play would send them: the headers first, stamped with the start
    tags = [metadata] + [dataclasses.replace(t, timestamp=tags[0].timestamp) for t in headers] + tags
    out = str(tmp_path / "seek.flv")
    copy_through_recorder(tags, out)
    packets, duration = ffprobe(out)
    assert packets["h264"] == len([ms for ms, _ in probe_packets(ffmpeg_flv) if ms >= start])
    assert duration == (stream.duration_ms - start) / 1000      # from the metadata Recorder set
    assert decode_errors(out) == (0, "")


# -- the record options (item 15: nginx-rtmp's record, for publishers that only publish "live") ------------

def test_recorder_size_counts_every_byte_of_the_file(tmp_path):
    path = str(tmp_path / "size.flv")
    with Recorder(path) as recorder:
        assert recorder.size == 13
        publish(recorder, 0, seconds=1)
        recorder.write_metadata({"width": 1})
        size = recorder.size
    assert os.path.getsize(path) == size
    with Recorder(path, "append") as recorder:
        assert recorder.size == size
        publish(recorder, 0, seconds=1)
        size = recorder.size
    assert os.path.getsize(path) == size


def record_section(tmp_path, **options):
    from fmspy_gateway.config import ApplicationConfig
    return ApplicationConfig(class_name="LiveApplication", enabled=True, name="live", options=options,
                             source=str(tmp_path / "my.cfg"))


def build(section):
    from twisted.internet.task import Clock
    from fmspy_gateway.app.application import Services
    from fmspy_gateway.app.live_application import LiveApplication
    from fmspy_gateway.app.hub import LocalHub
    from fmspy_gateway.config import RTMPConfig
    return LiveApplication.from_config(section, Services(LocalHub(), clock=Clock(), rtmp=RTMPConfig()))


def test_record_options_are_read_at_start(tmp_path):
    from fmspy_gateway.app.recording import RecordPolicy
    app = build(record_section(tmp_path, recordDir="rec"))
    assert app.record_policy == RecordPolicy()            # off unless asked for
    app = build(record_section(tmp_path, recordDir="rec", record="Audio", recordSuffix="-%Y%m%d-%H%M%S",
                               recordMaxSize="100M", recordMaxDuration="90.5"))
    assert app.record_policy == RecordPolicy("audio", "-%Y%m%d-%H%M%S", 100 * 1024 * 1024, 90.5)
    assert app.record_policy.file_name("cam", 0) == "cam" + time_suffix("-%Y%m%d-%H%M%S", 0)
    app = build(record_section(tmp_path, recordDir="rec", record="all", recordMaxSize="0", recordMaxDuration="0"))
    assert (app.record_policy.max_size, app.record_policy.max_duration) == (0, 0)
    assert app.record_max_metadata_size == 1024 * 1024
    assert build(record_section(tmp_path, recordMaxMetadataSize="64K")).record_max_metadata_size == 64 * 1024


def time_suffix(pattern, when):
    import time
    return time.strftime(pattern, time.localtime(when))


@pytest.mark.parametrize("options, option, expected", [
    ({"record": "yes"}, "record", "one of off, all, audio, video"),
    ({"record": "all", "recordSuffix": "-%T"}, "recordSuffix", "strftime pattern"),     # colons
    ({"record": "all", "recordSuffix": "/../x"}, "recordSuffix", "strftime pattern"),
    ({"record": "all", "recordSuffix": "-%c"}, "recordSuffix", "strftime pattern"),      # spaces
    ({"recordMaxSize": "-1"}, "recordMaxSize", "byte count"),
    ({"recordMaxSize": "lots"}, "recordMaxSize", "byte count"),
    ({"recordMaxDuration": "-5"}, "recordMaxDuration", "seconds"),
    ({"recordMaxDuration": "nan"}, "recordMaxDuration", "seconds"),
    ({"recordMaxMetadataSize": "0"}, "recordMaxMetadataSize", "byte count"),      # no "no limit": bounded
    ({"recordMaxMetadataSize": "lots"}, "recordMaxMetadataSize", "byte count"),
])
def test_bad_record_options_are_one_line_errors_naming_file_section_and_option(tmp_path, options, option,
                                                                              expected):
    from fmspy_gateway.config import ConfigError
    with pytest.raises(ConfigError) as raised:
        build(record_section(tmp_path, recordDir="rec", **options))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'my.cfg'}: [LiveApplication] {option} = ")
    assert expected in message
    assert raised.value.option == option


def test_record_without_record_dir_is_refused(tmp_path):
    from fmspy_gateway.config import ConfigError
    with pytest.raises(ConfigError) as raised:
        build(record_section(tmp_path, record="all"))
    assert "record = all needs recordDir" in str(raised.value)
    assert raised.value.option == "record"


def test_the_recording_walkthroughs_config_records_every_publish(tmp_path):
    # examples/README.md starts the server with examples/recording/fmspy.cfg; copied here, so that the
    # recordings folder it creates lands in tmp_path, not in the tree.
    import shutil
    from twisted.internet.task import Clock
    from fmspy_gateway.app.application import Services
    from fmspy_gateway.app.recording import RecordPolicy
    from fmspy_gateway.app.registry import build_applications
    from fmspy_gateway.app.hub import LocalHub
    from fmspy_gateway.config import load_config
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copy(os.path.join(here, "..", "..", "examples", "recording", "fmspy.cfg"), tmp_path / "fmspy.cfg")
    config = load_config(str(tmp_path / "fmspy.cfg"))
    assert config.rtmp.interface == "127.0.0.1"
    [live] = build_applications(config, Services(LocalHub(), clock=Clock(), rtmp=config.rtmp)).values()
    assert live.name == "live"
    assert live.record_policy == RecordPolicy("all", "", 1 << 30, 3600.0)
    assert os.path.isdir(tmp_path / "recordings")
