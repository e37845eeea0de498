"""One RTMP connection as a state machine: bytes in, events out; commands in, bytes out.

The handshake runs first (``handshake``), then the chunk layer (``chunks``)
carries messages, which are decoded into events (``events``).  Replies the
protocol itself requires (PingResponse, Acknowledgements, Window Ack Size
after Set Peer Bandwidth) are queued here so every user of the core gets them.
No sockets and no clock: the caller moves bytes and keeps time.  The
connection's deadlines (``timers``) are kept here too, aioquic's way: time
comes in as ``now`` arguments, ``get_timer()`` says when to call
``handle_timer(now)``.
"""
import enum
import os
from typing import Any, Callable, Iterable, List, Optional

from . import amf
from .chunks import ChunkReader, ChunkWriter, MediaBatch, Message, SharedChunkStream
from .errors import LocalProtocolError, RemoteProtocolError
from .budget import ValueOverBudget, brief_name
from .events import (AcknowledgementReceived, ChunkSizeChanged, CommandReceived, DataReceived, Event,
                     HandshakeCompleted, MediaReceived, MessageAborted, MessageIgnored, MessageRefused,
                     PeerBandwidthSet, SharedObjectReceived, UserControlReceived,
                     WindowAcknowledgementSizeChanged)
from .handshake import ClientHandshake, ServerHandshake
from .limits import Limits
from .messages import (MAX_CHUNK_SIZE, MessageType, UserControl, peer_bandwidth, read_peer_bandwidth, read_u32,
                       read_user_control, split_aggregate, u32, user_control)
from .sharedobject import SharedObjectMessage, decode_shared_object, encode_shared_object
from .timers import NO_TIMEOUTS, PING, Timeouts, Timers


class Role(enum.Enum):
    SERVER = "server"
    CLIENT = "client"


class State(enum.Enum):
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSED = "closed"


#: Chunk streams by purpose, as nginx-rtmp and ffmpeg lay them out.
CONTROL_CHUNK_STREAM = 2
COMMAND_CHUNK_STREAM = 3
STREAM_CHUNK_STREAM = 5
AUDIO_CHUNK_STREAM = 6
VIDEO_CHUNK_STREAM = 7

_MEDIA_CHUNK_STREAMS = {MessageType.AUDIO: AUDIO_CHUNK_STREAM, MessageType.VIDEO: VIDEO_CHUNK_STREAM}


