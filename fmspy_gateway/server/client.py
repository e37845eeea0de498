"""An RTMP client on Twisted: connect with arguments, call with Deferred results, answer server calls.

Used by the tests and the command-line tools.  Like the server glue it only
moves bytes between a socket and the sans-I/O core; calls awaiting answers
live in the same ``PendingCalls`` table the server uses, which refuses new
calls once the connection is gone.  The core keeps the client's deadlines
(``rtmp/timers.py``): the handshake, a PingRequest after ``ping_interval``
of silence and the close after ``keepalive_timeout`` with nothing received
(a server that went away without a word); the glue only wakes it
(``fmspy_gateway/deadline.py``).
"""
import functools
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from ..app.calls import CallFailed, ConnectionClosed, PendingCalls
from ..app.replies import status
from ..rtmp.connection import Connection, Role
from ..rtmp.errors import RemoteProtocolError
from ..rtmp.events import CommandReceived, HandshakeCompleted, MessageRefused, SharedObjectReceived, TimedOut
from ..rtmp.sharedobject import SharedObjectMessage
from ..rtmp.timers import Timeouts
from ..deadline import Deadline
from .shared_object_client import RemoteSharedObject, RemoteSharedObjects

log = Logger()

DEFAULT_PORT = 1935
DEFAULT_TLS_PORT = 443
DEFAULT_HTTP_PORT = 80
FLASH_VERSION = "LNX 32,0,0,465"
#: The client's deadlines, the server's defaults ([RTMP] handshakeTimeout, pingInterval, keepAliveTimeout).
HANDSHAKE_TIMEOUT = 30.0
PING_INTERVAL = 60.0
KEEPALIVE_TIMEOUT = 180.0


def parse_rtmp_url(url: str):
    """'rtmp://host:port/app/room' -> (host, port, 'app/room'); rtmps:// defaults to port 443, rtmpt:// to 80."""
    parts = urlsplit(url)
    if parts.scheme not in ("rtmp", "rtmps", "rtmpt") or not parts.hostname:
        raise ValueError(f"not an rtmp://, rtmps:// or rtmpt:// URL: {url!r}")
    app = parts.path.lstrip("/")
    if parts.query:
        app += "?" + parts.query
    default_port = {"rtmps": DEFAULT_TLS_PORT, "rtmpt": DEFAULT_HTTP_PORT}.get(parts.scheme, DEFAULT_PORT)
    return parts.hostname, parts.port or default_port, app


