"""The status page and the examples ship in the wheel: setup.cfg's package_data must match every file.

``pip install .`` copies only what package_data names, and a file it misses
works from a checkout and 404s after an install; building a wheel here would
be slow, so the globs are checked against the files instead (a wheel built
by hand showed the same list).
"""
import configparser
import fnmatch
import os

ROOT = os.path.join(os.path.dirname(__file__), "..")
PACKAGE = os.path.join(ROOT, "fmspy_gateway")


def _shipped_patterns():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    return [p.strip() for p in config["options.package_data"]["fmspy_gateway"].split(",")]


def _files(folder):
    for directory, dirs, files in os.walk(os.path.join(PACKAGE, folder), followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".") and not d.endswith(".egg-info")]
        for name in files:
            if not name.startswith(".") and not name.endswith((".pyc", ".flv")):
                yield os.path.relpath(os.path.join(directory, name), PACKAGE)


def test_status_page_and_examples_are_package_data():
    patterns = _shipped_patterns()
    files = list(_files("status")) + list(_files("examples"))
    assert any(f.startswith("status/") for f in files) and any(f.startswith("examples/") for f in files)
    # fnmatch's * crosses "/", setuptools' does not: compare segment counts too.
    missing = [f for f in files if not any(fnmatch.fnmatch(f, p) and f.count("/") == p.count("/")
                                           for p in patterns)]
    assert missing == []
