"""RedisSharedObjects: remote shared objects of a cluster, Redis the authority (docs/ARCHITECTURE.md, "Shared objects").

The same interface as ``LocalSharedObjects`` (app/shared_objects.py,
tests/app/test_shared_objects_contract.py); what differs is where the state is:

- **Redis holds each object** (layout.py ``shared_object*``): its slots (the
  base64 of their AMF0 encodings), their sizes, ``version``, ``seq`` and the
  listeners of every node.  Each decision is one Lua script (scripts.py
  ``SO_*``): a use checks the limits cluster-wide and registers the listener;
  a batch is applied all or nothing, bumps ``version`` when a slot changed and
  ``seq`` always, and is PUBLISHed on the object's channel in the same script,
  so the order of the channel is the order of the changes.
- **Each node serves its own listeners** from a mirror of every object one of
  them uses: subscribed to the object's channel before it read the object,
  it delivers each batch, stamped with the global version, in ``seq`` order.
  A node's own batch comes back twice (the script's answer on the command
  connection, the PUBLISH on the subscriber); the two are one entry of the
  mirror's queue, delivered once, when the answer is there, so that the
  requester's answer never overtakes an earlier batch of another node.
- **A gap is a re-read.**  Pub/sub is at most once (a reconnect, a slow
  subscriber cut off): when the channel brings ``seq`` s and the mirror is
  still before s - 1, a batch was lost; the node reads the whole object
  again and delivers the difference to its listeners as one update.
- **After Redis is lost and back** (restarted, or the link cut), the node
  forgets its old listeners in Redis, registers the ones it has now, and
  re-reads; an object Redis no longer has is restored from the first node's
  mirror that registers it (a restarted Redis without persistence comes back
  empty), and the others re-read that.

Persistence: a persistent object lives in Redis without expiry (kept when its
last listener goes; a transient one is deleted with it, cluster-wide).  Each
node also writes the persistent objects its listeners use to its own
``sharedObjectDir`` after every version it delivers (the store's coalesced,
atomic writes); that file seeds Redis when it lacks the object at its first
use (the whole cluster and a Redis without persistence restarted).  The
limits (``maxSharedObjectBytes``, ``maxSharedObjects``,
``maxSharedObjectListeners``) are checked by the scripts, so they hold for
the whole cluster.

While Redis is unreachable, uses and changes are refused at once
(ObjectCreationFailed, NoWriteAccess); the node's listeners keep their copies
and are brought up to date when Redis is back.

The node's own connections to Redis (``RedisLink``, link.py) are opened at
the first call that needs them and closed by ``stop()`` (also at reactor
shutdown): the hub's are subscribed to envelopes, these to shared object
batches, which are JSON made by the scripts, not envelopes.
"""
import base64
import json
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail, gatherResults, inlineCallbacks, succeed
from twisted.python.failure import Failure
from txredisapi import ConnectionError as RedisConnectionError

from ..app.logs import RateLimitedLog
from ..app.shared_objects import (Applied, ClearSlots, DeleteSlot, SendToListeners, SetSlot, SharedObjectCode,
                                  SharedObjectLimits, SharedObjectRefused, SharedObjects, SharedObjectSnapshot,
                                  SharedObjectUpdate, slot_size)
from ..rtmp.amf import decode_values, encode_values
from ..rtmp.budget import ValueBudget, brief, brief_name
from . import scripts
from .layout import Layout, escape
from .link import RedisAddress, RedisLink

log = logging.getLogger(__name__)

#: Defaults of the constructor's limits.
CONNECT_TIMEOUT = 10.0
REPLY_TIMEOUT = 10.0
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class _Unavailable(Exception):
    """Redis cannot be reached now (turned into a refusal with the code the caller's client understands)."""


def encode_slot(value: Any) -> str:
    """A slot's value as Redis holds it (and as the scripts compare it): base64 of its AMF0 encoding."""
    return base64.b64encode(encode_values([value], amf3=False)).decode("ascii")