class Connection:
    """The sans-I/O RTMP endpoint, server or client side.

    ``receive_data`` may raise ``RemoteProtocolError``; the connection is then
    CLOSED and the caller should send ``data_to_send()`` and drop the transport.
    """

    __slots__ = ("role", "state", "_handshake", "_reader", "_writer", "_outgoing", "_budget",
                 "_received", "_acknowledged", "_ack_window", "window_ack_size", "peer_sent_amf3", "_timers",
                 "_batch", "_batch_at", "_batch_token")

    def __init__(self, role: Role = Role.SERVER, *, limits: Limits = Limits(),
                 random_bytes: Callable[[int], bytes] = os.urandom, epoch: int = 0, digest: bool = True,
                 timeouts: Timeouts = NO_TIMEOUTS, now: float = 0.0):
        self.role = role
        self.state = State.HANDSHAKING
        if role is Role.SERVER:
            self._handshake = ServerHandshake(random_bytes=random_bytes, epoch=epoch)
        else:
            self._handshake = ClientHandshake(random_bytes=random_bytes, epoch=epoch, digest=digest)
        self._reader = ChunkReader(limits)
        self._budget = limits.value_budget
        #: The peer has sent AMF3 (an AMF3 message or a 0x11 switch), so it reads AMF3: replies may switch.
        self.peer_sent_amf3 = False
        self._writer = ChunkWriter()
        self._outgoing = [self._handshake.data_to_send()]   # C0+C1 for a client, nothing for a server
        self._received = 0          # bytes received since the handshake, for Acknowledgements
        self._acknowledged = 0      # the byte count of our last Acknowledgement
        self._ack_window = 0        # the peer's Window Ack Size; 0 until it sends one
        self.window_ack_size = 0    # the Window Ack Size we announced
        self._timers = Timers(timeouts, now)   # ``now`` starts the handshake deadline
        #: The live fan-out's MediaBatch this connection takes media from (``join_batch``), or None.
        self._batch = None
        self._batch_at = 0
        self._batch_token = None

    # -- bytes in -----------------------------------------------------------------

    def receive_data(self, data: bytes, now: Optional[float] = None) -> List[Event]:
        """Parse ``data``, received at ``now``; None (no deadlines kept) leaves the silence deadlines as they are."""
        if self.state is State.CLOSED:
            raise LocalProtocolError("receive_data on a closed connection")
        if now is not None:
            self._timers.received(now)
        try:
            if self.state is State.HANDSHAKING:
                return self._receive_handshake(data)
            return self._receive_chunks(data)
        except RemoteProtocolError:
            self.state = State.CLOSED
            raise

    def _receive_handshake(self, data: bytes) -> List[Event]:
        handshake = self._handshake
        handshake.receive_data(data)
        self._outgoing.append(handshake.data_to_send())
        if not handshake.complete:
            return []
        self.state = State.OPEN
        self._handshake = None
        self._timers.handshake_completed(self._timers.last_received)
        if self.role is Role.SERVER:
            event = HandshakeCompleted(digest_scheme=handshake.digest_scheme)
        else:
            event = HandshakeCompleted(server_digest_valid=handshake.server_digest_valid)
        events = [event]
        if handshake.leftover:
            events.extend(self._receive_chunks(handshake.leftover))
        return events

    def _receive_chunks(self, data: bytes) -> List[Event]:
        events = []
        for message in self._reader.feed(data):
            self._dispatch(message, events)
        self._received = (self._received + len(data)) & 0xFFFFFFFF
        if self._ack_window and (self._received - self._acknowledged) & 0xFFFFFFFF >= self._ack_window:
            self._acknowledged = self._received
            self._send_control(MessageType.ACKNOWLEDGEMENT, u32(self._received))
        return events

    def _dispatch(self, message: Message, events: list):
        handler = _HANDLERS.get(message.type_id)
        if handler is None:
            events.append(MessageIgnored(message.type_id, message.stream_id, len(message.payload)))
        else:
            handler(self, message, events)

    def _on_set_chunk_size(self, message, events):
        # This message's size (the reader checked it), not the reader's: a later Set Chunk Size in
        # the same read has already changed that.
        events.append(ChunkSizeChanged(read_u32(message.payload, "Set Chunk Size")))

    def _on_abort(self, message, events):
        events.append(MessageAborted(read_u32(message.payload, "Abort")))

    def _on_acknowledgement(self, message, events):
        events.append(AcknowledgementReceived(read_u32(message.payload, "Acknowledgement")))

    def _on_window_ack_size(self, message, events):
        size = read_u32(message.payload, "Window Acknowledgement Size")
        if size == 0:
            raise RemoteProtocolError("Window Acknowledgement Size of 0")
        self._ack_window = size
        events.append(WindowAcknowledgementSizeChanged(size))

    def _on_peer_bandwidth(self, message, events):
        size, limit_type = read_peer_bandwidth(message.payload)
        if size != self.window_ack_size:
            # The receiver of Set Peer Bandwidth answers with its Window Ack Size (spec 5.4.5).
            self.set_window_ack_size(size)
        events.append(PeerBandwidthSet(size, limit_type))

    def _on_user_control(self, message, events):
        event_type, value, buffer_length = read_user_control(message.payload)
        if event_type == UserControl.PING_REQUEST:
            self.send_user_control(UserControl.PING_RESPONSE, value)
        events.append(UserControlReceived(event_type, value, buffer_length))

    def _on_media(self, message, events):
        events.append(MediaReceived(message.type_id, message.stream_id, message.timestamp, message.payload))

    def _decode(self, message, amf3: bool, events: list):
        """The message's values, or None when they expand past the budget (a MessageRefused is queued)."""
        try:
            values, used_amf3 = amf.decode_message(message.payload, amf3=amf3, budget=self._budget)
            if used_amf3:
                self.peer_sent_amf3 = True
            return values
        except ValueOverBudget as exc:
            values = exc.values
            name = values[0] if values else None
            transaction_id = values[1] if len(values) > 1 and message.type_id in _COMMANDS else 0
            if isinstance(transaction_id, bool) or not isinstance(transaction_id, (int, float)):
                transaction_id = 0
            name = brief_name(name) if isinstance(name, str) else ""
            events.append(MessageRefused(message.type_id, message.stream_id, name, transaction_id, exc.limit,
                                         f"{name or 'message'}: {exc.reason}", amf3))
            return None

    def _on_data(self, message, events):
        amf3 = message.type_id == MessageType.DATA_AMF3
        values = self._decode(message, amf3, events)
        if values is not None:
            events.append(DataReceived(message.stream_id, message.timestamp, tuple(values), amf3))

    def _on_shared_object(self, message, events):
        """A shared object message; one whose values expand past the budget is refused like a command.

        The refusal (``MessageRefused``, transaction id 0, name "") keeps the
        connection: the body was well-formed, only too big to hand on.  The
        object's name is in the reason (``decode_shared_object`` puts it there).
        """
        amf3 = message.type_id == MessageType.SHARED_OBJECT_AMF3
        try:
            so_message = decode_shared_object(message.payload, amf3, self._budget)
        except ValueOverBudget as exc:
            events.append(MessageRefused(message.type_id, message.stream_id, "", 0, exc.limit, exc.reason, amf3))
            return
        if amf3:
            self.peer_sent_amf3 = True
        events.append(SharedObjectReceived(message.stream_id, so_message, amf3))

    def _on_command(self, message, events):
        amf3 = message.type_id == MessageType.COMMAND_AMF3
        values = self._decode(message, amf3, events)
        if values is None:
            return
        if not values:
            raise RemoteProtocolError("command message without a command name")
        name = values[0]
        if name is not None and not isinstance(name, str):
            raise RemoteProtocolError(f"command name is a {type(name).__name__}, not a string")
        transaction_id = values[1] if len(values) > 1 else 0
        if isinstance(transaction_id, bool) or not isinstance(transaction_id, (int, float)):
            raise RemoteProtocolError(f"command {brief_name(name)} has a non-numeric transaction id")
        command_object = values[2] if len(values) > 2 else None
        events.append(CommandReceived(message.stream_id, name, transaction_id, command_object,
                                      tuple(values[3:]), amf3))

    def _on_aggregate(self, message, events):
        for type_id, _, timestamp, body in split_aggregate(message.payload, message.timestamp):
            if type_id not in (MessageType.AUDIO, MessageType.VIDEO, MessageType.DATA_AMF0, MessageType.DATA_AMF3):
                raise RemoteProtocolError(f"aggregate message carries a part of type {type_id}")
            # Parts belong to the aggregate's message stream, whatever their own header says.
            self._dispatch(Message(type_id, message.stream_id, timestamp, body, message.chunk_stream_id), events)

    # -- deadlines (timers.py) -------------------------------------------------------

    def get_timer(self) -> Optional[float]:
        """When ``handle_timer`` should next be called, or None: nothing is due, ever, as things stand.

        Bytes received only ever move this later, except the end of the
        handshake (the connect and ping deadlines begin) and the first bytes
        after a ping; a caller keeping one scheduled call compares after a
        read and re-arms only when this is sooner than what it scheduled.
        """
        if self.state is State.CLOSED:
            return None
        return self._timers.get_timer()

    def handle_timer(self, now: float) -> List[Event]:
        """Act on what is due at ``now``: queue a PingRequest, or hand up a ``TimedOut``.

        Called early (before ``get_timer()``) it does nothing.  A PingRequest
        carries the milliseconds since the connection began.
        """
        if self.state is State.CLOSED:
            return []
        due = self._timers.handle_timer(now)
        if due is None:
            return []
        if due is PING:
            if self.state is State.OPEN:
                self.send_user_control(UserControl.PING_REQUEST, self._timers.ping_timestamp(now))
            return []
        return [due]

    def connect_accepted(self) -> None:
        """The application accepted connect: the ``connectTimeout`` deadline is gone."""
        self._timers.connect_accepted = True

    # -- bytes out ----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        if self._batch is not None:
            if not self._outgoing:
                # Only the batch's parts to write: the bytes its other members in step write too.
                return self._take_batch_joined()
            self.take_batch()
        out = b"".join(self._outgoing)
        self._outgoing.clear()
        return out

    def send_message(self, message: Message):
        if self.state is not State.OPEN:
            raise LocalProtocolError(f"cannot send messages while {self.state.value}")
        if self._batch is not None:
            self._before_own_message(message.chunk_stream_id)
        self._outgoing.append(self._writer.write(message))

    def _queue(self, type_id: int, stream_id: int, timestamp: int, payload: bytes, csid: int, shared=None):
        """``send_message`` of the message these fields make, without making it (``ChunkWriter.write_fields``).

        ``_outgoing`` is only ever extended and cleared, never replaced: the
        live fan-out holds its ``extend`` (``share_media``).
        """
        if self.state is not State.OPEN:
            raise LocalProtocolError(f"cannot send messages while {self.state.value}")
        if self._batch is not None:
            self._before_own_message(csid)
        self._outgoing.extend(self._writer.write_fields(type_id, stream_id, timestamp, payload, csid, shared))

    def _send_control(self, type_id: int, payload: bytes):
        self._queue(type_id, 0, 0, payload, CONTROL_CHUNK_STREAM)

    def set_chunk_size(self, size: int):
        """Announce and start using a new outgoing chunk size."""
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise LocalProtocolError(f"chunk size {size} outside 1..2**31-1")
        self._send_control(MessageType.SET_CHUNK_SIZE, u32(size))
        self._writer.chunk_size = size
        self._writer.leave_shared()
        if self._batch is not None:
            self._detach_batch()     # the batch's bodies are cut to the old size

    @property
    def chunk_size(self) -> int:
        """The chunk size we send with."""
        return self._writer.chunk_size

    def abort(self, chunk_stream_id: int):
        self._send_control(MessageType.ABORT, u32(chunk_stream_id))

    def set_window_ack_size(self, size: int):
        self.window_ack_size = size
        self._send_control(MessageType.WINDOW_ACK_SIZE, u32(size))

    def set_peer_bandwidth(self, size: int, limit_type: int):
        self._send_control(MessageType.SET_PEER_BANDWIDTH, peer_bandwidth(size, limit_type))

    def send_user_control(self, event_type: int, value: int, buffer_length: Optional[int] = None):
        self._send_control(MessageType.USER_CONTROL, user_control(event_type, value, buffer_length))

    def send_command(self, name: Optional[str], transaction_id: float, command_object: Any = None,
                     arguments: Iterable[Any] = (), *, stream_id: int = 0, amf3: bool = False,
                     chunk_stream_id: Optional[int] = None, switch: bool = True):
        """Queue a command; ``switch=False`` for an AMF0-only peer (see ``amf.encode_values``).

        A value that cannot be encoded, or a message over RTMP's 24-bit length,
        raises ``LocalProtocolError`` before anything is queued, so the caller
        can still send something else (an ``_error``) in its place.
        """
        payload = amf.encode_values([name, transaction_id, command_object, *arguments], amf3=amf3,
                                    switch=switch)
        self.send_encoded_command(payload, stream_id=stream_id, amf3=amf3, chunk_stream_id=chunk_stream_id)

    def send_encoded_command(self, payload: bytes, *, stream_id: int = 0, amf3: bool = False,
                             chunk_stream_id: Optional[int] = None):
        """Queue a command body made beforehand (``amf.encode_values`` of what ``send_command`` takes, with
        the same ``amf3``): a server encodes a room's broadcast once for all its members (app/notification.py)."""
        type_id = MessageType.COMMAND_AMF3 if amf3 else MessageType.COMMAND_AMF0
        if chunk_stream_id is None:
            chunk_stream_id = STREAM_CHUNK_STREAM if stream_id else COMMAND_CHUNK_STREAM
        self._queue(type_id, stream_id, 0, payload, chunk_stream_id)

    def send_data(self, values: Iterable[Any], *, stream_id: int, timestamp: int = 0, amf3: bool = False,
                  switch: bool = True):
        payload = amf.encode_values(list(values), amf3=amf3, switch=switch)
        type_id = MessageType.DATA_AMF3 if amf3 else MessageType.DATA_AMF0
        self._queue(type_id, stream_id, timestamp, payload, STREAM_CHUNK_STREAM)

    def send_media(self, type_id: int, stream_id: int, timestamp: int, payload: bytes, shared: dict = None):
        """Queue an audio or video message; see ``ChunkWriter.write_parts`` for ``shared``."""
        self._queue(type_id, stream_id, timestamp, payload, _MEDIA_CHUNK_STREAMS[type_id], shared)

    def share_media(self, type_id: int, shared: Optional[SharedChunkStream], source_timestamp: int):
        """Join a live fan-out for ``type_id``'s chunk stream after the media message just queued.

        ``shared`` is the fan-out's ``SharedChunkStream`` (None: start one
        from this connection's state).  Returns (the shared state, the chunk
        stream table, this connection's queue ``extend``), or None when this
        connection is not in step (``ChunkWriter.share``).  While
        ``table[shared.csid] is shared``, ``extend(shared.next_parts(...))``
        queues a message here exactly as ``send_media`` would have; anything
        else this connection sends on that chunk stream ends it.
        """
        if self.state is not State.OPEN:
            return None
        shared = self._writer.share(_MEDIA_CHUNK_STREAMS[type_id], shared, source_timestamp)
        if shared is None:
            return None
        return shared, self._writer.table, self._outgoing.extend

    def join_batch(self, batch: MediaBatch, token) -> None:
        """Take live media from ``batch`` from now on (see ``MediaBatch``); ``token`` names us in it.

        Only for a connection whose media chunk streams' state is the
        fan-out's ``SharedChunkStream`` (``share_media`` for both), since the
        batch's headers are built for that state.
        """
        self._batch, self._batch_token = batch, token
        self._batch_at = batch.join(token)

    def take_batch(self) -> None:
        """Queue what the batch holds that we have not taken yet."""
        batch = self._batch
        start = self._batch_at - batch.base
        parts = batch.parts
        if start < len(parts):
            self._outgoing += parts[start:] if start else parts
            self._took(batch)

    def _take_batch_joined(self) -> bytes:
        """What the batch holds that we have not taken yet, as the bytes to write (nothing else is queued)."""
        batch = self._batch
        if self._batch_at - batch.base >= len(batch.parts):
            return b""
        data = batch.joined_from(self._batch_at)
        self._took(batch)
        return data

    def _took(self, batch: MediaBatch) -> None:
        # MediaBatch.taken, written out: this runs once per player per write of the fan-out.
        self._batch_at = batch.base + len(batch.parts)
        ready = batch.ready
        ready[self._batch_token] = None
        if len(ready) == len(batch.members):
            batch.base = self._batch_at
            batch.parts = []

    def leave_batch(self) -> None:
        """Take what is ours, then no more (the fan-out sends us media one by one again)."""
        if self._batch is not None:
            self.take_batch()
            self._batch.leave(self._batch_token)
            self._batch = self._batch_token = None

    def _before_own_message(self, csid: int) -> None:
        # Whatever we queue ourselves comes after the media the batch already holds for us; one on a media
        # chunk stream replaces the state the batch's headers are built for: we leave, and say so.
        self.take_batch()
        if csid == AUDIO_CHUNK_STREAM or csid == VIDEO_CHUNK_STREAM:
            self._detach_batch()

    def _detach_batch(self) -> None:
        batch, token = self._batch, self._batch_token
        self.leave_batch()
        batch.detached.append(token)

    def send_shared_object(self, message: SharedObjectMessage, *, amf3: bool = False, switch: bool = True):
        """Queue a shared object message: type 16 for an AMF3 peer (values switched to AMF3), else 19.

        Chunk stream 3, message stream 0, as Red5 and crtmpserver send them.
        A value that cannot be encoded (or, with ``switch=False``, that needs
        AMF3: see ``send_command``) raises ``LocalProtocolError`` before
        anything is queued.
        """
        self.send_encoded_shared_object(encode_shared_object(message, amf3, switch=switch), amf3=amf3)

    def send_encoded_shared_object(self, payload: bytes, *, amf3: bool = False):
        """Queue a shared object message body made by ``encode_shared_object`` with the same ``amf3``.

        A server encodes an update once for all its listeners (app/shared_objects.py).
        """
        type_id = MessageType.SHARED_OBJECT_AMF3 if amf3 else MessageType.SHARED_OBJECT_AMF0
        self.send_message(Message(type_id, 0, 0, payload, COMMAND_CHUNK_STREAM))


_COMMANDS = (MessageType.COMMAND_AMF0, MessageType.COMMAND_AMF3)

_HANDLERS = {
    MessageType.SET_CHUNK_SIZE: Connection._on_set_chunk_size,
    MessageType.ABORT: Connection._on_abort,
    MessageType.ACKNOWLEDGEMENT: Connection._on_acknowledgement,
    MessageType.USER_CONTROL: Connection._on_user_control,
    MessageType.WINDOW_ACK_SIZE: Connection._on_window_ack_size,
    MessageType.SET_PEER_BANDWIDTH: Connection._on_peer_bandwidth,
    MessageType.AUDIO: Connection._on_media,
    MessageType.VIDEO: Connection._on_media,
    MessageType.DATA_AMF3: Connection._on_data,
    MessageType.DATA_AMF0: Connection._on_data,
    MessageType.SHARED_OBJECT_AMF3: Connection._on_shared_object,
    MessageType.SHARED_OBJECT_AMF0: Connection._on_shared_object,
    MessageType.COMMAND_AMF3: Connection._on_command,
    MessageType.COMMAND_AMF0: Connection._on_command,
    MessageType.AGGREGATE: Connection._on_aggregate,
}
