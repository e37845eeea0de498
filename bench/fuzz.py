"""Long fuzz runs: every target of tests/fuzz for a while, inputs per second and findings.

What it does
    Runs each fuzz target (tests/fuzz/targets.py: handshake, connection,
    amf0, amf3, json, routes) in its own ``python -m tests.fuzz.run``
    process for ``--seconds`` (60 by default), starting from the target's
    seeds (tests/fuzz/seeds.py) in a fresh temporary corpus, with ``--jobs``
    processes sharing that corpus if asked.  Crashing, hanging (``--timeout``, 10 s)
    and memory-exceeding (``--rss-limit-mb``) inputs are saved in a
    temporary directory (printed; never in the repository) with the command
    that replays one.

What it prints
    One line per target: executions, inputs per second (libFuzzer's
    ``average_exec_per_sec``), coverage, corpus size, and either "no
    finding" or the saved input files (size, first bytes and the exception
    line).  Exit status 1 when anything was found.

Usage
    .venv/bin/python bench/fuzz.py                       # every target, 60 s each
    .venv/bin/python bench/fuzz.py --seconds 600 amf3    # one target, longer
    .venv/bin/python bench/fuzz.py --keep-corpus         # keep the grown corpora to seed later runs

The figures depend on the machine and on what else runs: they are for
comparing runs on one machine, not for assertions.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.fuzz.run import write_seeds  # noqa: E402
from tests.fuzz.targets import TARGETS  # noqa: E402

_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_DONE = re.compile(r"^#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)
_LAST = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)


def run_target(name, seconds, work, args):
    """Fuzz ``name`` with ``args.jobs`` processes sharing one corpus (libFuzzer reloads it every second)."""
    corpus = os.path.join(work, f"corpus-{name}")
    artifacts = os.path.join(work, f"findings-{name}")
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(artifacts, exist_ok=True)
    write_seeds(name, corpus)
    started = time.monotonic()
    procs = []
    for job in range(args.jobs):
        command = [sys.executable, "-m", "tests.fuzz.run", name, f"-max_total_time={seconds}", f"-seed={job + 1}",
                   f"-timeout={args.timeout}", f"-rss_limit_mb={args.rss_limit_mb}",
                   f"-artifact_prefix={artifacts}{os.sep}", "-print_final_stats=1", corpus]
        procs.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    outputs, returncode = [], 0
    for proc in procs:
        _, err = proc.communicate(timeout=seconds * 3 + 300)
        outputs.append(err.decode("utf-8", "replace"))
        returncode = returncode or proc.returncode
    elapsed = time.monotonic() - started
    executed = rate = 0
    cov = corp = "?"
    for err in outputs:
        stats = {key: int(value) for key, value in _STAT.findall(err)}
        last = _DONE.findall(err) or _LAST.findall(err)
        runs = stats.get("number_of_executed_units", int(last[-1][0]) if last else 0)
        executed += runs
        rate += stats.get("average_exec_per_sec") or (runs / elapsed if elapsed else 0)
        if last:
            cov, corp = last[-1][1], last[-1][3]
    findings = [os.path.join(artifacts, f) for f in sorted(os.listdir(artifacts))
                if f.startswith(("crash-", "timeout-", "oom-", "leak-", "slow-unit-"))]
    return {"name": name, "executed": executed, "rate": rate, "cov": cov, "corpus": corp,
            "findings": findings, "returncode": returncode, "output": "\n".join(outputs), "seconds": elapsed}


def _exception_line(output):
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if "Uncaught Python exception" in line and index + 1 < len(lines):
            return lines[index + 1].strip()
        if "ALARM: working on the last Unit" in line or "out-of-memory" in line:
            return line.strip()
    return ""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"targets to run (default all: {', '.join(TARGETS)})")
    parser.add_argument("--seconds", type=int, default=60, help="seconds per target (default 60)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="fuzzing processes per target, sharing one corpus (default 1; inputs/s is their sum)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds after which one input is a hang")
    parser.add_argument("--rss-limit-mb", type=int, default=1536, help="memory past which a run is a finding")
    parser.add_argument("--keep-corpus", action="store_true", help="keep the corpora grown by the run")
    args = parser.parse_args(argv)
    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}: expected among {', '.join(TARGETS)}")

    work = tempfile.mkdtemp(prefix="fmspy-fuzz-bench-")
    print(f"fuzzing {', '.join(names)} for {args.seconds} s each; corpora and findings under {work}")
    print(f"{'target':<12} {'inputs':>10} {'inputs/s':>9} {'cov':>6} {'corpus':>7}  result")
    found_any = False
    for name in names:
        result = run_target(name, args.seconds, work, args)
        verdict = "no finding"
        if result["findings"] or result["returncode"] != 0:
            found_any = True
            verdict = f"FINDING (exit {result['returncode']}): {_exception_line(result['output'])}"
        print(f"{name:<12} {result['executed']:>10} {result['rate']:>9.0f} {result['cov']:>6} "
              f"{result['corpus']:>7}  {verdict}", flush=True)
        for path in result["findings"]:
            with open(path, "rb") as stream:
                data = stream.read()
            print(f"    {path} ({len(data)} bytes): {data[:80]!r}")
            print(f"    replay: cd {ROOT} && {sys.executable} -m tests.fuzz.run {name} {path}")
        if not args.keep_corpus:
            shutil.rmtree(os.path.join(work, f"corpus-{name}"), ignore_errors=True)
    if not found_any and not args.keep_corpus:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if found_any else 0


if __name__ == "__main__":
    sys.exit(main())