def _decode_slot(text, budget: ValueBudget) -> Any:
    if isinstance(text, str):
        text = text.encode("ascii")
    values = decode_values(base64.b64decode(text, validate=True), amf3=False, budget=budget)
    if len(values) != 1:
        raise ValueError(f"{len(values)} values in one slot")
    return values[0]


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def operation_arguments(operations) -> List[str]:
    """SO_APPLY's (kind, key, value, size) per operation; ``SharedObjectRefused`` for a slot that cannot be encoded."""
    argv: List[str] = []
    for operation in operations:
        if isinstance(operation, SetSlot):
            try:
                argv += ["set", operation.key, encode_slot(operation.value),
                         str(slot_size(operation.key, operation.value))]
            except Exception as exc:
                raise SharedObjectRefused(SharedObjectCode.NO_WRITE_ACCESS,
                                          f"slot {brief_name(operation.key)!r} cannot be encoded: "
                                          f"{brief_name(str(exc), 200)}") from None
        elif isinstance(operation, DeleteSlot):
            argv += ["remove" if operation.removal else "delete", operation.key, "", "0"]
        elif isinstance(operation, ClearSlots):
            argv += ["clear", "", "", "0"]
        else:
            try:
                encoded = base64.b64encode(encode_values(list(operation.args), amf3=False)).decode("ascii")
            except Exception as exc:
                raise SharedObjectRefused(SharedObjectCode.NO_WRITE_ACCESS,
                                          f"the arguments of {brief_name(operation.handler)!r} cannot be encoded: "
                                          f"{brief_name(str(exc), 200)}") from None
            argv += ["send", operation.handler, encoded, "0"]
    return argv


@dataclass(frozen=True)
class _Batch:
    """One applied batch as a script published it: its place in the object's order and who applied it."""

    seq: int
    node: str
    #: The node the origin listens on ("": the origin's id is unique in the cluster, skipped wherever it is).
    origin_node: str
    update: SharedObjectUpdate
    #: What it did to the slots, in order: (key, encoded, value) set, (key, None, None) deleted, (None, None, None)
    #: cleared.
    steps: Tuple[Tuple[Optional[str], Optional[str], Any], ...]


def _parse_batch(name: str, payload, budget: ValueBudget) -> _Batch:
    """The batch in a script's JSON; raises ValueError (or a decode error) when it is not one."""
    message = json.loads(payload)
    if not isinstance(message, dict):
        raise ValueError("not an object")
    ops = message["ops"] if isinstance(message["ops"], list) else []   # Lua's cjson writes an empty list as {}
    applied, steps = [], []
    for op in ops:
        kind, changed = op[0], bool(op[1])
        if kind == "set":
            value = _decode_slot(op[3], budget)
            applied.append(Applied(SetSlot(op[2], value), changed))
            if changed:
                steps.append((op[2], op[3], value))
        elif kind in ("delete", "remove"):
            applied.append(Applied(DeleteSlot(op[2], removal=kind == "remove"), changed))
            if changed:
                steps.append((op[2], None, None))
        elif kind == "clear":
            held = tuple(op[2]) if isinstance(op[2], list) else ()
            applied.append(Applied(ClearSlots(), changed, held))
            if changed:
                steps.append((None, None, None))
        elif kind == "send":
            args = decode_values(base64.b64decode(op[3], validate=True), amf3=False, budget=budget) if op[3] else []
            applied.append(Applied(SendToListeners(op[2], tuple(args)), False))
        else:
            raise ValueError(f"unknown operation {brief(kind)}")
    update = SharedObjectUpdate(name, int(message["version"]), message["persistent"] == "1", tuple(applied),
                                message["origin"] or None)
    return _Batch(int(message["seq"]), str(message["node"]), str(message["origin_node"]), update, tuple(steps))


class _Keys:
    """The Redis keys and channel of one object."""

    __slots__ = ("data", "meta", "sizes", "listeners", "used", "node", "channel")

    def __init__(self, layout: Layout, scope: str, name: str, node: str):
        self.data = layout.shared_object(scope, name)
        self.meta = layout.shared_object_meta(scope, name)
        self.sizes = layout.shared_object_sizes(scope, name)
        self.listeners = layout.shared_object_listeners(scope, name)
        self.used = layout.shared_objects_used(scope)
        self.node = layout.node_shared_objects(node)
        self.channel = layout.shared_object_channel(scope, name)

    def all(self) -> List[str]:
        return [self.data, self.meta, self.sizes, self.listeners, self.used, self.node]


class _Entry:
    """A batch in a mirror's queue: from the channel (``heard``), from this node's answer (``waiter``), or both."""

    __slots__ = ("batch", "waiter", "heard")

    def __init__(self, batch: _Batch):
        self.batch, self.waiter, self.heard = batch, None, False


