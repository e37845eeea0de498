"""One connection's conversation with the application server.

The Twisted glue feeds each decoded event to ``Session.handle``; the session
is the only writer to the rtmp ``Connection`` its peer holds (``SessionOutput``:
streams, players, playback and applications ask it to send) and asks the glue
to flush.  Its states are a table in ``app/states.py``; the path of a message
is in docs/ARCHITECTURE.md, "How a message travels".  Here live the connect exchange with the application's hooks, calls in
both directions, and the stream-level commands clients send around them.
"""
import copy
import logging
import secrets
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Protocol

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed

from ..config import RTMPConfig
from ..rtmp.amf import encode_values
from ..rtmp.budget import brief_name
from ..rtmp.connection import Connection, State
from ..rtmp.errors import LocalProtocolError
from ..rtmp.events import CommandReceived, DataReceived, MediaReceived, MessageRefused, SharedObjectReceived
from ..rtmp.messages import MessageType, PeerBandwidthLimit, UserControl
from .application import Accept, Application, CallError, ConnectRedirected, ConnectRejected
from .calls import CallFailed, CallTimedOut, PendingCalls
from .client import Client
from .logs import RateLimitedLog, log_failure
from .notification import Notification
from .relay import RELAY_CREDENTIAL, relay_credential
from .replies import NetConnectionCode, NetStreamCode, connect_properties, error, status
from .fileio import default_executor
from .shared_objects import SessionSharedObjects
from .states import Action, ConnectionEvent, ConnectionState, connection_action, next_connection_state
from .stream_commands import StreamCommands, StreamLimits

log = logging.getLogger(__name__)

#: Window and bandwidth we announce at connect, as nginx-rtmp and Red5 do.
WINDOW_ACK_SIZE = 2_500_000
#: Chunk size we send with after connect: fewer headers than the default 128.
CHUNK_SIZE = 4096
#: The onStatus code a refused stream command gets on its stream; others get FMS's generic NetStream.Failed.
_REFUSED_STREAM_CODES = {"play": NetStreamCode.PLAY_FAILED, "play2": NetStreamCode.PLAY_FAILED,
                         "publish": NetStreamCode.PUBLISH_BAD_NAME}
#: Characters of a reason (an encoder's message, say) put in a log line or an ``_error`` description.
REASON_LENGTH = 200


class Peer(Protocol):
    """What a session needs from the glue that owns the socket."""

    #: The sans-I/O connection to queue messages on.
    connection: Connection
    #: "host:port" of the remote end.
    address: str
    #: True while more than ``maxOutgoingBytes`` waits for a client that does not read: notifications and
    #: calls to it are dropped rather than queued.  A peer without the attribute is never over budget.
    over_budget: bool
    #: True when live media waits ``mediaFlushInterval`` to be written rather than the end of the read that
    #: queued it: the live fan-out then hands it over in one batch per write (app/live.py, ``MediaBatch``).
    #: A peer without the attribute writes media at once.
    media_waits: bool

    def flush(self) -> None:
        """Write what the connection has queued."""

    def flush_media(self) -> None:
        """Write what the connection has queued, live media, within ``mediaFlushInterval``; as ``flush`` if 0."""

    def close(self, reason: str) -> None:
        """Flush, then drop the connection; ``reason`` is logged."""

    def abort(self, reason: str) -> None:
        """Drop the connection at once, whatever is still unsent; ``reason`` is logged."""


def split_app_path(app: str):
    """'chat/room1?token=x' -> ('chat', 'room1'); the query string is part of neither."""
    path = app.split("?", 1)[0].strip("/")
    name, _, room = path.partition("/")
    return name, room


def _plain(info: dict) -> dict:
    """An information object reduced to level, code and description, as short strings: always encodable."""
    return {key: brief_name(info.get(key, ""), REASON_LENGTH) for key in ("level", "code", "description")}


def _amf0_members(value):
    """A copy of mapping ``value`` without the members only AMF3 can carry (a ByteArray in onMetaData)."""
    kept = copy.copy(value)
    for key, member in value.items():
        try:
            encode_values([member], amf3=False, switch=False)
        except LocalProtocolError:
            del kept[key]
    return kept


def _done_leaving(result, leaving: set, chain: Deferred):
    """A leave chain has run to its end: no longer something a graceful stop waits for."""
    leaving.discard(chain)
    return result