class RTMPClientProtocol(Protocol):
    """The client end of one RTMP connection.

    ``handlers`` maps method names the server may call to callables; their
    return value (or Deferred) answers the call.  ``onStatus`` messages go to
    the ``onStatus`` handler if there is one.  A ``"*"`` handler is called as
    ``handler(name, *args)`` for every name without a handler of its own.
    ``handshake_timeout``, ``ping_interval`` and ``keepalive_timeout`` are
    seconds, None for no such deadline.
    """

    def __init__(self, reactor=None, handlers: Optional[Mapping[str, Callable]] = None,
                 call_timeout: Optional[float] = 30.0, digest: bool = True, *,
                 handshake_timeout: Optional[float] = HANDSHAKE_TIMEOUT,
                 ping_interval: Optional[float] = PING_INTERVAL,
                 keepalive_timeout: Optional[float] = KEEPALIVE_TIMEOUT):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.handlers = dict(handlers or {})
        timeouts = Timeouts(handshake_timeout=handshake_timeout, ping_interval=ping_interval,
                            keepalive_timeout=keepalive_timeout)
        self.connection = Connection(Role.CLIENT, digest=digest, timeouts=timeouts, now=reactor.seconds())
        #: The one DelayedCall at the core's next deadline.
        self._deadline = Deadline(reactor, self._on_timer)
        #: Why the client dropped the connection itself (a TimedOut's reason), None if it did not.
        self.close_reason = None
        self.calls = PendingCalls(reactor, call_timeout)
        self.amf3 = False
        #: The HandshakeCompleted event, once the handshake is done.
        self.handshake = None
        #: Fires with the reason when the connection is gone.
        self.closed = Deferred()
        self._connect_call = None
        self._pending_connect = None
        #: Called once per read with all of the read's events, in order, before the client handles its own:
        #: how a client that plays (the cluster's relay) sees audio, video and data, which are otherwise dropped.
        self.on_events = None
        #: The remote shared objects this client uses, by name (``shared_object``).
        self.shared_objects = RemoteSharedObjects(self._send_shared_object)

    def connectionMade(self):
        self.flush()
        self._deadline.arm(self.connection.get_timer())

    def dataReceived(self, data: bytes):
        try:
            events = self.connection.receive_data(data, self.reactor.seconds())
        except RemoteProtocolError as e:
            log.error("server broke the protocol: {reason}", reason=e.reason)
            self.transport.loseConnection()
            return
        if self.on_events is not None and events:
            self.on_events(events)
        for event in events:
            if isinstance(event, HandshakeCompleted):
                self.handshake = event
                if self._pending_connect is not None:
                    self._send_connect(*self._pending_connect)
                    self._pending_connect = None
            elif isinstance(event, CommandReceived):
                self._on_command(event)
            elif isinstance(event, SharedObjectReceived):
                self.shared_objects.received(event.message)
            elif isinstance(event, MessageRefused) and event.name in ("_result", "_error"):
                # An answer past our value budget: the call fails saying so, instead of timing out.
                self.calls.reject(event.transaction_id, status("NetConnection.Call.Failed",
                                                               f"Refused: {event.reason}", level="error"))
        self.flush()
        if self.close_reason is None:
            self._deadline.arm(self.connection.get_timer())

    def _on_timer(self, now: float):
        if self.close_reason is not None or self.transport is None:
            return
        for event in self.connection.handle_timer(now):
            if isinstance(event, TimedOut):
                log.warn("closing the connection: {reason}", reason=event.reason)
                self.close_reason = event.reason
                # Aborted, not closed: a server that stopped answering may never read what is queued either.
                abort = getattr(self.transport, "abortConnection", None) or self.transport.loseConnection
                abort()
                return
        self.flush()            # a PingRequest, if one was due
        self._deadline.arm(self.connection.get_timer())

    def connectionLost(self, reason):
        self._deadline.cancel()
        message = self.close_reason or reason.getErrorMessage()
        if self._connect_call is not None:
            d, self._connect_call = self._connect_call, None
            d.errback(ConnectionClosed(f"connection closed before connect was answered: {message}"))
        self.calls.fail_all(f"connection closed: {message}")
        self.shared_objects.connection_lost(message)
        self.closed.callback(message)

    def flush(self):
        data = self.connection.data_to_send()
        if data:
            self.transport.write(data)

    # -- what the user calls ----------------------------------------------------------

    def connect(self, app: str, *args, tc_url: Optional[str] = None, object_encoding: int = 0,
                **params) -> Deferred:
        """Send connect; fires with the server's information object, or fails with CallFailed."""
        self.amf3 = object_encoding == 3
        host = getattr(self.transport.getPeer(), "host", "localhost")
        port = getattr(self.transport.getPeer(), "port", DEFAULT_PORT)
        command_object = {
            "app": app, "flashVer": FLASH_VERSION, "swfUrl": "",
            "tcUrl": tc_url or f"rtmp://{host}:{port}/{app}", "fpad": False, "capabilities": 239,
            "audioCodecs": 3575, "videoCodecs": 252, "videoFunction": 1, "pageUrl": "",
            "objectEncoding": object_encoding,
        }
        command_object.update(params)
        self._connect_call = Deferred()
        if self.handshake is not None:
            self._send_connect(command_object, args)
        else:
            self._pending_connect = (command_object, args)
        return self._connect_call

    def _send_connect(self, command_object, args):
        self.connection.send_command("connect", 1, command_object, args)
        self.flush()

    def call(self, name: str, *args, timeout: Optional[float] = None) -> Deferred:
        """Call a server method; fires with its result or fails with CallFailed / CallTimedOut."""
        transaction_id, deferred = self.calls.new(f"call {name!r}", timeout)
        if self.calls.closed is None:       # once closed, the call has already failed (ConnectionClosed)
            self.connection.send_command(name, transaction_id, None, args, amf3=self.amf3)
            self.flush()
        return deferred

    def notify(self, name: str, *args):
        """Call without wanting an answer (transaction id 0)."""
        self.connection.send_command(name, 0, None, args, amf3=self.amf3)
        self.flush()

    def stream_command(self, stream_id: int, name: str, *args):
        """A NetStream command (play, publish, ...) on ``stream_id``; answered by onStatus, not ``_result``."""
        self.connection.send_command(name, 0, None, args, stream_id=stream_id)
        self.flush()

    def shared_object(self, name: str, persistent: bool = False) -> RemoteSharedObject:
        """The remote shared object ``name`` (``SharedObject.getRemote``); ``connect()`` it to start listening."""
        return self.shared_objects.get(name, persistent)

    def _send_shared_object(self, message: SharedObjectMessage):
        if self.calls.closed is not None:
            raise ConnectionClosed(f"shared object {message.name!r}: connection closed: {self.calls.closed}")
        self.connection.send_shared_object(message, amf3=self.amf3)
        self.flush()

    def close(self):
        self.transport.loseConnection()
        return self.closed

    # -- what the server sends ----------------------------------------------------------

    def _on_command(self, command: CommandReceived):
        answer = command.arguments[0] if command.arguments else None
        if command.transaction_id == 1 and self._connect_call is not None and command.name in ("_result", "_error"):
            d, self._connect_call = self._connect_call, None
            if command.name == "_result":
                d.callback(answer)
            else:
                d.errback(CallFailed.from_info(answer))
        elif command.name == "_result":
            self.calls.resolve(command.transaction_id, answer)
        elif command.name == "_error":
            self.calls.reject(command.transaction_id, answer)
        else:
            self._on_server_call(command)

    def _on_server_call(self, command: CommandReceived):
        handler = self.handlers.get(command.name)
        if handler is None and "*" in self.handlers:
            # A catch-all (``fmspy-gateway listen``) gets every other name first.
            handler = functools.partial(self.handlers["*"], command.name)
        if handler is None:
            if command.name != "onStatus":
                log.info("server called {name!r}, which has no handler", name=command.name)
            if command.transaction_id:
                self._answer(command, "_error", status("NetConnection.Call.Failed",
                                                       f"Method '{command.name}' not found.", level="error"))
            return
        d = maybeDeferred(handler, *command.arguments)
        d.addCallbacks(lambda value: self._answer(command, "_result", value),
                       lambda failure: self._answer(command, "_error", status(
                           "NetConnection.Call.Failed", str(failure.value), level="error")))

    def _answer(self, command: CommandReceived, name: str, value: Any):
        if command.transaction_id and self.transport is not None and self.connected:
            self.connection.send_command(name, command.transaction_id, None, [value], amf3=command.amf3)
            self.flush()


