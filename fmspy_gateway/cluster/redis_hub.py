"""RedisHub: the hub of a cluster, every node one process, all of them one server through one Redis.

Same contract as ``LocalHub`` (tests/app/hub_contract.py); what differs is
where each answer comes from (docs/ARCHITECTURE.md, "Cluster"):

- what any node may ask about (which clients exist, where, in which room;
  which rooms; who publishes a stream) is in Redis, changed by Lua scripts
  (scripts.py) so that a decision such as "this join made the room" is taken
  once for the whole cluster;
- what only the node holding a client can do (notify it, call it, close it)
  travels as an envelope (envelope.py) over pub/sub: a room broadcast is one
  PUBLISH on the room's channel, which each node with members in the room
  subscribes to, and every node that received it reports back how many of
  its members it reached; a call or disconnect goes to the holding node's
  inbox and its answer comes back to the asker's inbox;
- the node keeps its own clients, rooms and publications in process as the
  source it re-registers from: after Redis comes back, or after the others
  forgot it (its heartbeat found its key gone).

Failure is never silence: while Redis is unreachable, local members are
still reached and everything that needs another node fails at once with
``ClusterUnavailable``; a broadcast that some node did not answer fails with
``BroadcastIncomplete`` (how many were reached, how many nodes were
missing); a call to a node that is gone fails with ``NodeGone``.
"""
import itertools
from functools import partial
import json
import logging
from dataclasses import replace
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail, gatherResults, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from txredisapi import ConnectionError as RedisConnectionError

from ..app.calls import CallFailed, CallTimedOut, ConnectionClosed
from ..app.hub import ClientInfo, ClientNotFound, Hub, Publication, Room, RoomInfo, StreamTaken, _client_id
from ..app.logs import RateLimitedLog
from ..app.notification import Notification
from ..app.replies import NetConnectionCode
from ..config import ClusterConfig
from ..rtmp.budget import ValueBudget, brief, brief_name
from ..rtmp.errors import LocalProtocolError
from . import scripts
from .envelope import BadEnvelope, Envelope, decode, encode
from .layout import DEFAULT_PREFIX, Layout
from .link import RedisAddress, RedisLink, RedisUnreachable
from .redis_shared_objects import RedisSharedObjects

log = logging.getLogger(__name__)

#: Defaults of the constructor's limits (each one a keyword argument): [Cluster]'s, which tap.py passes.
CALL_TIMEOUT = 30.0
CONNECT_TIMEOUT = ClusterConfig.connect_timeout
COMMAND_TIMEOUT = ClusterConfig.command_timeout
MAX_ENVELOPE_BYTES = ClusterConfig.max_envelope_bytes
#: A node is gone when silent for this many heartbeats (its key's TTL).
SILENT_HEARTBEATS = 3


class ClusterUnavailable(CallFailed):
    """Redis cannot be reached now: whatever needs another node fails at once instead of waiting."""


class NodeGone(CallFailed):
    """The node holding the client does not listen any more (stopped, killed, cut off)."""


class BroadcastIncomplete(CallFailed):
    """Some node with members in the room did not say how many it reached: the broadcast may not have
    reached everyone.  ``reached`` counts the members the answering nodes reached."""

    def __init__(self, description: str, reached: int, unanswered: int):
        super().__init__(description)
        self.reached = reached
        self.unanswered = unanswered


#: Envelope "failure" error names <-> the caller's exception classes.
_FAILURE_NAMES = ((ClientNotFound, "not-found"), (CallTimedOut, "timeout"), (ConnectionClosed, "closed"),
                  (CallFailed, "failed"))
_FAILURE_CLASSES = {"timeout": CallTimedOut, "closed": ConnectionClosed, "failed": CallFailed}


#: What an answer handler returns to keep waiting (an answer of another kind, or more answers to come).
PENDING = object()


class _Waiting:
    """A request this node sent, until its answer comes, its deadline passes or Redis goes.

    ``on_answer(envelope)`` turns an answer into the request's outcome: a
    value, an exception (to fail with), or ``PENDING``.
    """

    def __init__(self, on_answer: Callable[[Envelope], Any], tally: Optional["_Tally"] = None):
        self.deferred = Deferred()
        self.on_answer = on_answer
        self.tally = tally
        self.deadline = None
        #: The node asked (for a broadcast: this node).
        self.node: Optional[str] = None


