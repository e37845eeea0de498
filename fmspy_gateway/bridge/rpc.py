"""The JSON-RPC 2.0 client the gateway calls its backends with, over HTTP (treq).

This module owns everything between "send this method to that URL" and "here is
the ``result``" (or a :class:`BackendError` saying in one line what went wrong):
the request body and headers, reading the response with a size limit, checking
it is *our* JSON-RPC answer, one timeout for the whole exchange, and, per
backend URL, a bound on concurrent requests, a FIFO queue and a circuit breaker.

The HTTP client and the clock are injected: production passes
:func:`make_http_client` and the reactor, tests pass ``treq.testing.StubTreq``
and ``task.Clock``.  Nothing here imports the reactor.

Any treq-like client works (its ``post`` is called).  The one
:func:`make_http_client` makes (a :class:`GatewayHTTPClient`) also has a lean
path that the JSON-RPC client uses instead: treq's per-call work (URL parsing
and IDNA, a cookie jar we never use, header copies, a body producer that
writes through the cooperator) was half the gateway's CPU per bridged call.
The lean path sends the URL encoded once per endpoint and the header fields
encoded once per request, and, over the pool :func:`make_connection_pool`
makes, skips Twisted's Agent and HTTP client protocol too: a request is one
``bytes`` written on a lean HTTP/1.1 connection (``bridge/http11.py``, which
says why: they were still half of the CPU per call).  It keeps what treq did
for us: no cookies, no redirects, the connection pool and its bounds.  Gzip decoding moved into reading
the body, for both paths: treq's decoder inflates without bound (and once
per stacked layer), ours counts ``max_response_bytes`` on decoded bytes.

What counts against the circuit breaker (the backend looks down): connection
failures ("refused"), timeouts of requests that were sent, HTTP 5xx, bad
responses and encodings the gateway will not decode ("bad-encoding").  What
proves the backend is alive and resets the count: a ``result``, a JSON-RPC
error object, and any other HTTP status (3xx, 4xx: the backend answered, the
request or the route is wrong, and opening the circuit would not help).  Neutral: cancellations, and refusals that never
reached the network (queue full, circuit open, timed out while queued).
"""
import enum
import itertools
import json
import logging
import math
import re
import zlib
from collections import OrderedDict, deque
from http.cookiejar import CookiePolicy
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from hyperlink import EncodedURL
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from treq.response import _Response as _TreqResponse
from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import (URI, Agent, BrowserLikePolicyForHTTPS, GzipDecoder, HTTPConnectionPool,
                                RequestNotSent, RequestTransmissionFailed, ResponseDone, ResponseFailed,
                                ResponseNeverReceived)
from twisted.web.error import SchemeNotSupported
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from ..deadline import TimeoutQueue
from ..rtmp.budget import brief
from .http11 import DEFAULT_MAX_HEAD_BYTES, LeanConnectionPool

log = logging.getLogger(__name__)

__all__ = ["BackendError", "RPCError", "HTTPStatusError", "BreakerState", "CircuitBreaker", "Endpoint",
           "GatewayHTTPClient", "JSONRPCClient", "make_connection_pool", "make_http_client"]


# -- errors -------------------------------------------------------------------------------------

class BackendError(Exception):
    """A backend request failed; ``description`` is one line fit for a Flash client's ``_error``.

    ``kind`` is one of :data:`BackendError.KINDS`, so callers can decide (retry,
    fail open, log) without parsing text.  Never carries a traceback or a
    Failure's repr: the description reaches end users.
    """

    KINDS = frozenset({"refused", "timeout", "http", "bad-response", "bad-encoding", "overloaded",
                       "unavailable", "rpc-error", "cancelled"})

    def __init__(self, description: str, kind: str):
        if kind not in self.KINDS:
            raise ValueError(f"unknown BackendError kind {kind!r}")
        super().__init__(description)
        self.description = description
        self.kind = kind

    def __repr__(self):
        return f"{type(self).__name__}({self.description!r}, kind={self.kind!r})"


class HTTPStatusError(BackendError):
    """The backend answered with a non-2xx status; ``status`` decides whether the breaker counts it."""

    def __init__(self, description: str, status: int):
        super().__init__(description, "http")
        self.status = status


class RPCError(BackendError):
    """The backend answered with a JSON-RPC error object: it is alive, the call failed."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message, "rpc-error")
        self.code = code
        self.message = message
        self.data = data

    def __repr__(self):
        return f"RPCError(code={self.code!r}, message={self.message!r}, data={self.data!r})"


class _BadResponse(Exception):
    """Raised inside the response pipeline; becomes a "bad-response" BackendError naming the endpoint."""


class _BadEncoding(_BadResponse):
    """A Content-Encoding the gateway will not decode (stacked, unknown); kind "bad-encoding".

    Its own kind, so that an operator can tell a misconfigured backend (or
    proxy) compressing twice, or with brotli, from one sending broken JSON.
    """


# -- the circuit breaker ------------------------------------------------------------------------

class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Verdict(enum.Enum):
    """What one finished exchange says about the backend's health."""
    ALIVE = "alive"
    FAILED = "failed"
    NEUTRAL = "neutral"


def _verdict(outcome) -> Verdict:
    if not isinstance(outcome, Failure):
        return Verdict.ALIVE
    err = outcome.value
    if isinstance(err, RPCError):
        return Verdict.ALIVE
    if isinstance(err, HTTPStatusError):
        return Verdict.FAILED if err.status >= 500 else Verdict.ALIVE
    if isinstance(err, BackendError) and err.kind in ("refused", "timeout", "bad-response", "bad-encoding"):
        return Verdict.FAILED
    return Verdict.NEUTRAL


