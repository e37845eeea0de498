"""Persistent shared objects on disk: one file per object, written atomically, off the reactor thread.

A file is ``<sharedObjectDir>/<name>.fso``: the line ``FMSPY-SO 1`` and then
one AMF0 body (values AMF0 cannot carry switched to AMF3 with 0x11, as in a
command) holding ``[name, version, [[key, value], ...]]``.  AMF, as Red5's
``.red5`` files, because slots hold AMF values (typed objects, dates,
ByteArrays) that JSON would flatten; slots as a list of pairs, not an AMF0
object, so that any key survives.

Why each step of a write (``_write_file``): the state goes to a temporary
file next to the real one, which is fsynced, renamed over the real one and
the directory fsynced: a crash at any moment leaves the old or the new file,
never a torn one (``rename`` is atomic on POSIX file systems), and a renamed
file is on disk once the write is acknowledged.  Writes run through an
executor (``app/fileio.py``: the reactor's thread pool in the server) and are
coalesced per object: at most one write in flight; changes made meanwhile
only replace the state waiting to be written, so a stream of changes costs
one write per write's duration and the last state always reaches the disk.

Names come from the network: ``safe_file_path`` (app/recording.py, the
recordings' rule) is the only way from a name to a file.
"""
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.python.failure import Failure

from ..rtmp.amf import decode_values, encode_values
from .recording import safe_file_path

log = logging.getLogger(__name__)

#: The first line of every file: what it is, and the layout's version.
MAGIC = b"FMSPY-SO 1\n"
SUFFIX = ".fso"


class StoreError(Exception):
    """A file that cannot be read back as a shared object (named in the message)."""


@dataclass(frozen=True)
class StoredObject:
    """An object's state as read from its file."""

    version: int
    data: Dict[str, Any]


def encode_object(name: str, version: int, data: Dict[str, Any]) -> bytes:
    """The file's bytes for this state."""
    return MAGIC + encode_values([name, version, [[key, value] for key, value in data.items()]], amf3=False)


def decode_object(name: str, content: bytes, path: str) -> StoredObject:
    """The state in a file's bytes; ``StoreError`` when they are not the file of ``name``."""
    if not content.startswith(MAGIC):
        raise StoreError(f"{path} is not a shared object file (no {MAGIC.strip().decode()} line)")
    try:
        stored_name, version, pairs = decode_values(content[len(MAGIC):], amf3=False)
        data = {key: value for key, value in pairs}
    except Exception as exc:            # a decode error or a wrong shape: the file is not ours
        raise StoreError(f"{path} cannot be read: {exc}") from None
    if stored_name != name or not isinstance(version, int) or not all(isinstance(k, str) for k in data):
        raise StoreError(f"{path} does not hold the shared object {name!r}")
    return StoredObject(version, data)


def _write_file(directory: str, path: str, content: bytes) -> None:
    """Replace ``path`` by ``content`` atomically and durably (see the module docstring)."""
    temporary = os.path.join(directory, "." + os.path.basename(path) + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def _read_file(path: str) -> Optional[bytes]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read()


class _Pending:
    """One object's writes: the one in flight, and the latest state waiting behind it."""

    __slots__ = ("latest", "waiters", "writing", "in_flight")

    def __init__(self):
        self.latest = None              # (version, data) not yet handed to a write
        self.waiters: List[Deferred] = []   # fire when ``latest`` is on disk
        self.writing: List[Deferred] = []   # fire when the write in flight is on disk
        self.in_flight = False


class SharedObjectStore:
    """The persistent objects of one application, in ``directory``, through ``executor``."""

    def __init__(self, directory: str, executor):
        self.directory = os.path.realpath(directory)
        self.executor = executor
        self._pending: Dict[str, _Pending] = {}
        #: The last state handed to a write per object still being written: what ``load`` answers,
        #: so that an object unloaded and used again meanwhile never reads an older file.
        self._unwritten: Dict[str, tuple] = {}

    def path(self, name: str) -> Optional[str]:
        """The object's file, or None when ``name`` cannot be a file name here."""
        return safe_file_path(self.directory, name, SUFFIX)

    def load(self, name: str) -> Deferred:
        """Fires with the ``StoredObject`` of ``name``, or None when it has no file; fails with ``StoreError``."""
        unwritten = self._unwritten.get(name)
        if unwritten is not None:
            return succeed(StoredObject(unwritten[0], dict(unwritten[1])))
        path = self.path(name)
        if path is None:
            return fail(StoreError(f"{name!r} cannot be a file name"))
        return self.executor.run(_read_file, path).addCallback(
            lambda content: None if content is None else decode_object(name, content, path))

    def save(self, name: str, version: int, data: Dict[str, Any]) -> Deferred:
        """Write this state (``data`` is the caller's to keep: it is copied); fires once it, or a later one, is on disk."""
        pending = self._pending.get(name)
        if pending is None:
            pending = self._pending[name] = _Pending()
        pending.latest = (version, dict(data))
        self._unwritten[name] = pending.latest
        d = Deferred()
        pending.waiters.append(d)
        if not pending.in_flight:
            self._start(name, pending)
        return d

    def _start(self, name: str, pending: _Pending) -> None:
        (version, data), pending.writing = pending.latest, pending.waiters
        pending.latest, pending.waiters, pending.in_flight = None, [], True
        path = self.path(name)
        written = self.executor.run(lambda: _write_file(self.directory, path, encode_object(name, version, data)))
        written.addBoth(self._written, name, pending)

    def _written(self, result, name: str, pending: _Pending) -> None:
        waiters, pending.writing, pending.in_flight = pending.writing, [], False
        if pending.latest is not None:
            self._start(name, pending)
        else:
            del self._pending[name]
            del self._unwritten[name]
        if isinstance(result, Failure):
            log.error("shared object %s not saved to %s: %s", name, self.directory, result.value)
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)

    def flushed(self) -> Deferred:
        """Fires once every state handed to ``save`` so far is on disk (or its write failed): for shutdown and tests."""
        waiting = []
        for pending in self._pending.values():
            d = Deferred()
            (pending.waiters if pending.latest is not None else pending.writing).append(d)
            waiting.append(d.addErrback(lambda _: None))
        return gatherResults(waiting).addCallback(lambda _: None)