class _Tally:
    """A broadcast's answers: each node that received it says how many members it reached."""

    def __init__(self):
        self.expected: Optional[int] = None     # known once PUBLISH says how many nodes received it
        self.answered = 0
        self.reached = 0

    @property
    def complete(self) -> bool:
        return self.expected is not None and self.answered >= self.expected

    def count(self, envelope: Envelope):
        if envelope.kind != "reached":
            return PENDING
        self.answered += 1
        self.reached += envelope["count"]
        return self.reached if self.complete else PENDING


class RedisHub(Hub):
    """The hub of one node of a cluster on Redis.

    ``RedisHub(url, node, *, advertise, heartbeat, reactor=None)``: ``url`` is
    [Cluster] redis (``redis://[:password@]host:port/db`` or
    ``unix:///path``), ``node`` this node's unique name, ``advertise`` the
    rtmp:// URL other nodes pull its live streams from (``advertised(node)``),
    ``heartbeat`` the seconds between heartbeats (a node silent for three is
    forgotten).  The other keywords are limits: ``call_timeout`` (the
    server's callTimeout, for calls made with ``timeout=None``),
    ``reply_timeout`` (how long another node may take to answer a broadcast
    or a disconnect, and to add to a call's timeout; default: one
    heartbeat), ``connect_timeout`` (at start), ``command_timeout`` (a Redis
    command unanswered this long counts as Redis lost), ``max_envelope_bytes`` and
    ``budget`` (what one message from Redis may cost), ``prefix`` (of every
    key and channel).  ``start()`` before use, ``stop()`` at shutdown.
    """

    kind = "redis"

    def __init__(self, url: str, node: str, *, advertise: Optional[str] = None, heartbeat: float = 5.0,
                 reactor=None, call_timeout: float = CALL_TIMEOUT, reply_timeout: Optional[float] = None,
                 connect_timeout: float = CONNECT_TIMEOUT, command_timeout: float = COMMAND_TIMEOUT,
                 max_envelope_bytes: int = MAX_ENVELOPE_BYTES,
                 budget: ValueBudget = ValueBudget(), prefix: str = DEFAULT_PREFIX):
        if reactor is None:
            from twisted.internet import reactor
        self.node = node
        self.advertise = advertise
        self.heartbeat = heartbeat
        self.call_timeout = call_timeout
        self.reply_timeout = reply_timeout if reply_timeout is not None else heartbeat
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.max_envelope_bytes = max_envelope_bytes
        self.budget = budget
        self.layout = Layout(prefix)
        self._reactor = reactor
        self._address = RedisAddress.parse(url)
        self._link = RedisLink(self._address, on_up=self._link_up, on_down=self._link_down,
                               on_message=self._received, reply_timeout=command_timeout, reactor=reactor)
        #: Remote shared objects, Redis the authority (redis_shared_objects.py: its own link, opened at first use).
        self.shared_objects = RedisSharedObjects(url, node, layout=self.layout, reactor=reactor,
                                                 reply_timeout=command_timeout, connect_timeout=connect_timeout,
                                                 max_message_bytes=max_envelope_bytes, budget=budget)
        self._garbage = RateLimitedLog(log, clock=reactor, prefix=f"cluster node {node}: ")
        # What this node holds: the source of truth it re-registers from.
        self._local: Dict[str, Tuple[Any, Room]] = {}                 # id -> (handle, room)
        self._local_rooms: Dict[Tuple[str, str], Dict[str, Any]] = {}  # (app, room) -> id -> handle
        self._room_channels: Dict[bytes, Tuple[str, str]] = {}         # channel -> (app, room)
        self._streams: Dict[Tuple[str, str], Publication] = {}
        self._waiting: Dict[str, _Waiting] = {}
        self._ids = itertools.count(1)
        self._in_flight = 0
        self._issued = 0
        self._heartbeats = LoopingCall(self._beat)
        self._heartbeats.clock = reactor
        self._started: Optional[Deferred] = None
        # Joins that came before this node registered wait for it (so that Redis, not this node alone,
        # decides whether they made their room); a leave meanwhile cancels its join.
        self._early: Dict[str, Any] = {}
        self._after_start: List[Deferred] = []
        self._down_since: Optional[float] = None
        self._stopping = False
        #: Called with each ``Room`` whose last members were on a node this node forgot (killed, cut off):
        #: tap.py sets it to the application's ``on_room_destroy``.
        self.on_room_orphaned: Optional[Callable[[Room], Any]] = None
        #: Called with the ``Publication`` of each stream name claimed on another node: tap.py sets it so that
        #: the players waiting here for that name start pulling it.
        self.on_stream_announced: Optional[Callable[[Publication], Any]] = None

    # -- life -------------------------------------------------------------------------------------
    def start(self) -> Deferred:
        """Connect and register this node; fails with ``RedisUnreachable`` (one line) if Redis cannot be had."""
        self._started = Deferred()
        self._link.start(self.connect_timeout)
        deadline = self._reactor.callLater(self.connect_timeout, self._not_started)

        def started(result):
            if deadline.active():
                deadline.cancel()
            waiting, self._after_start = self._after_start, []
            for d in waiting:
                d.callback(None) if not isinstance(result, Failure) else d.errback(result.value)
            return result
        return self._started.addBoth(started)

    def _not_started(self):
        if self._started is not None and not self._started.called:
            started, self._started = self._started, None
            self._link.stop()
            started.errback(RedisUnreachable(
                f"Redis unreachable at {self._address.shown}: no connection within {self.connect_timeout:g} s"))

    @inlineCallbacks
    def stop(self):
        """Leave the cluster at once (the others forget this node now, not three heartbeats later)."""
        self._stopping = True
        if self._heartbeats.running:
            self._heartbeats.stop()
        if self._link.up:
            try:
                yield self.flush()      # the answers this node owes others go out before it leaves
                yield self._forget(self.node, only_if_silent=False)
                yield self._command("delete", self.layout.node(self.node))
            except Exception as error:          # going anyway: the others will find this node silent
                log.warning("cluster node %s: could not leave cleanly: %s", self.node, error)
        self._fail_waiting("the hub stopped")
        yield self._link.stop()
        yield self.shared_objects.stop()    # its own link: this node's listeners leave Redis, then it closes

    def _link_up(self):
        registered = self._register(forget_first=True)
        if self._started is not None and not self._started.called:
            started, self._started = self._started, None
            registered.addCallback(self._start_heartbeats)
            registered.chainDeferred(started)
            return
        outage = self._reactor.seconds() - self._down_since if self._down_since is not None else 0.0
        self._down_since = None

        def back(_):
            log.warning("cluster node %s: Redis at %s answers again, after %.1f s; re-registered %d clients "
                        "and %d streams", self.node, self._address.shown, outage, len(self._local), len(self._streams))
        registered.addCallbacks(back, self._log_failure, errbackArgs=("re-registering after the outage",))

    def _start_heartbeats(self, _):
        log.info("cluster node %s: registered at Redis %s; advertising %s; heartbeat every %g s", self.node,
                 self._address.shown, self.advertise or "no rtmp:// URL (its streams cannot be pulled)",
                 self.heartbeat)
        # not returned: the LoopingCall's Deferred fires only when it stops
        self._heartbeats.start(self.heartbeat, now=False).addErrback(self._log_failure, "the heartbeat")

    def _link_down(self):
        if self._stopping or self._started is not None:
            return
        self._down_since = self._reactor.seconds()
        log.warning("cluster node %s: Redis at %s is lost; local clients are still served, cross-node "
                    "operations fail until it is back", self.node, self._address.shown)
        self._fail_waiting(f"Redis at {self._address.shown} was lost before the answer came")

    def _register(self, forget_first: bool) -> Deferred:
        """Subscribe, drop what Redis may still hold of this node, and write back everything it holds."""
        subscriber = self._link.subscriber
        waits = [subscriber.subscribe(self.layout.inbox(self.node)), subscriber.subscribe(self.layout.streams_channel)]
        for key in self._local_rooms:
            waits.append(subscriber.subscribe(self._room_channel(key)))
        if forget_first:
            waits.append(self._forget(self.node, only_if_silent=False))
        for client, room in self._local.values():
            waits.append(self._join_script(client, room))
        for publication in list(self._streams.values()):
            waits.append(self._announce_script(publication.application, publication.name, publication.client_id)
                         .addCallback(self._reclaimed, publication))
        # last: its answer lists the streams this node holds, which the claims above must be among
        waits.append(self._heartbeat_script())
        return gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

    def _reclaimed(self, held, publication):
        if held and (held[0], held[1]) != (self.node, publication.client_id):
            self._streams.pop((publication.application, publication.name), None)
            log.warning("cluster node %s: %s/%s was published on node %s while Redis was away; this node's "
                        "publisher no longer holds the name", self.node, publication.application,
                        brief_name(publication.name), held[0])

    def _log_failure(self, failure, doing):
        log.warning("cluster node %s: %s failed: %s", self.node, doing, failure.getErrorMessage())

    # -- heartbeat and forgetting silent nodes ----------------------------------------------------------
    @inlineCallbacks
    def _beat(self):
        if not self._link.up:
            return
        try:
            known = yield self._heartbeat_script()
            if not known:
                log.warning("cluster node %s: the cluster had forgotten this node; registering again", self.node)
                yield self._register(forget_first=False)
            silent = yield self._command("eval", scripts.SILENT_NODES, [self.layout.nodes])
            for node in silent:
                if node != self.node:
                    yield self._forget(node, only_if_silent=True)
            yield self._fail_requests_to_gone_nodes()
        except Exception as error:
            log.warning("cluster node %s: heartbeat failed: %s", self.node, error)

    @inlineCallbacks
    def _fail_requests_to_gone_nodes(self):
        """A call waiting on a node that has gone silent fails now, not at the end of its timeout."""
        asked = {waiting.node for waiting in self._waiting.values() if waiting.node != self.node}
        for node in asked:
            alive = yield self._command("exists", self.layout.node(node))
            if alive:
                continue
            for request_id, waiting in list(self._waiting.items()):
                if waiting.node == node:
                    self._settle(request_id).errback(NodeGone(
                        f"node {node} is gone (silent for {SILENT_HEARTBEATS} heartbeats) before it answered"))

    def _heartbeat_script(self) -> Deferred:
        """Refresh this node's key and its streams' TTLs; fires with whether the key was still there."""
        ttl = str(int(self.heartbeat * SILENT_HEARTBEATS * 1000))
        d = self._command("eval", scripts.HEARTBEAT,
                          [self.layout.node(self.node), self.layout.nodes, self.layout.node_streams(self.node)],
                          [self.node, self.advertise or "", ttl])

        def held(answer):
            # a publication given up through another node (withdraw by client id) is no longer this node's
            still = set(answer[1:])
            for key, publication in list(self._streams.items()):
                if self.layout.stream(*key) not in still:
                    del self._streams[key]
            return bool(answer[0])
        return d.addCallback(held)

    def _forget(self, node: str, only_if_silent: bool) -> Deferred:
        d = self._command("eval", scripts.FORGET_NODE,
                          [self.layout.node_clients(node), self.layout.node_streams(node), self.layout.nodes,
                           self.layout.node(node)], [node, "1" if only_if_silent else "0"])

        def forgotten(answer):
            if not answer or node == self.node:
                return      # alive after all; or this node starting afresh, which joins its rooms again
            if answer[0] or answer[1]:
                log.warning("cluster node %s: node %s was silent for %d heartbeats: forgot its %d clients and %d "
                            "streams", self.node, node, SILENT_HEARTBEATS, answer[0], answer[1])
            for text in answer[2:]:
                info = ClientInfo.from_dict(json.loads(text))
                self._orphaned(self.room(info.application, info.room), node)
            # its shared object listeners too, or its transient objects would outlive it and count against the limits
            self.shared_objects.forget_node(node).addErrback(lambda failure: log.warning(
                "cluster node %s: forgetting node %s's shared object listeners failed: %s", self.node, node,
                failure.getErrorMessage()))
        return d.addCallback(forgotten)

    def _orphaned(self, room: Room, node: str):
        """A room emptied by forgetting ``node``: the script told this node alone, so it runs the destroy hook."""
        log.warning("cluster node %s: %r lost its last members with node %s; running its destroy hook here",
                    self.node, room, node)
        if self.on_room_orphaned is not None:
            maybeDeferred(self.on_room_orphaned, room).addErrback(self._log_failure, f"on_room_destroy of {room!r}")

    # -- Redis commands -------------------------------------------------------------------------------
    def _command(self, name: str, *args) -> Deferred:
        """One command on the command connection, or ``ClusterUnavailable`` at once while Redis is away."""
        commands = self._link.commands
        if commands is None:
            return fail(ClusterUnavailable(f"Redis at {self._address.shown} is unreachable: this needs the "
                                           f"cluster"))
        self._in_flight += 1
        self._issued += 1

        def done(result):
            self._in_flight -= 1
            return result
        try:
            d = getattr(commands, name)(*args)
        except Exception as error:
            d = fail(error)
        return d.addBoth(done).addErrback(self._unavailable)

    def _unavailable(self, failure):
        if not failure.check(RedisConnectionError):     # includes txredisapi's reply timeout
            return failure
        raise ClusterUnavailable(f"Redis at {self._address.shown} did not answer: {failure.getErrorMessage()}")

    def _room_channel(self, key: Tuple[str, str]) -> str:
        return self.layout.room_channel(*key)

    def flush(self) -> Deferred:
        """Fires with True once this node's own inbox has echoed a ping and no command is in flight, having
        issued nothing else meanwhile (False: something was issued; flush again to wait for it too)."""
        issued = self._issued
        d = self._request(self.node, "ping", {}, (), self.reply_timeout, _Waiting(lambda envelope: None))
        return d.addCallback(lambda _: self._in_flight == 0 and self._issued == issued + 1)

    # -- requests to other nodes -------------------------------------------------------------------
    def _request(self, node: str, kind: str, fields: dict, values: Iterable, timeout: float, waiting: _Waiting,
                 channel: Optional[str] = None) -> Deferred:
        """Publish an envelope (to ``node``'s inbox, or ``channel``) and wait for its answers to settle it."""
        request_id = f"{self.node}/{next(self._ids)}"
        try:
            payload = encode(Envelope(kind, request_id, fields, tuple(values)))
        except (LocalProtocolError, ValueError, TypeError) as error:
            return fail(CallFailed(f"these values cannot travel to another node: {error}"))
        if len(payload) > self.max_envelope_bytes:
            reason = (f"{len(payload)} bytes of values, over the limit of {self.max_envelope_bytes} between nodes "
                      f"([Cluster] maxEnvelopeBytes)")
            self._garbage.hit("maxEnvelopeBytes", f"refused to send a {kind}: {reason}")
            return fail(CallFailed(reason))
        published = self._command("publish", channel or self.layout.inbox(node), payload)
        waiting.node = node
        self._waiting[request_id] = waiting
        waiting.deadline = self._reactor.callLater(timeout, self._no_answer, request_id, node, timeout)

        def sent(receivers):
            if request_id in self._waiting:
                self._receivers(request_id, node, receivers)

        def not_sent(failure):
            if request_id in self._waiting:     # else already failed with the outage that failed this too
                self._settle(request_id).errback(failure)
        published.addCallbacks(sent, not_sent)
        return waiting.deferred

    def _receivers(self, request_id, node, receivers):
        tally = self._waiting[request_id].tally
        if tally is not None:
            tally.expected = receivers
            if tally.complete:
                self._settle(request_id).callback(tally.reached)
        elif receivers == 0:
            self._settle(request_id).errback(NodeGone(f"node {node} is gone (nobody listens to its inbox)"))

    def _settle(self, request_id) -> Deferred:
        """Take a request out of the table (its deadline cancelled) and return its Deferred to fire."""
        waiting = self._waiting.pop(request_id)
        if waiting.deadline is not None and waiting.deadline.active():
            waiting.deadline.cancel()
        return waiting.deferred

    def _no_answer(self, request_id, node, timeout):
        waiting = self._waiting.get(request_id)
        if waiting is None:
            return
        tally = waiting.tally
        self._garbage.hit("replyTimeout", f"node {node} did not answer within {timeout:g} s "
                                          f"([Cluster] replyTimeout, added to a call's own timeout)")
        if tally is not None and tally.expected is None:
            self._settle(request_id).errback(ClusterUnavailable(f"Redis did not take the broadcast within "
                                                                f"{timeout:g} s"))
        elif tally is not None:
            missing = tally.expected - tally.answered
            self._settle(request_id).errback(BroadcastIncomplete(
                f"{missing} node(s) with members in the room did not answer within {timeout:g} s; "
                f"{tally.reached} member(s) reached", tally.reached, missing))
        else:
            self._settle(request_id).errback(CallTimedOut(f"node {node} did not answer within {timeout:g} s"))

    def _fail_waiting(self, reason: str):
        for request_id in list(self._waiting):
            self._settle(request_id).errback(ClusterUnavailable(reason))

    def _answer(self, origin: str, kind: str, request_id: str, fields: dict, values: Iterable = ()):
        """Send an answer to the node that asked; a node that cannot be told is logged, not retried."""
        envelope = Envelope(kind, request_id, fields, tuple(values))
        if origin == self.node:
            self._answered(envelope)
            return
        try:
            payload = encode(envelope)
            if len(payload) > self.max_envelope_bytes:
                reason = (f"{len(payload)} bytes, over the limit of {self.max_envelope_bytes} between nodes "
                          f"([Cluster] maxEnvelopeBytes)")
                self._garbage.hit("maxEnvelopeBytes", f"sent node {origin} a failure instead of a {kind}: {reason}")
                raise ValueError(reason)
        except (LocalProtocolError, ValueError, TypeError) as error:
            payload = encode(Envelope("failure", request_id, {
                "error": "failed", "code": NetConnectionCode.CALL_FAILED,
                "description": f"the answer cannot travel to another node: {error}"}))
        self._command("publish", self.layout.inbox(origin), payload).addErrback(
            self._log_failure, f"answering {kind} to node {origin}")

    # -- messages from Redis --------------------------------------------------------------------------
    def _received(self, channel: bytes, payload: bytes):
        try:
            envelope = decode(payload, max_bytes=self.max_envelope_bytes, budget=self.budget)
        except BadEnvelope as error:
            self._garbage.hit("bad envelope", f"dropped a message on {brief(channel)}: {error}")
            return
        handler = self._HANDLERS.get(envelope.kind, RedisHub._answered)
        try:
            handler(self, envelope, channel)
        except Exception:
            log.exception("cluster node %s: handling a %s message failed", self.node, envelope.kind)

    def _answered(self, envelope: Envelope, channel: bytes = b""):
        waiting = self._waiting.get(envelope.id)
        if waiting is None:
            return          # answered after its deadline, or not asked by this node
        outcome = waiting.on_answer(envelope)
        if outcome is PENDING:
            return
        d = self._settle(envelope.id)
        if isinstance(outcome, Exception):
            d.errback(outcome)
        else:
            d.callback(outcome)

    def _on_broadcast(self, envelope: Envelope, channel: bytes):
        members = self._local_rooms.get(self._room_channels.get(channel), {})
        exclude = envelope["exclude"]
        notification, count = Notification(envelope["method"], envelope.values), 0
        for client_id, client in list(members.items()):
            if client_id != exclude and client.hear(notification):
                count += 1
        self._answer(envelope["origin"], "reached", envelope.id, {"count": count})

    def _on_call(self, envelope: Envelope, channel: bytes):
        origin, request_id = envelope["origin"], envelope.id
        entry = self._local.get(envelope["client"])
        if entry is None:
            self._answer(origin, "failure", request_id, _failure_fields(ClientNotFound(envelope["client"])))
            return
        d = entry[0].call(envelope["method"], *envelope.values, timeout=envelope["timeout"])
        d.addCallbacks(lambda value: self._answer(origin, "result", request_id, {}, (value,)),
                       lambda failure: self._answer(origin, "failure", request_id, _failure_fields(failure.value),
                                                    (getattr(failure.value, "info", None),)))

    def _on_disconnect(self, envelope: Envelope, channel: bytes):
        entry = self._local.get(envelope["client"])
        if entry is not None:
            entry[0].disconnect(envelope["reason"])
        self._answer(envelope["origin"], "disconnected", envelope.id, {"found": entry is not None})

    def _on_ping(self, envelope: Envelope, channel: bytes):
        self._answered(envelope)

    def _on_announced(self, envelope: Envelope, channel: bytes):
        if envelope["node"] != self.node and self.on_stream_announced is not None:
            publication = Publication(envelope["application"], envelope["name"], envelope["node"], envelope["client"])
            maybeDeferred(self.on_stream_announced, publication).addErrback(
                self._log_failure, f"starting the players waiting for {publication.application}/"
                                   f"{brief_name(publication.name)}")

    _HANDLERS = {"broadcast": _on_broadcast, "call": _on_call, "disconnect": _on_disconnect, "ping": _on_ping,
                 "announced": _on_announced}

    # -- rooms -------------------------------------------------------------------------------------
    def _join_script(self, client, room: Room) -> Deferred:
        info = ClientInfo.of(client, room.name, self.node)
        return self._command("eval", scripts.JOIN, [
            self.layout.client(client.id), self.layout.application_clients(room.application),
            self.layout.room(room.application, room.name), self.layout.application_rooms(room.application),
            self.layout.node_clients(self.node), self.layout.sequence,
        ], [json.dumps(info.to_dict()), client.id, self.node, room.name, "1" if room.is_default else "0"])

    def join(self, client, room: Room) -> Deferred:
        if self._started is not None:
            self._early[client.id] = client
            waiter = Deferred()
            self._after_start.append(waiter)

            def registered(_):
                if self._early.pop(client.id, None) is not client:
                    return False        # it left before this node registered
                return self._join(client, room)
            return waiter.addCallback(registered)
        return self._join(client, room)

    def _join(self, client, room: Room) -> Deferred:
        key = (room.application, room.name)
        members = self._local_rooms.setdefault(key, {})
        first_here = not members
        members[client.id] = client
        self._local[client.id] = (client, room)
        local_decision = first_here and not room.is_default
        if not self._link.up:
            return succeed(local_decision)     # an outage: decided here, registered when Redis is back
        channel = self._room_channel(key)
        self._room_channels[channel.encode()] = key
        subscribed = self._link.subscriber.subscribe(channel)
        joined = self._join_script(client, room)

        def answer(results):
            return bool(results[1])
        d = gatherResults([subscribed, joined], consumeErrors=True).addCallback(answer)
        return d.addErrback(self._decided_here, local_decision)

    def leave(self, client, room: Room) -> Deferred:
        if self._early.get(client.id) is client:
            del self._early[client.id]
            return succeed(False)
        entry = self._local.get(client.id)
        if entry is None or entry[0] is not client or entry[1] != room:
            return succeed(False)
        del self._local[client.id]
        key = (room.application, room.name)
        members = self._local_rooms[key]
        del members[client.id]
        last_here = not members
        if last_here:
            del self._local_rooms[key]
            channel = self._room_channel(key)
            self._room_channels.pop(channel.encode(), None)
            if self._link.up:
                self._link.subscriber.unsubscribe(channel).addErrback(self._log_failure, "unsubscribing")
        local_decision = last_here and not room.is_default
        if not self._link.up:
            return succeed(local_decision)
        d = self._command("eval", scripts.LEAVE, [self.layout.client(client.id),
                                                  self.layout.room(room.application, room.name),
                                                  self.layout.node_clients(self.node)], [self.node])
        return d.addCallbacks(lambda destroyed: destroyed == 1, self._decided_here, errbackArgs=(local_decision,))

    @staticmethod
    def _decided_here(failure, local_decision):
        """Redis was lost during a join or leave: decided as during an outage (it is registered again)."""
        failure.trap(ClusterUnavailable)
        return local_decision

    def _describe(self, d: Deferred) -> Deferred:
        """ClientInfo values from ``info`` JSON, with the handle where the client is here."""
        def described(infos):
            answer = []
            for text in infos:
                info = ClientInfo.from_dict(json.loads(text))
                entry = self._local.get(info.id) if info.node == self.node else None
                answer.append(replace(info, handle=entry[0]) if entry is not None else info)
            return answer
        return d.addCallback(described)

    def members(self, room: Room) -> Deferred:
        return self._describe(self._command("eval", scripts.DESCRIBE,
                                            [self.layout.room(room.application, room.name)]))

    def broadcast(self, room: Room, method: str, args: Iterable = (), exclude=None) -> Deferred:
        exclude_id = _client_id(exclude) if exclude is not None else None
        args = tuple(args)
        if not self._link.up:
            members = self._local_rooms.get((room.application, room.name), {})
            notification = Notification(method, args)
            reached = sum(1 for client_id, client in list(members.items())
                          if client_id != exclude_id and client.hear(notification))
            return fail(BroadcastIncomplete(f"Redis at {self._address.shown} is unreachable: {reached} member(s) "
                                            f"on this node reached, other nodes not", reached, 0))
        tally = _Tally()
        return self._request(self.node, "broadcast", {"origin": self.node, "method": method, "exclude": exclude_id},
                             args, self.reply_timeout, _Waiting(tally.count, tally),
                             channel=self._room_channel((room.application, room.name)))

    def rooms(self, application: str) -> Deferred:
        def listed(flat):
            return sorted((RoomInfo(application, flat[i], int(flat[i + 1])) for i in range(0, len(flat), 2)),
                          key=lambda info: info.name)
        return self._command("eval", scripts.ROOMS, [self.layout.application_rooms(application)]).addCallback(listed)

    # -- clients ------------------------------------------------------------------------------------
    def locate(self, client_id: str) -> Deferred:
        entry = self._local.get(client_id)
        if entry is not None:
            return succeed(ClientInfo.of(entry[0], entry[1].name, self.node))
        d = self._command("hget", self.layout.client(client_id), "info")
        return d.addCallback(lambda text: ClientInfo.from_dict(json.loads(text)) if text else None)

    def clients(self, application: str, room: Optional[str] = None) -> Deferred:
        if room is not None:
            return self.members(Room(application, room))
        return self._describe(self._command("eval", scripts.DESCRIBE, [self.layout.application_clients(application)]))

    @inlineCallbacks
    def _holder(self, client_id: str):
        """The node holding a client that is not here, or None."""
        node = yield self._command("hget", self.layout.client(client_id), "node")
        return node if node and node != self.node else None

    @inlineCallbacks
    def call(self, client_id: str, method: str, args: Iterable = (), timeout: Optional[float] = None):
        entry = self._local.get(client_id)
        if entry is not None:
            return (yield entry[0].call(method, *args, timeout=timeout))
        node = yield self._holder(client_id)
        if node is None:
            raise ClientNotFound(client_id)
        wait = (timeout if timeout is not None else self.call_timeout) + self.reply_timeout
        fields = {"origin": self.node, "client": client_id, "method": method, "timeout": timeout}
        return (yield self._request(node, "call", fields, args, wait, _Waiting(partial(_call_outcome, client_id))))

    @inlineCallbacks
    def disconnect(self, client_id: str, reason: str = "disconnected"):
        entry = self._local.get(client_id)
        if entry is not None:
            entry[0].disconnect(reason)
            return True
        node = yield self._holder(client_id)
        if node is None:
            return False
        return (yield self._request(node, "disconnect", {"origin": self.node, "client": client_id, "reason": reason},
                                    (), self.reply_timeout, _Waiting(_disconnect_outcome)))

    def advertised(self, node: str) -> Deferred:
        """The rtmp:// URL ``node`` advertised (where its live streams are pulled from), or None."""
        if node == self.node:
            return succeed(self.advertise)
        return self._command("get", self.layout.node(node)).addCallback(lambda url: url or None)

    @inlineCallbacks
    def nodes(self):
        """The registered nodes whose key has not expired (a silent node is live until it has), with their URLs."""
        names = yield self._command("hkeys", self.layout.nodes)
        if not names:
            return {}
        urls = yield self._command("mget", [self.layout.node(name) for name in names])
        return {name: url or None for name, url in zip(names, urls) if url is not None}

    # -- live streams ---------------------------------------------------------------------------------
    def _announce_script(self, application: str, name: str, client_id: str) -> Deferred:
        ttl = str(int(self.heartbeat * SILENT_HEARTBEATS * 1000))
        return self._command("eval", scripts.ANNOUNCE,
                             [self.layout.stream(application, name), self.layout.node_streams(self.node)],
                             [self.node, client_id, ttl])

    def announce(self, application: str, name: str, client_id: str) -> Deferred:
        def claimed(held):
            if held:
                raise StreamTaken(Publication(application, name, held[0], held[1]))
            publication = self._streams[(application, name)] = Publication(application, name, self.node, client_id)
            self._tell_announced(publication)
            return publication
        return self._announce_script(application, name, client_id).addCallback(claimed)

    def _tell_announced(self, publication: Publication):
        """Every node hears of the claim (``on_stream_announced``); one that cannot is logged, the claim stands."""
        payload = encode(Envelope("announced", f"{self.node}/{next(self._ids)}", {
            "application": publication.application, "name": publication.name, "node": self.node,
            "client": publication.client_id}))
        self._command("publish", self.layout.streams_channel, payload).addErrback(
            self._log_failure, f"telling the cluster {publication.application}/{brief_name(publication.name)} "
                               f"is published")

    def withdraw(self, application: str, name: str, client_id: str) -> Deferred:
        held = self._streams.get((application, name))
        held_here = held is not None and held.client_id == client_id
        if held_here:
            del self._streams[(application, name)]
        if not self._link.up:
            return succeed(held_here)       # Redis forgets it when this node registers again
        d = self._command("eval", scripts.WITHDRAW, [self.layout.stream(application, name)], [client_id])
        return d.addCallbacks(lambda given_up: given_up == 1, self._decided_here, errbackArgs=(held_here,))

    def find(self, application: str, name: str) -> Deferred:
        held = self._streams.get((application, name))
        if held is not None and not self._link.up:
            return succeed(held)        # an outage: what is published here still is
        d = self._command("hmget", self.layout.stream(application, name), ["node", "client"])
        return d.addCallback(lambda found: Publication(application, name, found[0], found[1]) if found[0] else None)


def _failure_fields(error: Exception) -> dict:
    """The "failure" header fields for an exception (never a stack trace: its kind, code and text)."""
    if isinstance(error, CallFailed):
        name = next(name for cls, name in _FAILURE_NAMES if isinstance(error, cls))
        return {"error": name, "code": error.code, "description": error.description}
    log.warning("a call to a client failed with %s", type(error).__name__)
    return {"error": "failed", "code": NetConnectionCode.CALL_FAILED,
            "description": "the call failed on the client's node"}


def _call_outcome(client_id: str, envelope: Envelope):
    if envelope.kind == "result":
        return envelope.values[0] if envelope.values else None
    if envelope.kind != "failure":
        return PENDING
    if envelope["error"] == "not-found":        # it left between the look-up and the call
        return ClientNotFound(client_id)
    return _FAILURE_CLASSES[envelope["error"]](envelope["description"], envelope["code"],
                                               envelope.values[0] if envelope.values else None)


def _disconnect_outcome(envelope: Envelope):
    return envelope["found"] if envelope.kind == "disconnected" else PENDING
