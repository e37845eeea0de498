"""Remote shared objects as FMS serves them: docs/ARCHITECTURE.md, "Shared objects".

Three owners, one job each:

- ``SharedObjects`` (the interface, every method a Deferred, like the hub's)
  owns the state that crosses connections: each application's objects, their
  slots, versions and listeners.  ``LocalSharedObjects`` is the in-process
  implementation (``LocalHub.shared_objects``); a Redis hub implements the
  same methods with Redis as the authority.  It applies a batch of changes
  atomically, bumps the version once, and delivers the applied batch
  (``SharedObjectUpdate``) to every listener but the one that asked.
- ``SessionSharedObjects`` (one per session) turns a client's shared object
  messages into uses, batches and releases, asks the application's hooks,
  and answers the client with one message per incoming message.  Its
  ``_ClientListener`` turns a delivered update into one message to its client.
- ``SharedObjectHandle`` is the application's own listener
  (``Application.shared_object``): a mirror of the slots for ``get``/``data``,
  and changes that reach every client listener like a client's would.

What a listener hears (``events_for``) is the one table of the semantics: a
requester gets Success for each slot it set or deleted with a null value and
Remove for each RequestRemove; everyone else gets Change (only if the value
changed) and Remove (only if the slot existed); SendMessage reaches everyone.
"""
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.python.failure import Failure

from ..config import _parse_buffer_size, _parse_positive_int, option
from ..rtmp.amf import encode_values
from ..rtmp.budget import brief_name
from ..rtmp.sharedobject import (Change, Clear, Release, Remove, RequestChange, RequestRemove, SendMessage,
                                 SharedObjectMessage, Status, Success, UnknownEvent, Use, UseSuccess,
                                 encode_shared_object)
from .logs import log_failure
from .shared_object_store import SharedObjectStore

log = logging.getLogger(__name__)


class SharedObjectCode:
    """The shared object status codes (sent in a Status event, level ``error``)."""

    BAD_PERSISTENCE = "SharedObject.BadPersistence"
    OBJECT_CREATION_FAILED = "SharedObject.ObjectCreationFailed"
    NO_READ_ACCESS = "SharedObject.NoReadAccess"
    NO_WRITE_ACCESS = "SharedObject.NoWriteAccess"


class Access(Enum):
    """What ``Application.on_shared_object_use`` answers for a client."""

    ALLOW = "allow"
    #: The Use is refused: Status SharedObject.NoReadAccess.
    DENY_READ = "deny read"
    #: The client listens, but its changes and messages get Status SharedObject.NoWriteAccess.
    DENY_WRITE = "deny write"


class SharedObjectRefused(Exception):
    """A use or a change the shared objects refused: ``code`` goes to the client, ``reason`` to the log."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


# -- settings ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SharedObjectLimits:
    """How big an application's shared objects may grow (the options of ``SharedObjectSettings``)."""

    #: Encoded bytes of one object's slots (keys and AMF values).
    max_bytes: int = 1024 * 1024
    #: Objects of one application in memory at once (transient and loaded persistent ones).
    max_objects: int = 1000
    #: Listeners of one object (clients and the application's own handle).
    max_listeners: int = 1000


@dataclass(frozen=True)
class SharedObjectSettings:
    """The shared object options of every application section (declared once, as ``StreamingSettings``)."""

    #: ``sharedObjectDir``: where persistent objects live (relative to its fmspy.cfg); None: refused.
    directory: Optional[str] = option("sharedObjectDir", str, "a directory name", None, path=True)
    max_bytes: int = option("maxSharedObjectBytes", _parse_buffer_size, "a byte count such as 65536 or 1M",
                            SharedObjectLimits.max_bytes)
    max_objects: int = option("maxSharedObjects", _parse_positive_int, "a positive number of objects",
                              SharedObjectLimits.max_objects)
    max_listeners: int = option("maxSharedObjectListeners", _parse_positive_int, "a positive number of listeners",
                                SharedObjectLimits.max_listeners)

    @property
    def limits(self) -> SharedObjectLimits:
        return SharedObjectLimits(self.max_bytes, self.max_objects, self.max_listeners)


# -- what crosses connections: values --------------------------------------------------------------

@dataclass(frozen=True)
class SetSlot:
    """Set slot ``key`` to ``value``."""

    key: str
    value: Any


@dataclass(frozen=True)
class DeleteSlot:
    """Delete slot ``key``; ``removal``: asked with RequestRemove (the requester hears Remove, not Success)."""

    key: str
    removal: bool = False


@dataclass(frozen=True)
class ClearSlots:
    """Delete every slot."""