class CircuitBreaker:
    """Stops sending to a backend that keeps failing, so callers fail in microseconds, not timeouts.

    Time is read from ``clock`` lazily (no timers): an open circuit becomes
    half-open when someone looks at it after ``reset`` seconds.  In half-open
    exactly one request (the probe) may go through; its outcome alone decides.
    Results of requests sent before the circuit opened are ignored while it is
    open or half-open: they say nothing about the backend *now*.
    """

    def __init__(self, name: str, clock, *, threshold: int, reset: float):
        self.name = name
        self.threshold = threshold
        self.reset = reset
        self._clock = clock
        self._state = BreakerState.CLOSED
        self.failures = 0                 # consecutive FAILED verdicts
        self._retry_at = 0.0              # while OPEN: when it turns half-open
        self._probe_out = False           # while HALF_OPEN: the probe is in flight

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock.seconds() >= self._retry_at:
            self._state = BreakerState.HALF_OPEN
            self._probe_out = False
            log.info("backend %s: circuit half-open, the next request probes it", self.name)
        return self._state

    def refusal(self) -> Optional[str]:
        """Why a request must fail fast now, or None if it may go ahead."""
        if self._state is BreakerState.CLOSED:      # nearly always: no property, no clock
            return None
        state = self.state
        if state is BreakerState.OPEN:
            wait = max(1, math.ceil(self._retry_at - self._clock.seconds()))
            return (f"backend {self.name} unavailable (circuit open after {self.failures} failures); "
                    f"retrying in {wait} s")
        if state is BreakerState.HALF_OPEN and self._probe_out:
            return (f"backend {self.name} unavailable (circuit open after {self.failures} failures); "
                    f"retrying now")
        return None

    def admit(self) -> Tuple[Optional[str], bool]:
        """Called as a request is about to be sent: (refusal, is_probe)."""
        if self._state is BreakerState.CLOSED:
            return None, False
        refusal = self.refusal()
        if refusal is not None:
            return refusal, False
        if self._state is BreakerState.HALF_OPEN:
            self._probe_out = True
            return None, True
        return None, False

    def record(self, verdict: Verdict, is_probe: bool) -> None:
        # CLOSED is never left by time alone (only OPEN turns HALF_OPEN when looked at): no property needed.
        state = self._state if self._state is BreakerState.CLOSED else self.state
        if state is BreakerState.CLOSED:
            if verdict is Verdict.ALIVE:
                self.failures = 0
            elif verdict is Verdict.FAILED:
                self.failures += 1
                if self.failures >= self.threshold:
                    self._open()
        elif state is BreakerState.HALF_OPEN and is_probe:
            self._probe_out = False
            if verdict is Verdict.ALIVE:
                self._state = BreakerState.CLOSED
                self.failures = 0
                log.info("backend %s: circuit closed, the probe request succeeded", self.name)
            elif verdict is Verdict.FAILED:
                self.failures += 1
                self._open()
            # NEUTRAL (the probe was cancelled): stay half-open, the next request probes.

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._retry_at = self._clock.seconds() + self.reset
        log.warning("backend %s: circuit open after %d consecutive failures; retrying in %g s",
                    self.name, self.failures, self.reset)


# -- one backend URL ----------------------------------------------------------------------------

def _display_name(url: str) -> str:
    """The URL without credentials or query string: descriptions reach clients and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Endpoint:
    """One backend URL: at most ``max_concurrent`` exchanges in flight, a bounded FIFO, a breaker.

    Inspectable for tests and a status page: ``in_flight``, ``queued``,
    ``breaker.state``, ``breaker.failures``.
    """

    def __init__(self, url: str, clock, *, max_concurrent: int, max_queued: int, breaker_threshold: int,
                 breaker_reset: float):
        self.url = url
        self.name = _display_name(url)
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.breaker = CircuitBreaker(self.name, clock, threshold=breaker_threshold, reset=breaker_reset)
        self.in_flight = 0
        self._queue: Deque["_Exchange"] = deque()
        self._pumping = False
        self._request_url: Optional[bytes] = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def request_url(self) -> bytes:
        """The URL as the lean HTTP path sends it: encoded once, the way treq encodes it on every call.

        Lazy, so that a URL hyperlink cannot encode fails the request that
        sends it (as it did inside treq), not ``call()`` itself.
        """
        if self._request_url is None:
            self._request_url = EncodedURL.from_text(self.url).to_uri().to_text().encode("ascii")
        return self._request_url

    def refusal(self) -> Optional[BackendError]:
        """Why a new request must fail at once (circuit open, queue full), or None."""
        why = self.breaker.refusal()
        if why is not None:
            return BackendError(why, "unavailable")
        must_wait = self.in_flight >= self.max_concurrent or self._queue
        if must_wait and len(self._queue) >= self.max_queued:
            return BackendError(f"backend {self.name} is overloaded: {len(self._queue)} requests waiting",
                                "overloaded")
        return None

    def submit(self, exchange: "_Exchange") -> None:
        # FIFO: a newcomer never overtakes the queue, even when a slot just freed up.
        self._queue.append(exchange)
        self.pump()

    def withdraw(self, exchange: "_Exchange") -> None:
        """A queued exchange gave up (cancelled, timed out): it leaves the queue."""
        try:
            self._queue.remove(exchange)
        except ValueError:
            pass

    def finished(self, exchange: "_Exchange", outcome) -> None:
        """A sent exchange is over: free its slot and tell the breaker."""
        self.in_flight -= 1
        self.breaker.record(_verdict(outcome), exchange.is_probe)

    def pump(self) -> None:
        """Start queued exchanges while slots are free.

        Not re-entrant: with an in-memory HTTP client an exchange can finish
        inside ``start()``; the outer loop picks up the freed slot instead of
        recursing once per queued request.
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._queue and self.in_flight < self.max_concurrent:
                exchange = self._queue.popleft()
                refusal, is_probe = self.breaker.admit()
                if refusal is not None:
                    # The circuit opened while it waited: fail fast like a new request would.
                    exchange.refuse(BackendError(refusal, "unavailable"))
                    continue
                self.in_flight += 1
                exchange.start(is_probe)
        finally:
            self._pumping = False


