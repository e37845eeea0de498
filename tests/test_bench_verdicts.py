"""bench/streaming.py's verdict over rounds: issue 14's fan-out target is met only if met in every quiet round
(a round that saw other work, or a traced process, is not one)."""
import ctypes
import importlib.util
import os
import signal
import subprocess

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


def case(machine_busy=0.5, traced=()):
    """A round's figures as run_case keeps them: the server, load and publisher used 0.5 of a core."""
    return {"wall": 10.0, "cpu_server": 3.0, "cpu_load": 1.5, "cpu_publisher": 0.5,
            "machine_busy": machine_busy, "traced": list(traced)}


def test_a_round_is_disturbed_by_other_work_or_a_traced_process(streaming):
    assert streaming.disturbance(case(), case()) == ""
    assert streaming.disturbance(case(), case(machine_busy=0.9)) == "BUSY MACHINE"
    assert streaming.disturbance(case(traced=["server"]), case()) == "TRACED"


def test_tracer_of_names_the_ptrace_tracer(streaming):
    tracer_of = streaming.tracer_of         # bench/_common.py's
    libc = ctypes.CDLL(None, use_errno=True)
    untraced = subprocess.Popen(["sleep", "30"])
    traced = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: libc.ptrace(0, 0, None, None))  # TRACEME
    try:
        assert tracer_of(untraced.pid) == 0
        tracer = tracer_of(traced.pid)
        if tracer == 0:
            pytest.skip("this machine refuses PTRACE_TRACEME (seccomp or Yama): nothing to observe")
        assert tracer == os.getpid()
    finally:
        for child in (untraced, traced):
            child.send_signal(signal.SIGKILL)
            child.wait()
