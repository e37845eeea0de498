"""The lean HTTP/1.1 client connection the JSON-RPC client posts through, and the pool that keeps them.

Why it exists: with Twisted's ``Agent`` and ``HTTP11ClientProtocol``, the
HTTP layer was about half of the gateway's CPU per bridged call (cProfile of
``bench/gateway.py``): a URI parsed and a ``Request`` object, header copies
and their whitespace checks, a body producer, a line-by-line status and
header parser, a ``Response`` with its transport proxy, and a dozen Deferred
callbacks per exchange.  A JSON-RPC POST needs none of that generality: the
request is one ``bytes`` written at once, the response head is parsed in one
go once ``\\r\\n\\r\\n`` is in, and the body is handed, de-chunked, to the
caller's protocol (``rpc._BoundedBody``: the size limits and gzip stay there).

What it keeps from Twisted's client, on purpose, so that every fault case
maps as before (``rpc._describe_failure``): the same exceptions
(``ResponseNeverReceived`` when the connection closes before any response
byte, ``ResponseFailed`` for a broken or cut response, the endpoint's
connect errors), a body without a length read until the connection closes
(``PotentialDataLoss``, as Twisted), 1xx answers skipped, persistent
connections only for HTTP/1.1 answers without ``Connection: close`` whose
body was framed, and cancelling a request aborts its connection.

Pooling lives in :class:`LeanConnectionPool`, a Twisted
``HTTPConnectionPool`` (so that the one pool of the gateway still serves the
treq API through its ``Agent``, and ``maxPersistentPerHost``,
``cachedConnectionTimeout`` and ``closeCachedConnections`` mean what they
always did) which also keeps idle lean connections, under the same bounds.
"""
from typing import Dict, List, Optional

from twisted.internet import tcp
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseFailed, ResponseNeverReceived
from twisted.web.client import HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH

from ..deadline import TimeoutQueue
from ..direct_write import write_at_once

__all__ = ["BadHTTPResponse", "LeanConnectionPool", "LeanResponse", "DEFAULT_MAX_HEAD_BYTES"]

#: The most bytes a response's status line and headers (or a chunked body's trailers) may take.
DEFAULT_MAX_HEAD_BYTES = 64 * 1024
#: The longest chunk-size line of a chunked body (hex size and extensions).
_MAX_CHUNK_LINE = 1024
_NO_BODY_CODES = (204, 304)


class BadHTTPResponse(Exception):
    """The backend's bytes are not an HTTP/1.1 response; reported wrapped in ``ResponseFailed``."""


class _Headers:
    """Response headers, lower-cased names to lists of raw values: the part of Twisted's ``Headers``
    that ``rpc._undecoded`` reads."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Dict[bytes, List[bytes]]):
        self._raw = raw

    def getRawHeaders(self, name: bytes, default=None):
        return self._raw.get(name.lower(), default)


class _BodyTransport:
    """What a body protocol sees as its transport: ``stopProducing`` hangs up, as Twisted's does."""

    __slots__ = ("_connection",)

    def __init__(self, connection: "LeanConnection"):
        self._connection = connection

    def stopProducing(self):
        self._connection.abort()

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass


class LeanResponse:
    """One response: ``code``, ``headers``, ``length`` and ``deliverBody``, as ``IResponse`` has them."""

    __slots__ = ("code", "phrase", "headers", "length", "_connection")

    def __init__(self, code: int, phrase: bytes, headers: _Headers, length, connection: "LeanConnection"):
        self.code = code
        self.phrase = phrase
        self.headers = headers
        self.length = length
        self._connection = connection

    def deliverBody(self, protocol) -> None:
        self._connection.deliver_body(protocol)


# Where a connection is: idle (in the pool or just made), waiting for a response head, reading a body.
_IDLE, _HEAD, _BODY, _GONE = "idle", "head", "body", "gone"
#: The reason every complete body's reader is given: one value, made once (a Failure costs about 2 us, once
#: per bridged call); it carries no traceback and its readers only ``check`` it.
_RESPONSE_DONE = Failure(ResponseDone())

# How a body is framed.
_LENGTH, _CHUNKED, _UNTIL_CLOSE = "length", "chunked", "until-close"