# -- reading the response -----------------------------------------------------------------------

class _BoundedBody(Protocol):
    """Collects a response body up to ``limit`` bytes, and hangs up as soon as it would exceed it.

    ``treq.content`` buffers whatever the server sends; a backend bug (or a
    hostile one) must not make the gateway hold gigabytes.  The declared
    Content-Length is checked before a byte is read.

    A gzip-encoded body (``gzip=True``) is inflated here, chunk by chunk, with
    ``max_length`` set to the room left under the limit: the limit counts
    decoded bytes as they are decoded, so 1.8 KB of gzip that would inflate
    to 1 GiB costs at most ``limit`` bytes of memory and one zlib call per
    network chunk.  (Twisted's ``GzipDecoder`` inflates each chunk whole
    before anyone can count it.)  The wire bytes count against the limit too.
    """

    def __init__(self, length, limit: int, done: Callable[[Any], None], gzip: bool = False):
        self._length = length
        self._limit = limit
        self._chunks = []
        self._size = 0          # decoded bytes kept
        self._wire = 0          # bytes received, before decoding
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        #: Called once with the body (bytes) or a Failure; None once it was (or the read was cancelled).
        self._done: Optional[Callable[[Any], None]] = done

    def connectionMade(self):
        if self._length is not UNKNOWN_LENGTH and self._length > self._limit:
            self._give_up(_BadResponse(f"response of {self._length} bytes is larger than the limit "
                                       f"of {self._limit} bytes"))

    def dataReceived(self, data: bytes):
        if self._done is None:
            return
        self._wire += len(data)
        if self._wire > self._limit:
            self._give_up(_BadResponse(f"response is larger than the limit of {self._limit} bytes"))
            return
        if self._inflate is not None:
            room = self._limit - self._size
            try:
                # At most room + 1 bytes come out: one more than fits is enough to know.
                data = self._inflate.decompress(data, room + 1)
            except zlib.error:
                self._give_up(_BadResponse("the gzip-encoded body is not valid gzip"))
                return
            if len(data) > room:
                self._give_up(_BadResponse(f"response is larger than the limit of {self._limit} bytes "
                                           "once decompressed"))
                return
        self._size += len(data)
        if data:
            self._chunks.append(data)

    def connectionLost(self, reason=None):
        if self._done is None:
            return
        done, self._done = self._done, None
        # isinstance, not reason.check(): that walks the class's bases through four Python calls per body.
        if reason is None or isinstance(reason.value, (ResponseDone, PotentialDataLoss)):
            if self._inflate is not None and self._wire and not self._inflate.eof:
                done(Failure(_BadResponse("the gzip-encoded body ends before its gzip stream does")))
                return
            done(b"".join(self._chunks))
        else:
            done(reason)

    def _give_up(self, exc: Exception):
        done, self._done = self._done, None
        self._chunks = []
        self._inflate = None
        self._hang_up()
        if done is not None:
            done(Failure(exc))

    def cancel(self):
        """The body is no longer wanted (timeout, the caller's cancel): nothing more is reported."""
        self._done = None
        self._chunks = []
        self._inflate = None
        self._hang_up()

    def _hang_up(self):
        # The rest of the body is unwanted: close the connection rather than drain it.
        if self.transport is not None:
            self.transport.stopProducing()


#: Content-Encoding names of gzip (RFC 9110 8.4.1.3: x-gzip is the same); identity is no encoding.
_GZIP_CODINGS = (b"gzip", b"x-gzip")


def _undecoded(response) -> Tuple[Any, bool]:
    """The response as the network delivered it, and whether its body is gzip-encoded.

    The gateway asks for gzip only and decodes one gzip layer, itself, under
    the size limit (:class:`_BoundedBody`).  treq's ``post`` wraps the
    response in one Twisted ``GzipDecoder`` per gzip layer, each inflating
    without bound, inside its own ``_Response``: those are unwrapped
    (``original``, documented on both)
    and the layers they stood for counted back in.  Stacked encodings
    (``gzip, gzip`` turned 1.8 KB into 1 GiB) and unknown ones are refused
    with kind "bad-encoding", before a byte of the body is read.
    """
    layers = 0
    while isinstance(response, (GzipDecoder, _TreqResponse)):
        if isinstance(response, GzipDecoder):
            layers += 1
        response = response.original
    values = response.headers.getRawHeaders(b"Content-Encoding")
    if not values and not layers:
        return response, False          # nearly every answer
    raw = b",".join(values or ())
    codings = [c.strip().lower() for c in raw.split(b",")]
    codings = [c for c in codings if c and c != b"identity"] + [b"gzip"] * layers
    if not codings:
        return response, False
    if len(codings) == 1 and codings[0] in _GZIP_CODINGS:
        return response, True
    shown = _short_text(b", ".join(codings).decode("latin-1"))
    if all(c in _GZIP_CODINGS for c in codings):
        raise _BadEncoding(f"Content-Encoding {shown} is stacked; one gzip layer at most is accepted")
    raise _BadEncoding(f"unsupported Content-Encoding {shown}; the gateway accepts gzip only")


