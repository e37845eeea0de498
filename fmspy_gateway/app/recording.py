"""Recorded streams on disk: safe file names, writing a publish to FLV, reading it back for VOD.

Stream names come from the network, so ``safe_stream_path`` is the only way
from a name to a file: whatever a client sends, the result is a file directly
named in the recordings directory, or None.  ``Recorder`` and
``RecordedStream`` open with ``O_NOFOLLOW`` as well, so a symlink planted
between the check and the open is not followed either.

Threading: both classes do blocking file I/O and are never called on the
reactor thread by the server: ``app/publishing.py`` and ``app/playback.py``
call them through an executor (``app/fileio.py``: Twisted's thread pool,
one ``SerialQueue`` per file so one file's tasks never overlap).  Opening a
``RecordedStream`` reads 75 bytes a tag to index the file; with
``RecordingIndexes`` that happens once per version of a file.
"""
import copy
import os
import re
import struct
import time
from bisect import bisect_right
from dataclasses import dataclass
from typing import Iterator, List, Mapping, Optional

from ..rtmp import flv
from ..rtmp.amf import MixedArray
from ..rtmp.flv import AUDIO, SCRIPT, VIDEO, Tag

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def safe_stream_path(directory: str, name) -> Optional[str]:
    """``<directory>/<name>.flv`` (its real path) when ``name`` is a safe stream name, else None.

    ``name`` may carry a ``flv:`` prefix and a ``.flv`` suffix (how Flash
    clients spell recorded streams); other prefixes (``mp4:``) are refused.
    What remains follows ``safe_file_path``'s rule.  Query strings (``name?token=...``,
    sent by OBS and ffmpeg) are refused: the caller strips them first if it
    wants them ignored.
    """
    if not isinstance(name, str) or not isinstance(directory, str):
        return None
    if name.startswith("flv:"):
        name = name[4:]
    if name.endswith(".flv"):
        name = name[:-4]
    return safe_file_path(directory, name, ".flv")


def safe_file_path(directory: str, name, suffix: str) -> Optional[str]:
    """``<directory>/<name><suffix>`` (its real path) when ``name`` is a safe file name, else None.

    The one rule for names from the network that become files (recordings,
    persistent shared objects): 1-128 of ``A-Z a-z 0-9 _ . -``, starting with
    a letter or digit, without ``..``; and the real path, symlinks resolved,
    must lie inside the real directory.
    """
    if not isinstance(name, str) or not isinstance(directory, str):
        return None
    if _NAME.fullmatch(name) is None or ".." in name:
        return None
    root = os.path.realpath(directory)
    path = os.path.realpath(os.path.join(root, name + suffix))
    if os.path.commonpath([root, path]) != root or path == root:
        return None
    return path


#: What ``record`` may say, and the message types each records (nginx-rtmp's ``record`` values).
RECORD_CHOICES = {"off": (), "all": (AUDIO, VIDEO), "audio": (AUDIO,), "video": (VIDEO,)}
#: What a formatted ``recordSuffix`` may contain: what a stream name may (see ``safe_stream_path``).
_SUFFIX = re.compile(r"[A-Za-z0-9_.-]*")


def check_record_suffix(pattern: str) -> str:
    """``pattern`` if it formats (strftime) to characters a recording's name may hold; else ValueError.

    Checked at start with two sample times, so that no publish finds out later
    that ``%T`` puts colons in a file name or ``%c`` spaces.
    """
    for sample in (0.0, 1e9 + 0.5):
        text = time.strftime(pattern, time.gmtime(sample))
        if _SUFFIX.fullmatch(text) is None or ".." in text or len(text) > 64:
            raise ValueError(pattern)
    return pattern


@dataclass(frozen=True)
class RecordPolicy:
    """An application's ``record`` options: every publish recorded, as nginx-rtmp's ``record`` does.

    ffmpeg and OBS always publish "live", so without this only a client that
    asks for ``publish(name, "record")`` could be recorded.  With ``kind``
    other than "off", each live publish of ``name`` is also written to
    ``<recordDir>/<name><suffix>.flv``; the suffix is a strftime pattern in
    local time (``-%Y%m%d-%H%M%S`` keeps one file per publish; without one,
    each publish replaces the last, as nginx-rtmp's default does).  The
    limits bound any recording of the application, asked for or not: past
    ``max_size`` bytes or ``max_duration`` seconds of the file (what an
    appended file held before counts) it is closed and the stream goes on
    live, unrecorded.  0 means no limit.
    """

    #: "off", "all", "audio" or "video" (``record``).
    kind: str = "off"
    #: strftime pattern appended to the stream name (``recordSuffix``).
    suffix: str = ""
    #: Bytes of one recording file; 0: no limit (``recordMaxSize``).
    max_size: int = 0
    #: Seconds of one recording file; 0: no limit (``recordMaxDuration``).
    max_duration: float = 0.0

    @property
    def types(self):
        """The message types recorded automatically (none when off)."""
        return RECORD_CHOICES[self.kind]

    def file_name(self, name: str, when: float) -> str:
        """The recording's stream name for a publish of ``name`` starting at ``when`` (epoch seconds)."""
        return name + time.strftime(self.suffix, time.localtime(when)) if self.suffix else name

    def over(self, recorder: "Recorder") -> Optional[str]:
        """The option whose limit ``recorder`` has reached (for the log), or None."""
        if self.max_size and recorder.size >= self.max_size:
            return f"recordMaxSize ({self.max_size} bytes)"
        if self.max_duration and recorder.duration_ms >= self.max_duration * 1000:
            return f"recordMaxDuration ({self.max_duration:g} s)"
        return None


