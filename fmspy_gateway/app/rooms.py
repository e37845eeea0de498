"""Rooms and the directory that finds clients and rooms.

``Directory`` is the one seam between applications and where clients live:
today every client is in this process (``LocalDirectory``); later a pub/sub
bus can stand behind the same methods so that rooms span several nodes.
"""
import logging
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..rtmp.budget import brief_name

log = logging.getLogger(__name__)

#: The key of an application's default room (rtmp://host/app, no room in the URL).
DEFAULT_ROOM = ""


class Room:
    """Clients of one application that share a name: rtmp://host/app/<name>.

    Iterate it for its clients (in the order they entered); ``broadcast``
    calls a method on every one of them without waiting for answers.
    """

    __slots__ = ("application_name", "name", "_clients")

    def __init__(self, application_name: str, name: str = DEFAULT_ROOM):
        self.application_name = application_name
        #: The room's name; "" for the application's default room.
        self.name = name
        self._clients: Dict[str, Any] = {}

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_ROOM

    def __iter__(self) -> Iterator:
        return iter(list(self._clients.values()))

    def __len__(self) -> int:
        return len(self._clients)

    def __contains__(self, client) -> bool:
        return client.id in self._clients

    def broadcast(self, method: str, *args, exclude=None) -> int:
        """Call ``method(*args)`` on every client (but ``exclude``); returns how many it reached.

        A client that does not read (over ``maxOutgoingBytes``) is skipped: its session drops the
        message and counts it, so one silent listener cannot make the room's talk pile up in memory.
        """
        count = 0
        for client in self:
            if client is not exclude and client.notify(method, *args):
                count += 1
        return count

    def __repr__(self):
        return f"<Room {self.application_name}/{brief_name(self.name) or '(default)'} clients={len(self)}>"


class LocalDirectory:
    """Clients and rooms of this process.

    Default rooms live as long as the server; named rooms are created by
    their first client and destroyed when their last client leaves.
    """

    def __init__(self):
        self._clients: Dict[str, Any] = {}
        self._rooms: Dict[Tuple[str, str], Room] = {}

    # -- clients --------------------------------------------------------------------

    def client(self, client_id: str):
        return self._clients.get(client_id)

    def clients(self, application_name: Optional[str] = None) -> List:
        return [c for c in self._clients.values()
                if application_name is None or c.application_name == application_name]

    # -- rooms ------------------------------------------------------------------------

    def room(self, application_name: str, name: str = DEFAULT_ROOM) -> Optional[Room]:
        if name == DEFAULT_ROOM:
            return self.default_room(application_name)
        return self._rooms.get((application_name, name))

    def default_room(self, application_name: str) -> Room:
        key = (application_name, DEFAULT_ROOM)
        room = self._rooms.get(key)
        if room is None:
            room = self._rooms[key] = Room(application_name)
        return room

    def rooms(self, application_name: str) -> List[Room]:
        return [room for (app, _), room in self._rooms.items() if app == application_name]

    def join(self, client, room_name: str = DEFAULT_ROOM) -> Tuple[Room, bool]:
        """Put a connected client into a room; returns (room, whether the room was just created)."""
        self._clients[client.id] = client
        created = False
        room = self.room(client.application_name, room_name)
        if room is None:
            room = self._rooms[(client.application_name, room_name)] = Room(client.application_name, room_name)
            created = True
        room._clients[client.id] = client
        client.room = room
        client.room_name = room.name
        return room, created

    def leave(self, client) -> Tuple[Optional[Room], bool]:
        """Take a client out of its room and the directory; returns (room, whether it was destroyed)."""
        self._clients.pop(client.id, None)
        room = client.room
        if room is None:
            return None, False
        room._clients.pop(client.id, None)
        client.room = None
        destroyed = not room._clients and not room.is_default
        if destroyed:
            self._rooms.pop((room.application_name, room.name), None)
        return room, destroyed

    def broadcast(self, application_name: str, room_name: str, method: str, *args) -> int:
        room = self.room(application_name, room_name)
        return room.broadcast(method, *args) if room is not None else 0