def _short_text(text: str, limit: int = 40) -> str:
    """A backend-sent header value, quoted and cut: it goes into a client's _error and the log."""
    return repr(text) if len(text) <= limit else repr(text[:limit - 3] + "...")


def _read_body(response, limit: int, done: Callable[[Any], None]) -> Optional[_BoundedBody]:
    """Read ``response``'s body under ``limit``; ``done`` is called once with it (bytes) or a Failure.

    Returns the reader, whose ``cancel()`` stops it, or None when the body
    is refused before it is read (``done`` was called already).
    """
    try:
        response, gzipped = _undecoded(response)
    except _BadEncoding as e:
        # Not read at all: close the connection rather than drain a body nobody will decode.
        response.deliverBody(_Discard())
        done(Failure(e))
        return None
    reader = _BoundedBody(response.length, limit, done, gzipped)
    response.deliverBody(reader)
    return reader


class _Discard(Protocol):
    """Takes delivery of a body that will not be read, and hangs up at once."""

    def connectionMade(self):
        self.transport.stopProducing()


# -- one request --------------------------------------------------------------------------------

class _Phase(enum.Enum):
    QUEUED = "queued"
    SENT = "sent"
    DONE = "done"


class _Exchange:
    """One JSON-RPC request from submission to its outcome; owns its timer and what it waits for on the network.

    The network part is told of the response and of its body by plain calls
    (``response_received``, ``request_failed``, ``_body_read``), not
    Deferreds: chaining Deferreds is the costliest thing Twisted's Deferred
    does, and each exchange would make two.  ``_network`` is whatever a
    cancel must stop: the request (until the head is in), then the body's
    reader; each has ``cancel()``.

    Every way out (response, timeout, caller's cancel, client shutdown) goes
    through :meth:`_finish`, which runs once: cancel the timer, leave the queue
    or free the slot, cancel whatever is still on the network, fire the result.
    """

    def __init__(self, client: "JSONRPCClient", endpoint: Endpoint, key: int, body: bytes,
                 headers: "HeaderFields", timeout: float, interpret: Callable[[int, bytes], Any]):
        self.client = client
        self.endpoint = endpoint
        self.key = key
        self.body = body
        self.headers = headers
        self.timeout = timeout
        self.interpret = interpret
        self.phase = _Phase.QUEUED
        self.is_probe = False
        self.result: Deferred = Deferred(self._cancelled_by_caller)
        self._network = None
        self._code = 0
        client._timeouts.add(self, timeout, self._timed_out)

    def start(self, is_probe: bool) -> None:
        """Send the request (the endpoint gave us a slot)."""
        self.phase = _Phase.SENT
        self.is_probe = is_probe
        lean = self.client._lean
        try:
            if lean is not None:
                request = lean.post_body(self.endpoint.request_url, self.body, self.headers, self)
                if self.phase is _Phase.SENT and self._network is None:    # no answer came at once
                    self._network = request
                return
            d = self.client._http.post(self.endpoint.url, data=self.body, headers=_as_headers(self.headers),
                                       unbuffered=True, allow_redirects=False)
        except Exception:
            d = fail()
        self._network = d
        d.addCallback(self.response_received)
        d.addErrback(self.request_failed)

    def refuse(self, error: BackendError) -> None:
        """The endpoint will not send it after all (the circuit opened while it was queued)."""
        self._finish(Failure(error))

    def response_received(self, response) -> None:
        """The head is in: from now on the body's read is what is on the network (and what a cancel stops)."""
        self._network = None
        try:
            self._code = response.code
            reader = _read_body(response, self.client.max_response_bytes, self._body_read)
        except Exception:
            self._network_done(Failure())
            return
        if self.phase is not _Phase.DONE:      # the body may have been read (or refused) at once
            self._network = reader

    def request_failed(self, failure) -> None:
        """No response: the connection failed, closed or broke before the head was in."""
        self._network_done(failure)

    def _body_read(self, outcome) -> None:
        code = self._code
        if not 200 <= code < 300:
            # Whatever happened to the body, the status is the news.
            outcome = Failure(HTTPStatusError(f"backend {self.endpoint.name} answered HTTP {code}", code))
        elif not isinstance(outcome, Failure):
            try:
                outcome = self.interpret(code, outcome)
            except Exception:
                outcome = Failure()
        self._network_done(outcome)

    def _network_done(self, outcome):
        if self.phase is not _Phase.DONE:
            if isinstance(outcome, Failure):
                outcome = Failure(_describe_failure(outcome, self.endpoint.name))
            self._network = None
            self._finish(outcome)
        # else: we cancelled it on the way out (timeout, caller's cancel); nothing to report.
        return None

    def _timed_out(self) -> None:
        self._finish(Failure(BackendError(
            f"backend {self.endpoint.name} timed out after {self.timeout:g} s", "timeout")))

    def _cancelled_by_caller(self, _result: Deferred) -> None:
        self._finish(Failure(CancelledError()))

    def abandon(self, reason: str) -> None:
        """The client is shutting down."""
        self._finish(Failure(BackendError(f"request to backend {self.endpoint.name} cancelled: {reason}",
                                          "cancelled")))

    def _finish(self, outcome) -> None:
        if self.phase is _Phase.DONE:
            return
        phase, self.phase = self.phase, _Phase.DONE
        self.client._timeouts.discard(self)
        self.client._outstanding.pop(self.key, None)
        if phase is _Phase.QUEUED:
            self.endpoint.withdraw(self)
        elif phase is _Phase.SENT:
            self.endpoint.finished(self, outcome)
        network, self._network = self._network, None
        if network is not None:
            network.cancel()     # aborts the connection, or the body read it waits on
        # Refill the slot before the caller's callbacks run: they may well call again.
        self.endpoint.pump()
        if not self.result.called:
            if isinstance(outcome, Failure):
                self.result.errback(outcome)
            else:
                self.result.callback(outcome)
        self.client._maybe_idle()