class SessionOutput:
    """The only way anything of ``app/`` writes to a connection: through the session that owns it.

    Streams, players, recorded playback and applications ask the session to
    send; it queues on its peer's ``Connection``, and ``flush`` hands what is
    queued to the glue.
    """

    def __init__(self, peer: Peer):
        self.peer = peer
        #: Write what the connection has queued, live media: the glue may hold it ``mediaFlushInterval``
        #: (``Peer.flush_media``).  The peer's own bound method, kept: ``LiveStreams.flush`` calls it once
        #: per player per publisher read, and a method of ours in between cost the fan-out some 5%.
        self.flush_media = peer.flush_media

    # Methods, not the connection's bound methods kept as attributes: those would cost every idle
    # connection an object each, and the live fan-out's fast path does not come through here.

    def send_media(self, type_id: int, stream_id: int, timestamp: int, payload, shared=None) -> None:
        """One audio or video message (``Connection.send_media``)."""
        self.peer.connection.send_media(type_id, stream_id, timestamp, payload, shared)

    def flush(self) -> None:
        """Write what the connection has queued (``Peer.flush``)."""
        self.peer.flush()

    def share_media(self, type_id: int, shared, source_timestamp: int):
        """Join a live stream's fast path (``Connection.share_media``; app/live.py ``LiveStream.publish``)."""
        return self.peer.connection.share_media(type_id, shared, source_timestamp)

    @property
    def media_waits(self) -> bool:
        """Whether live media for this client waits ``mediaFlushInterval`` (``Peer.media_waits``)."""
        return getattr(self.peer, "media_waits", False)

    def join_batch(self, batch) -> None:
        """Take live media from a fan-out's ``MediaBatch`` (``Connection.join_batch``; app/live.py)."""
        self.peer.connection.join_batch(batch, self)

    def leave_batch(self) -> None:
        self.peer.connection.leave_batch()

    def close(self, reason: str) -> None:
        """Flush, then drop the connection (``Peer.close``)."""
        self.peer.close(reason)

    def abort(self, reason: str) -> None:
        """Drop the connection at once, whatever is unsent (``Peer.abort``): a client that stopped reading."""
        self.peer.abort(reason)

    def send_status(self, stream_id: int, code: str, description: str, level: str = "status", **extra) -> None:
        """``onStatus`` on ``stream_id``: the one onStatus sender (codes in ``app/replies.py``)."""
        self.peer.connection.send_command("onStatus", 0, None, [status(code, description, level, **extra)],
                                          stream_id=stream_id)

    def send_command(self, name: str, arguments, stream_id: int = 0) -> None:
        """A command wanting no answer (transaction 0, null command object): onFCPublish, onPlayStatus..."""
        self.peer.connection.send_command(name, 0, None, list(arguments), stream_id=stream_id)

    def send_result(self, command, value=None) -> None:
        """``_result`` for a stream command that wants one (transaction id not 0)."""
        if command.transaction_id:
            self.peer.connection.send_command("_result", command.transaction_id, None, [value], amf3=command.amf3)

    def send_user_control(self, event_type: int, stream_id: int) -> None:
        self.peer.connection.send_user_control(event_type, stream_id)

    def send_data(self, values, stream_id: int, what: str) -> bool:
        """Send a data message, AMF0 only if the client reads only AMF0; returns whether it went.

        For such a client (npm ``rtmp-client`` disconnects on a 0x11 switch) an
        object's members that need AMF3 are left out, so onMetaData still gives
        the size and codecs; a message that still cannot be sent is dropped.
        Either is logged once per interval.
        """
        connection, switch = self.peer.connection, self._may_switch()
        try:
            connection.send_data(values, stream_id=stream_id, switch=switch)
            return True
        except LocalProtocolError as exc:
            reason = brief_name(str(exc), 200)
        values = [_amf0_members(v) if isinstance(v, Mapping) else v for v in values]
        try:
            connection.send_data(values, stream_id=stream_id, switch=switch)
            self.limit_log.hit("unsendable data", f"{what} sent without the values it cannot carry: {reason}")
            return True
        except LocalProtocolError:
            self.limit_log.hit("unsendable data", f"{what} not sent: {reason}")
            return False