@dataclass(frozen=True)
class SendToListeners:
    """``handler(*args)`` on every listener; changes no slot."""

    handler: str
    args: Tuple[Any, ...] = ()


Operation = Union[SetSlot, DeleteSlot, ClearSlots, SendToListeners]


@dataclass(frozen=True)
class Applied:
    """One operation as applied; ``changed``: it moved the object's state (others hear of it only then)."""

    operation: Operation
    changed: bool
    #: For ``ClearSlots``: the slots it deleted.
    cleared: Tuple[str, ...] = ()


@dataclass(frozen=True)
class SharedObjectUpdate:
    """One batch as applied: what every listener is told about, with the version it made."""

    name: str
    version: int
    persistent: bool
    applied: Tuple[Applied, ...]
    #: The listener id that asked (it gets its answer from ``apply``, not a delivery); None: nobody's.
    origin: Optional[str] = None
    #: What every client listener but the requester hears, kept once made: "events" (``heard``), and the body
    #: per AMF flavour, False for AMF0 and True for AMF3 (``heard_payload``).
    _heard: Dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def heard(self) -> tuple:
        """The events every listener but the requester hears (``events_for``), made once for all of them."""
        events = self._heard.get("events")
        if events is None:
            events = self._heard["events"] = events_for(self, requester=False)
        return events

    def heard_payload(self, amf3: bool) -> bytes:
        """``heard()`` as a message body (``encode_shared_object``), encoded once per AMF flavour.

        Every listener of a batch hears the same message, and encoding it was
        some 40% of the server's time per delivered change when each listener
        encoded its own (a thousand listeners: a thousand encodings of one
        message).  Raises ``LocalProtocolError`` as ``encode_shared_object``
        does; a failure is not kept, so each listener logs its own.
        """
        payload = self._heard.get(amf3)
        if payload is None:
            message = SharedObjectMessage(self.name, self.version, self.persistent, self.heard())
            payload = self._heard[amf3] = encode_shared_object(message, amf3)
        return payload

    def changes(self) -> Dict[str, Any]:
        """The slots this batch changed: key -> new value, None for a deletion (``on_shared_object_changed``)."""
        answer: Dict[str, Any] = {}
        for applied in self.applied:
            operation = applied.operation
            if not applied.changed:
                continue
            if isinstance(operation, SetSlot):
                answer[operation.key] = operation.value
            elif isinstance(operation, DeleteSlot):
                answer[operation.key] = None
            elif isinstance(operation, ClearSlots):
                answer.update(dict.fromkeys(applied.cleared))
        return answer


@dataclass(frozen=True)
class SharedObjectSnapshot:
    """An object's whole state, as a new listener gets it."""

    name: str
    version: int
    persistent: bool
    data: Dict[str, Any]


def events_for(update: SharedObjectUpdate, requester: bool, stale: bool = False) -> tuple:
    """The events one listener gets for ``update``: the semantics' one table (module docstring).

    ``stale``: the requester asked without having seen the version before
    this batch, so a Change of someone else's may have crossed its request
    and replaced its own value in its copy (Flash and our client take the
    server's word on a Change); it gets its slot's value again before the
    Success, so its copy ends as the server's.
    """
    events = []
    for applied in update.applied:
        operation = applied.operation
        if isinstance(operation, SetSlot):
            if requester:
                if stale:
                    events.append(Change(((operation.key, operation.value),)))
                events.append(Success(operation.key))
            elif applied.changed:
                events.append(Change(((operation.key, operation.value),)))
        elif isinstance(operation, DeleteSlot):
            if requester:
                if stale and not operation.removal:
                    events.append(Remove(operation.key))
                events.append(Remove(operation.key) if operation.removal else Success(operation.key))
            elif applied.changed:
                events.append(Remove(operation.key))
        elif isinstance(operation, ClearSlots):
            if requester or applied.changed:
                events.append(Clear())
        else:
            events.append(SendMessage(operation.handler, operation.args))
    return tuple(events)


def initial_events(snapshot: SharedObjectSnapshot) -> tuple:
    """A Use's answer: UseSuccess, Clear, then a Change per slot (one message, as FMS)."""
    return (UseSuccess(), Clear()) + tuple(Change(((key, value),)) for key, value in snapshot.data.items())


def slot_size(key: str, value: Any) -> int:
    """The encoded size of one slot (what ``maxSharedObjectBytes`` counts); raises when it cannot be encoded."""
    return len(encode_values([key, value], amf3=False))


def _same(a, b) -> bool:
    """Whether a slot keeps its value (1 and True are different values to a Flash client)."""
    return type(a) is type(b) and a == b


