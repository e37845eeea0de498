"""What ffprobe (an independent FLV reader) says about a file a test generated.

Tests that make their media with ffmpeg take the expected packet counts and
keyframe times from here, never from one ffmpeg version's output: x264's
keyframe placement, the muxer's end-of-sequence tag and AAC priming differ
between versions, and the file the test made is the only truth about itself.
"""
import json
import subprocess

from .conftest import require_tool


def probe_packets(path, kind="v"):
    """[(dts in ms, keyframe)] of the video ("v") or audio ("a") packets of ``path``, in file order."""
    result = subprocess.run([require_tool("ffprobe"), "-v", "error", "-select_streams", kind,
                             "-show_entries", "packet=dts_time,flags", "-of", "json", str(path)],
                            check=True, capture_output=True, text=True)
    packets = json.loads(result.stdout).get("packets", [])
    return [(round(float(p["dts_time"]) * 1000), "K" in p.get("flags", "")) for p in packets]


def keyframe_times(path):
    """Where a player may start: the ms of each video keyframe packet."""
    return [ms for ms, key in probe_packets(path) if key]
