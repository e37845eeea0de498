"""The hub: everything that crosses connections (docs/ARCHITECTURE.md, "The hub").

A connection's session owns its connection; what one connection does to
another (entering a room, a broadcast, calling or disconnecting a client
found by id, claiming a live stream's name) goes through a hub.  Every method
returns a Deferred, and callers always wait on it: the answer may come from
another process or machine (a Redis-backed hub, issue 10), so no caller may
assume it is here or synchronous.

What crosses a hub are values: a ``Room`` is (application, name), a client is
a ``ClientInfo`` (who it is, where it is, on which node), a publication is a
``Publication``.  The one thing that is not a value is ``ClientInfo.handle``:
the in-process ``Client`` where the client is connected to this node, None
where it is elsewhere.  A hub is given local handles (``join``) and hands out
descriptions.

``LocalHub`` is the embedded default: one process, one node; its answers are
already fired Deferreds (``succeed``), and a broadcast is one loop over the
room's handles, as fast as the loop it replaces.
"""
import os
import socket
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterable, Optional, Tuple

from twisted.internet.defer import Deferred, fail, succeed

from ..rtmp.budget import brief_name
from .calls import CallFailed
from .notification import Notification
from .replies import NetConnectionCode
from .shared_objects import LocalSharedObjects

#: The key of an application's default room (rtmp://host/app, no room in the URL).
DEFAULT_ROOM = ""


