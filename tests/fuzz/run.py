"""Run one fuzz target under atheris (libFuzzer): ``python -m tests.fuzz.run TARGET [flags] [corpus...]``.

TARGET is a key of ``targets.TARGETS``.  Everything after it goes to
libFuzzer (``-max_total_time=60``, ``-runs=N``, ``-timeout=5``,
``-artifact_prefix=DIR/``...).  Without a corpus directory, a temporary one
is filled with ``seeds.seeds(TARGET)``; with a file instead, that one input
is replayed (how a crash file is reproduced).  The package under test is
imported instrumented (``INSTRUMENTED``, ``INSTRUMENTED_FOR``), so libFuzzer sees its branch
coverage.
"""
import atexit
import os
import shutil
import sys
import tempfile

#: Flags every run gets unless it gives its own: a hang is an input taking
#: more than 10 s; growing past 1.5 GB is a finding; stats at the end.
DEFAULT_FLAGS = ("-timeout=10", "-rss_limit_mb=1536", "-print_final_stats=1")

#: Packages whose branches libFuzzer sees: ours and pyamf's Python code; for routes.cfg also the parsers
#: its text and schema files go through (instrumenting costs start-up time, so only where it helps).
INSTRUMENTED = ["fmspy_gateway.rtmp", "fmspy_gateway.bridge", "fmspy_gateway.config", "pyamf"]
INSTRUMENTED_FOR = {"routes": INSTRUMENTED + ["jsonschema", "referencing", "configparser"],
                    "session": ["fmspy_gateway", "pyamf"]}


def write_seeds(name, directory):
    from tests.fuzz.seeds import seeds
    for index, data in enumerate(seeds(name)):
        with open(os.path.join(directory, f"seed-{index:03d}"), "wb") as stream:
            stream.write(data)


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1].startswith("-"):
        sys.exit(f"usage: {argv[0]} TARGET [libFuzzer flags] [corpus dir or input file...]")
    name = argv.pop(1)

    import atheris
    with atheris.instrument_imports(include=INSTRUMENTED_FOR.get(name, INSTRUMENTED)):
        from tests.fuzz import targets
        if name in targets.SETUP:
            targets.SETUP[name]()
    if name not in targets.TARGETS:
        sys.exit(f"unknown target {name!r}: expected one of {', '.join(targets.TARGETS)}")

    given = {arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith("-")}
    if given & {"-jobs", "-workers", "-fork"}:
        # libFuzzer would re-run argv[0] (this file, not executable, without the target name).
        sys.exit("-jobs, -workers and -fork are not supported here: run several processes on one corpus "
                 "directory instead (bench/fuzz.py --jobs N does)")
    argv[1:1] = [flag for flag in DEFAULT_FLAGS if flag.split("=", 1)[0] not in given]
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = tempfile.mkdtemp(prefix=f"fmspy-fuzz-{name}-")
        atexit.register(shutil.rmtree, corpus, True)
        write_seeds(name, corpus)
        argv.append(corpus)
    atheris.Setup(argv, targets.TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
