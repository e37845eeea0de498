"""bench/streaming.py's verdict over rounds: issue 14's fan-out target is met only if met in every quiet round."""
import importlib.util
import os

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "streaming.py")


@pytest.fixture(scope="module")
def streaming():
    spec = importlib.util.spec_from_file_location("bench_streaming", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_met_only_when_every_round_met(streaming):
    assert streaming.verdict([0.91, 0.99, 1.0]).endswith("MET in every round")
    assert streaming.verdict([1.02, 1.3]).endswith("MISSED in every round")


def test_a_mixed_run_is_not_met(streaming):
    said = streaming.verdict([0.86, 1.22, 0.95])
    assert "NOT MET: met in 2 of 3 rounds only" in said
    assert "0.86-1.22x over 3 quiet round(s), median 0.95x" in said


def test_no_quiet_round_gives_no_verdict(streaming):
    said = streaming.verdict([])
    assert said.startswith("no verdict") and "MET" not in said