def default_node_name() -> str:
    """host name and pid: unique among the processes of a machine, readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class Room:
    """A room as a value: rtmp://host/<application>/<name>; equal rooms are the same room on every node.

    ``hub`` (not part of the value) lets a hook write ``room.broadcast(...)``;
    it is the hub that made the value, or None for a bare value.
    """

    application: str
    #: The room's name; "" for the application's default room.
    name: str = DEFAULT_ROOM
    hub: Any = field(default=None, compare=False, repr=False)

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_ROOM

    @property
    def application_name(self) -> str:
        return self.application

    def broadcast(self, method: str, *args, exclude=None) -> Deferred:
        """``hub.broadcast(room, method, args, exclude)``: fires with how many clients it reached."""
        return self.hub.broadcast(self, method, args, exclude=exclude)

    def members(self) -> Deferred:
        """``hub.members(room)``: fires with the ``ClientInfo`` of every member."""
        return self.hub.members(self)

    def __repr__(self):
        return f"<Room {self.application}/{brief_name(self.name) or '(default)'}>"


@dataclass(frozen=True)
class RoomInfo:
    """A room and how many clients it holds, as ``rooms()`` lists it."""

    application: str
    name: str
    clients: int

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_ROOM


@dataclass(frozen=True)
class ClientInfo:
    """A connected client as any node can know it; ``to_dict`` / ``from_dict`` carry it between nodes."""

    id: str
    application: str
    address: str
    #: The room it is in ("" the default room).
    room: str = DEFAULT_ROOM
    #: The node it is connected to.
    node: str = ""
    #: flashVer, pageUrl, swfUrl, tcUrl of its connect command (None when it sent none).
    agent: Optional[str] = None
    page_url: Optional[str] = None
    swf_url: Optional[str] = None
    tc_url: Optional[str] = None
    #: 0 (AMF0) or 3 (AMF3): what values a call to it may carry.
    object_encoding: int = 0
    #: Seconds since the epoch when its connect arrived.
    connected_at: float = 0.0
    #: The in-process ``Client`` where it is connected to this node; None elsewhere.  Not part of the value.
    handle: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, client, room: str, node: str) -> "ClientInfo":
        """The description of a local ``Client`` (``client`` becomes the handle)."""
        return cls(id=client.id, application=client.application_name, address=client.address, room=room,
                   node=node, agent=_text(getattr(client, "agent", None)),
                   page_url=_text(getattr(client, "page_url", None)), swf_url=_text(getattr(client, "swf_url", None)),
                   tc_url=_text(getattr(client, "tc_url", None)),
                   object_encoding=getattr(client, "object_encoding", 0),
                   connected_at=getattr(client, "connected_at", 0.0), handle=client)

    def to_dict(self) -> dict:
        # not asdict(): it would deep-copy the handle (a live Client, sockets and all)
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "handle"}

    @classmethod
    def from_dict(cls, data: dict) -> "ClientInfo":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "handle"})


@dataclass(frozen=True)
class Publication:
    """Where a live stream is published: the node, and the client publishing it."""

    application: str
    name: str
    node: str
    client_id: str


class ClientNotFound(CallFailed):
    """No client with that id is connected (on any node)."""

    def __init__(self, client_id: str):
        super().__init__(f"no client {brief_name(client_id)} is connected", NetConnectionCode.CALL_FAILED)
        self.client_id = client_id


class StreamTaken(Exception):
    """The stream name is already published (on this node or another): NetStream.Publish.BadName."""

    def __init__(self, publication: Publication):
        super().__init__(f"{publication.application}/{publication.name} is already being published")
        self.publication = publication


def _text(value) -> Optional[str]:
    return value if isinstance(value, str) or value is None else None


def _client_id(client) -> Optional[str]:
    """A client id from an id, a ``Client`` handle or a ``ClientInfo``."""
    return getattr(client, "id", client)


class Hub:
    """The interface; every method returns a Deferred (docs/ARCHITECTURE.md, "The hub").

    ``node`` names this process in the cluster.  Rooms are ``Room`` values;
    ``client`` arguments of ``join``/``leave`` are local handles (what a
    session owns), every other client is named by its id.
    """

    node: str
    #: What backs it, for operators (``fmspy_hub_up{kind=...}``): "local" (one process) or "redis" (a cluster).
    kind: str
    #: Called with a ``Room`` whose last members were on a node the cluster forgot (killed, cut off), on the
    #: one node that forgot them, so that the application's ``on_room_destroy`` runs once (tap.py sets it).
    #: A ``LocalHub`` never calls it: its rooms go with their members.
    on_room_orphaned: Any = None
    #: Called with the ``Publication`` of a stream name claimed on another node (``announce`` there), so that
    #: the players waiting here for it start pulling it (tap.py sets it to the application's
    #: ``stream_published_elsewhere``).  A ``LocalHub`` never calls it: every publisher is here.
    on_stream_announced: Any = None
    #: Every application's remote shared objects (app/shared_objects.py ``SharedObjects``: the same
    #: Deferred-returning shape, so a Redis hub brings its own).
    shared_objects: Any

    def room(self, application: str, name: str = DEFAULT_ROOM) -> Room:
        """The room value (no look-up: a room need not exist to be named)."""
        return Room(application, name, self)

    # -- rooms -------------------------------------------------------------------------------
    def join(self, client, room: Room) -> Deferred:
        """Put a local client in ``room``; fires with True when this made the room (its first member)."""
        raise NotImplementedError

    def leave(self, client, room: Room) -> Deferred:
        """Take a local client out of ``room`` (and the hub); fires with True when the room is gone with it."""
        raise NotImplementedError

    def members(self, room: Room) -> Deferred:
        """Fires with the ``ClientInfo`` of every member, in the order they entered."""
        raise NotImplementedError

    def broadcast(self, room: Room, method: str, args: Iterable = (), exclude=None) -> Deferred:
        """``method(*args)`` to every member but ``exclude`` (an id or client); fires with how many it reached.

        A member not reading (over ``maxOutgoingBytes``) is skipped and not counted.
        """
        raise NotImplementedError

    def rooms(self, application: str) -> Deferred:
        """Fires with a ``RoomInfo`` per room of ``application`` (default rooms once used)."""
        raise NotImplementedError

    # -- clients -----------------------------------------------------------------------------
    def locate(self, client_id: str) -> Deferred:
        """Fires with the client's ``ClientInfo`` (with its handle where it is local), or None."""
        raise NotImplementedError

    def clients(self, application: str, room: Optional[str] = None) -> Deferred:
        """Fires with the ``ClientInfo`` of the application's clients (of one room when ``room`` is given)."""
        raise NotImplementedError

    def call(self, client_id: str, method: str, args: Iterable = (), timeout: Optional[float] = None) -> Deferred:
        """Call ``method`` on a client wherever it is; fires with its result.

        Fails with ``ClientNotFound``, ``CallFailed`` (its ``_error``, or it
        left), ``CallTimedOut`` after ``timeout`` seconds (None: the server's
        call timeout).
        """
        raise NotImplementedError

    def disconnect(self, client_id: str, reason: str = "disconnected") -> Deferred:
        """Close a client's connection wherever it is; fires with whether such a client was connected."""
        raise NotImplementedError

    # -- live streams --------------------------------------------------------------------------
    def announce(self, application: str, name: str, client_id: str) -> Deferred:
        """Claim ``name`` for a publisher on this node; fails with ``StreamTaken`` if it is published anywhere."""
        raise NotImplementedError

    def withdraw(self, application: str, name: str, client_id: str) -> Deferred:
        """Give up the claim ``announce`` made; fires with whether ``client_id`` held it."""
        raise NotImplementedError

    def find(self, application: str, name: str) -> Deferred:
        """Fires with the ``Publication`` of ``name`` (which node publishes it), or None."""
        raise NotImplementedError

    # -- the node ------------------------------------------------------------------------------
    def start(self) -> Deferred:
        """Before the server accepts clients: join the cluster (fails with a one-line reason if it cannot)."""
        raise NotImplementedError

    def stop(self) -> Deferred:
        """At shutdown: leave the cluster."""
        raise NotImplementedError

    def advertised(self, node: str) -> Deferred:
        """Fires with the rtmp:// URL ``node`` advertises (where its live streams are pulled from), or None."""
        raise NotImplementedError

    def nodes(self) -> Deferred:
        """Fires with ``{node: advertised rtmp:// URL or None}`` of every live node, this one included
        (where a drained node sends its clients)."""
        raise NotImplementedError


