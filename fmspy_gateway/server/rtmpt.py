"""RTMPT: RTMP tunnelled through HTTP POSTs, for Flash/AIR clients behind proxies that pass only HTTP.

A session is opened by ``POST /open/1`` (answered with its id and a newline:
librtmp keeps Content-Length - 1 bytes), fed by ``/send/<id>/<seq>`` (the
body is RTMP bytes), polled by ``/idle/<id>/<seq>`` and ended by
``/close/<id>/<seq>``.  Every answer but /open's starts with the *polling
byte*, then carries what the server has for the client, at most
``maxResponseBytes`` of it; the byte is Red5's: 1 while data flows, doubling
up to 33 after more than ten empty answers in a row, 0 once the session is
closing.  Sequence numbers are not checked (Red5 does not either).  The
content type is ``application/x-fcs`` both ways.

Each session is an ordinary RTMP server connection: the [RTMP] factory's
own protocol (``server.protocol.RTMPServerProtocol``) on an
``RTMPTTransport`` that keeps what the protocol writes until the next
request takes it.  So every application, timer and limit of a TCP client
(handshake and connect deadlines, keepalive pings, the output budget, the
junk count, ``maxConnections``) applies to an RTMPT client unchanged, and
``close_all`` at shutdown closes RTMPT sessions too.  What RTMPT adds is
bounded here: sessions in total and per address (``maxSessions``,
``maxSessionsPerAddress``), bytes waiting for a poll (``maxPendingBytes``;
past it the session is dropped), bytes received while the protocol does not
read (the same bound), and a session with no request for
``keepAliveTimeout`` is reaped.  An unknown session id is answered 400, as
Red5 does.
"""
import logging
import secrets

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from ..app.logs import RateLimitedLog

log = logging.getLogger(__name__)

CONTENT_TYPE = b"application/x-fcs"
#: Red5's polling delay: after this many empty answers in a row it doubles, up to MAX_POLLING_DELAY.
IDLE_ANSWERS_BEFORE_BACKOFF = 10
MAX_POLLING_DELAY = 32
#: The commands, as the first path segment.
COMMANDS = (b"open", b"send", b"idle", b"close")