class _Mirror:
    """One object some listener of this node uses: its state as last delivered, and what waits to be."""

    def __init__(self, scope: str, name: str, keys: _Keys):
        self.scope, self.name, self.keys = scope, name, keys
        self.persistent = False
        self.version = 0
        #: The seq of the last batch delivered (or read): batches up to it are in ``data``.
        self.seq = 0
        self.data: Dict[str, Any] = {}
        self.encoded: Dict[str, str] = {}
        self.listeners: Dict[str, Any] = {}
        #: seq -> _Entry, waiting for its turn (or for this node's answer).
        self.queue: Dict[int, _Entry] = {}
        #: False while the first use or a re-read is under way: the channel's batches wait in the queue.
        self.synced = False
        #: Fires once the first use is answered (later uses of this node wait for it).
        self.joined: Optional[Deferred] = Deferred()
        #: (seq, Deferred) of ``flush`` calls, fired once ``seq`` is delivered.
        self.flushing: List[Tuple[int, Deferred]] = []

    def reached(self) -> None:
        """Fire the ``flush`` waiters whose seq is delivered (all of them once the mirror is gone: ``None``)."""
        waiting, self.flushing = self.flushing, []
        for seq, d in waiting:
            if seq is None or (self.synced and seq <= self.seq):
                d.callback(None)
            else:
                self.flushing.append((seq, d))

    def snapshot(self) -> SharedObjectSnapshot:
        return SharedObjectSnapshot(self.name, self.version, self.persistent, dict(self.data))

    def take(self, persistent: bool, version: int, seq: int, flat: List[Any], budget: ValueBudget) -> dict:
        """Adopt a state read from Redis; returns the slots as they were (for the difference)."""
        before = self.encoded
        self.persistent, self.version, self.seq = persistent, version, seq
        self.encoded = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
        self.data = {key: _decode_slot(value, budget) for key, value in self.encoded.items()}
        return before