def _describe_failure(failure: Failure, name: str) -> BaseException:
    """Turn whatever the HTTP stack raised into a BackendError a user may read."""
    err = failure.value
    if isinstance(err, BackendError):
        return err
    if isinstance(err, _BadEncoding):
        return BackendError(f"backend {name} sent a response the gateway cannot decode: {err}", "bad-encoding")
    if isinstance(err, _BadResponse):
        return BackendError(f"backend {name} sent a bad response: {err}", "bad-response")
    if isinstance(err, neterror.DNSLookupError):
        return BackendError(f"backend {name}: host not found", "refused")
    if isinstance(err, neterror.ConnectionRefusedError):
        return BackendError(f"backend {name} refused the connection", "refused")
    if isinstance(err, (neterror.TCPTimedOutError, neterror.TimeoutError)):
        return BackendError(f"backend {name}: connection attempt timed out", "refused")
    if isinstance(err, neterror.ConnectError):
        return BackendError(f"could not connect to backend {name}", "refused")
    if isinstance(err, (ResponseNeverReceived, RequestTransmissionFailed, RequestNotSent,
                        neterror.ConnectionClosed)):
        return BackendError(f"backend {name} closed the connection without answering", "refused")
    if isinstance(err, ResponseFailed):
        return BackendError(f"backend {name} sent a broken HTTP response", "bad-response")
    if isinstance(err, CancelledError):
        return BackendError(f"request to backend {name} was cancelled", "cancelled")
    log.warning("backend %s: unexpected failure", name, exc_info=(failure.type, failure.value, failure.tb))
    return BackendError(f"could not reach backend {name}", "refused")


# -- interpreting JSON-RPC answers --------------------------------------------------------------