class RTMPTTransport:
    """The transport of one RTMPT session: what the protocol writes waits here for the next poll.

    It plays both roles of a socket for the protocol: a consumer (write,
    producers paused while more than ``high_water`` bytes wait) and a
    producer (``pauseProducing`` from the output budget stops feeding the
    protocol what the client posts; it waits, bounded, until resumed).
    """

    disconnecting = False
    connected = True

    def __init__(self, sessions: "RTMPTSessions", sid: str, protocol, peer, host, transport_name: str):
        self.sessions = sessions
        self.sid = sid
        self.protocol = protocol
        self.transport_name = transport_name
        self._peer = peer
        self._host = host
        self.address = getattr(peer, "host", "?")
        self._pending = bytearray()
        self._inbox = bytearray()
        self._producer = None
        self._producer_paused = False
        self._reading_paused = False
        self._empty_answers = 0
        self._delay = 0
        self._closed = False
        self._linger = None
        config = sessions.config
        self.max_pending = config.max_pending_bytes
        self.max_response = config.max_response_bytes
        self.high_water = min(4 * config.max_response_bytes, config.max_pending_bytes // 2)
        self._reaper = sessions.reactor.callLater(sessions.idle_timeout, self._reap)

    # -- ITransport, for the protocol ----------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        self._pending += data
        if len(self._pending) > self.max_pending:
            self.sessions.limit_log.hit(
                "maxPendingBytes", f"{self.address}: session {self.sid}: more than {self.max_pending} bytes "
                                   "waiting for a poll (maxPendingBytes); dropping the session")
            self.abortConnection()
            return
        if self._producer is not None and not self._producer_paused and len(self._pending) > self.high_water:
            self._producer_paused = True
            self._producer.pauseProducing()

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self._closed or self.disconnecting:
            return
        self.disconnecting = True
        if not self._pending:
            self._finish(ConnectionDone("session closed by the server"))
            return
        # A closing session waits for a poll to take its last bytes (a rejection, say), as a TCP connection
        # waits for its client to read them: ``closeLinger``.
        self._linger = self.sessions.reactor.callLater(self.sessions.close_linger, self._linger_over)

    def _linger_over(self) -> None:
        """``closeLinger`` after the close, its last bytes still waiting for a poll: dropped, with them."""
        self._linger = None
        self.sessions.limit_log.hit("closeLinger", f"{self.address}: session {self.sid}: closed "
                                                   f"({self.protocol.close_reason}), but no poll took its last "
                                                   f"{len(self._pending)} bytes within "
                                                   f"{self.sessions.close_linger:g} s (closeLinger): dropped")
        self.abortConnection()

    def abortConnection(self) -> None:
        self._finish(ConnectionLost("session dropped by the server"))

    def getPeer(self):
        return self._peer

    def getHost(self):
        return self._host

    def registerProducer(self, producer, streaming) -> None:
        self._producer = producer

    def unregisterProducer(self) -> None:
        self._producer = None

    # -- IPushProducer: the protocol's output budget pauses what the client posts -------------

    def pauseProducing(self) -> None:
        self._reading_paused = True

    def resumeProducing(self) -> None:
        self._reading_paused = False
        if self._inbox:
            self.sessions.reactor.callLater(0, self._feed_inbox)

    def stopProducing(self) -> None:
        self.abortConnection()

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting for the client's next poll: what the output budget measures."""
        return len(self._pending)

    # -- the HTTP side ---------------------------------------------------------------------

    def received(self, body: bytes) -> None:
        """RTMP bytes from a /send: to the protocol now, or kept (bounded) while it should not read."""
        self._touch()
        if not body or self._closed or self.disconnecting:
            return
        if self._reading_paused or self._inbox or len(self._pending) > self.high_water:
            if len(self._inbox) + len(body) > self.max_pending:
                self.sessions.limit_log.hit(
                    "maxPendingBytes", f"{self.address}: session {self.sid}: more than {self.max_pending} "
                                       "bytes posted while its answers wait unread (maxPendingBytes); dropping "
                                       "the session")
                self.abortConnection()
                return
            self._inbox += body
            return
        self.protocol.dataReceived(body)

    def answer(self) -> bytes:
        """The body of a /send or /idle answer: the polling byte, then at most ``max_response`` bytes."""
        self._touch()
        if self._closed:
            return b"\x00"
        data = bytes(self._pending[:self.max_response])
        del self._pending[:self.max_response]
        if data:
            self._empty_answers = 0
            self._delay = 0
        else:
            self._empty_answers += 1
            if self._empty_answers > IDLE_ANSWERS_BEFORE_BACKOFF:
                self._delay = min(max(self._delay, 1) * 2, MAX_POLLING_DELAY)
        if self.disconnecting:
            if not self._pending:
                self._finish(ConnectionDone("session closed by the server"))
            return b"\x00" + data
        if len(self._pending) <= self.max_response:
            if self._producer_paused and self._producer is not None:
                self._producer_paused = False
                self._producer.resumeProducing()
            if self._inbox and not self._reading_paused:
                self.sessions.reactor.callLater(0, self._feed_inbox)
        return bytes((self._delay + 1,)) + data

    def client_closed(self) -> None:
        """/close: the client is done; the protocol hears it as a clean close."""
        self._finish(ConnectionDone("session closed by the client"))

    def _feed_inbox(self):
        if self._closed or self._reading_paused or not self._inbox or len(self._pending) > self.high_water:
            return
        data, self._inbox = bytes(self._inbox), bytearray()
        self.protocol.dataReceived(data)

    def _touch(self):
        if self._reaper is not None and self._reaper.active():
            self._reaper.reset(self.sessions.idle_timeout)

    def _reap(self):
        self._reaper = None
        self.sessions.limit_log.hit("keepAliveTimeout", f"{self.address}: session {self.sid}: no request for "
                                                        f"{self.sessions.idle_timeout:g} s (keepAliveTimeout); "
                                                        "reaped")
        self.abortConnection()

    def _finish(self, reason: Exception) -> None:
        if self._closed:
            return
        self._closed = True
        self.connected = False
        self.disconnecting = True
        for timer in (self._reaper, self._linger):
            if timer is not None and timer.active():
                timer.cancel()
        self._reaper = self._linger = None
        self._pending = bytearray()
        self._inbox = bytearray()
        self.sessions.closed(self)
        # As a TCP transport does, in a later turn: this may run inside the protocol's own write (a
        # broadcast writing to many clients, say), which must not see the client vanish under it.
        self.sessions.reactor.callLater(0, self.protocol.connectionLost, Failure(reason))


class Refused(Exception):
    """A session that cannot be opened: (HTTP status, the line for the client)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class RTMPTSessions:
    """Every RTMPT session of the server, by id, with their counts (one table for HTTP and HTTPS)."""

    def __init__(self, rtmp_factory, config, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.rtmp_factory = rtmp_factory
        self.config = config
        self.reactor = reactor
        self.idle_timeout = rtmp_factory.config.keepalive_timeout
        self.close_linger = rtmp_factory.config.close_linger
        self.sessions = {}
        self.per_address = {}
        self.limit_log = RateLimitedLog(log, clock=reactor, prefix="RTMPT: ")

    def open(self, peer, host, transport_name: str) -> RTMPTTransport:
        config = self.config
        address = getattr(peer, "host", "?")
        if len(self.sessions) >= config.max_sessions:
            self.limit_log.hit("maxSessions", f"refused a session from {address}: {len(self.sessions)} open, "
                                              "the most allowed (maxSessions)")
            raise Refused(503, "too many RTMPT sessions")
        if self.per_address.get(address, 0) >= config.max_sessions_per_address:
            self.limit_log.hit("maxSessionsPerAddress",
                               f"refused a session from {address}: {self.per_address[address]} open from that "
                               "address, the most allowed (maxSessionsPerAddress)")
            raise Refused(503, "too many RTMPT sessions from this address")
        protocol = self.rtmp_factory.buildProtocol(peer)      # the [RTMP] connection limits decide too
        if protocol is None:
            raise Refused(503, "too many connections")
        protocol.transport_name = transport_name
        sid = secrets.token_hex(8)
        while sid in self.sessions:
            sid = secrets.token_hex(8)
        transport = RTMPTTransport(self, sid, protocol, peer, host, transport_name)
        self.sessions[sid] = transport
        self.per_address[address] = self.per_address.get(address, 0) + 1
        protocol.makeConnection(transport)
        return transport

    def get(self, sid: str):
        return self.sessions.get(sid)

    def closed(self, transport: RTMPTTransport) -> None:
        if self.sessions.pop(transport.sid, None) is None:
            return
        address = getattr(transport.getPeer(), "host", "?")
        left = self.per_address.get(address, 1) - 1
        if left > 0:
            self.per_address[address] = left
        else:
            self.per_address.pop(address, None)


class RTMPTResource(Resource):
    """``/open``, ``/send``, ``/idle`` or ``/close`` (one instance each) for one site."""

    isLeaf = True

    def __init__(self, sessions: RTMPTSessions, command: bytes, transport_name: str = "rtmpt"):
        super().__init__()
        self.sessions = sessions
        self.command = command
        self.transport_name = transport_name

    def render_POST(self, request):
        request.setHeader(b"Cache-Control", b"no-cache")
        if self.command == b"open":
            if request.postpath != [b"1"]:
                return self._error(request, 404, "expected /open/1")
            try:
                transport = self.sessions.open(request.getClientAddress(), request.getHost(), self.transport_name)
            except Refused as e:
                return self._error(request, e.status, str(e))
            return self._fcs(request, transport.sid.encode() + b"\n")
        if len(request.postpath) not in (1, 2):
            return self._error(request, 404, "expected /<command>/<session>/<sequence>")
        transport = self.sessions.get(request.postpath[0].decode("ascii", "replace"))
        if transport is None:
            self.sessions.limit_log.hit("unknown session", f"{getattr(request.getClientAddress(), 'host', '?')}: "
                                                           f"{self.command.decode()} for an unknown session")
            return self._error(request, 400, "unknown RTMPT session")
        if self.command == b"close":
            transport.client_closed()
            return self._fcs(request, b"\x00")
        if self.command == b"send":
            transport.received(request.content.read())
        return self._fcs(request, transport.answer())

    @staticmethod
    def _fcs(request, body: bytes) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE)
        return body

    @staticmethod
    def _error(request, status: int, message: str) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return message.encode() + b"\n"


def mount(root: Resource, sessions: RTMPTSessions, transport_name: str = "rtmpt") -> Resource:
    """Put /open, /send, /idle and /close on a site's root; returns the root."""
    for command in COMMANDS:
        root.putChild(command, RTMPTResource(sessions, command, transport_name))
    return root


def quiet_access_log(site):
    """Leave RTMPT requests out of ``site``'s access log: a client polls many times a second.

    Twisted logs every request of a site without a log file to the server's
    own log; ffmpeg publishing over RTMPT sends hundreds of /idle a second.
    """
    log_request = site.log

    def log_unless_rtmpt(request):
        segment = request.path[1:].split(b"/", 1)[0]
        if segment not in COMMANDS:
            log_request(request)
    site.log = log_unless_rtmpt
    return site


def rtmpt_only_site(sessions: RTMPTSessions, max_body: int, reactor=None):
    """The HTTP site of the RTMPS port (RTMPTS): the RTMPT commands and nothing else, bodies bounded.

    Its bounds are RTMP's, not the [HTTP] site's: a body past ``maxRequestBytes`` is refused, and a refused
    client that lingers is cut after ``closeLinger``, as an RTMPT session's last poll is waited for.
    """
    from .http import BoundedSite
    root = mount(Resource(), sessions, "rtmpts")
    site = BoundedSite(root, max_body=max_body, reactor=reactor, linger=sessions.close_linger,
                       body_option="maxRequestBytes", linger_option="closeLinger")
    site.timeout = sessions.idle_timeout       # an idle HTTP connection is not kept for Twisted's 12 hours
    site.displayTracebacks = False
    site.log = lambda request: None
    return site
