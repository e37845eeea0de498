"""Remote shared object messages (types 19 AMF0 and 16 AMF3) as values: docs/PROTOCOL.md, "Shared objects".

A message names one shared object and carries a batch of events.  The
events are frozen dataclasses, one per event type of the wire format; what
they mean to a server (who gets a Change, when the version moves) is the
application layer's business (``app/shared_objects.py``); this module only
says what the bytes are: ``decode_shared_object`` and ``encode_shared_object``.

Layout (WIRE-FACTS.md 1.1): [format byte 0, type 16 only], name (u16 length
+ UTF-8, no AMF marker), version u32, persistence u32 (2 persistent, 0
transient), 4 reserved bytes, then events of [type u8, length u32, data].
Keys are u16 strings like the name; values are AMF0, or in type 16 each one
switched to AMF3 (0x11 + AMF3 value).  All values of one message share one
set of AMF reference tables, as in a command body.

Reading is strict where a length is involved (an event overrunning its
message, a value overrunning its event, bad UTF-8, bad AMF: all
``RemoteProtocolError``) and lenient where Red5 is: an event body holding
several keys (Success, Remove, RequestRemove) or pairs (RequestChange)
becomes one event each, a Change keeps all its pairs, and the bodies of the
empty events (Use, Release, Clear, UseSuccess) are not read.  An unknown
event type is kept as ``UnknownEvent`` (skipped by its length); whoever
handles the message logs it.
"""
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, List, Optional, Tuple, Union

from .amf import ValueReader, ValueWriter
from .budget import ValueBudget, ValueOverBudget, brief_name
from .errors import LocalProtocolError, RemoteProtocolError


class EventType(IntEnum):
    """The event type byte."""

    USE = 1
    RELEASE = 2
    REQUEST_CHANGE = 3
    CHANGE = 4
    SUCCESS = 5
    SEND_MESSAGE = 6
    STATUS = 7
    CLEAR = 8
    REMOVE = 9
    REQUEST_REMOVE = 10
    USE_SUCCESS = 11


#: The persistence field's value for a persistent object (0: transient).
PERSISTENT = 2


@dataclass(frozen=True)
class Use:
    """Client -> server: start listening to the object (``so.connect(nc)``)."""


@dataclass(frozen=True)
class Release:
    """Client -> server: stop listening (``so.close()``)."""


@dataclass(frozen=True)
class RequestChange:
    """Client -> server: set slot ``key`` to ``value`` (``so.setProperty``); None asks for a delete."""

    key: str
    value: Any


@dataclass(frozen=True)
class Change:
    """Server -> client: slots changed by someone else; one or more (key, value) pairs."""

    pairs: Tuple[Tuple[str, Any], ...]


@dataclass(frozen=True)
class Success:
    """Server -> requester: its RequestChange (or delete) of ``key`` was applied."""

    key: str


@dataclass(frozen=True)
class SendMessage:
    """Both ways: call ``handler(*args)`` on every listener (``so.send``)."""

    handler: str
    args: Tuple[Any, ...] = ()


@dataclass(frozen=True)
class Status:
    """Server -> client: e.g. ``SharedObject.NoWriteAccess``, level ``error``."""

    code: str
    level: str = "error"


@dataclass(frozen=True)
class Clear:
    """Server -> client: forget every slot (sent before the initial Changes)."""


@dataclass(frozen=True)
class Remove:
    """Server -> client: slot ``key`` was deleted."""

    key: str


@dataclass(frozen=True)
class RequestRemove:
    """Client -> server: delete slot ``key``."""

    key: str


@dataclass(frozen=True)
class UseSuccess:
    """Server -> client: the Use was accepted (the initial data follows in the same message)."""


@dataclass(frozen=True)
class UnknownEvent:
    """An event type this module does not know, kept as its bytes (skipped by its length)."""

    event_type: int
    data: bytes = b""


SharedObjectEvent = Union[Use, Release, RequestChange, Change, Success, SendMessage, Status, Clear, Remove,
                          RequestRemove, UseSuccess, UnknownEvent]


@dataclass(frozen=True)
class SharedObjectMessage:
    """One shared object message: the object's name, version, persistence and a batch of events."""

    name: str
    version: int
    persistent: bool
    events: Tuple[SharedObjectEvent, ...] = ()


# -- the codec -------------------------------------------------------------------