# -- the interface ------------------------------------------------------------------------------------

class SharedObjects:
    """The state of every application's shared objects; every method but ``configure`` returns a Deferred.

    ``scope`` is the application's name.  A listener has an ``id`` (unique
    among an object's listeners: a client id) and ``deliver(update)``.
    """

    def configure(self, scope: str, limits: SharedObjectLimits, store: Optional[SharedObjectStore]) -> None:
        """The limits and persistent store of ``scope`` (at start; an unconfigured scope has the defaults, no store)."""
        raise NotImplementedError

    def use(self, scope: str, name: str, persistent: bool, listener) -> Deferred:
        """Add ``listener``; fires with the ``SharedObjectSnapshot``; fails with ``SharedObjectRefused``."""
        raise NotImplementedError

    def release(self, scope: str, name: str, listener_id: str) -> Deferred:
        """Remove a listener; fires with True when the object left memory with it."""
        raise NotImplementedError

    def apply(self, scope: str, name: str, operations: Tuple[Operation, ...], origin: Optional[str] = None) -> Deferred:
        """Apply a batch atomically (all or nothing, one version); fires with the ``SharedObjectUpdate``.

        Every listener but ``origin`` gets the update delivered.  Fails with
        ``SharedObjectRefused`` (NoWriteAccess: the object is not in use, or the
        batch would pass ``maxSharedObjectBytes`` or cannot be encoded).
        """
        raise NotImplementedError

    def snapshot(self, scope: str, name: str) -> Deferred:
        """Fires with the object's ``SharedObjectSnapshot``, or None when it is not in use."""
        raise NotImplementedError

    def flushed(self, scope: str) -> Deferred:
        """Fires once every persistent state of ``scope`` changed so far is on disk."""
        raise NotImplementedError


_MISSING = object()


class _Object:
    """One object in memory: its slots, their encoded sizes, version and listeners."""

    __slots__ = ("name", "persistent", "version", "data", "sizes", "size", "listeners")

    def __init__(self, name: str, persistent: bool, version: int = 0, data: Optional[dict] = None):
        self.name, self.persistent, self.version = name, persistent, version
        self.data: Dict[str, Any] = dict(data or {})
        self.sizes = {key: slot_size(key, value) for key, value in self.data.items()}
        self.size = sum(self.sizes.values())
        self.listeners: Dict[str, Any] = {}

    def snapshot(self) -> SharedObjectSnapshot:
        return SharedObjectSnapshot(self.name, self.version, self.persistent, dict(self.data))


class _Scope:
    __slots__ = ("limits", "store", "objects", "loading")

    def __init__(self, limits: SharedObjectLimits, store: Optional[SharedObjectStore]):
        self.limits, self.store = limits, store
        self.objects: Dict[str, _Object] = {}
        #: name -> [(Deferred, persistent, listener)] waiting for the object's file.
        self.loading: Dict[str, List[tuple]] = {}


