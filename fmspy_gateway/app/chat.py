"""chat: FMSPy's chat example, wire-compatible with its client.

A client ``identify(name)``s once, then ``say(text)``s; everyone in the same
room (the speaker included) receives ``message(text)``.  Rooms are separate
conversations: rtmp://host/chat/lobby hears nothing from rtmp://host/chat/dev.
"""
from .application import Application, CallError, remote

ALREADY_IDENTIFIED = "Chat.Error.AlreadyIdentified"
NOT_IDENTIFIED = "Chat.Error.NotIdentified"
INVALID = "Chat.Error.Invalid"

#: Longest name a client may identify with: it is repeated in every line the room hears.
MAX_NAME = 64
_SCALARS = (str, int, float, bool, type(None))


def _text(value, what: str) -> str:
    """A peer's name or line as text: strings and numbers as FMSPy's ``str()`` gave them, nothing else.

    ``str()`` of a list or object walks all of it (with references, a few
    bytes can stand for millions of nodes), and a room would hear the walk.
    """
    if not isinstance(value, _SCALARS):
        raise CallError(f"The {what} must be a string, not a {type(value).__name__}", INVALID)
    return str(value)


class ChatApplication(Application):
    """Basic chatting between the clients of a room, with FMSPy's messages."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._names = {}   # client id -> the name it identified with

    @remote
    def identify(self, client, name):
        if client.id in self._names:
            raise CallError("Client was already identified", ALREADY_IDENTIFIED)
        name = _text(name, "name")
        if len(name) > MAX_NAME:
            raise CallError(f"A name is at most {MAX_NAME} characters", INVALID)
        self._names[client.id] = name
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
            return self._tell(room, f"<{name}> is leaving chat...")

    def _tell(self, room, line: str):
        """``message(line)`` to the room, through the hub; the caller's answer stays null, as FMSPy's was.

        Waiting for the hub's answer means a broadcast the hub could not
        deliver (a lost Redis, say) is the caller's ``_error``, never dropped.
        """
        return self.hub.broadcast(room, "message", (line,)).addCallback(lambda _: None)