_U16 = struct.Struct(">H")
_HEADER = struct.Struct(">III")          # version, persistence, reserved
_EVENT_HEADER = struct.Struct(">BI")     # type, data length
_TRANSIENT = 0
#: The events whose body is empty; what a peer puts there anyway is not read (Red5 does not either).
_EMPTY_EVENTS = {EventType.USE: Use(), EventType.RELEASE: Release(), EventType.CLEAR: Clear(),
                 EventType.USE_SUCCESS: UseSuccess()}
#: The events whose body is one key (or several, one event each).
_KEY_EVENTS = {EventType.SUCCESS: Success, EventType.REMOVE: Remove, EventType.REQUEST_REMOVE: RequestRemove}


class _Body:
    """A cursor over one message body: u16 strings and integers, values through one ``ValueReader``."""

    __slots__ = ("payload", "values")

    def __init__(self, payload: bytes):
        self.payload = payload
        self.values = ValueReader(payload)

    def string(self, pos: int, end: int, what: str) -> Tuple[str, int]:
        if pos + 2 > end:
            raise RemoteProtocolError(f"shared object message ends inside the length of its {what}")
        start = pos + 2
        stop = start + _U16.unpack_from(self.payload, pos)[0]
        if stop > end:
            raise RemoteProtocolError(f"shared object {what} overruns its {'event' if what != 'name' else 'message'}")
        try:
            return self.payload[start:stop].decode("utf-8"), stop
        except UnicodeDecodeError:
            raise RemoteProtocolError(f"shared object {what} is not valid UTF-8") from None

    def value(self, pos: int, end: int, what: str) -> Tuple[Any, int]:
        if pos >= end:
            raise RemoteProtocolError(f"shared object event ends before its {what}")
        value, pos = self.values.read(pos)
        if pos > end:
            raise RemoteProtocolError(f"shared object {what} overruns its event")
        return value, pos


def _read_events(body: _Body, event_type: int, pos: int, end: int, out: List[SharedObjectEvent]) -> None:
    """Append the event(s) of one event body, ``payload[pos:end]``."""
    if event_type in _EMPTY_EVENTS:
        out.append(_EMPTY_EVENTS[event_type])
    elif event_type in _KEY_EVENTS:
        while True:
            key, pos = body.string(pos, end, "key")
            out.append(_KEY_EVENTS[event_type](key))
            if pos == end:
                return
    elif event_type in (EventType.CHANGE, EventType.REQUEST_CHANGE):
        pairs = []
        while True:
            key, pos = body.string(pos, end, "key")
            value, pos = body.value(pos, end, f"value of {brief_name(key)}")
            pairs.append((key, value))
            if pos == end:
                break
        if event_type == EventType.CHANGE:
            out.append(Change(tuple(pairs)))
        else:
            out.extend(RequestChange(key, value) for key, value in pairs)
    elif event_type == EventType.SEND_MESSAGE:
        handler, pos = body.value(pos, end, "handler name")
        if not isinstance(handler, str):
            raise RemoteProtocolError(f"shared object SendMessage handler is a {type(handler).__name__}, not a string")
        args = []
        while pos < end:
            value, pos = body.value(pos, end, "argument")
            args.append(value)
        out.append(SendMessage(handler, tuple(args)))
    elif event_type == EventType.STATUS:
        code, pos = body.string(pos, end, "status code")
        level, pos = body.string(pos, end, "status level")
        if pos != end:
            raise RemoteProtocolError("shared object Status event has bytes after its level")
        out.append(Status(code, level))
    else:
        out.append(UnknownEvent(event_type, body.payload[pos:end]))