class LocalSharedObjects(SharedObjects):
    """Every object of this process, in memory; persistent ones loaded from and saved to their store.

    A transient object is made by its first use and goes with its last
    listener; a persistent one is loaded by its first use and leaves memory
    with its last listener (its store keeps any state not yet written).
    Every answer has fired by the time the method returns, except a first
    use of a persistent object, which waits for its file.
    """

    def __init__(self):
        self._scopes: Dict[str, _Scope] = {}

    def configure(self, scope: str, limits: SharedObjectLimits, store: Optional[SharedObjectStore]) -> None:
        current = self._scopes.get(scope)
        if current is None:
            self._scopes[scope] = _Scope(limits, store)
        else:
            current.limits, current.store = limits, store

    def _scope(self, scope: str) -> _Scope:
        found = self._scopes.get(scope)
        if found is None:
            found = self._scopes[scope] = _Scope(SharedObjectLimits(), None)
        return found

    def use(self, scope: str, name: str, persistent: bool, listener) -> Deferred:
        where = self._scope(scope)
        found = where.objects.get(name)
        if found is not None:
            return self._add(where, found, persistent, listener)
        waiting = where.loading.get(name)
        if waiting is not None:
            d = Deferred()
            waiting.append((d, persistent, listener))
            return d
        limit = where.limits.max_objects
        if len(where.objects) + len(where.loading) >= limit:
            return fail(SharedObjectRefused(SharedObjectCode.OBJECT_CREATION_FAILED,
                                            f"maxSharedObjects ({limit}) reached in {scope}"))
        if not persistent:
            return self._add(where, where.objects.setdefault(name, _Object(name, False)), persistent, listener)
        if where.store is None:
            return fail(SharedObjectRefused(SharedObjectCode.OBJECT_CREATION_FAILED,
                                            f"{scope} has no sharedObjectDir: persistent objects are refused"))
        if where.store.path(name) is None:
            return fail(SharedObjectRefused(SharedObjectCode.OBJECT_CREATION_FAILED,
                                            f"{brief_name(name)!r} cannot be a persistent object's file name"))
        first = Deferred()
        where.loading[name] = [(first, persistent, listener)]
        where.store.load(name).addBoth(self._loaded, where, name)
        return first

    def _loaded(self, stored, where: _Scope, name: str) -> None:
        waiting = where.loading.pop(name)
        found = None
        if not isinstance(stored, Failure):
            try:
                found = _Object(name, True, *((stored.version, stored.data) if stored is not None else ()))
            except Exception:           # a slot that cannot be encoded again
                stored = Failure()
        if found is None:
            log.error("persistent shared object %s cannot be loaded: %s", brief_name(name), stored.value)
            for d, _, _ in waiting:
                d.errback(SharedObjectRefused(SharedObjectCode.OBJECT_CREATION_FAILED,
                                              f"{brief_name(name)!r} cannot be loaded"))
            return
        where.objects[name] = found
        for d, persistent, listener in waiting:
            self._add(where, found, persistent, listener).chainDeferred(d)
        self._forget_if_unused(where, found)        # when every waiter was refused (BadPersistence)

    def _add(self, where: _Scope, found: _Object, persistent: bool, listener) -> Deferred:
        if found.persistent != persistent:
            return fail(SharedObjectRefused(SharedObjectCode.BAD_PERSISTENCE,
                                            f"{brief_name(found.name)!r} is {'' if found.persistent else 'not '}"
                                            "persistent"))
        limit = where.limits.max_listeners
        if listener.id not in found.listeners and len(found.listeners) >= limit:
            self._forget_if_unused(where, found)
            return fail(SharedObjectRefused(SharedObjectCode.NO_READ_ACCESS,
                                            f"maxSharedObjectListeners ({limit}) reached by {brief_name(found.name)!r}"))
        found.listeners[listener.id] = listener
        return succeed(found.snapshot())

    def _forget_if_unused(self, where: _Scope, found: _Object) -> bool:
        if found.listeners or where.objects.get(found.name) is not found:
            return False
        del where.objects[found.name]
        return True

    def release(self, scope: str, name: str, listener_id: str) -> Deferred:
        where = self._scope(scope)
        found = where.objects.get(name)
        if found is None or found.listeners.pop(listener_id, None) is None:
            return succeed(False)
        return succeed(self._forget_if_unused(where, found))

    def snapshot(self, scope: str, name: str) -> Deferred:
        found = self._scope(scope).objects.get(name)
        return succeed(found.snapshot() if found is not None else None)

    def flushed(self, scope: str) -> Deferred:
        store = self._scope(scope).store
        return store.flushed() if store is not None else succeed(None)

    def apply(self, scope: str, name: str, operations: Tuple[Operation, ...], origin: Optional[str] = None) -> Deferred:
        where = self._scope(scope)
        found = where.objects.get(name)
        if found is None:
            return fail(SharedObjectRefused(SharedObjectCode.NO_WRITE_ACCESS, f"{brief_name(name)!r} is not in use"))
        try:
            applied, changes, cleared, size = self._plan(found, operations)
        except SharedObjectRefused as refused:
            return fail(refused)
        if size > where.limits.max_bytes:
            return fail(SharedObjectRefused(SharedObjectCode.NO_WRITE_ACCESS,
                                            f"maxSharedObjectBytes ({where.limits.max_bytes}) would be passed by "
                                            f"{brief_name(name)!r} ({size} bytes)"))
        changed = any(a.changed for a in applied if not isinstance(a.operation, SendToListeners))
        if cleared:
            found.data.clear()
            found.sizes.clear()
        for key, (value, encoded) in changes.items():
            if value is _MISSING:
                found.data.pop(key, None)
                found.sizes.pop(key, None)
            else:
                found.data[key], found.sizes[key] = value, encoded
        found.size = size
        if changed:
            found.version += 1
            if found.persistent and where.store is not None:
                where.store.save(name, found.version, found.data).addErrback(lambda _: None)   # logged by the store
        update = SharedObjectUpdate(name, found.version, found.persistent, applied, origin)
        for listener_id, listener in list(found.listeners.items()):
            if listener_id != origin:
                try:
                    listener.deliver(update)
                except Exception:
                    log.exception("delivering a change of %s to %s", brief_name(name), listener_id)
        return succeed(update)

    @staticmethod
    def _plan(found: _Object, operations) -> tuple:
        """What ``operations`` would do, without doing it: (applied, key -> (value, size), cleared, new size)."""
        changes: Dict[str, tuple] = {}     # key -> (value or _MISSING, encoded size)
        cleared, size, applied = False, found.size, []

        def current(key):
            if key in changes:
                return changes[key]
            if cleared or key not in found.data:
                return _MISSING, 0
            return found.data[key], found.sizes[key]

        for operation in operations:
            if isinstance(operation, SetSlot):
                before, before_size = current(operation.key)
                moved = before is _MISSING or not _same(before, operation.value)
                if moved:
                    try:
                        encoded = slot_size(operation.key, operation.value)
                    except Exception as exc:
                        raise SharedObjectRefused(SharedObjectCode.NO_WRITE_ACCESS,
                                                  f"slot {brief_name(operation.key)!r} cannot be encoded: "
                                                  f"{brief_name(str(exc), 200)}") from None
                    size += encoded - before_size
                    changes[operation.key] = (operation.value, encoded)
                applied.append(Applied(operation, moved))
            elif isinstance(operation, DeleteSlot):
                before, before_size = current(operation.key)
                existed = before is not _MISSING
                if existed:
                    size -= before_size
                    changes[operation.key] = (_MISSING, 0)
                applied.append(Applied(operation, existed))
            elif isinstance(operation, ClearSlots):
                held = [key for key, (value, _) in changes.items() if value is not _MISSING]
                if not cleared:
                    held.extend(key for key in found.data if key not in changes)
                changes.clear()
                cleared, size = True, 0
                applied.append(Applied(operation, bool(held), tuple(held)))
            else:
                applied.append(Applied(operation, False))
        return tuple(applied), changes, cleared, size