def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value, limit: int = 40) -> str:
    """A backend-sent value for a message: a container is named by its size, never dumped whole."""
    if isinstance(value, (list, dict)):
        return f"{'an array' if isinstance(value, list) else 'an object'} of {len(value)}"
    text = json.dumps(value) if not isinstance(value, int) or value.bit_length() < 128 else brief(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _decode(body: bytes):
    try:
        return json.loads(body)
    except (ValueError, RecursionError):       # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _BadResponse("not JSON")


def _interpret_call(request_id: int) -> Callable[[int, bytes], Any]:
    def interpret(_code: int, body: bytes):
        message = _decode(body)
        if isinstance(message, list):
            raise _BadResponse("a batch response to a single request")
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            raise _BadResponse("not a JSON-RPC 2.0 response object")
        has_result, has_error = "result" in message, "error" in message
        if has_result == has_error:
            raise _BadResponse("a JSON-RPC response needs exactly one of 'result' and 'error'")
        answered = message.get("id", ...)
        # An error about a request the backend could not parse carries id null (JSON-RPC 2.0, 5).
        id_ok = (_is_int(answered) and answered == request_id) or (has_error and answered is None)
        if not id_ok:
            got = "no id" if answered is ... else _short(answered)
            raise _BadResponse(f"wrong id (sent {request_id}, got {got})")
        if has_result:
            return message["result"]
        error = message["error"]
        if not (isinstance(error, dict) and _is_int(error.get("code")) and isinstance(error.get("message"), str)):
            raise _BadResponse("malformed JSON-RPC error object")
        raise RPCError(error["code"], error["message"], error.get("data"))
    return interpret


def _interpret_notification(_code: int, _body: bytes) -> None:
    # A 2xx is all a notification waits for; servers should send no body, some send one anyway.
    return None


# -- the client -----------------------------------------------------------------------------------

class JSONRPCClient:
    """Calls JSON-RPC 2.0 methods on backend URLs; one per gateway (or per application).

    ``http`` is treq-like (:class:`treq.client.HTTPClient`, ``StubTreq``); a
    :class:`GatewayHTTPClient` (what :func:`make_http_client` returns) is
    driven through its lean ``post_body`` instead of ``post``.  ``clock``
    provides ``callLater`` and ``seconds``.  Outstanding requests are kept in a
    table so that :meth:`close` can fail them all at once.
    """

    def __init__(self, http, clock, *, max_concurrent: int = 32, max_queued: int = 256,
                 breaker_threshold: int = 5, breaker_reset: float = 10.0,
                 max_response_bytes: int = 4 * 1024 * 1024, user_agent: str = "fmspy-gateway"):
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if max_queued < 0:
            raise ValueError("max_queued must not be negative")
        if breaker_threshold < 1:
            raise ValueError("breaker_threshold must be at least 1")
        if breaker_reset <= 0:
            raise ValueError("breaker_reset must be positive")
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")
        self._http = http
        self._lean: Optional[GatewayHTTPClient] = http if isinstance(http, GatewayHTTPClient) else None
        self._clock = clock
        #: Every outstanding exchange's timeout, on one DelayedCall (routes share a few timeouts): the lean
        #: pool's, when it runs on ``clock`` (``LeanConnectionPool.lean_timeouts`` says why).
        shared = self._lean.timeouts_on(clock) if self._lean is not None else None
        self._timeouts = shared if shared is not None else TimeoutQueue(clock)
        self.max_concurrent = max_concurrent
        self.max_queued = max_queued
        self.breaker_threshold = breaker_threshold
        self.breaker_reset = breaker_reset
        self.max_response_bytes = max_response_bytes
        self.user_agent = user_agent
        self._user_agent_value = _field_value(user_agent)
        self._ids = itertools.count(1)
        self._endpoints: Dict[str, Endpoint] = {}
        self._outstanding: Dict[int, _Exchange] = {}
        self._closed: Optional[str] = None
        self._idle_waiters: list = []

    # -- public API -------------------------------------------------------------------------------

    def call(self, endpoint: str, method: str, params, *, timeout: float,
             headers: "Optional[Mapping[str, str] | HeaderFields]" = None) -> Deferred:
        """POST a request; fires with its ``result``, fails with BackendError / RPCError.

        Raises at once (TypeError/ValueError) for our own mistakes: params that
        JSON cannot carry (NaN, objects), a non-positive timeout, a non-HTTP URL.
        """
        request_id = next(self._ids)
        message = {"jsonrpc": "2.0", "method": method, "params": self._params(params), "id": request_id}
        return self._submit(endpoint, request_id, message, headers, timeout, _interpret_call(request_id))

    def notify(self, endpoint: str, method: str, params, *, timeout: float,
               headers: "Optional[Mapping[str, str] | HeaderFields]" = None) -> Deferred:
        """POST a notification (no ``id``); fires with None once the backend answered 2xx."""
        key = next(self._ids)
        message = {"jsonrpc": "2.0", "method": method, "params": self._params(params)}
        return self._submit(endpoint, key, message, headers, timeout, _interpret_notification)

    def endpoint(self, url: str) -> Endpoint:
        """The state kept for ``url`` (created on first use; routes are a fixed set, so this stays small)."""
        ep = self._endpoints.get(url)
        if ep is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL: {_display_name(url)!r}")
            ep = self._endpoints[url] = Endpoint(
                url, self._clock, max_concurrent=self.max_concurrent, max_queued=self.max_queued,
                breaker_threshold=self.breaker_threshold, breaker_reset=self.breaker_reset)
        return ep

    @property
    def endpoints(self) -> Mapping[str, Endpoint]:
        return dict(self._endpoints)

    @property
    def outstanding(self) -> int:
        """Requests queued or in flight, over all endpoints."""
        return len(self._outstanding)

    def when_idle(self) -> Deferred:
        """Fires once nothing is queued or in flight.

        For a graceful stop: let the last notifications (@disconnect...) finish,
        each within its own timeout, then :meth:`close` and close the pool.
        """
        if not self._outstanding:
            return succeed(None)
        d = Deferred()
        self._idle_waiters.append(d)
        return d

    def _maybe_idle(self) -> None:
        if not self._outstanding and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    def close(self, reason: str = "the gateway is shutting down") -> None:
        """Fail every outstanding request (kind "cancelled") and refuse new ones."""
        self._closed = reason
        # Queued ones first: failing a sent one frees its slot, which would start the next in line.
        everything = list(self._outstanding.values())
        for exchange in [e for e in everything if e.phase is _Phase.QUEUED] + everything:
            exchange.abandon(reason)

    # -- internals --------------------------------------------------------------------------------

    @staticmethod
    def _params(params):
        if isinstance(params, tuple):
            params = list(params)
        if not isinstance(params, (list, dict)):
            raise TypeError(f"JSON-RPC params must be a list or a dict, not {type(params).__name__}")
        return params

    def header_fields(self, extra: Optional[Mapping[str, str]]) -> "HeaderFields":
        """A request's header fields, with the caller's ``extra`` headers, encoded for whichever HTTP path sends them.

        The caller's context headers replace our User-Agent and Accept (by
        name, case-insensitively) but never the Content-Type: they must not
        change what the body is.  Names are checked as HTTP tokens and values
        lose line breaks, as Twisted's ``Headers`` does.  A caller sending
        the same headers again and again (the gateway: the same caller's
        context on each of its calls) keeps the result and passes it as
        ``headers``: they are not encoded again.
        """
        fields = {b"user-agent": (b"User-Agent", self._user_agent_value), b"accept": _ACCEPT_JSON}
        if extra:
            for name, value in extra.items():
                raw, lower = _field_name(name)
                fields[lower] = (raw, _field_value(value))
        fields[b"content-type"] = _CONTENT_TYPE_JSON
        return HeaderFields(fields.values())

    def _submit(self, url, key, message, headers, timeout, interpret) -> Deferred:
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        try:
            body = _JSON_ENCODER.encode(message).encode("ascii")
        except (TypeError, ValueError) as e:
            problem = TypeError if isinstance(e, TypeError) else ValueError
            raise problem(f"cannot encode the params of {message['method']!r} as JSON: {e}") from None
        ep = self.endpoint(url)
        if self._closed is not None:
            return fail(BackendError(f"request to backend {ep.name} cancelled: {self._closed}", "cancelled"))
        refusal = ep.refusal()
        if refusal is not None:
            return fail(refusal)
        fields = headers if isinstance(headers, HeaderFields) else self.header_fields(headers)
        exchange = _Exchange(self, ep, key, body, fields, timeout, interpret)
        self._outstanding[key] = exchange
        ep.submit(exchange)
        return exchange.result


#: Built once: ``json.dumps`` with options builds an encoder on every call.
_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


# -- header fields ----------------------------------------------------------------------------------

class HeaderFields(tuple):
    """A request's header fields as ``(name, value)`` bytes pairs, checked and encoded
    (:meth:`JSONRPCClient.header_fields`); ``call`` and ``notify`` take them as they are."""

    __slots__ = ()


_ACCEPT_JSON = (b"Accept", b"application/json")
_CONTENT_TYPE_JSON = (b"Content-Type", b"application/json")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
#: Framing is the HTTP layer's: a caller's Host, Content-Length or Transfer-Encoding would contradict it.
_RESERVED = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})
_names: Dict[str, Tuple[bytes, bytes]] = {}     # checked header names; callers use a handful of constants