def decode_shared_object(payload: bytes, amf3: bool, budget: Optional[ValueBudget] = None) -> SharedObjectMessage:
    """The message in a type 19 (``amf3`` False) or type 16 body.

    ``RemoteProtocolError`` for a malformed body; with ``budget``,
    ``budget.ValueOverBudget`` when its values together expand past it (the
    body is well-formed: the caller refuses the message, not the connection);
    its ``reason`` then names the object.
    """
    payload = bytes(payload)
    pos = 0
    if amf3:
        # Red5 writes 0 and crtmpserver accepts only 0; Enhanced RTMP defines no other format.
        if not payload or payload[0] != 0:
            raise RemoteProtocolError("AMF3 shared object message does not start with the format byte 0x00")
        pos = 1
    end = len(payload)
    body = _Body(payload)
    name, pos = body.string(pos, end, "name")
    if pos + _HEADER.size > end:
        raise RemoteProtocolError(f"shared object message {brief_name(name)} ends inside its header")
    version, persistence, _ = _HEADER.unpack_from(payload, pos)
    pos += _HEADER.size
    events: List[SharedObjectEvent] = []
    while pos < end:
        if pos + _EVENT_HEADER.size > end:
            raise RemoteProtocolError("shared object message ends inside an event header")
        event_type, length = _EVENT_HEADER.unpack_from(payload, pos)
        pos += _EVENT_HEADER.size
        if length > end - pos:
            raise RemoteProtocolError(f"shared object event of {length} bytes overruns its message")
        _read_events(body, event_type, pos, pos + length, events)
        pos += length
    if budget is not None:
        try:
            body.values.check_budget(budget)
        except ValueOverBudget as exc:
            exc.reason = f"shared object {brief_name(name)}: {exc.reason}"
            raise
    return SharedObjectMessage(name, version, persistence == PERSISTENT, tuple(events))


def _short_string(text: str, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise LocalProtocolError(f"shared object {what} of {len(raw)} bytes is longer than 65535: {text[:40]!r}...")
    return _U16.pack(len(raw)) + raw


def _write_event(writer: ValueWriter, event: SharedObjectEvent, amf3: bool) -> int:
    """Write the body of ``event``; returns its type."""
    if isinstance(event, (Use, Release, Clear, UseSuccess)):
        pass
    elif isinstance(event, (Success, Remove, RequestRemove)):
        writer.raw(_short_string(event.key, "key"))
    elif isinstance(event, RequestChange):
        writer.raw(_short_string(event.key, "key"))
        writer.write(event.value, amf3=amf3)
    elif isinstance(event, Change):
        for key, value in event.pairs:
            writer.raw(_short_string(key, "key"))
            writer.write(value, amf3=amf3)
    elif isinstance(event, SendMessage):
        writer.write(event.handler, amf3=False)   # a full AMF0 string, marker included, in both forms
        for value in event.args:
            writer.write(value, amf3=amf3)
    elif isinstance(event, Status):
        writer.raw(_short_string(event.code, "status code") + _short_string(event.level, "status level"))
    elif isinstance(event, UnknownEvent):
        writer.raw(event.data)
        return event.event_type
    else:
        raise LocalProtocolError(f"not a shared object event: {type(event).__name__}")
    return _EVENT_TYPES[type(event)]


_EVENT_TYPES = {Use: EventType.USE, Release: EventType.RELEASE, RequestChange: EventType.REQUEST_CHANGE,
                Change: EventType.CHANGE, Success: EventType.SUCCESS, SendMessage: EventType.SEND_MESSAGE,
                Status: EventType.STATUS, Clear: EventType.CLEAR, Remove: EventType.REMOVE,
                RequestRemove: EventType.REQUEST_REMOVE, UseSuccess: EventType.USE_SUCCESS}


def encode_shared_object(message: SharedObjectMessage, amf3: bool, *, switch: bool = True) -> bytes:
    """The body of a type 19 (``amf3`` False) or type 16 message.

    ``LocalProtocolError`` (before anything is sent) for a value that cannot
    be encoded, a name or key over 65535 bytes, or a version outside u32.
    ``switch=False`` (type 19 only) is for a peer that cannot read the 0x11
    switch (npm ``rtmp-client``): a value needing AMF3 raises
    ``LocalProtocolError`` instead, as in ``amf.encode_values``.
    """
    writer = ValueWriter(switch=switch or amf3)
    spans = []
    for event in message.events:
        start = writer.tell()
        event_type = _write_event(writer, event, amf3)
        spans.append((event_type, start, writer.tell()))
    data = writer.getvalue()
    try:
        header = _HEADER.pack(message.version, PERSISTENT if message.persistent else _TRANSIENT, 0)
    except struct.error:
        raise LocalProtocolError(f"shared object version {message.version!r} is not a u32") from None
    out = [b"\0" if amf3 else b"", _short_string(message.name, "name"), header]
    for event_type, start, stop in spans:
        out.append(_EVENT_HEADER.pack(event_type, stop - start))
        out.append(data[start:stop])
    return b"".join(out)