class RedisSharedObjects(SharedObjects):
    """The shared objects of one node of a cluster on Redis (module docstring).

    ``url`` and ``node`` as for ``RedisHub``; ``layout`` its key names;
    ``reply_timeout`` how long a script may take; ``connect_timeout`` how long
    the first call waits for Redis; ``max_message_bytes`` and ``budget`` what
    one batch from the channel may cost (one over is dropped, logged, and the
    object re-read).
    """

    def __init__(self, url: str, node: str, *, layout: Layout = Layout(), reactor=None,
                 reply_timeout: float = REPLY_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 max_message_bytes: int = MAX_MESSAGE_BYTES, budget: ValueBudget = ValueBudget()):
        if reactor is None:
            from twisted.internet import reactor
        self.node = node
        self.layout = layout
        self.connect_timeout = connect_timeout
        self.max_message_bytes = max_message_bytes
        self.budget = budget
        self._reactor = reactor
        self._address = RedisAddress.parse(url)
        self._link = RedisLink(self._address, on_up=self._link_up, on_down=self._link_down,
                               on_message=self._received, reply_timeout=reply_timeout, reactor=reactor)
        self._scopes: Dict[str, Tuple[SharedObjectLimits, Any]] = {}
        self._mirrors: Dict[Tuple[str, str], _Mirror] = {}
        self._channels: Dict[bytes, _Mirror] = {}
        #: (scope, name) -> this node's batches sent to Redis and not answered yet.
        self._applying: Dict[Tuple[str, str], int] = {}
        self._garbage = RateLimitedLog(log, clock=reactor, prefix=f"cluster node {node}: ")
        #: None until the first call; then the Deferreds of callers waiting for the first connection.
        self._starting: Optional[List[Deferred]] = None
        self._deadline = None
        self._ready = False             # registered with Redis at least once (the first link up is done)
        self._shutdown_trigger = None

    # -- life -------------------------------------------------------------------------------------
    def _connected(self) -> Deferred:
        """Fires once the link is up and this node is registered; fails at once while it is down."""
        if self._ready:
            return succeed(None) if self._link.up else fail(_Unavailable(f"Redis at {self._address.shown} is "
                                                                        "unreachable"))
        if self._starting is not None and self._deadline is None:
            return fail(_Unavailable(f"Redis at {self._address.shown} is unreachable"))    # gave up waiting
        d = Deferred()
        if self._starting is None:
            self._starting = []
            self._link.start(self.connect_timeout)
            self._shutdown_trigger = self._reactor.addSystemEventTrigger("before", "shutdown", self._shutdown)
            self._deadline = self._reactor.callLater(self.connect_timeout, self._not_started)
        self._starting.append(d)
        return d

    def _not_started(self):
        self._deadline = None
        waiting, self._starting = self._starting, []
        for d in waiting:
            d.errback(_Unavailable(f"Redis at {self._address.shown}: no connection within "
                                   f"{self.connect_timeout:g} s"))

    def _shutdown(self) -> Deferred:
        self._shutdown_trigger = None
        return self.stop()

    @inlineCallbacks
    def stop(self):
        """Take this node's listeners out of Redis (a transient object only they used goes) and close the link."""
        if self._shutdown_trigger is not None:
            self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        if self._starting is None:
            return              # never started
        if self._link.up:
            try:
                yield self._forget(self.node)
            except Exception as error:
                log.warning("cluster node %s: could not release its shared object listeners: %s", self.node, error)
        self._ready = False
        for mirror in self._mirrors.values():
            self._answer_queued(mirror)             # applied, behind a gap nothing will fill now
        yield self._link.stop()

    def forget_node(self, node: str) -> Deferred:
        """Take the listeners of ``node`` (gone without ``stop()``: killed, cut off) out of Redis; fires with how
        many there were.  For whoever finds a node silent (RedisHub's heartbeat)."""
        return self._connected().addCallback(lambda _: self._forget(node))

    def _forget(self, node: str) -> Deferred:
        d = self._eval(scripts.SO_FORGET_NODE, [self.layout.node_shared_objects(node)], [node])
        return d.addCallback(int)

    def _link_up(self):
        self._register().addErrback(lambda failure: log.warning(
            "cluster node %s: registering shared object listeners failed: %s", self.node,
            failure.getErrorMessage()))

    @inlineCallbacks
    def _register(self):
        """Forget what Redis holds of this node's listeners, then register and re-read every mirror."""
        yield self._forget(self.node)
        if not self._ready:
            self._ready = True
            if self._deadline is not None and self._deadline.active():
                self._deadline.cancel()
            self._deadline = None
            waiting, self._starting = self._starting, []
            for d in waiting:
                d.callback(None)
            return
        mirrors = [mirror for mirror in self._mirrors.values() if mirror.listeners]
        yield gatherResults([self._reregister(mirror) for mirror in mirrors], consumeErrors=True)
        log.warning("cluster node %s: Redis at %s is back; re-registered the listeners of %d shared objects",
                    self.node, self._address.shown, len(mirrors))

    @inlineCallbacks
    def _reregister(self, mirror: _Mirror):
        mirror.synced = False
        try:
            yield self._link.subscriber.subscribe(mirror.keys.channel)
            restore = [mirror.version, mirror.seq, list(mirror.encoded.items()),
                       {key: slot_size(key, value) for key, value in mirror.data.items()}]
            # its listeners were admitted before: no limit keeps them out now
            unlimited = SharedObjectLimits(max_objects=2 ** 31, max_listeners=2 ** 31)
            answer = yield self._use_script(mirror, list(mirror.listeners), unlimited, restore)
            if _text(answer[0]) != "ok":
                raise ValueError(f"Redis refused it ({_text(answer[0])})")
            self._resync(mirror, answer[1:])
        except Exception as error:
            log.warning("cluster node %s: shared object %s could not be registered again: %s; its listeners "
                        "here keep their copies", self.node, brief_name(mirror.name), error)
            self._resync(mirror, None)

    def _link_down(self):
        if not self._ready:
            return
        log.warning("cluster node %s: Redis at %s is lost; shared object uses and changes are refused until it "
                    "is back", self.node, self._address.shown)
        for mirror in self._mirrors.values():
            # What this node applied is delivered (its answer came); the rest is re-read when Redis is back.
            for seq in sorted(mirror.queue):
                entry = mirror.queue.pop(seq)
                if entry.waiter is not None:
                    self._deliver(mirror, entry)

    # -- configuration ------------------------------------------------------------------------------
    def configure(self, scope: str, limits: SharedObjectLimits, store) -> None:
        self._scopes[scope] = (limits, store)

    def _settings(self, scope: str) -> Tuple[SharedObjectLimits, Any]:
        return self._scopes.get(scope, (SharedObjectLimits(), None))

    # -- Redis ------------------------------------------------------------------------------------
    def _eval(self, script: str, keys: List[str], argv: List[Any]) -> Deferred:
        commands = self._link.commands
        if commands is None:
            return fail(_Unavailable(f"Redis at {self._address.shown} is unreachable"))
        d = commands.eval(script, keys, [str(word) for word in argv])
        return d.addErrback(self._unavailable)

    def _unavailable(self, failure):
        if failure.check(RedisConnectionError):       # includes txredisapi's reply timeout
            raise _Unavailable(f"Redis at {self._address.shown} did not answer: {failure.getErrorMessage()}")
        return failure

    def _use_script(self, mirror: _Mirror, listener_ids: List[str], limits: SharedObjectLimits,
                    restore: Optional[list]) -> Deferred:
        """SO_USE; ``restore``: [version, seq, [(key, encoded)], {key: size}] to write if Redis lacks the object."""
        argv = ["1" if mirror.persistent else "0", limits.max_objects, limits.max_listeners, mirror.name, self.node]
        argv += ["", "0"] if restore is None else [restore[0], restore[1]]
        argv += [len(listener_ids)] + [self._field(listener_id) for listener_id in listener_ids]
        if restore is not None:
            for key, encoded in restore[2]:
                argv += [key, encoded, restore[3][key]]
        return self._eval(scripts.SO_USE, mirror.keys.all(), argv)

    def _field(self, listener_id: str) -> str:
        """A listener in Redis: ids are unique on a node only (each node's application handle has the same one)."""
        return f"{escape(self.node)}:{escape(listener_id)}"

    def _refusal(self, failure, code: str, doing: str):
        """Whatever else went wrong, as the refusal a client understands (never a stack trace to it)."""
        if failure.check(SharedObjectRefused):
            return failure
        if failure.check(_Unavailable):
            raise SharedObjectRefused(code, str(failure.value))
        log.error("cluster node %s: %s failed:\n%s", self.node, doing, failure.getTraceback())
        raise SharedObjectRefused(code, f"{doing} failed on this node")

    # -- use ----------------------------------------------------------------------------------------
    def use(self, scope: str, name: str, persistent: bool, listener) -> Deferred:
        limits, store = self._settings(scope)
        d = self._connected()
        if persistent and (store is None or store.path(name) is None):
            reason = (f"{scope} has no sharedObjectDir: persistent objects are refused" if store is None
                      else f"{brief_name(name)!r} cannot be a persistent object's file name")
            d.addCallback(lambda _: self._refuse_persistent(scope, name, reason))
        else:
            d.addCallback(lambda _: self._use(scope, name, persistent, listener, limits, store))
        return d.addErrback(self._refusal, SharedObjectCode.OBJECT_CREATION_FAILED,
                            f"using shared object {brief_name(name)}")

    def _refuse_persistent(self, scope: str, name: str, reason: str) -> Deferred:
        """A persistent use this node cannot serve: BadPersistence if a transient one exists, as locally."""
        def refuse(persistent):
            if persistent == "0":
                raise _bad_persistence(name, False)
            raise SharedObjectRefused(SharedObjectCode.OBJECT_CREATION_FAILED, reason)
        return self._link.commands.hget(self.layout.shared_object_meta(scope, name), "persistent").addCallback(refuse)

    def _use(self, scope: str, name: str, persistent: bool, listener, limits, store) -> Deferred:
        mirror = self._mirrors.get((scope, name))
        if mirror is None:
            mirror = self._mirrors[(scope, name)] = _Mirror(scope, name, _Keys(self.layout, scope, name, self.node))
            self._channels[mirror.keys.channel.encode()] = mirror
            mirror.persistent = persistent
            return self._first_use(mirror, listener, limits, store)
        if mirror.joined is not None:
            return _after(mirror.joined).addCallback(
                lambda _: self._use(scope, name, persistent, listener, limits, store))
        if mirror.persistent != persistent:
            return fail(_bad_persistence(mirror.name, mirror.persistent))
        answer = self._use_script(mirror, [listener.id], limits, None)
        return answer.addCallback(self._used, mirror, listener, limits)

    @inlineCallbacks
    def _first_use(self, mirror: _Mirror, listener, limits: SharedObjectLimits, store):
        """Subscribe, then read (so that no batch falls between the two), loading the file if Redis lacks it."""
        joined = mirror.joined
        try:
            yield self._link.subscriber.subscribe(mirror.keys.channel)
            answer = yield self._use_script(mirror, [listener.id], limits, None)
            if _text(answer[0]) == "load":
                stored = yield store.load(mirror.name)
                restore = [0, 0, [], {}]
                if stored is not None:
                    restore = [stored.version, 0, [(key, encode_slot(value)) for key, value in stored.data.items()],
                               {key: slot_size(key, value) for key, value in stored.data.items()}]
                answer = yield self._use_script(mirror, [listener.id], limits, restore)
            snapshot = self._used(answer, mirror, listener, limits, first=True)
        except Exception:
            self._forget_mirror(mirror)
            raise
        finally:
            mirror.joined = None
            joined.callback(None)
        return snapshot

    def _used(self, answer, mirror: _Mirror, listener, limits: SharedObjectLimits, first: bool = False):
        status = _text(answer[0])
        if status != "ok":
            if not mirror.listeners:
                self._forget_mirror(mirror)
            if status == "bad-persistence":
                raise _bad_persistence(mirror.name, not mirror.persistent)
            if status == "objects":
                raise SharedObjectRefused(SharedObjectCode.OBJECT_CREATION_FAILED,
                                          f"maxSharedObjects ({limits.max_objects}) reached in {mirror.scope}")
            if status == "listeners":
                raise SharedObjectRefused(SharedObjectCode.NO_READ_ACCESS,
                                          f"maxSharedObjectListeners ({limits.max_listeners}) reached by "
                                          f"{brief_name(mirror.name)!r}")
            raise SharedObjectRefused(SharedObjectCode.OBJECT_CREATION_FAILED,
                                      f"{brief_name(mirror.name)!r}: Redis answered {brief(status)}")
        # Listening before the queue moves on: what follows the state read reaches it too.
        mirror.listeners[listener.id] = listener
        if first:
            self._resync(mirror, answer[1:])
        return mirror.snapshot()

    def _forget_mirror(self, mirror: _Mirror) -> None:
        if self._mirrors.get((mirror.scope, mirror.name)) is not mirror:
            return
        del self._mirrors[(mirror.scope, mirror.name)]
        del self._channels[mirror.keys.channel.encode()]
        self._answer_queued(mirror)                 # nobody here to tell: this node's answers go out at once
        mirror.flushing = [(None, d) for _, d in mirror.flushing]
        mirror.reached()
        subscriber = self._link.subscriber
        if subscriber is not None:
            subscriber.unsubscribe(mirror.keys.channel).addErrback(lambda failure: log.warning(
                "cluster node %s: unsubscribing from %s failed: %s", self.node, brief_name(mirror.name),
                failure.getErrorMessage()))

    # -- release, snapshot, flushed -------------------------------------------------------------------
    def release(self, scope: str, name: str, listener_id: str) -> Deferred:
        mirror = self._mirrors.get((scope, name))
        if mirror is None:
            return succeed(False)
        if mirror.joined is not None:
            return _after(mirror.joined).addCallback(lambda _: self.release(scope, name, listener_id))
        if mirror.listeners.pop(listener_id, None) is None:
            return succeed(False)
        others = bool(mirror.listeners)
        if not others:
            self._forget_mirror(mirror)
        d = self._eval(scripts.SO_RELEASE, mirror.keys.all(), [self._field(listener_id), name,
                                                                  "1" if others else "0"])

        def unreachable(failure):
            failure.trap(_Unavailable)      # registered again (without it) when Redis is back
            return False
        return d.addCallbacks(lambda gone: int(gone) == 1, unreachable)

    def snapshot(self, scope: str, name: str) -> Deferred:
        mirror = self._mirrors.get((scope, name))
        if mirror is not None and mirror.joined is None and mirror.listeners:
            return succeed(mirror.snapshot())       # in the order this node's listeners hear it
        keys = _Keys(self.layout, scope, name, self.node)
        d = self._connected().addCallback(lambda _: self._eval(scripts.SO_SNAPSHOT,
                                                               [keys.data, keys.meta, keys.listeners], []))

        def read(answer):
            if not answer:
                return None
            flat = answer[3:]
            data = {_text(flat[i]): _decode_slot(flat[i + 1], self.budget) for i in range(0, len(flat), 2)}
            return SharedObjectSnapshot(name, int(answer[1]), _text(answer[0]) == "1", data)
        return d.addCallback(read).addErrback(self._refusal, SharedObjectCode.NO_READ_ACCESS,
                                              f"reading shared object {brief_name(name)}")

    def flushed(self, scope: str) -> Deferred:
        store = self._settings(scope)[1]
        return store.flushed() if store is not None else succeed(None)

    def flush(self) -> Deferred:
        """Fires once every batch Redis had applied, when called, to an object this node's listeners use has
        been delivered to them (tests wait on it as on ``RedisHub.flush``; batches may cross nodes later)."""
        if self._link.commands is None:
            return fail(_Unavailable(f"Redis at {self._address.shown} is unreachable"))
        waits = []
        for mirror in list(self._mirrors.values()):
            d = Deferred()
            waits.append(d)
            self._link.commands.hget(mirror.keys.meta, "seq").addCallbacks(
                lambda seq, mirror=mirror, d=d: (mirror.flushing.append((int(seq or 0), d)), mirror.reached()),
                d.errback)
        return gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

    # -- apply ----------------------------------------------------------------------------------------
    def apply(self, scope: str, name: str, operations, origin: Optional[str] = None) -> Deferred:
        limits = self._settings(scope)[0]
        try:
            argv = operation_arguments(operations)
        except SharedObjectRefused as refused:
            return fail(refused)
        keys = _Keys(self.layout, scope, name, self.node)
        where = (scope, name)
        # What the caller gets. The batch's delivery fires it (``_deliver``), so that what the caller chains
        # on it (the requester's Success) runs before the batches after this one are delivered: returned
        # from the EVAL's callback instead, it would go on only once that callback had returned, after
        # every later batch already queued (a read from Redis holds many) had been delivered.
        applied = Deferred()
        applied.addErrback(self._refusal, SharedObjectCode.NO_WRITE_ACCESS,
                           f"changing shared object {brief_name(name)}")

        def send(_):
            self._applying[where] = self._applying.get(where, 0) + 1
            mirror = self._mirrors.get(where)
            origin_node = self.node if mirror is not None and origin in mirror.listeners else ""
            d = self._eval(scripts.SO_APPLY, keys.all()[:4],
                           [limits.max_bytes, origin or "", self.node, keys.channel, origin_node] + argv)
            return d.addBoth(answered)

        def answered(answer):
            left = self._applying[where] - 1
            if left:
                self._applying[where] = left
            else:
                del self._applying[where]
            try:
                return self._applied(answer, scope, name, limits, applied)     # raises the refusal, or the failure
            finally:
                mirror = self._mirrors.get(where)
                if mirror is not None:
                    self._drain(mirror)     # a batch of this node's that the channel brought no longer waits
        d = self._connected().addCallback(send)
        d.addErrback(self._fail_unless_answered, applied, name)
        return applied

    def _fail_unless_answered(self, failure: Failure, applied: Deferred, name: str) -> None:
        """``failure`` to the caller of ``apply``, which waits for it; one after its answer went is logged."""
        if applied.called:
            log.error("cluster node %s: after a change of shared object %s was answered:\n%s", self.node,
                      brief_name(name), failure.getTraceback())
        else:
            applied.errback(failure)

    def _applied(self, answer, scope: str, name: str, limits: SharedObjectLimits, applied: Deferred):
        """``answer`` to ``apply`` as its batch: ``applied`` fired now (no listener here) or at its delivery."""
        if isinstance(answer, Failure):
            return answer
        status = _text(answer[0])
        if status == "absent":
            raise SharedObjectRefused(SharedObjectCode.NO_WRITE_ACCESS, f"{brief_name(name)!r} is not in use")
        if status == "too-big":
            raise SharedObjectRefused(SharedObjectCode.NO_WRITE_ACCESS,
                                      f"maxSharedObjectBytes ({limits.max_bytes}) would be passed by "
                                      f"{brief_name(name)!r} ({_text(answer[1])} bytes)")
        batch = _parse_batch(name, answer[1], self.budget)
        mirror = self._mirrors.get((scope, name))
        if mirror is None:
            applied.callback(batch.update)          # no listener here: nobody on this node to tell
        else:
            self._arrived(mirror, batch, waiter=applied)
        return None

    # -- batches, from the channel and from this node's answers -----------------------------------------
    def _received(self, channel: bytes, payload: bytes) -> None:
        mirror = self._channels.get(channel)
        if mirror is None:
            return              # unsubscribed meanwhile
        if len(payload) > self.max_message_bytes:
            self._garbage.hit("shared object batch too large",
                              f"dropped a batch of {brief_name(mirror.name)} of {len(payload)} bytes (over "
                              f"{self.max_message_bytes}): re-reading the object")
            self._reread(mirror)
            return
        try:
            batch = _parse_batch(mirror.name, payload, self.budget)
        except Exception as error:
            self._garbage.hit("bad shared object batch", f"dropped a batch of {brief_name(mirror.name)}: "
                              f"{brief_name(str(error), 200)}: re-reading the object")
            self._reread(mirror)
            return
        self._arrived(mirror, batch, heard=True)

    def _arrived(self, mirror: _Mirror, batch: _Batch, waiter: Optional[Deferred] = None, heard: bool = False):
        """One batch: queued, then delivered in seq order; a seq the channel skipped makes a re-read."""
        if mirror.synced and batch.seq <= mirror.seq:
            if waiter is not None:
                waiter.callback(batch.update)       # already in the state this node read
            return
        entry = mirror.queue.get(batch.seq)
        if entry is None:
            entry = mirror.queue[batch.seq] = _Entry(batch)
        entry.heard = entry.heard or heard
        if waiter is not None:
            entry.waiter = waiter
        self._drain(mirror)

    def _drain(self, mirror: _Mirror) -> None:
        while mirror.synced:
            entry = mirror.queue.get(mirror.seq + 1)
            if entry is None:
                break
            if entry.waiter is None and entry.batch.node == self.node and (mirror.scope, mirror.name) in self._applying:
                return          # this node's own batch: delivered with its answer, which is on its way
            del mirror.queue[mirror.seq + 1]
            self._deliver(mirror, entry)
        if mirror.synced and any(entry.heard for entry in mirror.queue.values()):
            # The channel is in order and the next seq is not here: it was lost.
            self._reread(mirror)

    def _deliver(self, mirror: _Mirror, entry: _Entry) -> None:
        batch = entry.batch
        for key, encoded, value in batch.steps:
            if key is None:
                mirror.data.clear()
                mirror.encoded.clear()
            elif encoded is None:
                mirror.data.pop(key, None)
                mirror.encoded.pop(key, None)
            else:
                mirror.encoded[key], mirror.data[key] = encoded, value
        mirror.seq = max(mirror.seq, batch.seq)
        mirror.version = batch.update.version
        self._tell(mirror, batch.update, batch.origin_node)
        if batch.steps:
            self._save(mirror)
        if entry.waiter is not None:
            entry.waiter.callback(batch.update)
        mirror.reached()

    def _tell(self, mirror: _Mirror, update: SharedObjectUpdate, origin_node: str = "") -> None:
        """``update`` to this node's listeners but its origin (an application handle's id is the same on every
        node: it is the origin only on the node it applied through)."""
        origin = update.origin if origin_node in ("", self.node) else None
        for listener_id, listener in list(mirror.listeners.items()):
            if origin is None or listener_id != origin:
                try:
                    listener.deliver(update)
                except Exception:
                    log.exception("delivering a change of %s to %s", brief_name(mirror.name), listener_id)

    def _save(self, mirror: _Mirror) -> None:
        store = self._settings(mirror.scope)[1]
        if mirror.persistent and store is not None:
            store.save(mirror.name, mirror.version, mirror.data).addErrback(lambda _: None)   # logged by the store

    # -- re-reading -------------------------------------------------------------------------------------
    def _reread(self, mirror: _Mirror) -> None:
        if not mirror.synced:
            return              # a read is under way already
        mirror.synced = False
        d = self._eval(scripts.SO_SNAPSHOT, [mirror.keys.data, mirror.keys.meta, mirror.keys.listeners], [])

        def failed(failure):
            log.warning("cluster node %s: re-reading shared object %s failed: %s", self.node,
                        brief_name(mirror.name), failure.getErrorMessage())
            self._resync(mirror, None)
        d.addCallbacks(lambda answer: self._resync(mirror, answer or None), failed)

    def _resync(self, mirror: _Mirror, state: Optional[list]) -> None:
        """Adopt ``state`` ([persistent, version, seq, key, value, ...] from Redis; None: keep the copy), tell
        the listeners what differs as one update, and go on with the queue after it."""
        if state is not None and self._mirrors.get((mirror.scope, mirror.name)) is mirror:
            first = mirror.joined is not None
            before = mirror.take(_text(state[0]) == "1", int(state[1]), int(state[2]), list(state[3:]), self.budget)
            if not first:
                self._tell_difference(mirror, before)
        mirror.synced = True
        for seq in [seq for seq in mirror.queue if seq <= mirror.seq]:
            entry = mirror.queue.pop(seq)
            if entry.waiter is not None:
                entry.waiter.callback(entry.batch.update)
        if state is None:
            # Cannot be put in order: the next batch from the channel re-reads. This node's own batches in
            # the queue were applied in Redis: their requesters are answered now; the re-read tells the rest.
            self._answer_queued(mirror)
        self._drain(mirror)
        mirror.reached()

    @staticmethod
    def _answer_queued(mirror: _Mirror) -> None:
        """Empty the queue, answering the requesters of this node's batches in it (they were applied)."""
        for seq in sorted(mirror.queue):
            entry = mirror.queue.pop(seq)
            if entry.waiter is not None:
                entry.waiter.callback(entry.batch.update)

    def _tell_difference(self, mirror: _Mirror, before: Dict[str, str]) -> None:
        applied = [Applied(SetSlot(key, mirror.data[key]), True) for key, encoded in mirror.encoded.items()
                   if before.get(key) != encoded]
        applied += [Applied(DeleteSlot(key), True) for key in before if key not in mirror.encoded]
        if applied:
            self._tell(mirror, SharedObjectUpdate(mirror.name, mirror.version, mirror.persistent, tuple(applied)))
            self._save(mirror)


def _after(d: Deferred) -> Deferred:
    """A Deferred that fires (with None) when ``d`` has, leaving ``d``'s result to its own callbacks."""
    waiter = Deferred()
    d.addBoth(lambda result: (waiter.callback(None), result)[1])
    return waiter


def _bad_persistence(name: str, persistent: bool) -> SharedObjectRefused:
    return SharedObjectRefused(SharedObjectCode.BAD_PERSISTENCE,
                               f"{brief_name(name)!r} is {'' if persistent else 'not '}persistent")