class Session(SessionOutput):
    """Connect, then calls in both directions, for one peer.

    States: ``app/states.py`` (``ConnectionState``, ``CONNECTION_TRANSITIONS``,
    ``connection_action``): awaiting connect -> deciding (the application's
    hook) -> connected -> closed.
    """

    def __init__(self, applications: Mapping[str, Application], peer: Peer, clock=None,
                 call_timeout: Optional[float] = 30.0, stream_limits: StreamLimits = StreamLimits(),
                 max_queued_commands: int = 32, executor=None,
                 max_fourcc_entries: int = RTMPConfig.max_fourcc_entries):
        super().__init__(peer)
        self.applications = applications
        self.application: Optional[Application] = None
        #: The Client once connect arrived (accepted or still being decided).
        self.client: Optional[Client] = None
        #: The NetConnection's state (``app/states.py``: its table); ``connected`` and ``closed`` read it.
        self.state = ConnectionState.AWAITING_CONNECT
        #: Read-only views of ``state``, kept by ``_move``.
        self.connected = self.closed = False
        self._lost = False
        self.outgoing_calls = PendingCalls(clock, call_timeout, first_transaction_id=1)
        self._clock = clock
        self._limit_log: Optional[RateLimitedLog] = None
        self._stream_limits = stream_limits
        #: Runs recording's and playback's file I/O: ``clock``'s thread pool when it is a reactor (app/fileio.py).
        self._executor = executor
        self._streams: Optional[StreamCommands] = None
        #: Commands held while connect is being decided (``maxQueuedCommands``); more closes the connection.
        self.max_queued_commands = max_queued_commands
        #: Entries of each Enhanced RTMP codec list or map read from connect (``maxFourCcEntries``).
        self._max_fourcc_entries = max_fourcc_entries
        self._early = None
        self._deciding = None  # the application's on_connect answer, while it is awaited
        #: The client's remote shared objects (app/shared_objects.py), from its first shared object message.
        self.shared_objects: Optional[SessionSharedObjects] = None
        self._joining = None   # fires when the hub answered the join: the leave is sent after it (``_leave``)
        self._entering = None  # fires when the enter hooks ran too: the leave hooks run after them
        #: A node of the cluster pulling a live stream (app/relay.py): no hooks, no room, it only plays.
        self.is_relay = False

    @property
    def limit_log(self) -> RateLimitedLog:
        """This connection's limit hits and refused traffic, one log line per kind per interval.

        The one log of the connection, which its glue and its streams write
        to as well.  Made at the first hit: most connections never hit a
        limit, and an idle one should not carry it.
        """
        limit_log = self._limit_log
        if limit_log is None:
            limit_log = self._limit_log = RateLimitedLog(log, self._clock, prefix=f"{self.peer.address}: ")
        return limit_log

    @property
    def streams(self) -> StreamCommands:
        """This connection's NetStreams and their commands.

        Made at the first stream command or media: a client that only calls
        (chat, echotest, the gateway) never has one, and an idle connection
        should not carry it.
        """
        streams = self._streams
        if streams is None:
            executor = self._executor if self._executor is not None else default_executor(self._clock)
            streams = self._streams = StreamCommands(self, self._stream_limits, self._clock, executor)
        return streams

    @property
    def limit_counts(self) -> Dict[str, int]:
        """Every limit hit of this connection by kind (for status), without making the log."""
        return self._limit_log.counts if self._limit_log is not None else {}

    # -- events from the glue ------------------------------------------------------------

    def handle(self, event) -> None:
        if isinstance(event, MediaReceived):
            if self.connected:
                self.streams.publishing.on_media(event)
        elif isinstance(event, CommandReceived):
            self._on_command(event)
        elif isinstance(event, DataReceived):
            if self.connected:
                self.streams.publishing.on_data(event)
        elif isinstance(event, MessageRefused):
            self._on_refused(event)
        elif isinstance(event, SharedObjectReceived):
            if self.connected:      # before connect: counted as junk by the glue, unanswered
                shared = self.shared_objects
                if shared is None:  # built at the first message: most clients never use a shared object
                    shared = self.shared_objects = SessionSharedObjects(self)
                shared.handle(event.message, event.amf3)

    def events_handled(self) -> None:
        """The glue handled one read's events: players fed by them get their bytes now, once."""
        if self.application is not None:
            self.application.live.flush()

    def writing_paused(self, paused: bool) -> None:
        """The transport's buffer is full (or drained again): live media for this client waits or flows."""
        if self.application is not None:
            if paused:
                self.application.live.block(self)
            else:
                self.application.live.unblock(self)

    def _move(self, event: ConnectionEvent) -> None:
        state = self.state = next_connection_state(self.state, event)
        # Plain attributes, not properties: the fan-out reads ``closed`` per player per read.
        self.connected = state is ConnectionState.CONNECTED
        self.closed = state is ConnectionState.CLOSED

    def connection_lost(self, reason: str) -> None:
        if self._lost:
            return
        self._lost = True
        was_connected = self.connected
        self._move(ConnectionEvent.LOST)
        if self._limit_log is not None:
            self._limit_log.close()
        self.outgoing_calls.fail_all(f"connection closed: {reason}")
        if was_connected:
            if self.shared_objects is not None:
                self.shared_objects.close()
            if self._streams is not None:
                self._streams.close_all()
            self.application.live.unblock(self)
            if not self.is_relay:
                self._leave()
        elif self._deciding is not None:
            # Gone before the application decided: stop asking it (a backend's @connect, say).
            self._deciding.cancel()

    def _on_command(self, command: CommandReceived) -> None:
        name = command.name
        action = connection_action(self.state, name, command.stream_id, StreamCommands.handles(name))
        if action is Action.STREAM:
            self.streams.handle(command)
        elif action is Action.CALL:
            self._on_call(command)
        elif action is Action.RESOLVE:
            value = command.arguments[0] if command.arguments else None
            if name == "_result":
                self.outgoing_calls.resolve(command.transaction_id, value)
            else:
                self.outgoing_calls.reject(command.transaction_id, value)
        elif action is Action.HOLD:
            self._hold(command)
        elif action is Action.CONNECT:
            self._on_connect(command)
        elif action is Action.CLOSE_BEFORE_CONNECT:
            self.close(f"{brief_name(name)} before connect")
        elif action is Action.CLOSE_SECOND_CONNECT:
            self.close("second connect on one connection")

    def _hold(self, event) -> None:
        """Keep a command (or a refusal) until connect is decided, so answers keep their order."""
        self._early.append(event)
        if len(self._early) > self.max_queued_commands:
            log.warning("%s: more than %d commands before connect was answered (maxQueuedCommands)",
                        self.peer.address, self.max_queued_commands)
            self.close("limit hit: maxQueuedCommands")

    # -- messages the core refused (values over the value budget) -----------------------------

    def _on_refused(self, refused: MessageRefused) -> None:
        """Answer a refused message as its sender expects, and keep the connection.

        The values expanded past ``maxValueNodes``/``maxValueBytes``; the core
        kept only the name (already cut) and the transaction id, so nothing
        here can walk them.  The answer names the option, so whoever reads it
        knows which limit to raise; the log gets one line per kind per
        interval, however often a client does it.
        """
        data = refused.type_id in (MessageType.DATA_AMF0, MessageType.DATA_AMF3)
        self.limit_log.hit(refused.limit, f"{'data message' if data else 'command'} refused: {refused.reason}")
        if data:
            return      # nobody waits for an answer to data: dropped
        name = refused.name
        description = f"Refused: {refused.reason}"
        if self.client is None:
            if name == "connect" and refused.stream_id == 0:
                self._refuse(error(NetConnectionCode.CONNECT_REJECTED, description), f"connect refused: {refused.reason}")
            else:
                self.close(f"{name or 'a refused message'} before connect")
            return
        if not self.connected:
            self._hold(refused)
            return
        if name == "connect":
            self.close("second connect on one connection")
        elif name in ("_result", "_error"):
            # The client's answer to one of our calls: that call fails, saying why.
            self.outgoing_calls.reject(refused.transaction_id, error(NetConnectionCode.CALL_FAILED, description))
        elif refused.stream_id and StreamCommands.handles(name):
            # play/publish and the like on a stream are answered with an onStatus there, as FMS does,
            # whatever their transaction id (ffmpeg numbers them, Flash sends 0).
            code = _REFUSED_STREAM_CODES.get(name, NetStreamCode.FAILED)
            try:
                self.send_status(refused.stream_id, code, description, "error")
            except LocalProtocolError:
                return      # the connection is closing
        elif refused.transaction_id:
            self.send_call_error(refused, error(NetConnectionCode.CALL_FAILED, description))
        self.peer.flush()

    # -- connect --------------------------------------------------------------------------

    def _on_connect(self, command: CommandReceived) -> None:
        params = command.command_object if isinstance(command.command_object, dict) else {}
        app_path = params.get("app")
        name, room = split_app_path(app_path) if isinstance(app_path, str) else ("", "")
        application = self.applications.get(name)
        encoding = params.get("objectEncoding", 0)
        # Echoed in the reply: only what Flash sends (0 or 3), never a peer's value that might not encode.
        self._encoding = encoding if type(encoding) in (int, float) and encoding in (0, 3) else 0
        if application is None:
            self._refuse(error(NetConnectionCode.CONNECT_INVALID_APP,
                               f"Application '{brief_name(name)}' is not available on this server.",
                               objectEncoding=self._encoding), f"connect to unknown application {brief_name(name)}")
            return
        credential = relay_credential(params)
        if credential is not None:
            self._relay_connect(application, params, credential, command)
            return
        self._move(ConnectionEvent.CONNECT)
        self.application = application
        self.client = self._new_client(name, params, command, room)
        self._early = []
        d = self._deciding = maybeDeferred(application.on_connect, self.client, *command.arguments)
        d.addBoth(self._decided)
        d.addCallbacks(self._connect_decided, self._connect_failed)
        d.addErrback(log_failure(log, "connect of %r", self.client))

    def _relay_connect(self, application: Application, params: dict, credential, command: CommandReceived) -> None:
        """Another node pulling a live stream: the cluster's secret instead of ``on_connect``, and no room.

        The player's own node ran the application's hooks; here the relay
        is accepted on the secret alone (compared in constant time,
        ``Relay.accepts``) and refused, and logged, on anything else.
        """
        relay = application.relay
        if relay is None or not relay.accepts(credential):
            log.warning("%s: relay connection to %s refused: wrong or unexpected %s", self.peer.address,
                        application.name, RELAY_CREDENTIAL)
            self._refuse(error(NetConnectionCode.CONNECT_REJECTED, "Relay connection refused."),
                         f"{application.name}: relay connection refused")
            return
        self._move(ConnectionEvent.CONNECT)
        self.application = application
        self.is_relay = True
        self.client = self._new_client(application.name, params, command, "")
        self._early = []
        self._connect_decided(Accept())

    def _new_client(self, application_name: str, params: dict, command: CommandReceived, room: str) -> Client:
        """The Client of this connect; Enhanced RTMP entries past ``maxFourCcEntries`` are left unread, and logged."""
        client = Client(secrets.token_hex(8), self.peer.address, application_name, params, command.arguments, room,
                        self, max_fourcc_entries=self._max_fourcc_entries)
        ignored = client.capabilities.ignored
        if ignored:
            self.limit_log.hit("maxFourCcEntries", f"connect declared {ignored} Enhanced RTMP codec entries past "
                                                   f"maxFourCcEntries ({self._max_fourcc_entries} per list or map): "
                                                   f"ignored")
        return client

    def _decided(self, result):
        self._deciding = None
        return result

    def _connect_decided(self, decision) -> None:
        if self.closed:
            return
        if decision is False:
            self._reject(ConnectRejected())
            return
        accept = decision if isinstance(decision, Accept) else Accept()
        connection = self.peer.connection
        connection.set_window_ack_size(WINDOW_ACK_SIZE)
        connection.set_peer_bandwidth(WINDOW_ACK_SIZE, PeerBandwidthLimit.DYNAMIC)
        connection.send_user_control(UserControl.STREAM_BEGIN, 0)
        connection.set_chunk_size(CHUNK_SIZE)
        info = status(NetConnectionCode.CONNECT_SUCCESS, "Connection succeeded.", objectEncoding=self._encoding)
        if accept.application is not None:
            info["application"] = accept.application
        try:
            self._send_connect_reply("_result", info, connect_properties(self.client.capabilities.declared))
        except LocalProtocolError as exc:
            # The application's Accept(application=...) cannot go on the wire: the client still gets an answer.
            log.error("on_connect of %s accepted with a value that cannot be sent: %s", self.application.name,
                      brief_name(str(exc), REASON_LENGTH))
            self._reject(ConnectRejected())
            return
        self._move(ConnectionEvent.ACCEPTED)
        connection.connect_accepted()       # the core's connectTimeout deadline is met (rtmp/timers.py)
        client = self.client
        log.info("client %s (%s, %s) connected to %s over %s", client.id, client.address,
                 brief_name(client.agent), self.application.name, getattr(self.peer, "transport_name", "rtmp"))
        if not self.is_relay:
            self._enter(accept.room if accept.room is not None else client.room_name)
        early, self._early = self._early, None
        for command in early:
            if isinstance(command, MessageRefused):
                self._on_refused(command)
            else:
                self._on_command(command)
        self.peer.flush()

    def _connect_failed(self, failure) -> None:
        if self.closed:
            return None
        reason = failure.value
        if isinstance(reason, (ConnectRejected, ConnectRedirected)):
            self._reject(reason)
        else:
            log.error("on_connect of %s raised:\n%s", self.application.name, failure.getTraceback())
            self._reject(ConnectRejected())

    def _reject(self, reason) -> None:
        if isinstance(reason, ConnectRedirected):
            info = error(NetConnectionCode.CONNECT_REJECTED, reason.reason, ex={"code": 302, "redirect": reason.url})
            why = f"redirected to {reason.url}"
        else:
            info = error(NetConnectionCode.CONNECT_REJECTED, reason.reason)
            if reason.application is not None:
                info["application"] = reason.application
            why = f"rejected: {reason.reason}"
        self._refuse(info, f"{self.application.name}: {why}")

    def _refuse(self, info: dict, why: str) -> None:
        try:
            self._send_connect_reply("_error", info)
        except LocalProtocolError as exc:
            # An application value sent along that cannot go on the wire: the refusal goes without it.
            log.error("%s: connect refusal sent without its extra values: %s", self.peer.address,
                      brief_name(str(exc), REASON_LENGTH))
            self._send_connect_reply("_error", _plain(info))
        self._move(ConnectionEvent.REFUSED)
        self.close(why)

    def _send_connect_reply(self, name: str, info: dict, properties: Any = None) -> None:
        if self.peer.connection.state is not State.OPEN:
            return      # the connection broke meanwhile (a protocol error): nothing can be sent
        # Always AMF0, whatever objectEncoding says: the Flash Player expects it so.  An application
        # value only AMF3 can carry is switched only for a client that reads AMF3 (see _may_switch).
        self.peer.connection.send_command(name, 1, properties, [info], switch=self._may_switch())

    def request_reconnect(self, description: str, target: Optional[str] = None) -> bool:
        """Ask the client to move (Enhanced RTMP's ReconnectRequest), if it said at connect that it can.

        Only a client that declared Reconnect (``capsEx & 1``) is asked: to
        any other an unknown NetConnection status could be an error.
        ``target`` (``rtmp://host:port`` of another node) becomes the
        ``tcUrl`` with the client's own application path; without it the
        client reconnects to the URL it used (which, for workers sharing a
        port or nodes behind one address, reaches another process).  Returns
        whether it was asked; the caller closes the rest when it must.
        """
        client = self.client
        if not self.connected or not client.capabilities.reconnect:
            return False
        app_path = client.params.get("app")
        extra = {"tcUrl": f"{target}/{app_path}"} if target else {}
        self.send_status(0, NetConnectionCode.CONNECT_RECONNECT_REQUEST, description, **extra)
        self.flush()
        return True

    # -- rooms --------------------------------------------------------------------------------

    def _enter(self, room_name: str) -> None:
        """Join the room through the hub (docs/ARCHITECTURE.md, "The hub"); hooks run once it answered.

        The hub may answer later (another node, Redis).  ``_leave`` sends the
        leave once the join is answered (``_joining``), so a client gone
        before that still leaves, after it; and it runs the leave hooks once
        the enter hooks have run (``_entering``), so each hook runs once, in
        order: create, enter; leave, destroy, disconnect.  A hook that never
        answers delays the hooks after it, never the hub's leave.
        """
        application, client = self.application, self.client
        room = application.room(room_name)
        client.room, client.room_name = room, room.name
        joining = self._joining = Deferred()
        d = self._entering = application.hub.join(client, room)
        d.addBoth(lambda answer: joining.callback(None) or answer)

        def joined(created):
            hook = maybeDeferred(application.on_room_create, room) if created else succeed(None)
            hook.addErrback(log_failure(log, "on_room_create of %r", room))
            return hook

        d.addCallbacks(joined, log_failure(log, "joining %r for %r", room, client))
        d.addCallback(lambda _: application.on_room_enter(room, client))
        d.addErrback(log_failure(log, "on_room_enter of %r", client))
        # Answered at once (LocalHub, hooks without a Deferred): ``_leave`` has nothing to wait for, and an
        # idle connection does not keep two fired Deferreds and their results (memory per idle connection).
        if joining.called:
            self._joining = None
        if d.called and not d.paused:
            self._entering = None

    def _leave(self) -> None:
        application, client = self.application, self.client
        room, client.room = client.room, None
        joining, entering, self._joining, self._entering = self._joining, self._entering, None, None
        leaving = joining if joining is not None else succeed(None)
        leaving.addCallback(lambda _: application.hub.leave(client, room) if room is not None else False)
        leaving.addErrback(log_failure(log, "leaving %r for %r", room, client))   # then: not destroyed (None)
        # Both have answered (neither fails: their errbacks log): the hub's leave, and the enter hooks
        # (already run when ``_enter`` dropped ``_entering``: then only the leave is waited for).
        if entering is None:
            d = leaving
        else:
            d = gatherResults([leaving, entering])
            d.addCallback(lambda answers: answers[0])

        def left(destroyed):
            hook = maybeDeferred(application.on_room_leave, room, client) if room is not None else succeed(None)
            hook.addErrback(log_failure(log, "on_room_leave of %r", client))
            if destroyed:
                hook.addCallback(lambda _: application.on_room_destroy(room))
                hook.addErrback(log_failure(log, "on_room_destroy of %r", room))
            hook.addCallback(lambda _: application.on_disconnect(client))
            hook.addErrback(log_failure(log, "on_disconnect of %r", client))
            return hook

        d.addCallback(left)
        if not d.called:        # still waiting (a remote hub, a slow hook): a graceful stop waits for it
            application.leaving.add(d)
            d.addBoth(_done_leaving, application.leaving, d)
        log.info("client %s (%s) left %s", client.id, client.address, application.name)

    # -- calls from the client ---------------------------------------------------------------

    def _on_call(self, command: CommandReceived) -> None:
        d = maybeDeferred(self.application.handle_call, self.client, command.name, command.arguments,
                          bool(command.transaction_id))
        d.addCallbacks(self._answer_call, self._fail_call, (command,), None, (command,))
        d.addErrback(self._answering_failed, command)

    @staticmethod
    def _answering_failed(failure, command: CommandReceived) -> None:
        # A method, not a log_failure(...) made per call: every call chains it, it almost never fires.
        log.error("answering %s failed:\n%s", brief_name(command.name), failure.getTraceback())

    def _may_switch(self, command=None) -> bool:
        """Whether what we send (a reply to ``command``) may switch to AMF3 with 0x11.

        Not for a client that connected with objectEncoding 0 and never wrote
        AMF3 itself: AMF0-only clients (npm ``rtmp-client``) cannot read the
        switch and disconnect.  One that sent an AMF3 message or a 0x11 switch
        (librtmp and our own client do, in AMF0 commands) reads it.
        """
        if command is not None and command.amf3:
            return True
        return self.client is None or self.client.amf3 or self.peer.connection.peer_sent_amf3

    def _answer_call(self, value: Any, command: CommandReceived) -> None:
        if command.transaction_id and not self.closed and self.peer.connection.state is State.OPEN:
            try:
                self.peer.connection.send_command("_result", command.transaction_id, None, [value],
                                                  amf3=command.amf3, switch=self._may_switch(command))
            except LocalProtocolError as exc:
                # Unencodable ({"": 0} in AMF0, a ByteArray for an AMF0 client) or over RTMP's 16 MB
                # message: the caller gets an _error saying so (never a traceback), the log one line.
                name, reason = brief_name(command.name), brief_name(str(exc), REASON_LENGTH)
                self.limit_log.hit("unsendable reply", f"the result of {name} cannot be sent: {reason}")
                self.send_call_error(command, error(NetConnectionCode.CALL_FAILED,
                                                    f"The result of '{name}' cannot be sent: {reason}"))
            self.peer.flush()

    def _fail_call(self, failure, command: CommandReceived) -> None:
        reason = failure.value
        if isinstance(reason, CallError):
            info = error(reason.code, reason.description)
            if reason.application is not None:
                info["application"] = reason.application
        elif isinstance(reason, CallTimedOut):
            info = error(reason.code, reason.description)
        elif isinstance(reason, CallFailed):
            # A call this method made elsewhere failed (e.g. that client left): the caller's call failed,
            # not its connection, whatever code the inner failure carried.
            info = error(NetConnectionCode.CALL_FAILED, reason.description)
        else:
            # Never a stack trace to the client: it goes to the log.
            log.error("method %s of %s raised:\n%s", brief_name(command.name), self.application.name,
                      failure.getTraceback())
            info = error(NetConnectionCode.CALL_FAILED, f"Method '{brief_name(command.name)}' failed.")
        self.send_call_error(command, info)
        self.peer.flush()

    def send_call_error(self, command: CommandReceived, info: dict) -> None:
        """``_error`` for ``command`` (a CommandReceived or MessageRefused); it is sent whatever ``info`` holds."""
        if command.transaction_id and not self.closed and self.peer.connection.state is State.OPEN:
            send = self.peer.connection.send_command
            try:
                send("_error", command.transaction_id, None, [info], amf3=command.amf3,
                     switch=self._may_switch(command))
            except LocalProtocolError as exc:
                # An application's ``application`` value (or description) that cannot go on the wire.
                self.limit_log.hit("unsendable reply", f"the error of {brief_name(command.name)} is sent without "
                                                       f"its extra values: {brief_name(str(exc), REASON_LENGTH)}")
                send("_error", command.transaction_id, None, [_plain(info)], amf3=command.amf3)

    # -- calls to the client -----------------------------------------------------------------

    def call_client(self, method: str, args: Iterable[Any], timeout: Optional[float] = None) -> Deferred:
        if self.closed or not self.connected:
            return fail(CallFailed(f"client is not connected; cannot call {method!r}",
                                      NetConnectionCode.CONNECT_CLOSED))
        if self._not_reading("call", method):
            return fail(CallFailed(f"client is not reading (over maxOutgoingBytes); cannot call {brief_name(method)}",
                                   NetConnectionCode.CALL_FAILED))
        transaction_id, d = self.outgoing_calls.new(f"call {method!r} on client {self.client.id}", timeout)
        try:
            self.peer.connection.send_command(method, transaction_id, None, list(args), amf3=self.client.amf3,
                                              switch=self._may_switch())
        except LocalProtocolError as exc:
            # Arguments this client cannot receive (a ByteArray for an AMF0 client, say): the call fails.
            self.outgoing_calls.reject(transaction_id, error(
                NetConnectionCode.CALL_FAILED, f"cannot call {method!r}: {brief_name(str(exc), REASON_LENGTH)}"))
            return d
        self.peer.flush()
        return d

    def notify_client(self, notification: Notification) -> bool:
        """Send ``notification`` (one this client alone or its whole room hears); returns whether it was sent."""
        if self.closed or not self.connected or self._not_reading("notification", notification.method):
            return False
        amf3 = self.client.amf3
        try:
            self.peer.connection.send_encoded_command(notification.body(amf3, self._may_switch()), amf3=amf3)
        except LocalProtocolError as exc:
            # Nobody waits for a notification: it is dropped for this client, once logged per interval.
            self.limit_log.hit("unsendable notification", f"{brief_name(notification.method)} not sent: "
                                                          f"{brief_name(str(exc), REASON_LENGTH)}")
            return False
        self.peer.flush()
        return True

    def send_shared_object(self, name: str, amf3: bool, encode: Callable[[bool], bytes]) -> bool:
        """A message on shared object ``name``, its body ``encode(amf3)`` (app/shared_objects.py makes it: an
        update's body is encoded once for all its listeners); returns whether it was sent.

        A listener over its output budget is closed rather than skipped: a
        shared object update it missed would leave its copy wrong for good.
        """
        if self.closed or self.peer.connection.state is not State.OPEN:
            return False
        if getattr(self.peer, "over_budget", False):
            self.limit_log.hit("maxOutgoingBytes", "a shared object listener is not reading (over maxOutgoingBytes)")
            self.close("limit hit: maxOutgoingBytes (a shared object listener that does not read)")
            return False
        try:
            self.peer.connection.send_encoded_shared_object(encode(amf3), amf3=amf3)
        except LocalProtocolError as exc:
            self.limit_log.hit("unsendable shared object message", f"shared object {brief_name(name)}: "
                                                                    f"{brief_name(str(exc), REASON_LENGTH)}")
            return False
        self.peer.flush()
        return True

    def _not_reading(self, what: str, name: str) -> bool:
        """True, counted and logged (rate-limited), when ``what`` ``name`` is dropped for a client over its output
        budget (the line is made only then: a broadcast asks every member of its room).

        A client that does not read would otherwise hold every broadcast of
        its room in our memory (a silent chat listener once held 188 MB).
        """
        if not getattr(self.peer, "over_budget", False):
            return False
        self.limit_log.hit("dropped while over maxOutgoingBytes",
                           f"dropped {what} {brief_name(name)}: the client is not reading (over maxOutgoingBytes)")
        return True
