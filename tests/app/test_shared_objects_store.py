"""Persistent shared objects on disk: names, the file format, coalesced writes, and a writer killed mid-stream."""
import os
import signal
import subprocess
import sys

import pytest
from twisted.internet.defer import Deferred

from fmspy_gateway.app.fileio import SynchronousExecutor
from fmspy_gateway.app.shared_object_store import (MAGIC, SharedObjectStore, StoreError, StoredObject,
                                                   decode_object, encode_object)
from fmspy_gateway.rtmp.amf import ByteArray

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class HeldExecutor:
    """Runs nothing until ``release()``: a write stays in flight as long as a test wants."""

    def __init__(self):
        self.held = []

    def run(self, function, *args):
        d = Deferred()
        self.held.append((function, args, d))
        return d

    def release(self):
        function, args, d = self.held.pop(0)
        d.callback(function(*args))


def read(store, name):
    answers = []
    store.load(name).addBoth(answers.append)
    return answers[0]


def test_the_file_holds_every_slot_type_and_reads_back(tmp_path):
    store = SharedObjectStore(str(tmp_path), SynchronousExecutor())
    data = {"": "empty key", "n": 1.5, "list": [1, "two", None], "obj": {"a": {"b": True}},
            "bytes": ByteArray(b"\x00\xff")}
    store.save("board", 7, data)
    content = (tmp_path / "board.fso").read_bytes()
    assert content.startswith(MAGIC)
    assert read(store, "board") == StoredObject(7, data)
    assert read(store, "absent") is None
    assert [p.name for p in tmp_path.iterdir()] == ["board.fso"]         # no temporary file left


@pytest.mark.parametrize("name", ["../up", "a/b", ".hidden", "", "x" * 129, "bad name"])
def test_names_cannot_escape_the_directory(tmp_path, name):
    store = SharedObjectStore(str(tmp_path / "objects"), SynchronousExecutor())
    assert store.path(name) is None
    assert isinstance(read(store, name).value, StoreError)


def test_a_file_that_is_not_the_objects_is_refused(tmp_path):
    with pytest.raises(StoreError, match="not a shared object file"):
        decode_object("a", b"junk", "a.fso")
    with pytest.raises(StoreError, match="does not hold the shared object 'a'"):
        decode_object("a", encode_object("b", 1, {}), "a.fso")
    with pytest.raises(StoreError, match="cannot be read"):
        decode_object("a", encode_object("a", 1, {"k": "v"})[:-3], "a.fso")


def test_writes_are_coalesced_and_the_last_state_reaches_the_disk(tmp_path):
    executor = HeldExecutor()
    store = SharedObjectStore(str(tmp_path), executor)
    acknowledged = []
    for version in range(1, 6):
        store.save("board", version, {"v": version}).addCallback(lambda _, v=version: acknowledged.append(v))
    assert len(executor.held) == 1                      # one write in flight, the rest waiting as one state
    assert read(store, "board") == StoredObject(5, {"v": 5})     # a reload meanwhile sees the newest state
    executor.release()                                  # version 1 written
    assert acknowledged == [1] and len(executor.held) == 1
    executor.release()                                  # version 5 written: 2-4 never were, 5 covers them
    assert acknowledged == [1, 2, 3, 4, 5] and executor.held == []
    assert decode_object("board", (tmp_path / "board.fso").read_bytes(), "") == StoredObject(5, {"v": 5})
    assert store.flushed().called


def test_flushed_waits_for_the_write_in_flight(tmp_path):
    executor = HeldExecutor()
    store = SharedObjectStore(str(tmp_path), executor)
    store.save("board", 1, {})
    flushed = store.flushed()
    assert not flushed.called
    executor.release()
    assert flushed.called


def test_a_failed_write_fails_its_waiters_and_the_next_change_writes_again(tmp_path):
    store = SharedObjectStore(str(tmp_path / "gone"), SynchronousExecutor())
    failures = []
    store.save("board", 1, {}).addErrback(failures.append)
    assert isinstance(failures[0].value, OSError)
    os.mkdir(tmp_path / "gone")
    done = []
    store.save("board", 2, {"x": 1}).addCallback(done.append)
    assert done == [None] and read(store, "board") == StoredObject(2, {"x": 1})


# -- crash safety -------------------------------------------------------------------------------------

def expected_state(version):
    """What the writer stores at ``version``: sizes vary, so a torn file could not pass for a whole one."""
    return {"n": version, "blob": "x" * (version % 97 * 300), "list": list(range(version % 13))}


def write_forever(directory):
    """The child: save version after version, printing each one once the store acknowledged it."""
    store = SharedObjectStore(directory, SynchronousExecutor())
    version = 0
    while True:
        version += 1
        store.save("stream", version, expected_state(version)).addCallback(
            lambda _, v=version: print(v, flush=True))


@pytest.mark.parametrize("acks_before_kill", [5, 60, 250])
def test_a_writer_killed_mid_stream_leaves_a_readable_acknowledged_state(tmp_path, acks_before_kill):
    child = subprocess.Popen([sys.executable, "-c", "import sys; from tests.app.test_shared_objects_store "
                              "import write_forever; write_forever(sys.argv[1])", str(tmp_path)],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    acknowledged = 0
    try:
        for line in child.stdout:
            acknowledged = int(line)
            if acknowledged >= acks_before_kill:
                break
        child.send_signal(signal.SIGKILL)
        for line in child.stdout:              # acknowledged before the kill landed
            acknowledged = int(line)
    finally:
        child.kill()
        child.wait(timeout=60)
    assert acknowledged >= acks_before_kill
    stored = decode_object("stream", (tmp_path / "stream.fso").read_bytes(), "stream.fso")
    # The state of the last acknowledgement, or of the write that was finishing when the kill came.
    assert stored.version in (acknowledged, acknowledged + 1)
    assert stored.data == expected_state(stored.version)
    assert read(SharedObjectStore(str(tmp_path), SynchronousExecutor()), "stream") == stored