# -- the application's handle -----------------------------------------------------------------------

class SharedObjectHandle:
    """The application's own listener of one object: ``Application.shared_object(name, persistent)``.

    ``get``, ``data`` and ``version`` read its mirror, kept by the updates it
    hears; ``set``, ``delete``, ``clear`` and ``send`` fire with the version
    once applied (fail with ``SharedObjectRefused``).  Inside ``batch()``
    they are applied together when the block ends: one version, one message
    per listener (FMS's lock/unlock).  The handle keeps the object in memory
    (a transient one lives on without clients) until ``release()``.
    """

    def __init__(self, application, name: str, persistent: bool = False):
        self.application = application
        self.name = name
        self.persistent = persistent
        #: The listener id: never a client's (client ids are hex).
        self.id = f"application:{application.name}"
        self.version = 0
        self._data: Dict[str, Any] = {}
        self._batch: Optional[List[tuple]] = None
        self._used: Any = None          # None while the use is under way; then True or its Failure
        self._waiting: List[Deferred] = []
        self._early: List[SharedObjectUpdate] = []   # heard before the use's answer (another node's changes)
        self._objects = application.hub.shared_objects
        self._objects.use(application.name, name, persistent, self).addBoth(self._on_used)

    def _on_used(self, result) -> None:
        if isinstance(result, Failure):
            self._used = result
            log.warning("shared object %s of %s not available to the application: %s", brief_name(self.name),
                        self.application.name, result.value)
            self.application.forget_shared_object(self)
        else:
            self._used = True
            self.version, self._data = result.version, dict(result.data)
            for update in self._early:
                if update.version > result.version:
                    self.deliver(update)
        self._early = []
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    @property
    def usable(self) -> bool:
        """False once the object was refused to the handle (its changes fail)."""
        return not isinstance(self._used, Failure)

    def ready(self) -> Deferred:
        """Fires once the object's state is here (a persistent one loads from disk); fails if refused."""
        if self._used is None:
            d = Deferred()
            self._waiting.append(d)
            return d.addCallback(lambda _: self.ready())
        return succeed(self) if self._used is True else fail(self._used)

    # -- reading -------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def data(self) -> Dict[str, Any]:
        """A copy of every slot."""
        return dict(self._data)

    # -- changing ------------------------------------------------------------------------------
    def set(self, key: str, value: Any) -> Deferred:
        return self._change(SetSlot(key, value) if value is not None else DeleteSlot(key))

    def delete(self, key: str) -> Deferred:
        return self._change(DeleteSlot(key))

    def clear(self) -> Deferred:
        return self._change(ClearSlots())

    def send(self, handler: str, *args) -> Deferred:
        return self._change(SendToListeners(handler, tuple(args)))

    @contextmanager
    def batch(self):
        """Changes made inside are applied together when the block ends (nested blocks join the outer one)."""
        if self._batch is not None:
            yield self
            return
        self._batch = []
        try:
            yield self
        finally:
            batch, self._batch = self._batch, None
            if batch:
                applied = self._submit(tuple(operation for operation, _ in batch))
                for _, d in batch:
                    applied.addBoth(_fire, d)
                applied.addErrback(lambda _: None)      # every waiter has it

    def release(self) -> Deferred:
        """Stop listening: a transient object without clients goes."""
        self.application.forget_shared_object(self)
        return self._objects.release(self.application.name, self.name, self.id)

    def _change(self, operation: Operation) -> Deferred:
        if self._batch is not None:
            d = Deferred()
            self._batch.append((operation, d))
            return d
        return self._submit((operation,))

    def _submit(self, operations: Tuple[Operation, ...]) -> Deferred:
        d = self.ready()
        d.addCallback(lambda _: self._objects.apply(self.application.name, self.name, operations, origin=self.id))
        d.addCallback(self._applied)
        return d

    def _applied(self, update: SharedObjectUpdate) -> int:
        self.deliver(update)
        changes = update.changes()
        if changes:
            notify(self.application, None, self.name, changes)
        return update.version

    def deliver(self, update: SharedObjectUpdate) -> None:
        """An applied batch (someone else's, or ours): the mirror follows it."""
        if self._used is None:
            self._early.append(update)
            return
        for applied in update.applied:
            operation = applied.operation
            if isinstance(operation, SetSlot):
                self._data[operation.key] = operation.value
            elif isinstance(operation, DeleteSlot):
                self._data.pop(operation.key, None)
            elif isinstance(operation, ClearSlots):
                self._data.clear()
        self.version = update.version


