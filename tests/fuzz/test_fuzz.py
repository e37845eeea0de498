"""Each fuzz target, run for a few seconds from its seeds: a finding fails the test with its input.

Every target runs in its own subprocess (``python -m tests.fuzz.run``):
libFuzzer owns the process (its signal handlers, its exit on a finding, its
global coverage counters), which must not be pytest's.  How to run a target
longer: tests/fuzz/README.md and bench/fuzz.py.
"""
import base64
import os
import subprocess
import sys

import pytest

from tests.fuzz.run import write_seeds

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Seconds of fuzzing per target: 14 s in all, plus 1-2 s of start-up and seeds each (under 30 s in all).
SECONDS = {"handshake": 2, "connection": 2, "amf0": 2, "amf3": 2, "json": 2, "routes": 2, "session": 2}


def _atheris():
    if os.environ.get("CI"):
        import atheris  # noqa: F401 -- CI installs the test extras: a missing fuzzer is a failure there
    else:
        pytest.importorskip("atheris")


def _finding(name, artifacts, proc):
    found = sorted(os.listdir(artifacts)) if os.path.isdir(artifacts) else []
    lines = [f"fuzz target {name!r} exited with {proc.returncode}"]
    for entry in found:
        with open(os.path.join(artifacts, entry), "rb") as stream:
            data = stream.read()
        lines.append(f"{entry} ({len(data)} bytes): {data[:2000]!r}")
        lines.append(f"  base64: {base64.b64encode(data[:4000]).decode()}")
        lines.append(f"  replay: python -m tests.fuzz.run {name} <file holding those bytes>")
    tail = proc.stderr.decode("utf-8", "replace").splitlines()
    lines.append("libFuzzer's output (end):")
    lines += [line for line in tail if not line.startswith("#")][-40:]
    return "\n".join(lines)


@pytest.mark.parametrize("name", sorted(SECONDS))
def test_target_survives_a_short_run(name, tmp_path):
    _atheris()
    corpus = tmp_path / "corpus"
    artifacts = tmp_path / "artifacts"
    corpus.mkdir()
    artifacts.mkdir()
    write_seeds(name, str(corpus))
    seconds = SECONDS[name]
    command = [sys.executable, "-m", "tests.fuzz.run", name, f"-max_total_time={seconds}", "-seed=1",
               "-timeout=10", "-rss_limit_mb=1536", f"-artifact_prefix={artifacts}{os.sep}", str(corpus)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=seconds * 10 + 120)
    if proc.returncode != 0 or os.listdir(artifacts):
        pytest.fail(_finding(name, str(artifacts), proc), pytrace=False)
    assert b"Done " in proc.stderr, proc.stderr[-2000:]