def _field_name(name: str) -> Tuple[bytes, bytes]:
    """``name`` encoded and its lower-cased key; ValueError if it is no HTTP token or is the HTTP layer's."""
    known = _names.get(name)
    if known is not None:
        return known
    raw = name.encode("iso-8859-1") if isinstance(name, str) else bytes(name)
    if not _TOKEN.match(raw):
        raise ValueError(f"invalid HTTP header name {_short_text(raw.decode('latin-1'))}")
    if raw.lower() in _RESERVED:
        raise ValueError(f"the header {raw.decode('ascii')} is set by the HTTP client, not by callers")
    known = (raw, raw.lower())
    if len(_names) < 256:
        _names[name] = known
    return known


def _field_value(value) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if b"\r" in raw or b"\n" in raw:
        raw = b" ".join(raw.splitlines())       # what Twisted's Headers does to linear whitespace
    return raw


def _as_headers(fields: List[Tuple[bytes, bytes]]) -> Headers:
    """Header fields as Twisted's ``Headers``, for treq and the Agent."""
    headers = Headers()
    for name, value in fields:
        headers.addRawHeader(name, value)
    return headers


# -- production HTTP client -----------------------------------------------------------------------

class _NoCookies(CookiePolicy):
    """Never store or send cookies: one HTTP client serves every Flash user, so a backend's
    Set-Cookie for one user's call must not ride along on everybody else's."""

    netscape = True          # CookieJar reads these three; the base class only documents them
    rfc2965 = False
    hide_cookie2 = True

    def set_ok(self, cookie, request):
        return False

    def return_ok(self, cookie, request):
        return False

    def domain_return_ok(self, domain, request):
        return False

    def path_return_ok(self, path, request):
        return False


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body already in memory, written in one go.

    treq turns bytes into a ``FileBodyProducer``, which reads a file through
    the cooperator over later reactor turns: work and latency for nothing.
    """

    def __init__(self, body: bytes):
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer):
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


@implementer(IAgentEndpointFactory)
class _CachingEndpointFactory:
    """Twisted's standard endpoints (TCP for http, TCP+TLS for https), one kept per (scheme, host, port).

    ``Agent`` asks its endpoint factory for an endpoint on every request, even
    when the pool then hands it a cached connection; the standard factory
    builds a new ``HostnameEndpoint`` (and, for https, a TLS connection
    creator) each time.  Endpoints are reusable, so one per destination will
    do.  The cache is bounded (least recently used out) because applications
    may use the same HTTP client for URLs of their own.
    """

    def __init__(self, reactor, *, tls_policy=None, max_cached: int = 256):
        self._reactor = reactor
        self._tls_policy = tls_policy if tls_policy is not None else BrowserLikePolicyForHTTPS()
        self._max_cached = max_cached
        self._endpoints: "OrderedDict[Tuple[bytes, bytes, int], Any]" = OrderedDict()

    def endpointForURI(self, uri):
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is not None:
            self._endpoints.move_to_end(key)
            return endpoint
        endpoint = self._make(uri)
        self._endpoints[key] = endpoint
        if len(self._endpoints) > self._max_cached:
            self._endpoints.popitem(last=False)
        return endpoint

    def _make(self, uri):
        # What twisted.web.client's standard endpoint factory does, without a connect timeout or bind address.
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"Unsupported scheme: {uri.scheme!r}")
        host = uri.host.decode("ascii")    # URI.fromBytes (which Agent calls first) refuses non-ASCII URLs
        endpoint = HostnameEndpoint(self._reactor, host, uri.port, bindAddress=None)
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(self._tls_policy.creatorForNetloc(uri.host, uri.port), endpoint)
        return endpoint


class _LeanTarget:
    """What the lean path needs of one URL, worked out once: pool key, network endpoint, request line and Host."""

    __slots__ = ("key", "endpoint", "head")

    def __init__(self, url: bytes, endpoints: "_CachingEndpointFactory"):
        uri = URI.fromBytes(url)
        self.key = (uri.scheme, uri.host, uri.port)
        self.endpoint = endpoints.endpointForURI(uri)
        host = b"[" + uri.host + b"]" if b":" in uri.host else uri.host
        if (uri.scheme, uri.port) not in ((b"http", 80), (b"https", 443)):
            host = b"%b:%d" % (host, uri.port)
        self.head = b"POST " + uri.originForm + b" HTTP/1.1\r\nHost: " + host + b"\r\n"


class GatewayHTTPClient(HTTPClient):
    """treq's HTTPClient, never keeping cookies, plus the lean POST the JSON-RPC client uses.

    The whole treq API stays (applications may use the shared client for
    their own requests); :meth:`post_body` is what :class:`JSONRPCClient`
    calls instead of ``post(url, data=..., unbuffered=True,
    allow_redirects=False)``, with the same effect.  Given a
    :class:`~.http11.LeanConnectionPool` (as :func:`make_http_client` does),
    it posts through the pool's lean HTTP/1.1 connections (``bridge/http11.py``
    says why); otherwise through ``agent``.
    """

    #: URLs whose _LeanTarget is kept; routes are a fixed set, applications may add a few of their own.
    MAX_TARGETS = 256

    def __init__(self, agent, lean_pool: Optional[LeanConnectionPool] = None,
                 endpoints: Optional["_CachingEndpointFactory"] = None):
        super().__init__(agent, cookiejar=IndexableCookieJar(policy=_NoCookies()))
        self.agent = agent
        self._lean_pool = lean_pool
        self._endpoints = endpoints
        self._targets: Dict[bytes, _LeanTarget] = {}

    def timeouts_on(self, clock) -> Optional[TimeoutQueue]:
        """The lean pool's timeout queue, for the JSON-RPC client's requests, if the pool runs on ``clock``."""
        return self._lean_pool.lean_timeouts_on(clock) if self._lean_pool is not None else None

    def post_body(self, url: bytes, body: bytes, fields: List[Tuple[bytes, bytes]], receiver):
        """POST ``body`` to ``url`` (already encoded, see :attr:`Endpoint.request_url`) with header ``fields``.

        ``receiver.response_received(response)`` is called with the response
        (``code``, ``headers``, ``length``, ``deliverBody``), unbuffered and
        not decoded: the JSON-RPC client inflates a gzip body while it reads
        it, under its size limit (``_read_body``); or
        ``receiver.request_failed(failure)``, once.  No redirects are
        followed and no cookies are stored or sent.  Returns the request:
        its ``cancel()`` aborts it (the receiver, which cancelled, may still
        hear ``request_failed``).
        """
        if self._lean_pool is None:
            headers = _as_headers(fields)
            headers.addRawHeader(b"Accept-Encoding", b"gzip")
            d = self.agent.request(b"POST", url, headers, _BytesProducer(body))
            d.addCallback(receiver.response_received)
            d.addErrback(receiver.request_failed)
            return d
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= self.MAX_TARGETS:
                self._targets.clear()
            target = self._targets[url] = _LeanTarget(url, self._endpoints)
        parts = [target.head]
        for name, value in fields:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"Accept-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body), body)
        return self._lean_pool.lean_request(target.key, target.endpoint, b"".join(parts), receiver)



def make_connection_pool(reactor, *, max_persistent_per_host: int = 32, idle_timeout: float = 1.5,
                         max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES) -> LeanConnectionPool:
    """The gateway's one pool of persistent backend connections (the Agent's and the lean path's).

    ``max_persistent_per_host`` matches the default ``max_concurrent`` so that
    every busy slot keeps its connection (Twisted's default is 2).  Idle
    connections are dropped after ``idle_timeout`` seconds, below the
    keep-alive timeouts backends commonly use (2-5 s): Twisted never retries a
    POST that hits a connection the server just closed, so we close first.
    ``max_head_bytes`` bounds a response's status line and headers on the
    lean path (Twisted's parser bounded each header line to 16 KB).
    Close it at shutdown with ``pool.closeCachedConnections()``.
    """
    pool = LeanConnectionPool(reactor, persistent=True, max_head_bytes=max_head_bytes)
    pool.maxPersistentPerHost = max_persistent_per_host
    pool.cachedConnectionTimeout = idle_timeout
    return pool


def make_http_client(reactor, *, pool: Optional[HTTPConnectionPool] = None, max_persistent_per_host: int = 32,
                     idle_timeout: float = 1.5) -> GatewayHTTPClient:
    """A treq HTTPClient over a persistent pool, without a cookie jar that would mix users' sessions.

    Its Agent keeps one endpoint per backend (:class:`_CachingEndpointFactory`),
    and :class:`JSONRPCClient` uses its lean path (lean HTTP/1.1 connections
    when ``pool`` is a :class:`~.http11.LeanConnectionPool`).  Pass ``pool``
    (from :func:`make_connection_pool`) to be able to close its connections at
    shutdown; otherwise one is made here.
    """
    if pool is None:
        pool = make_connection_pool(reactor, max_persistent_per_host=max_persistent_per_host,
                                    idle_timeout=idle_timeout)
    endpoints = _CachingEndpointFactory(reactor)
    return GatewayHTTPClient(Agent.usingEndpointFactory(reactor, endpoints, pool=pool),
                             pool if isinstance(pool, LeanConnectionPool) else None, endpoints)