class LeanConnection(Protocol):
    """One persistent HTTP/1.1 connection to a backend: one request at a time, no pipelining."""

    def __init__(self, pool: "LeanConnectionPool", key, max_head_bytes: int):
        self._pool = pool
        self._key = key
        self._max_head = max_head_bytes
        self._state = _IDLE
        self._buffer = b""
        self._received = False          # any byte of the current response (ResponseFailed, not NeverReceived)
        #: Who waits for the current response's head (rpc._Exchange): ``response_received(response)`` or
        #: ``request_failed(failure)``, once; plain calls, not a Deferred (two fewer per bridged call).
        self._receiver = None
        self._body_protocol = None
        self._framing = None
        self._left = 0                  # _LENGTH: bytes of body still due; _CHUNKED: of the current chunk
        self._chunk_step = "size"       # _CHUNKED: "size", "data", "crlf", "trailers"
        self._persistent = False
        self._closed_waiters: List[Deferred] = []
        self.connected_now = False

    # -- the pool's side ------------------------------------------------------------------

    def connectionMade(self):
        self.connected_now = True

    def send(self, request: bytes, receiver) -> None:
        """Write ``request``; ``receiver`` is told of the :class:`LeanResponse`, or of the failure."""
        self._state = _HEAD
        self._buffer = b""
        self._received = False
        self._receiver = receiver
        transport = self.transport
        if isinstance(transport, tcp.Connection):
            # Sent now, not at the reactor's next turn: a turn of latency less on every bridged call.
            write_at_once(transport, request)
        else:
            transport.write(request)        # TLS to an https backend: through its layer, as always

    def abort(self) -> None:
        """Drop the connection now (a cancelled request, an unwanted body, the pool closing)."""
        if self._state is not _GONE:
            self._state = _GONE
            self._receiver = None
            self._body_protocol = None
            self._pool.lean_lost(self._key, self)      # never handed out again, even before connectionLost
            self.transport.abortConnection()

    #: What :meth:`LeanConnectionPool.lean_request` returns for a request on an idle connection is the
    #: connection itself: it serves one request at a time, so cancelling that request drops it.
    cancel = abort

    def when_closed(self) -> Deferred:
        d = Deferred()
        if self.connected_now:
            self._closed_waiters.append(d)
        else:
            d.callback(None)
        return d

    # -- reading -------------------------------------------------------------------------------

    def dataReceived(self, data: bytes):
        if self._state is _BODY and self._framing is _LENGTH and not self._buffer:
            self._body_bytes(data)
            return
        self._buffer += data
        try:
            while self._buffer and self._state is not _GONE:
                if self._state is _HEAD:
                    if not self._head():
                        return
                elif self._state is _BODY:
                    if not self._body_step():
                        return
                else:       # bytes while idle: no request is waiting for them
                    raise BadHTTPResponse("bytes received with no request outstanding")
        except BadHTTPResponse as e:
            self._broken(Failure(e))

    def _head(self) -> bool:
        self._received = True
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > self._max_head:
                raise BadHTTPResponse(f"response head over {self._max_head} bytes")
            return False
        if end > self._max_head:
            raise BadHTTPResponse(f"response head over {self._max_head} bytes")
        head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
        lines = head.split(b"\r\n")
        version, code, phrase = _status_line(lines[0])
        headers = _header_fields(lines[1:])
        if 100 <= code < 200:
            if code == 101:
                raise BadHTTPResponse("the backend switched protocols")
            return True                 # informational (100 Continue): the real answer follows
        length = _content_length(headers)
        chunked = b"chunked" in b",".join(headers.get(b"transfer-encoding", ())).lower()
        connection = b",".join(headers.get(b"connection", ())).lower()
        if code in _NO_BODY_CODES:
            self._framing, self._left, length = _LENGTH, 0, 0
        elif chunked:
            self._framing, self._chunk_step, length = _CHUNKED, "size", UNKNOWN_LENGTH
        elif length is not None:
            self._framing, self._left = _LENGTH, length
        else:
            self._framing, length = _UNTIL_CLOSE, UNKNOWN_LENGTH
        self._persistent = (version == b"HTTP/1.1" and b"close" not in connection
                            and self._framing is not _UNTIL_CLOSE)
        self._state = _BODY
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.response_received(LeanResponse(code, phrase, _Headers(headers), length, self))
        if self._state is _BODY and self._framing is _LENGTH and self._left == 0:
            self._body_done()
        return True

    def deliver_body(self, protocol) -> None:
        # Called from response_received, before dataReceived returns (rpc._read_body does):
        # body bytes that arrive with the head are handed on at once, none are buffered for later.
        self._body_protocol = protocol
        protocol.makeConnection(_BodyTransport(self))

    def _body_bytes(self, data: bytes) -> None:
        """_LENGTH framing: ``data`` is body, up to what is left of it."""
        if len(data) > self._left:
            # Bytes beyond the response (no request was pipelined): this connection is not to be trusted
            # with another request; the answer itself is complete, so it stands.
            data = data[:self._left]
            self._persistent = False
        self._left -= len(data)
        if data and self._body_protocol is not None:
            self._body_protocol.dataReceived(data)
        if self._state is _BODY and self._left == 0:
            self._body_done()

    def _body_step(self) -> bool:
        if self._framing is _LENGTH:
            data, self._buffer = self._buffer, b""
            self._body_bytes(data)
            return True
        if self._framing is _UNTIL_CLOSE:
            data, self._buffer = self._buffer, b""
            if self._body_protocol is not None:
                self._body_protocol.dataReceived(data)
            return True
        return self._chunk_step_once()

    def _chunk_step_once(self) -> bool:
        step = self._chunk_step
        if step == "size":
            end = self._buffer.find(b"\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_CHUNK_LINE:
                    raise BadHTTPResponse("chunk-size line too long")
                return False
            line, self._buffer = self._buffer[:end], self._buffer[end + 2:]
            size = line.split(b";", 1)[0].strip()
            if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                raise BadHTTPResponse("invalid chunk size")
            self._left = int(size, 16)
            self._chunk_step = "data" if self._left else "trailers"
            return True
        if step == "data":
            data, self._buffer = self._buffer[:self._left], self._buffer[self._left:]
            self._left -= len(data)
            if self._body_protocol is not None:
                self._body_protocol.dataReceived(data)
            if self._left == 0 and self._state is _BODY:
                self._chunk_step = "crlf"
            return True
        if step == "crlf":
            if len(self._buffer) < 2:
                return False
            if self._buffer[:2] != b"\r\n":
                raise BadHTTPResponse("chunk not followed by CRLF")
            self._buffer = self._buffer[2:]
            self._chunk_step = "size"
            return True
        # trailers: header lines up to an empty line, ignored
        if self._buffer.startswith(b"\r\n"):
            end = -2
        else:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self._max_head:
                    raise BadHTTPResponse(f"trailers over {self._max_head} bytes")
                return False
        rest, self._buffer = self._buffer[end + 4:], b""
        if rest:
            self._persistent = False        # bytes beyond the response, as in _body_bytes
        self._body_done()
        return True

    def _body_done(self) -> None:
        """The body is complete: the connection goes back to the pool (or closes), then the body's reader learns."""
        protocol, self._body_protocol = self._body_protocol, None
        if self._persistent:
            self._state = _IDLE
            self._pool.lean_release(self._key, self)
        else:
            self._state = _GONE
            self.transport.loseConnection()
        if protocol is not None:
            protocol.connectionLost(_RESPONSE_DONE)

    def _broken(self, failure: Failure) -> None:
        """The response cannot be read: fail whoever waits on it and hang up."""
        receiver, protocol, state = self._receiver, self._body_protocol, self._state
        self.abort()
        wrapped = Failure(ResponseFailed([failure]))
        if state is _HEAD and receiver is not None:
            receiver.request_failed(wrapped)
        elif state is _BODY and protocol is not None:
            protocol.connectionLost(wrapped)

    def connectionLost(self, reason=None):
        state, receiver, protocol = self._state, self._receiver, self._body_protocol
        self._state, self._receiver, self._body_protocol = _GONE, None, None
        self.connected_now = False
        self._pool.lean_lost(self._key, self)
        if state is _HEAD and receiver is not None:
            problem = ResponseFailed if self._received else ResponseNeverReceived
            receiver.request_failed(Failure(problem([reason])))
        elif state is _BODY and protocol is not None:
            if self._framing is _UNTIL_CLOSE:
                protocol.connectionLost(Failure(PotentialDataLoss()))
            else:
                protocol.connectionLost(Failure(ResponseFailed([reason])))
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            d.callback(None)


def _status_line(line: bytes):
    parts = line.split(b" ", 2)
    if len(parts) < 2 or parts[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadHTTPResponse("not an HTTP/1.x status line")
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        raise BadHTTPResponse("invalid status code")
    return parts[0], int(code), parts[2] if len(parts) > 2 else b""


def _header_fields(lines) -> Dict[bytes, List[bytes]]:
    headers: Dict[bytes, List[bytes]] = {}
    last = None
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if last is None:
                raise BadHTTPResponse("a continuation line before any header")
            values = headers[last]
            values[-1] = values[-1] + b" " + line.strip()
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise BadHTTPResponse("invalid header line")
        last = name.lower()
        headers.setdefault(last, []).append(value.strip())
    return headers


def _content_length(headers) -> Optional[int]:
    values = headers.get(b"content-length")
    if not values:
        return None
    if len(values) == 1 and values[0].isdigit():      # the usual one plain value
        return int(values[0])
    distinct = {v.strip() for value in values for v in value.split(b",")}
    if len(distinct) != 1:
        raise BadHTTPResponse("conflicting Content-Length headers")
    value = distinct.pop()
    if not value.isdigit():
        raise BadHTTPResponse("invalid Content-Length")
    return int(value)


class _Connecting:
    """A request waiting for its new connection: sent once it is made; ``cancel()`` gives up on it."""

    __slots__ = ("_connecting", "_connection", "_request", "_receiver")

    def __init__(self, connecting: Deferred, request: bytes, receiver):
        self._connecting = connecting
        self._connection: Optional[LeanConnection] = None
        self._request = request
        self._receiver = receiver
        connecting.addCallbacks(self._connected, self._not_connected)

    def cancel(self) -> None:
        receiver, self._receiver = self._receiver, None
        if receiver is None:
            return
        if self._connection is not None:
            self._connection.abort()
        else:
            self._connecting.cancel()       # fails with CancelledError, which nobody hears now

    def _connected(self, connection: LeanConnection) -> None:
        if self._receiver is None:          # cancelled while connecting
            connection.abort()
            return
        self._connection = connection
        connection.send(self._request, self._receiver)
        self._request = None

    def _not_connected(self, failure) -> None:
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.request_failed(failure)


class _LeanFactory(Factory):
    noisy = False       # one per backend connection: no "Starting factory" lines

    def __init__(self, pool, key, max_head_bytes):
        self._pool = pool
        self._key = key
        self._max_head = max_head_bytes

    def buildProtocol(self, addr):
        return LeanConnection(self._pool, self._key, self._max_head)


class LeanConnectionPool(HTTPConnectionPool):
    """Twisted's pool for its Agent, plus the idle :class:`LeanConnection`\\ s, under the same bounds.

    At most ``maxPersistentPerHost`` idle lean connections per (scheme, host,
    port) are kept, each closed after ``cachedConnectionTimeout`` seconds
    unused; one finishing while that many wait idle is closed.
    ``closeCachedConnections`` closes both kinds.
    """

    def __init__(self, reactor, persistent=True, *, max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES):
        super().__init__(reactor, persistent)
        self.max_head_bytes = max_head_bytes
        self._lean_idle: Dict[object, List[LeanConnection]] = {}
        #: The idle ones' idle timeouts, on one DelayedCall: a connection is put back and taken again
        #: on every bridged call.  The JSON-RPC clients on this reactor put their requests' timeouts here
        #: too (``JSONRPCClient``): a call's request and its connection's idleness take turns, so the one
        #: queue is never empty between calls and its DelayedCall stays put, where two queues would each
        #: empty, cancel their call and schedule a new one on every call (with one client: four of the
        #: reactor's heap operations per call, on the latency's path).
        self.lean_timeouts = TimeoutQueue(reactor)

    def lean_timeouts_on(self, clock) -> Optional[TimeoutQueue]:
        """``lean_timeouts``, for others' timeouts on ``clock`` too, if that is what this pool runs on."""
        return self.lean_timeouts if clock is self._reactor else None     # HTTPConnectionPool's reactor

    def lean_request(self, key, endpoint, request: bytes, receiver):
        """Send ``request`` on an idle connection to ``key``, or a new one made with ``endpoint``.

        ``receiver`` hears ``response_received(LeanResponse)`` or
        ``request_failed(failure)``, once (:meth:`LeanConnection.send`).
        Returns the request, whose ``cancel()`` aborts it; its receiver then
        hears nothing.
        """
        idle = self._lean_idle.get(key)
        if idle:
            # The longest idle first, as Twisted's pool does: every connection stays in use, none times out.
            connection = idle.pop(0)
            self.lean_timeouts.discard(connection)
            connection.send(request, receiver)
            return connection
        return _Connecting(endpoint.connect(_LeanFactory(self, key, self.max_head_bytes)), request, receiver)

    def lean_release(self, key, connection: LeanConnection) -> None:
        idle = self._lean_idle.setdefault(key, [])
        if not self.persistent or len(idle) >= self.maxPersistentPerHost:
            connection.abort()
            return
        idle.append(connection)
        self.lean_timeouts.add(connection, self.cachedConnectionTimeout, connection.abort)

    def lean_lost(self, key, connection: LeanConnection) -> None:
        self.lean_timeouts.discard(connection)
        # An idle one leaves its idle list too (its idle timeout, just expired, may be what closed it).
        idle = self._lean_idle.get(key)
        if idle is not None:
            if connection in idle:
                idle.remove(connection)
            if not idle:
                del self._lean_idle[key]

    def closeCachedConnections(self):
        closing = [super().closeCachedConnections()]
        for idle in list(self._lean_idle.values()):
            for connection in list(idle):
                closing.append(connection.when_closed())
                connection.abort()
        return gatherResults(closing).addCallback(lambda _: None)