def _duration_value_offset(body: bytes) -> Optional[int]:
    """Where the 8-byte "duration" number sits in an onMetaData body, when it is the first key.

    The layout ffmpeg writes and ``Recorder`` writes: "onMetaData", then an
    ECMA array (or object) whose first member is duration, a number.  Any
    other layout: None, and the duration is left alone.
    """
    prefix = b"\x02\x00\x0aonMetaData"
    key = b"\x00\x08duration\x00"
    if not body.startswith(prefix):
        return None
    pos = len(prefix)
    marker = body[pos:pos + 1]
    pos += 5 if marker == b"\x08" else 1 if marker == b"\x03" else len(body)
    if body[pos:pos + len(key)] != key or len(body) < pos + len(key) + 8:
        return None
    return pos + len(key)


def _open(path: str, flags: int):
    return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)


class Recorder:
    """Writes one publish into an FLV file.

    mode "record": a new file.  The old file is unlinked first rather than
    truncated, so a player still reading it keeps reading what it opened.
    mode "append": the existing tags are kept (a cut tail, from a crash, is
    dropped) and the new ones continue 1 ms after the file's largest
    timestamp, so playback stays monotonic.  An existing file that is not FLV
    is refused with ``ValueError`` rather than overwritten: it is not ours to
    destroy.  A missing or empty file is started fresh.

    Timestamps given to ``write`` may start anywhere (the publish's own
    clock): the first one written becomes the file's 0 (or its append point)
    and a later one below it is clamped to it.  Video before the first
    keyframe is dropped (a recording started mid-GOP could not decode it);
    sequence headers are kept.  ``close`` writes the real duration into the
    first onMetaData.  ``OSError`` (disk full) propagates: the caller stops
    recording and calls ``close``.  One Recorder per file: two at once
    interleave garbage.
    """

    def __init__(self, path: str, mode: str = "record", *, buffer_size: int = 64 * 1024,
                 has_audio: bool = True, has_video: bool = True):
        if buffer_size < 4096:
            raise ValueError("buffer_size below 4096 defeats buffering; use flush()")
        if mode not in ("record", "append"):
            raise ValueError(f"recording mode must be 'record' or 'append', not {mode!r}")
        self.path = path
        self.mode = mode
        self._offset = 0               # file time of this session's first tag
        self._base = None              # the caller's timestamp that maps to _offset
        self._last = None              # largest file timestamp in the file
        self._duration_at = None       # file offset of the first onMetaData's duration double
        self._seen_keyframe = False
        #: Bytes in the file (buffered ones included): what ``recordMaxSize`` bounds.
        self.size = 0
        if mode == "append":
            fd = _open(path, os.O_RDWR | os.O_CREAT)
            self._file = os.fdopen(fd, "r+b", buffering=buffer_size)
            try:
                self._resume()
            except BaseException:
                self._file.close()
                raise
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            self._file = os.fdopen(fd, "wb", buffering=buffer_size)
            header = flv.flv_header(has_audio, has_video)
            self._file.write(header)
            self.size = len(header)

    def _resume(self):
        f = self._file
        size = f.seek(0, 2)
        if size == 0:
            header = flv.flv_header()
            f.write(header)
            self.size = len(header)
            return
        f.seek(0)
        end = flv.read_header(f).data_offset + 4      # ValueError: not FLV, refused
        if end > max(size, 13):
            raise ValueError(f"{self.path}: FLV header points past the end of the file")
        for tag in flv.scan_tags(f):
            end = tag.end
            self._last = tag.timestamp if self._last is None else max(self._last, tag.timestamp)
            if self._duration_at is None and tag.type_id == SCRIPT:
                value_at = _duration_value_offset(tag.head)
                if value_at is not None:
                    self._duration_at = tag.offset + flv.TAG_HEADER_SIZE + value_at
        f.truncate(end)
        f.seek(end)
        self.size = end
        if self._last is not None:
            self._offset = self._last + 1

    @property
    def closed(self) -> bool:
        return self._file is None

    @property
    def duration_ms(self) -> int:
        """The largest timestamp in the file so far."""
        return self._last or 0

    def write(self, type_id: int, timestamp: int, body) -> None:
        """Append an audio, video or AMF0 data message (its payload is the tag body)."""
        if type_id not in (AUDIO, VIDEO, SCRIPT):
            raise ValueError(f"an FLV file holds audio, video and AMF0 data, not type {type_id}")
        if type_id == VIDEO and not self._seen_keyframe:
            if flv.is_video_keyframe(body):
                self._seen_keyframe = True
            elif not flv.is_sequence_header(VIDEO, body):
                return
        if self._base is None:
            self._base = timestamp
        self._write(type_id, (max(0, timestamp - self._base) + self._offset) & flv.MAX_TIMESTAMP,
                    body)

    def write_metadata(self, values) -> None:
        """Write onMetaData from ``@setDataFrame``, as the script tag ``["onMetaData", obj]``.

        ``values``: the metadata object, or the data message's values with or
        without the leading "@setDataFrame" (``["onMetaData", obj]``).  The
        encoder's duration and filesize are wrong for a recording (0 when
        live): duration is written first as 0 and set on ``close`` (players
        and ffprobe take the duration from here), filesize is dropped.
        """
        if not isinstance(values, Mapping):
            values = list(values)
            if values[:1] == ["@setDataFrame"]:
                values = values[1:]
            if values[:1] == ["onMetaData"]:
                values = values[1:]
            if not values or not isinstance(values[0], Mapping):
                raise ValueError("onMetaData needs an object")
            values = values[0]
        obj = MixedArray({"duration": 0.0})
        obj.update((k, v) for k, v in values.items() if k not in ("duration", "filesize"))
        body = flv.script_body("onMetaData", obj)
        timestamp = self._offset if self._base is None else self._last
        position = self._file.tell()
        self._write(SCRIPT, timestamp, body)
        value_at = _duration_value_offset(body)
        if self._duration_at is None and value_at is not None:
            self._duration_at = position + flv.TAG_HEADER_SIZE + value_at

    def _write(self, type_id, timestamp, body):
        if self._file is None:
            raise ValueError("write to a closed Recorder")
        header = flv.tag_header(type_id, timestamp, len(body))
        self._file.write(header)
        self._file.write(body)
        self._file.write(flv.previous_tag_size(len(body)))
        self.size += flv.TAG_HEADER_SIZE + len(body) + 4
        self._last = timestamp if self._last is None else max(self._last, timestamp)

    def flush(self) -> None:
        """Hand the buffered tags to the OS, e.g. on a timer while someone plays the file as it grows."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Set the metadata's duration, flush and close; calling it again does nothing."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            if self._duration_at is not None:
                f.seek(self._duration_at)
                f.write(struct.pack(">d", self.duration_ms / 1000))
        finally:
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class RecordingIndexes:
    """The FLV indexes of an application's recordings, built once and kept (the last ``size`` files).

    Keyed by (path, inode, mtime, size) of the file as opened and the onMetaData limit, so a recording
    that grew or was replaced is indexed again and a stale index is never
    used.  An index is never changed once made (``RecordedStream`` only reads
    it), so playbacks of one file share it, from any thread.
    """

    def __init__(self, size: int = 64):
        self.size = size
        self._indexes = {}
        #: How many opens found their index here, and how many built one (for tests and the status page).
        self.hits = self.misses = 0

    def get(self, key):
        index = self._indexes.pop(key, None)
        if index is None:
            self.misses += 1
            return None
        self.hits += 1
        self._indexes[key] = index       # most recently used last
        return index

    def put(self, key, index):
        self._indexes[key] = index
        while len(self._indexes) > self.size:
            del self._indexes[next(iter(self._indexes))]


#: At most one seek point per this many ms in files without video keyframes.
_AUDIO_SEEK_STEP_MS = 500
#: ``recordMaxMetadataSize``'s default: onMetaData bodies larger than this are not decoded (a tool's injected
#: keyframe table can be megabytes, decoded on every open of the file).
DEFAULT_MAX_METADATA_SIZE = 1 << 20


class RecordedStream:
    """A recorded FLV opened for playback: an index built in one pass, tags read on demand.

    Keeps one file descriptor open (``close`` or ``with``), so a recording
    replaced meanwhile ("record" unlinks it) still plays as it was opened.
    ``ValueError`` when the file is not FLV; ``OSError`` when it cannot be opened.
    """

    _INDEX = ("header", "duration_ms", "_metadata", "metadata_skipped", "_headers", "has_keyframes", "_points")

    def __init__(self, path: str, indexes: Optional["RecordingIndexes"] = None,
                 max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE):
        self.path = path
        self._max_metadata_size = max_metadata_size
        self._file = os.fdopen(_open(path, os.O_RDONLY), "rb")
        try:
            key = None
            if indexes is not None:
                st = os.fstat(self._file.fileno())
                # The limit too: an index made under one leaves undecoded what another would decode.
                key = (path, st.st_ino, st.st_mtime_ns, st.st_size, max_metadata_size)
                index = indexes.get(key)
                if index is not None:
                    for field, value in zip(self._INDEX, index):
                        setattr(self, field, value)
                    return
            self._index()
            if key is not None:
                indexes.put(key, tuple(getattr(self, field) for field in self._INDEX))
        except BaseException:
            self._file.close()
            raise

    def _index(self):
        f = self._file
        self.header = flv.read_header(f)
        self.duration_ms = 0
        self._metadata = None
        #: The size of the largest onMetaData left undecoded for ``max_metadata_size`` (0: none), for the
        #: caller to log on the reactor's side (this runs in the executor).
        self.metadata_skipped = 0
        keyframes, audio_points = ([], []), ([], [])    # (timestamps, offsets)
        self._headers = {VIDEO: [], AUDIO: []}          # offsets of every sequence header
        for tag in flv.scan_tags(f):
            self.duration_ms = max(self.duration_ms, tag.timestamp)
            if tag.type_id == VIDEO:
                if flv.is_video_keyframe(tag.head):
                    keyframes[0].append(tag.timestamp)
                    keyframes[1].append(tag.offset)
                elif flv.is_sequence_header(VIDEO, tag.head):
                    self._headers[VIDEO].append(tag.offset)
            elif tag.type_id == AUDIO:
                if flv.is_sequence_header(AUDIO, tag.head):
                    self._headers[AUDIO].append(tag.offset)
                elif not audio_points[0] or tag.timestamp >= audio_points[0][-1] + _AUDIO_SEEK_STEP_MS:
                    audio_points[0].append(tag.timestamp)
                    audio_points[1].append(tag.offset)
            elif (tag.type_id == SCRIPT and self._metadata is None
                  and tag.head.startswith(b"\x02\x00\x0aonMetaData")):
                if tag.size <= self._max_metadata_size:
                    self._metadata = self._metadata_at(tag.offset)
                else:
                    self.metadata_skipped = max(self.metadata_skipped, tag.size)
        #: True when seeks land on video keyframes; False: on audio, to the ms.
        self.has_keyframes = bool(keyframes[0])
        self._points = keyframes if self.has_keyframes else audio_points

    def _tag_at(self, offset) -> Optional[Tag]:
        self._file.seek(offset)
        return flv.read_tag(self._file)

    def _metadata_at(self, offset):
        tag = self._tag_at(offset)
        values = flv.parse_script_body(tag.body) if tag is not None else None
        if values and len(values) > 1 and values[0] == "onMetaData" and isinstance(values[1], Mapping):
            return values[1]
        return None

    @property
    def metadata(self):
        """The first onMetaData object, its duration set to the file's (a cut recording has 0)."""
        if self._metadata is None:
            return None
        obj = copy.copy(self._metadata)
        obj["duration"] = self.duration_ms / 1000
        return obj

    @property
    def sequence_headers(self) -> List[Tag]:
        """The first video and audio sequence headers, in file order."""
        offsets = sorted(o[0] for o in self._headers.values() if o)
        return [self._tag_at(o) for o in offsets]

    def _start(self, ms: int):
        """The file offset playback from ``ms`` starts at."""
        timestamps, offsets = self._points
        if not offsets:
            return None
        i = bisect_right(timestamps, ms) - 1
        return offsets[max(i, 0)]

    def sequence_headers_at(self, ms: int) -> List[Tag]:
        """The sequence headers in force where playing from ``ms`` starts: send these first.

        In an appended file a later session may have new headers; tags after
        the start carry their own and come through ``tags_from``.
        """
        start = self._start(ms)
        if start is None:
            return self.sequence_headers
        found = []
        for offsets in self._headers.values():
            i = bisect_right(offsets, start) - 1
            if i >= 0:
                found.append(offsets[i])
        return [self._tag_at(o) for o in sorted(found)]

    def tags_from(self, ms: int) -> Iterator[Tag]:
        """Every tag from the last video keyframe at or before ``ms`` (the first one if none is).

        Without video keyframes: the tags from the first at or after ``ms``.
        Sequence headers and metadata before the start are not repeated (see
        ``sequence_headers_at``, ``metadata``).  Iterators may be interleaved
        (each seeks to its own position); a file still growing is read to
        its current end.
        """
        offset = self._start(ms)
        if offset is None:
            return
        skip_before = None if self.has_keyframes else ms
        while True:
            tag = self._tag_at(offset)
            if tag is None:
                return
            offset = tag.end
            if skip_before is not None:
                if tag.timestamp < skip_before:
                    continue
                skip_before = None
            yield tag

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
