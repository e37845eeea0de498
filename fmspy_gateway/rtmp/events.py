"""Events the protocol core hands up: small frozen records named for what happened."""
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

from .sharedobject import SharedObjectMessage


class Event:
    """Base class of everything ``Connection.receive_data`` returns."""

    __slots__ = ()


@dataclass(frozen=True)
class HandshakeCompleted(Event):
    #: 0 or 1 for a peer that used the FP9 digest handshake with that scheme, None for simple.
    digest_scheme: Optional[int] = None
    #: On the client side: did the server's FP9 digests validate (None in simple mode).
    server_digest_valid: Optional[bool] = None


@dataclass(frozen=True)
class ChunkSizeChanged(Event):
    #: The size of the chunks the peer sends from now on.
    size: int


@dataclass(frozen=True)
class MessageAborted(Event):
    #: The chunk stream whose partial message the peer told us to drop.
    chunk_stream_id: int


@dataclass(frozen=True)
class AcknowledgementReceived(Event):
    #: Bytes the peer says it has received so far (modulo 2**32).
    sequence_number: int


@dataclass(frozen=True)
class WindowAcknowledgementSizeChanged(Event):
    #: The peer wants an Acknowledgement after every ``size`` bytes it sends.
    size: int


@dataclass(frozen=True)
class PeerBandwidthSet(Event):
    #: Window size the peer asks us to keep to.
    size: int
    #: 0 hard, 1 soft, 2 dynamic.
    limit_type: int


@dataclass(frozen=True)
class UserControlReceived(Event):
    #: The user control event type (``messages.UserControl``).
    event_type: int
    #: The stream id (stream events) or timestamp (ping events) the event carries.
    value: int
    #: SetBufferLength's buffer length in ms; None for other events.
    buffer_length: Optional[int] = None


@dataclass(frozen=True)
class CommandReceived(Event):
    #: Message stream the command arrived on; 0 is the NetConnection.
    stream_id: int
    #: Command name, e.g. "connect", "createStream" or an RPC method; None from Flex.
    name: Optional[str]
    #: Transaction id; 0 means the sender wants no reply.
    transaction_id: float
    #: The command object (connect's parameters, otherwise usually None).
    command_object: Any
    #: The remaining arguments, decoded.
    arguments: Tuple[Any, ...] = ()
    #: True when the command came as an AMF3 command message (type 17).
    amf3: bool = False


@dataclass(frozen=True)
class DataReceived(Event):
    #: Message stream of the data message (e.g. @setDataFrame on a published stream).
    stream_id: int
    #: Timestamp of the message, in ms.
    timestamp: int
    #: The decoded values (first is usually a handler name such as "onMetaData").
    values: Tuple[Any, ...] = ()
    #: True for an AMF3 data message (type 15).
    amf3: bool = False


@dataclass(frozen=True)
class SharedObjectReceived(Event):
    """A shared object message (type 19, or 16 for ``amf3``), decoded by ``sharedobject``."""

    #: Message stream it came on (0 in practice: Red5 and crtmpserver send and expect 0).
    stream_id: int
    #: The object's name, version, persistence and events.
    message: SharedObjectMessage
    #: True for the AMF3 form (type 16): answer in the same form.
    amf3: bool = False


@dataclass(frozen=True)
class MediaReceived(Event):
    #: 8 audio or 9 video.
    type_id: int
    stream_id: int
    #: Timestamp in ms (aggregate parts carry their own, rebased on the aggregate's).
    timestamp: int
    #: The FLV tag body, untouched.
    payload: bytes = field(repr=False, default=b"")


@dataclass(frozen=True)
class MessageRefused(Event):
    """A well-formed command, data or shared object message whose values expand past ``Limits.value_budget``.

    Only the message is refused; the connection stays open.  Nothing of the
    values is kept but what a reply needs, already cut to a loggable length.
    """

    #: 17/20 for a command, 15/18 for a data message, 16/19 for a shared object message.
    type_id: int
    stream_id: int
    #: The command or handler name, cut by ``budget.brief_name`` ("" when it was not a string, and for a
    #: shared object message, whose name is in ``reason``).
    name: str
    #: The command's transaction id (0 for data messages and commands wanting no reply).
    transaction_id: float
    #: The option that was crossed: "maxValueNodes" or "maxValueBytes".
    limit: str
    #: One line saying what was refused and why.
    reason: str
    #: True when it came as an AMF3 message.
    amf3: bool = False


@dataclass(frozen=True)
class MessageIgnored(Event):
    """A message of a type the core does not know; reported so the glue can log it."""

    type_id: int
    stream_id: int
    size: int


@dataclass(frozen=True)
class TimedOut(Event):
    """A deadline passed (``Connection.handle_timer``): the glue should flush and close.

    The connection's state is left as it was, so what is queued can still be
    written; it has no deadline after this (``get_timer()`` is None).
    """

    #: The option whose deadline passed: "handshakeTimeout", "connectTimeout" or "keepAliveTimeout".
    limit: str
    #: That option's value, in seconds.
    seconds: float
    #: One line saying what did not happen in time, naming the option.
    reason: str
