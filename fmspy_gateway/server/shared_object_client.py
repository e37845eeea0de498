"""Remote shared objects on our RTMP client: what Flash's ``SharedObject.getRemote`` gives an AS3 program.

``RTMPClientProtocol.shared_object(name, persistent)`` hands out one
``RemoteSharedObject`` per name (Flash returns the same instance for the
same name too); the protocol feeds every shared object message it receives
to ``RemoteSharedObjects.received``, which owns the name -> object table.
An object keeps the slots as the server last described them, plus the
client's own changes not yet answered, the way Flash does: ``setProperty``
changes ``data`` at once, a ``Success`` confirms it, and a refusal puts the
server's value back.

Each received message becomes one ``on_sync(changes)`` call (one Flash
SyncEvent), ``changes`` a list of ``(code, key)`` in Flash's changeList
codes: "clear" (key None), "change" (someone else changed the slot),
"success" (our change was applied), "delete" (the slot was removed) and
"reject" (our change was refused; ``data`` holds the server's value again).
Which change a server refused is not on the wire: FMS-style servers (ours
included) answer each request message in order, a change with Success
(a delete with Remove), a refused one with a ``SharedObject.NoWriteAccess``
Status.  So the client sends one request per message and keeps them in a
queue, oldest first: a NoWriteAccess rejects the oldest unanswered one.
"""
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..app.calls import ConnectionClosed
from ..rtmp.sharedobject import (Change, Clear, Release, Remove, RequestChange, RequestRemove, SendMessage,
                                 SharedObjectMessage, Status, Success, UnknownEvent, Use, UseSuccess)

log = Logger()

#: The Status a server sends to a client whose change it refused.
NO_WRITE_ACCESS = "SharedObject.NoWriteAccess"
#: What an unanswered request asked for: a slot set (or deleted with a None value), or removed.
_SET, _REMOVE = "set", "remove"
_ABSENT = object()   # no such slot


class SharedObjectRefused(Exception):
    """The server answered a Use with an error Status (``code``: NoReadAccess, BadPersistence, ...)."""

    def __init__(self, code: str, level: str):
        super().__init__(f"{code} ({level})")
        self.code = code
        self.level = level


def _ignore(*args):
    pass