def _fire(result, d: Deferred):
    if isinstance(result, Failure):
        d.errback(result)
    else:
        d.callback(result)
    return result


def notify(application, client, name: str, changes: Dict[str, Any]) -> None:
    """``on_shared_object_changed``; its failure is logged, never the change's."""
    d = maybeDeferred(application.on_shared_object_changed, client, name, changes)
    d.addErrback(log_failure(log, "on_shared_object_changed of %s", application.name))


# -- one session's shared objects -------------------------------------------------------------------

class _ClientListener:
    """One client listening to one object: each update it hears becomes one message to its client."""

    __slots__ = ("owner", "id", "name", "amf3", "may_write", "version", "synced", "_early")

    def __init__(self, owner: "SessionSharedObjects", name: str, amf3: bool, may_write: bool):
        self.owner, self.id, self.name = owner, owner.client.id, name
        self.amf3, self.may_write = amf3, may_write
        #: The version the client last heard of: what an answer without a newer one carries.
        self.version = 0
        #: False until the Use's answer went out; updates heard before wait in ``_early``.
        self.synced = False
        self._early: List[SharedObjectUpdate] = []

    def deliver(self, update: SharedObjectUpdate) -> None:
        if not self.synced:
            self._early.append(update)
            return
        self.version = max(self.version, update.version)
        if update.heard():
            self.owner.send_encoded(self.name, self.amf3, update.heard_payload)

    def start(self, version: int) -> None:
        """The Use's answer (the object at ``version``) went out: what happened since follows it."""
        self.synced = True
        early, self._early = self._early, []
        for update in early:
            if update.version > version or not any(a.changed for a in update.applied):
                self.deliver(update)


class _Answer:
    """What one incoming message makes the session answer its client: gathered, then sent as one message.

    Statuses go last: a client (Flash, server/shared_object_client.py) takes
    a NoWriteAccess as the refusal of every change still unconfirmed, so the
    Successes of the changes that were applied must come before it.
    """

    __slots__ = ("name", "persistent", "version", "events", "statuses", "listener")

    def __init__(self, name: str, persistent: bool, version: int):
        self.name, self.persistent, self.version = name, persistent, version
        self.events: List[Any] = []
        self.statuses: List[Status] = []
        self.listener: Optional[_ClientListener] = None   # a Use's listener, started once the answer is sent

    def status(self, code: str) -> None:
        status = Status(code, "error")
        if status not in self.statuses:
            self.statuses.append(status)

    def message(self) -> Optional[SharedObjectMessage]:
        events = tuple(self.events) + tuple(self.statuses)
        return SharedObjectMessage(self.name, self.version, self.persistent, events) if events else None