def connect_client(url: str, *args, reactor=None, handlers=None, object_encoding: int = 0,
                   digest: bool = True, call_timeout: Optional[float] = 30.0, tls=None, **params) -> Deferred:
    """Open an RTMP connection and send connect; fires with the protocol once connected.

    On ``_error`` (e.g. NetConnection.Connect.Rejected) it fails with CallFailed
    carrying the server's information object.  The connect reply is kept on
    the protocol as ``connect_info``.  An ``rtmps://`` URL connects through
    TLS: ``tls`` is the connection creator (``optionsForClientTLS``), by
    default one checking the certificate against the system's roots for the
    URL's host name.  An ``rtmpt://`` URL tunnels through HTTP POSTs
    (``server.rtmpt_client``).
    """
    if reactor is None:
        from twisted.internet import reactor
    host, port, app = parse_rtmp_url(url)
    factory = Factory.forProtocol(lambda: RTMPClientProtocol(reactor, handlers, call_timeout, digest))
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=10)
    if url.lower().startswith("rtmps:"):
        from twisted.internet.endpoints import wrapClientTLS
        from twisted.internet.ssl import optionsForClientTLS
        endpoint = wrapClientTLS(tls or optionsForClientTLS(host), endpoint)

    def connected(protocol):
        def accepted(info):
            protocol.connect_info = info
            return protocol

        def refused(failure):
            protocol.transport.loseConnection()
            return failure

        d = protocol.connect(app, *args, tc_url=url, object_encoding=object_encoding, **params)
        return d.addCallbacks(accepted, refused)

    if url.lower().startswith("rtmpt:"):
        from .rtmpt_client import open_rtmpt
        return open_rtmpt(reactor, host, port, factory.buildProtocol(None)).addCallback(connected)
    return endpoint.connect(factory).addCallback(connected)