class RemoteSharedObject:
    """One remote shared object as a client sees it.

    Sending on a closed connection raises ``ConnectionClosed`` (``connect``
    returns a failed Deferred instead).

    ``on_sync(changes)``, ``on_message(handler, args)`` and
    ``on_status(code, level)`` are attributes to assign (they do nothing by
    default).  ``data`` is a dict to read, not to write: change slots with
    ``set_property`` and ``delete``.
    """

    def __init__(self, name: str, persistent: bool, send: Callable[[SharedObjectMessage], None],
                 forget: Callable[["RemoteSharedObject"], None]):
        self.name = name
        self.persistent = persistent
        #: The slots: the server's, with our unanswered changes applied.
        self.data: Dict[str, Any] = {}
        #: The version of the last message the server sent about this object.
        self.version = 0
        #: True between the server's UseSuccess and ``close()`` (or the connection's end).
        self.connected = False
        self.on_sync: Callable[[List[Tuple[str, Optional[str]]]], None] = _ignore
        self.on_message: Callable[[str, tuple], None] = _ignore
        self.on_status: Callable[[str, str], None] = _ignore
        self._send = send
        self._forget = forget
        self._connecting: Optional[Deferred] = None
        #: The slots as the server last described them.
        self._server: Dict[str, Any] = {}
        #: Our requests the server has not answered yet, oldest first: (``_SET`` or ``_REMOVE``, key, value).
        self._unanswered: Deque[Tuple[str, str, Any]] = deque()

    def connect(self) -> Deferred:
        """Send Use; fires with this object after the first sync, or fails with ``SharedObjectRefused``."""
        if self._connecting is None:
            connecting = self._connecting = Deferred()
            try:
                self._message(Use())
            except ConnectionClosed as exc:
                self._closed(str(exc))
            return connecting
        return self._connecting

    def set_property(self, key: str, value: Any) -> None:
        """Ask for slot ``key`` to become ``value`` (None deletes it); ``data`` shows it at once."""
        self._message(RequestChange(key, value))
        self._unanswered.append((_SET, key, value))
        self._show(key)

    def delete(self, key: str) -> None:
        """Ask the server to remove slot ``key``; it goes from ``data`` when the server says so ("delete")."""
        self._message(RequestRemove(key))
        self._unanswered.append((_REMOVE, key, None))

    def send(self, handler: str, *args: Any) -> None:
        """Have every listener's ``on_message(handler, args)`` called, ours included."""
        self._message(SendMessage(handler, args))

    def close(self) -> None:
        """Stop listening (Release); the name is free for a new ``shared_object`` afterwards."""
        try:
            if self.connected or self._connecting is not None:
                self._message(Release())
        finally:
            self._closed()

    def _message(self, event) -> None:
        self._send(SharedObjectMessage(self.name, self.version, self.persistent, (event,)))

    def _closed(self, reason: Optional[str] = None) -> None:
        self.connected = False
        self._forget(self)
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.called:
            connecting.errback(ConnectionClosed(reason or f"shared object {self.name!r} closed before it synced"))

    # -- what the server sends -------------------------------------------------------------

    def received(self, message: SharedObjectMessage) -> None:
        """Apply one message from the server: one ``on_sync`` for its slot changes, then the connect's answer."""
        self.version = message.version
        changes: List[Tuple[str, Optional[str]]] = []
        synced = refused = None
        for event in message.events:
            if isinstance(event, UseSuccess):
                synced = True
            elif isinstance(event, Clear):
                self._server.clear()
                self.data.clear()
                for key in {key for _, key, _ in self._unanswered}:
                    self._show(key)
                changes.append(("clear", None))
            elif isinstance(event, Change):
                for key, value in event.pairs:
                    self._server[key] = value
                    self._show(key)
                    changes.append(("change", key))
            elif isinstance(event, Success):
                request = self._answered(_SET, event.key)
                if request is not None:
                    self._set_server(event.key, _ABSENT if request[2] is None else request[2])
                changes.append(("success", event.key))
            elif isinstance(event, Remove):
                self._answered(_REMOVE, event.key)
                self._set_server(event.key, _ABSENT)
                changes.append(("delete", event.key))
            elif isinstance(event, SendMessage):
                self.on_message(event.handler, event.args)
            elif isinstance(event, Status):
                if event.code == NO_WRITE_ACCESS and self._unanswered:
                    _, key, _ = self._unanswered.popleft()
                    self._show(key)
                    changes.append(("reject", key))
                elif event.level == "error" and not self.connected:
                    refused = SharedObjectRefused(event.code, event.level)
                self.on_status(event.code, event.level)
            elif isinstance(event, UnknownEvent):
                log.info("shared object {name!r}: event type {type} ignored", name=self.name, type=event.event_type)
            else:
                log.info("shared object {name!r}: a server sent {event!r}, which only clients send",
                         name=self.name, event=type(event).__name__)
        if synced:
            self.connected = True
        if changes:
            self.on_sync(changes)
        connecting = self._connecting
        if connecting is not None and not connecting.called:
            if synced:
                connecting.callback(self)
            elif refused is not None:
                self._connecting = None
                self._forget(self)
                connecting.errback(refused)

    def _answered(self, kind: str, key: str) -> Optional[Tuple[str, str, Any]]:
        """Take the oldest unanswered request of ``kind`` for ``key`` off the queue (None: it was not ours)."""
        for request in self._unanswered:
            if request[0] == kind and request[1] == key:
                self._unanswered.remove(request)
                return request
        return None

    def _set_server(self, key: str, value: Any) -> None:
        """The server's slot ``key`` is now ``value`` (``_ABSENT``: gone)."""
        if value is _ABSENT:
            self._server.pop(key, None)
        else:
            self._server[key] = value
        self._show(key)

    def _show(self, key: str) -> None:
        """``data[key]``: our latest unanswered set of it (None: a delete), else the server's value."""
        value = self._server.get(key, _ABSENT)
        for kind, pending_key, pending_value in self._unanswered:
            if kind == _SET and pending_key == key:
                value = _ABSENT if pending_value is None else pending_value
        if value is _ABSENT:
            self.data.pop(key, None)
        else:
            self.data[key] = value


class RemoteSharedObjects:
    """The client's shared objects by name; ``send`` queues a message on the connection."""

    def __init__(self, send: Callable[[SharedObjectMessage], None]):
        self._send = send
        self._objects: Dict[str, RemoteSharedObject] = {}

    def get(self, name: str, persistent: bool = False) -> RemoteSharedObject:
        found = self._objects.get(name)
        if found is None:
            found = self._objects[name] = RemoteSharedObject(name, persistent, self._send, self._forget)
        return found

    def _forget(self, shared_object: RemoteSharedObject) -> None:
        if self._objects.get(shared_object.name) is shared_object:
            del self._objects[shared_object.name]

    def received(self, message: SharedObjectMessage) -> None:
        found = self._objects.get(message.name)
        if found is None:
            log.info("message for shared object {name!r}, which this client does not use", name=message.name)
            return
        found.received(message)

    def connection_lost(self, reason: str) -> None:
        for shared_object in list(self._objects.values()):
            shared_object._closed(f"connection closed: {reason}")
