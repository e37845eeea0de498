"""The states of a NetConnection and of a NetStream, as tables (h11's ``_state.py``): one place each.

``CONNECTION_TRANSITIONS`` says how a session's state moves; ``connection_action``
what a command received in a state does.  ``STREAM_COMMANDS`` says, for each
NetStream command and each stream state, whether it runs or what the client
is answered instead (always an onStatus or nothing, never an exception).
``app/session.py`` and ``app/stream_commands.py`` act on these tables; what
is not in them is refused as the tables say.
"""
import enum
from typing import Dict, Optional, Tuple

from .replies import NetStreamCode


class ConnectionState(enum.Enum):
    #: Handshake done, no connect yet: only connect is accepted (anything else closes the connection).
    AWAITING_CONNECT = "awaiting connect"
    #: The application's ``on_connect`` is deciding: commands are held (``maxQueuedCommands``) in order.
    DECIDING = "deciding"
    #: Accepted: calls both ways, stream commands, media.
    CONNECTED = "connected"
    #: Gone (closed by either side, or refused): nothing more is handled.
    CLOSED = "closed"


class ConnectionEvent(enum.Enum):
    CONNECT = "connect"          # a connect command arrived (the application decides)
    ACCEPTED = "accepted"        # on_connect accepted
    REFUSED = "refused"          # on_connect refused, or an unknown application (the refusal is sent, then close)
    LOST = "lost"                # the connection closed


_C, _E = ConnectionState, ConnectionEvent

#: (state, event) -> next state.  Not in the table: a local error (``transition`` raises ``LocalProtocolError``).
CONNECTION_TRANSITIONS: Dict[Tuple[ConnectionState, ConnectionEvent], ConnectionState] = {
    (_C.AWAITING_CONNECT, _E.CONNECT): _C.DECIDING,
    (_C.AWAITING_CONNECT, _E.REFUSED): _C.CLOSED,
    (_C.AWAITING_CONNECT, _E.LOST): _C.CLOSED,
    (_C.DECIDING, _E.ACCEPTED): _C.CONNECTED,
    (_C.DECIDING, _E.REFUSED): _C.CLOSED,
    (_C.DECIDING, _E.LOST): _C.CLOSED,
    (_C.CONNECTED, _E.LOST): _C.CLOSED,
    (_C.CLOSED, _E.LOST): _C.CLOSED,
    (_C.CLOSED, _E.REFUSED): _C.CLOSED,
}


def next_connection_state(state: ConnectionState, event: ConnectionEvent) -> ConnectionState:
    from ..rtmp.errors import LocalProtocolError
    try:
        return CONNECTION_TRANSITIONS[state, event]
    except KeyError:
        raise LocalProtocolError(f"a NetConnection cannot go from {state.value} on {event.value}") from None


class Action(enum.Enum):
    """What a command received in a connection state does."""

    CONNECT = "connect"                  # ask the application (on_connect)
    CLOSE_BEFORE_CONNECT = "close: before connect"
    HOLD = "hold until connect is decided"
    RESOLVE = "answers one of our calls"  # _result / _error
    CLOSE_SECOND_CONNECT = "close: second connect on one connection"
    STREAM = "a NetStream command"       # StreamCommands, by STREAM_COMMANDS
    CALL = "a call to the application"   # handle_call; its _result / _error
    IGNORE = "ignored (closed)"


def connection_action(state: ConnectionState, name, stream_id: int, is_stream_command: bool) -> Action:
    """What the command ``name`` (on ``stream_id``) does in ``state``: the NetConnection's command table."""
    if state is ConnectionState.AWAITING_CONNECT:
        return Action.CONNECT if name == "connect" and stream_id == 0 else Action.CLOSE_BEFORE_CONNECT
    if state is ConnectionState.DECIDING:
        return Action.HOLD
    if state is ConnectionState.CONNECTED:
        if name in ("_result", "_error"):
            return Action.RESOLVE
        if name == "connect":
            return Action.CLOSE_SECOND_CONNECT
        return Action.STREAM if is_stream_command else Action.CALL
    return Action.IGNORE


class StreamState(enum.Enum):
    """What a NetStream is doing; paused is a flag of the two playing states, not a state."""

    IDLE = "idle"
    PUBLISHING = "publishing"
    PLAYING_LIVE = "playing live"
    PLAYING_RECORDED = "playing recorded"


class Run:
    """The command runs in this state."""

    def __repr__(self):
        return "RUN"


class Ignore:
    """The command does nothing in this state and nothing is answered (as FMS: receiveAudio on an idle stream)."""

    def __repr__(self):
        return "IGNORE"


class Refuse:
    """The command is answered with an onStatus ``code`` at level error on its stream, and nothing else happens."""

    __slots__ = ("code", "description")

    def __init__(self, code: str, description: str):
        self.code = code
        self.description = description

    def __repr__(self):
        return f"REFUSE({self.code})"


RUN, IGNORE = Run(), Ignore()
_S = StreamState
_ALL = tuple(StreamState)
_PLAYING = (_S.PLAYING_LIVE, _S.PLAYING_RECORDED)


def _every(entry):
    return {state: entry for state in _ALL}


#: command -> {stream state -> RUN | IGNORE | Refuse}.  Commands on stream 0 (createStream, releaseStream,
#: FCPublish, FCUnpublish, FCSubscribe, getStreamLength, deleteStream) are not about one stream's state: RUN.
STREAM_COMMANDS: Dict[str, Dict[StreamState, object]] = {
    "createStream": _every(RUN),
    "deleteStream": _every(RUN),
    "closeStream": _every(RUN),
    "getStreamLength": _every(RUN),
    "releaseStream": _every(RUN),
    "FCPublish": _every(RUN),
    "FCUnpublish": _every(RUN),
    "FCSubscribe": _every(RUN),
    # publish and play end what the stream was doing first.
    "publish": _every(RUN),
    "play": _every(RUN),
    "play2": _every(RUN),
    # FMS answers a pause with Pause.Notify / Unpause.Notify whatever the stream does.
    "pause": _every(RUN),
    "seek": {**_every(Refuse(NetStreamCode.SEEK_FAILED, "Only recorded streams can seek.")),
             _S.PLAYING_RECORDED: RUN},
    "receiveAudio": {**_every(IGNORE), **{state: RUN for state in _PLAYING}},
    "receiveVideo": {**_every(IGNORE), **{state: RUN for state in _PLAYING}},
}


def stream_state(stream) -> Optional[StreamState]:
    """The state of a ``NetStream`` (None: no such stream)."""
    if stream is None:
        return None
    if stream.live is not None:
        return StreamState.PUBLISHING
    if stream.player is not None:
        return StreamState.PLAYING_LIVE
    if stream.vod is not None:
        return StreamState.PLAYING_RECORDED
    return StreamState.IDLE