class SessionSharedObjects:
    """A connected session's shared objects: the messages of its client, in order per object.

    ``maxQueuedCommands`` bounds the messages waiting behind a hook that has
    not answered yet (a backend's ``@so.change``); past it the connection is
    closed, as for commands held during connect.
    """

    def __init__(self, session):
        self.session = session
        self.application = session.application
        self.client = session.client
        self.scope = self.application.name
        self._objects = self.application.hub.shared_objects
        self._listeners: Dict[str, _ClientListener] = {}
        self._tails: Dict[str, Deferred] = {}     # name -> fires when the last queued message for it is done
        self._queued = 0
        self.closed = False

    def handle(self, message: SharedObjectMessage, amf3: bool) -> None:
        """One shared object message of the client, processed after the earlier ones for the same object."""
        if self._queued >= self.session.max_queued_commands:
            log.warning("%s: more than %d shared object messages waiting for the application (maxQueuedCommands)",
                        self.session.peer.address, self.session.max_queued_commands)
            self.session.close("limit hit: maxQueuedCommands")
            return
        self._queued += 1
        name, previous, done = message.name, self._tails.get(message.name), Deferred()
        self._tails[name] = done

        def run(_):
            d = maybeDeferred(self._process, message, amf3)
            d.addErrback(log_failure(log, "shared object message for %s from %r", name, self.client))
            d.addBoth(finish)

        def finish(_):
            self._queued -= 1
            if self._tails.get(name) is done:
                del self._tails[name]
            done.callback(None)

        if previous is None:
            run(None)
        else:
            previous.addCallback(run)

    def _process(self, message: SharedObjectMessage, amf3: bool) -> Deferred:
        listener = self._listeners.get(message.name)
        answer = _Answer(message.name, message.persistent, listener.version if listener is not None else 0)
        name = message.name
        use = release = False
        operations: List[Operation] = []
        for event in message.events:
            if isinstance(event, Use):
                use = True
            elif isinstance(event, Release):
                release = True
            elif isinstance(event, RequestChange):
                operations.append(SetSlot(event.key, event.value) if event.value is not None
                                  else DeleteSlot(event.key))
            elif isinstance(event, RequestRemove):
                operations.append(DeleteSlot(event.key, removal=True))
            elif isinstance(event, SendMessage):
                operations.append(SendToListeners(event.handler, tuple(event.args)))
            elif isinstance(event, UnknownEvent):
                self.session.limit_log.hit("unknown shared object event",
                                           f"shared object event type {event.event_type} skipped "
                                           f"({len(event.data)} bytes)")
            else:
                self.session.limit_log.hit("unexpected shared object event",
                                           f"{type(event).__name__} from a client skipped: only a server sends it")
        d = succeed(None)
        if use:
            d.addCallback(lambda _: self._use(name, message.persistent, amf3, answer))
        if operations:
            d.addCallback(lambda _: self._change(name, tuple(operations), message.version, answer))
        if release:
            d.addCallback(lambda _: self._release(name))
        d.addCallback(lambda _: self._answer(answer, amf3))
        return d

    # -- use ---------------------------------------------------------------------------------------
    def _use(self, name: str, persistent: bool, amf3: bool, answer: _Answer) -> Deferred:
        if name in self._listeners:
            # Used again without a release: the client gets the whole object again.
            return self._objects.snapshot(self.scope, name).addCallback(self._synced, answer)
        d = maybeDeferred(self.application.on_shared_object_use, self.client, name, persistent)
        d.addErrback(self._hook_failed, "on_shared_object_use", Access.DENY_READ)
        d.addCallback(self._use_decided, name, persistent, amf3, answer)
        return d

    def _use_decided(self, access, name: str, persistent: bool, amf3: bool, answer: _Answer):
        if access is Access.DENY_READ or access is False or self.closed:
            answer.status(SharedObjectCode.NO_READ_ACCESS)
            self.session.limit_log.hit("refused shared object use", f"use of shared object {brief_name(name)} "
                                                                   f"refused by {self.application.name}")
            return None
        listener = self._listeners[name] = _ClientListener(self, name, amf3, access is not Access.DENY_WRITE)
        answer.listener = listener
        d = self._objects.use(self.scope, name, persistent, listener)
        d.addCallbacks(self._synced, self._use_refused, (answer,), None, (name, answer))
        return d

    def _synced(self, snapshot: Optional[SharedObjectSnapshot], answer: _Answer) -> None:
        if snapshot is None:
            return
        if self.closed and answer.listener is not None:
            # Gone while the use was under way (a persistent object loading): no listener is left behind.
            self._objects.release(self.scope, answer.name, self.client.id)
            return
        answer.version, answer.persistent = snapshot.version, snapshot.persistent
        answer.events.extend(initial_events(snapshot))

    def _use_refused(self, failure, name: str, answer: _Answer) -> None:
        failure.trap(SharedObjectRefused)
        del self._listeners[name]
        answer.listener = None
        self._refused(failure.value, answer)

    def _refused(self, refused: SharedObjectRefused, answer: _Answer) -> None:
        answer.status(refused.code)
        self.session.limit_log.hit(refused.code, f"shared object {brief_name(answer.name)}: {refused.reason}")

    # -- changes -----------------------------------------------------------------------------------
    def _change(self, name: str, operations: Tuple[Operation, ...], seen: int, answer: _Answer):
        listener = self._listeners.get(name)
        if listener is None or not listener.may_write:
            self._refused(SharedObjectRefused(SharedObjectCode.NO_WRITE_ACCESS,
                                              "not in use by this client" if listener is None
                                              else "write access denied by the application"), answer)
            return None
        changes = {op.key: (op.value if isinstance(op, SetSlot) else None)
                   for op in operations if isinstance(op, (SetSlot, DeleteSlot))}
        if not changes:
            return self._apply(name, operations, seen, answer)
        d = maybeDeferred(self.application.on_shared_object_change, self.client, name, dict(changes))
        d.addErrback(self._hook_failed, "on_shared_object_change", False)
        d.addCallback(self._change_decided, name, operations, set(changes), seen, answer)
        return d

    def _change_decided(self, verdict, name: str, operations, keys: set, seen: int, answer: _Answer):
        if verdict is True or verdict is None:
            refused = set()
        elif verdict is False:
            refused = keys
        elif isinstance(verdict, str):
            refused = {verdict} & keys
        else:
            refused = set(verdict) & keys
        if refused:
            answer.status(SharedObjectCode.NO_WRITE_ACCESS)
            self.session.limit_log.hit("refused shared object change", "change of {} in shared object {} refused "
                                       "by {}".format(", ".join(sorted(brief_name(k) for k in refused)[:5]),
                                                      brief_name(name), self.application.name))
        allowed = tuple(op for op in operations if not isinstance(op, (SetSlot, DeleteSlot)) or op.key not in refused)
        if not allowed or self.closed:
            return None
        return self._apply(name, allowed, seen, answer)

    def _apply(self, name: str, operations, seen: int, answer: _Answer) -> Deferred:
        d = self._objects.apply(self.scope, name, operations, origin=self.client.id)
        d.addCallbacks(self._applied, self._apply_refused, (seen, answer), None, (answer,))
        return d

    def _applied(self, update: SharedObjectUpdate, seen: int, answer: _Answer) -> None:
        answer.version, answer.persistent = update.version, update.persistent
        before = update.version - (1 if any(a.changed for a in update.applied) else 0)
        answer.events.extend(events_for(update, requester=True, stale=seen < before))
        changes = update.changes()
        if changes:
            notify(self.application, self.client, update.name, changes)

    def _apply_refused(self, failure, answer: _Answer) -> None:
        failure.trap(SharedObjectRefused)
        self._refused(failure.value, answer)

    # -- release and close -------------------------------------------------------------------------
    def _release(self, name: str) -> Optional[Deferred]:
        if self._listeners.pop(name, None) is None:
            return None
        return self._objects.release(self.scope, name, self.client.id)

    def close(self) -> None:
        """The connection is gone: every object it used loses it as a listener."""
        self.closed = True
        for name in list(self._listeners):
            self._release(name).addErrback(log_failure(log, "releasing %s for %r", name, self.client))

    # -- answers -----------------------------------------------------------------------------------
    def _answer(self, answer: _Answer, amf3: bool) -> None:
        message = answer.message()
        if message is not None:
            self.send(message, amf3)
        listener = self._listeners.get(answer.name)
        if listener is not None:
            listener.version = max(listener.version, answer.version)
        if answer.listener is not None and self._listeners.get(answer.name) is answer.listener:
            answer.listener.start(answer.version)

    def send(self, message: SharedObjectMessage, amf3: bool) -> None:
        self.send_encoded(message.name, amf3, lambda amf3: encode_shared_object(message, amf3))

    def send_encoded(self, name: str, amf3: bool, encode: Callable[[bool], bytes]) -> None:
        """A message on object ``name``, its body made by ``encode(amf3)`` (an update's is made once for all)."""
        if not self.closed:
            self.session.send_shared_object(name, amf3, encode)

    def _hook_failed(self, failure, hook: str, refusal):
        log.error("%s of %s raised:\n%s", hook, self.application.name, failure.getTraceback())
        return refusal
