"""chat: FMSPy's chat example, wire-compatible with its client.

A client ``identify(name)``s once, then ``say(text)``s; everyone in the same
room (the speaker included) receives ``message(text)``.  Rooms are separate
conversations: rtmp://host/chat/lobby hears nothing from rtmp://host/chat/dev.

Who is in a room is a remote shared object a client may listen to (Flash:
``SharedObject.getRemote("presence", nc.uri)``; in a named room
``"presence/<room>"``): one slot per identified client, its id -> its name,
set when it identifies and removed when it leaves.  Only the application
writes it: clients listen with write access denied.  Each node holds its
handle on a room's presence list while it has identified clients there
(in a cluster the object lives while any node holds it), and lets go with
its last one.
"""
import logging
from collections import Counter
from dataclasses import dataclass

from ..config import _parse_positive_int, option
from .application import Application, CallError, remote
from .logs import RateLimitedLog
from .shared_objects import Access

log = logging.getLogger(__name__)

ALREADY_IDENTIFIED = "Chat.Error.AlreadyIdentified"
NOT_IDENTIFIED = "Chat.Error.NotIdentified"
INVALID = "Chat.Error.Invalid"

#: Longest name a client may identify with by default (``maxNameLength``).
MAX_NAME = 64
_SCALARS = (str, int, float, bool, type(None))
#: The presence object of the default room; a named room's is ``presence/<room>``.
PRESENCE = "presence"


def presence_name(room) -> str:
    """The shared object listing who is in ``room``."""
    return PRESENCE if room.is_default else f"{PRESENCE}/{room.name}"


def _text(value, what: str) -> str:
    """A peer's name or line as text: strings and numbers as FMSPy's ``str()`` gave them, nothing else.

    ``str()`` of a list or object walks all of it (with references, a few
    bytes can stand for millions of nodes), and a room would hear the walk.
    """
    if not isinstance(value, _SCALARS):
        raise CallError(f"The {what} must be a string, not a {type(value).__name__}", INVALID)
    return str(value)


@dataclass(frozen=True)
class ChatSettings:
    """The chat's own option."""

    #: ``maxNameLength``: the longest name a client may identify with; it is repeated in every line the room
    #: hears, so it bounds what one client makes every other one receive per line.
    max_name_length: int = option("maxNameLength", _parse_positive_int, "a positive number of characters", MAX_NAME)


class ChatApplication(Application):
    """Basic chatting between the clients of a room, with FMSPy's messages."""

    Settings = ChatSettings

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = ChatSettings()      # a section's own, from ``from_config``
        self._names = {}   # client id -> the name it identified with
        #: Refused names and refused presence updates: one line per kind per interval, with the count.
        self._warnings = RateLimitedLog(log)
        self._present = Counter()   # presence object name -> this node's identified clients in that room

    @remote
    def identify(self, client, name):
        if client.id in self._names:
            raise CallError("Client was already identified", ALREADY_IDENTIFIED)
        name = _text(name, "name")
        limit = self.settings.max_name_length
        if len(name) > limit:
            self._warnings.hit("maxNameLength", f"chat {self.name}: {client.address}: identify refused, a name of "
                                                f"{len(name)} characters (maxNameLength {limit})")
            raise CallError(f"A name is at most {limit} characters", INVALID)
        self._names[client.id] = name
        where = presence_name(client.room)
        self._present[where] += 1
        self._presence(self.shared_object(where).set(client.id, name))
        return self._tell(client.room, f"<{name}> is entering chat...")

    @remote
    def say(self, client, text):
        name = self._names.get(client.id)
        if name is None:
            raise CallError("Client wasn't identified, please don't say anything", NOT_IDENTIFIED)
        return self._tell(client.room, f"<{name}>: {_text(text, 'text')}")

    def on_room_leave(self, room, client):
        name = self._names.pop(client.id, None)
        if name is not None:
            where = presence_name(room)
            presence = self.shared_object(where)
            removed = self._presence(presence.delete(client.id))
            self._present[where] -= 1
            if not self._present[where]:
                del self._present[where]
                removed.addCallback(lambda _: self._presence(presence.release()))
            return self._tell(room, f"<{name}> is leaving chat...")

    def _presence(self, update):
        """A presence update is a courtesy to listeners, not part of the chat: one that is refused (a limit,
        Redis unreachable) is logged, rate-limited, and the line is still said."""
        return update.addErrback(lambda failure: self._warnings.hit(
            "presence not updated", f"chat {self.name}: presence list not updated: {failure.getErrorMessage()}"))

    def on_shared_object_use(self, client, name, persistent):
        return Access.DENY_WRITE if name == PRESENCE or name.startswith(PRESENCE + "/") else Access.ALLOW

    def _tell(self, room, line: str):
        """``message(line)`` to the room, through the hub; the caller's answer stays null, as FMSPy's was.

        Waiting for the hub's answer means a broadcast the hub could not
        deliver (a lost Redis, say) is the caller's ``_error``, never dropped.
        """
        return self.hub.broadcast(room, "message", (line,)).addCallback(lambda _: None)
