"""The client side of RTMPT: our RTMP client protocol over HTTP POSTs (``rtmpt://host:port/app``).

An ``RTMPTClientTransport`` is the protocol's transport: what the protocol
writes goes out in the next ``/send``; while nothing is to be sent it polls
with ``/idle``, at once after an answer that carried data, otherwise after
a pause that grows with the server's polling byte (10 ms per unit, the unit
being unconfirmed; ffmpeg waits 50 ms).  One request is in flight at a time,
over one persistent HTTP connection, so answers come back in order.
"""
from io import BytesIO

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http_headers import Headers

DEFAULT_PORT = 80
#: Seconds per unit of the polling byte between two empty polls.
POLL_UNIT = 0.01
_HEADERS = {b"Content-Type": [b"application/x-fcs"], b"User-Agent": [b"Shockwave Flash"]}


class RTMPTError(Exception):
    """The server answered an RTMPT request with something other than 200."""


class RTMPTClientTransport:
    disconnecting = False

    def __init__(self, reactor, host: str, port: int, sid: str, agent, pool):
        self.reactor = reactor
        self.host, self.port = host, port
        self.sid = sid
        self.agent = agent
        self.pool = pool
        self.protocol = None
        self._outbox = bytearray()
        self._seq = 0
        self._busy = False
        self._timer = None
        self._closed = False

    def _url(self, command: str) -> bytes:
        url = f"http://{self.host}:{self.port}/{command}/{self.sid}/{self._seq}"
        self._seq += 1
        return url.encode()

    # -- ITransport --------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        self._outbox += data
        self._kick()

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self._closed or self.disconnecting:
            return
        self.disconnecting = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        d = post(self.agent, self._url("close"), b"\x00")
        d.addBoth(lambda _: self._finish(ConnectionDone("RTMPT session closed")))

    abortConnection = loseConnection

    def getPeer(self):
        return IPv4Address("TCP", self.host, self.port)

    def getHost(self):
        return IPv4Address("TCP", "0.0.0.0", 0)

    def registerProducer(self, producer, streaming):
        pass

    def unregisterProducer(self):
        pass

    # -- the polling loop ----------------------------------------------------------------------

    def start(self, protocol) -> None:
        self.protocol = protocol
        protocol.makeConnection(self)
        self._schedule(0)

    def _kick(self):
        if not self._busy:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            self._request()

    def _schedule(self, delay: float):
        if self._closed or self.disconnecting or self._busy:
            return
        if self._timer is not None and self._timer.active():
            return
        self._timer = self.reactor.callLater(delay, self._request)

    def _request(self):
        self._timer = None
        if self._closed or self.disconnecting or self._busy:
            return
        self._busy = True
        if self._outbox:
            body, self._outbox = bytes(self._outbox), bytearray()
            d = post(self.agent, self._url("send"), body)
        else:
            d = post(self.agent, self._url("idle"), b"\x00")
        d.addCallbacks(self._answered, self._failed)

    def _answered(self, body: bytes):
        self._busy = False
        if self._closed or self.disconnecting:
            return
        if not body:
            self._failed(Failure(RTMPTError("empty RTMPT answer")))
            return
        delay, data = body[0], body[1:]
        if data:
            self.protocol.dataReceived(data)
        if delay == 0 and not data:
            self._finish(ConnectionDone("RTMPT session closed by the server"))
            return
        if self._outbox or data:
            self._kick()
        else:
            self._schedule(delay * POLL_UNIT)

    def _failed(self, failure):
        self._busy = False
        self._finish(ConnectionLost(f"RTMPT request failed: {failure.getErrorMessage()}"))

    def _finish(self, reason):
        if self._closed:
            return
        self._closed = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.pool.closeCachedConnections()
        self.protocol.connectionLost(Failure(reason))


class _Body(Protocol):
    """Collects a response body (answers are capped by the server: maxResponseBytes)."""

    def __init__(self, limit: int = 16 * 1024 * 1024):
        self.parts = []
        self.size = 0
        self.limit = limit
        self.done = Deferred()

    def dataReceived(self, data):
        self.size += len(data)
        if self.size > self.limit:
            self.transport.stopProducing()
            return
        self.parts.append(data)

    def connectionLost(self, reason):
        if reason.check(ResponseDone):
            self.done.callback(b"".join(self.parts))
        else:
            self.done.errback(reason)


@inlineCallbacks
def post(agent, url: bytes, body: bytes):
    response = yield agent.request(b"POST", url, Headers(_HEADERS), FileBodyProducer(BytesIO(body)))
    collector = _Body()
    response.deliverBody(collector)
    data = yield collector.done
    if response.code != 200:
        raise RTMPTError(f"HTTP {response.code}: {data[:200].decode(errors='replace').strip()}")
    return data


@inlineCallbacks
def open_rtmpt(reactor, host: str, port: int, protocol):
    """Open a session (/open/1) and start ``protocol`` on it; fires with the protocol."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 1
    agent = Agent(reactor, pool=pool, connectTimeout=10)
    try:
        answer = yield post(agent, f"http://{host}:{port}/open/1".encode(), b"\x00")
    except Exception:
        yield pool.closeCachedConnections()
        raise
    sid = answer.strip().decode("ascii")
    transport = RTMPTClientTransport(reactor, host, port, sid, agent, pool)
    transport.start(protocol)
    return protocol