class LocalHub(Hub):
    """Clients, rooms and publications of this process: the embedded default (one process, one node).

    Default rooms live as long as the server (once used); named rooms are made
    by their first member and go with their last.  Every answer is an already
    fired Deferred.
    """

    kind = "local"

    def __init__(self, node: Optional[str] = None, advertise: Optional[str] = None):
        self.node = node or default_node_name()
        self.advertise = advertise
        self._clients: Dict[str, Tuple[Any, Room]] = {}               # id -> (handle, room)
        self._rooms: Dict[Tuple[str, str], Dict[str, Any]] = {}       # (app, room) -> id -> handle, in entry order
        self._streams: Dict[Tuple[str, str], Publication] = {}
        self.shared_objects = LocalSharedObjects()

    def _describe(self, client, room: Room) -> ClientInfo:
        return ClientInfo.of(client, room.name, self.node)

    # -- rooms -------------------------------------------------------------------------------
    def join(self, client, room: Room) -> Deferred:
        key = (room.application, room.name)
        members = self._rooms.get(key)
        created = members is None and not room.is_default
        if members is None:
            members = self._rooms[key] = {}
        members[client.id] = client
        self._clients[client.id] = (client, room)
        return succeed(created)

    def leave(self, client, room: Room) -> Deferred:
        entry = self._clients.get(client.id)
        if entry is not None and entry[0] is client:
            del self._clients[client.id]
        key = (room.application, room.name)
        members = self._rooms.get(key)
        if members is None or members.get(client.id) is not client:
            return succeed(False)
        del members[client.id]
        destroyed = not members and not room.is_default
        if destroyed:
            del self._rooms[key]
        return succeed(destroyed)

    def members(self, room: Room) -> Deferred:
        members = self._rooms.get((room.application, room.name), {})
        return succeed([self._describe(c, room) for c in members.values()])

    def broadcast(self, room: Room, method: str, args: Iterable = (), exclude=None) -> Deferred:
        # The hot path of chat and the push API: one loop over the handles, one fired Deferred.
        members = self._rooms.get((room.application, room.name))
        if not members:
            return succeed(0)
        skip = members.get(_client_id(exclude)) if exclude is not None else None
        notification, count = Notification(method, args), 0
        for client in list(members.values()):
            if client is not skip and client.hear(notification):
                count += 1
        return succeed(count)

    def rooms(self, application: str) -> Deferred:
        return succeed([RoomInfo(app, name, len(members))
                        for (app, name), members in self._rooms.items() if app == application])

    # -- clients -----------------------------------------------------------------------------
    def locate(self, client_id: str) -> Deferred:
        entry = self._clients.get(client_id)
        return succeed(self._describe(*entry) if entry is not None else None)

    def clients(self, application: str, room: Optional[str] = None) -> Deferred:
        if room is not None:
            return self.members(Room(application, room))
        return succeed([self._describe(client, where) for client, where in self._clients.values()
                        if where.application == application])

    def call(self, client_id: str, method: str, args: Iterable = (), timeout: Optional[float] = None) -> Deferred:
        entry = self._clients.get(client_id)
        if entry is None:
            return fail(ClientNotFound(client_id))
        # The client's session keeps the call (its table, its timeout, failed at once when it closes).
        return entry[0].call(method, *args, timeout=timeout)

    def disconnect(self, client_id: str, reason: str = "disconnected") -> Deferred:
        entry = self._clients.get(client_id)
        if entry is None:
            return succeed(False)
        entry[0].disconnect(reason)
        return succeed(True)

    # -- live streams --------------------------------------------------------------------------
    def announce(self, application: str, name: str, client_id: str) -> Deferred:
        key = (application, name)
        held = self._streams.get(key)
        if held is not None:
            return fail(StreamTaken(held))
        publication = self._streams[key] = Publication(application, name, self.node, client_id)
        return succeed(publication)

    def withdraw(self, application: str, name: str, client_id: str) -> Deferred:
        key = (application, name)
        held = self._streams.get(key)
        if held is None or held.client_id != client_id:
            return succeed(False)
        del self._streams[key]
        return succeed(True)

    def find(self, application: str, name: str) -> Deferred:
        return succeed(self._streams.get((application, name)))

    # -- the node ------------------------------------------------------------------------------
    def start(self) -> Deferred:
        return succeed(None)

    def stop(self) -> Deferred:
        return succeed(None)

    def advertised(self, node: str) -> Deferred:
        return succeed(self.advertise if node == self.node else None)

    def nodes(self) -> Deferred:
        return succeed({self.node: self.advertise})
