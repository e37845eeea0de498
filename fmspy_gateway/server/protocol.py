"""The Twisted side of a server connection: bytes from the socket into the core, events to the session.

Thin on purpose (Twisted's own ``web/_http2.py`` around h2): feed bytes, hand
events on, write what the core queued.  It owns the socket and the timers:
the handshake deadline, the ping sent after ``pingInterval`` of silence, and
the close after ``keepAliveTimeout`` with nothing received.
"""
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from ..app.session import Session
from ..rtmp.connection import Connection, Role, State
from ..rtmp.errors import LimitExceeded, RemoteProtocolError
from ..rtmp.events import HandshakeCompleted, MessageIgnored
from ..rtmp.messages import UserControl

log = Logger()

#: Seconds a closing connection lingers (sending what is queued, dropping what arrives) before it is cut.
CLOSE_LINGER = 2.0


class RTMPServerProtocol(Protocol):
    """One accepted RTMP connection."""

    def __init__(self, factory: "RTMPServerFactory"):
        self.factory = factory
        self.connection = None
        self.session = None
        self.address = ""
        self._started = 0.0
        self._last_received = 0.0
        self._pinged = False
        self._timer = None
        self._closing = False
        #: 0 or 1 once a client completed the FP9 digest handshake with that scheme.
        self.digest_scheme = None

    # -- Protocol ---------------------------------------------------------------------

    def connectionMade(self):
        factory = self.factory
        reactor = factory.reactor
        peer = self.transport.getPeer()
        self.address = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self._started = self._last_received = reactor.seconds()
        self.connection = Connection(Role.SERVER, limits=factory.config.limits, epoch=0)
        config = factory.config
        self.session = Session(factory.applications, self, clock=reactor, call_timeout=config.call_timeout,
                               max_streams=config.max_streams, max_queued_commands=config.max_queued_commands)
        self._timer = reactor.callLater(factory.config.handshake_timeout, self._on_timer)
        factory.connections.add(self)
        # As a streaming producer we hear when the socket's buffer is full: live media then waits.
        self.transport.registerProducer(self, True)

    def dataReceived(self, data: bytes):
        if self._closing:
            return
        self._last_received = self.factory.reactor.seconds()
        self._pinged = False
        try:
            events = self.connection.receive_data(data)
        except LimitExceeded as e:
            log.warn("{address}: limit hit: {reason}", address=self.address, reason=e.reason)
            self.close(f"limit hit: {e.limit}")
            return
        except RemoteProtocolError as e:
            self.close(f"protocol error: {e.reason}")
            return
        for event in events:
            if isinstance(event, HandshakeCompleted):
                self._handshake_completed(event)
            elif isinstance(event, MessageIgnored):
                log.debug("{address}: ignored message of type {type_id}", address=self.address, type_id=event.type_id)
            try:
                self.session.handle(event)
            except Exception:
                # A bug of ours or an application's: this connection only.
                log.failure("{address}: handling {event} failed", address=self.address, event=type(event).__name__)
                self.close("internal error")
                return
        self.flush()
        if events:
            self.session.events_handled()

    # -- IPushProducer: the transport tells us when its buffer is full -----------------

    def pauseProducing(self):
        self.session.writing_paused(True)

    def resumeProducing(self):
        self.session.writing_paused(False)

    def stopProducing(self):
        pass

    def connectionLost(self, reason):
        self._closing = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.factory.connection_closed(self)
        if self.session is not None:
            self.session.connection_lost(reason.getErrorMessage())

    # -- what the session uses (app.session.Peer) -------------------------------------

    def flush(self):
        data = self.connection.data_to_send()
        if data and not self._closing:
            self.transport.write(data)

    def close(self, reason: str):
        """Flush what is queued, then close; only this connection is affected.

        Our side is shut first and what the peer still sends is read and
        dropped for a moment: closing a socket with unread data resets it,
        and the reset could destroy the reply (a rejection, say) on its way.
        """
        if self._closing:
            return
        log.info("{address}: closing: {reason}", address=self.address, reason=reason)
        self.flush()
        self._closing = True
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is None:
            self.transport.loseConnection()
            return
        half_close()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        # The peer's own close ends it sooner (its EOF reaches connectionLost); one that neither
        # closes nor reads (its socket full) would hold the connection forever: drop it then.
        self._timer = self.factory.reactor.callLater(CLOSE_LINGER, self.transport.abortConnection)

    def abort(self, reason: str):
        """Drop the connection now, unsent data and all (a peer that stopped reading)."""
        log.info("{address}: aborting: {reason}", address=self.address, reason=reason)
        self._closing = True
        self.transport.abortConnection()

    # -- timers ------------------------------------------------------------------------

    def _handshake_completed(self, event: HandshakeCompleted):
        self.digest_scheme = event.digest_scheme
        # The same timer goes on as the idle timer (one DelayedCall per connection, ever).
        self._timer.reset(self.factory.config.ping_interval)

    def _on_timer(self):
        """The connection's one timer: the handshake deadline, then idle checks.

        Re-armed from the time of the last byte received, so reads never touch it.
        """
        config = self.factory.config
        reactor = self.factory.reactor
        self._timer = None
        if self.connection.state is State.HANDSHAKING:
            self.close(f"handshake not completed within {config.handshake_timeout:g} s (handshakeTimeout)")
            return
        idle = reactor.seconds() - self._last_received
        if idle >= config.keepalive_timeout:
            self.close(f"nothing received for {idle:g} s (keepAliveTimeout)")
            return
        if idle >= config.ping_interval and not self._pinged:
            self._pinged = True
            now_ms = int((reactor.seconds() - self._started) * 1000)
            self.connection.send_user_control(UserControl.PING_REQUEST, now_ms)
            self.flush()
        deadline = config.keepalive_timeout if self._pinged else config.ping_interval
        self._timer = reactor.callLater(max(deadline - idle, 0.001), self._on_timer)


class RTMPServerFactory(Factory):
    """Builds server protocols sharing the applications, the [RTMP] config and the reactor."""

    def __init__(self, applications, config, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.applications = applications
        self.config = config
        self.reactor = reactor
        #: Live connections, for status and for a graceful stop.
        self.connections = set()
        self._all_closed = []

    def buildProtocol(self, addr):
        return RTMPServerProtocol(self)

    def connection_closed(self, protocol: RTMPServerProtocol):
        self.connections.discard(protocol)
        if not self.connections:
            waiting, self._all_closed = self._all_closed, []
            for d in waiting:
                d.callback(None)

    def close_all(self, reason: str = "server stopping") -> Deferred:
        """Close every connection; fires once all of them are gone."""
        if not self.connections:
            return succeed(None)
        d = Deferred()
        self._all_closed.append(d)
        for protocol in list(self.connections):
            protocol.close(reason)
        return d
