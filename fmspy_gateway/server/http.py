"""The bundled HTTP site: not needed for plain RTMP; home of the examples and the gateway's push API.

The site also owns what a request may cost before any resource sees it.
Twisted's ``Request`` stores a whole body (in a temporary file past 100 KB)
before the resource is called, so a resource cannot refuse it in time: a
1 GB upload without a token was written to disk, then answered 401.  Here
the channel asks, as soon as the headers are in and before a byte of the
body is read, (1) the *guard* of the path's first segment (the push API
checks its token there) and (2) whether the declared length fits
``push-max-body`` (the site's only body-reading resource is the push API, so
that bound serves every path).  A refusal is answered at once (401, 413,
with ``Connection: close``), the write side is closed, and what the client
still sends is read and dropped (never stored) for at most ``close-linger``
seconds and ``max_body`` bytes, so that the client reads the answer instead
of a reset; a client cut for going past either is logged, rate-limited.  A
chunked body is counted as it arrives and refused the same way once it
crosses the bound.
"""
import json
import logging
import os
from typing import Callable, Iterable, Mapping, Optional, Tuple
from urllib.parse import unquote_to_bytes

from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from ..app.logs import RateLimitedLog
from ..config import HTTPConfig
from .examples import PACKAGE_EXAMPLES, ExamplesDirectory

log = logging.getLogger(__name__)

#: What a guard or the size check answers instead of reading the body: (status, headers, body).
EarlyAnswer = Tuple[int, Iterable[Tuple[bytes, bytes]], bytes]
#: Called with the request headers and the declared body length (None: chunked) once the headers are in.
Guard = Callable[[Headers, Optional[int]], Optional[EarlyAnswer]]

#: The bundled examples, package data (a link to the repository's examples/ in a checkout): server/examples.py.
EXAMPLES_DIR = PACKAGE_EXAMPLES


class Index(Resource):
    isLeaf = False

    def __init__(self, applications):
        super().__init__()
        self._applications = applications

    def getChild(self, path, request):
        if path == b"":
            return self
        return super().getChild(path, request)

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        names = ", ".join(sorted(self._applications)) or "none"
        return (f"fmspy-gateway is running. RTMP applications: {names}\n"
                "Status page: /status/  API: /api/v1/ (openapi.json)  Prometheus: /metrics  Examples: /examples/\n"
                ).encode()


def build_site_root(http_config, applications, push: Resource = None, examples_dir: str = EXAMPLES_DIR) -> Resource:
    root = Index(applications)
    if push is not None:
        root.putChild(b"rpc", push)
    if http_config.examples_enabled and os.path.isdir(examples_dir):
        root.putChild(b"examples", ExamplesDirectory(examples_dir))
    return root


def _first_segment(target: bytes) -> bytes:
    """The first path segment of a request target, as Twisted's resource traversal will see it.

    Twisted unquotes each segment (``/%72pc`` reaches the push API too), so
    the guard is looked up the same way.
    """
    path = target.split(b"?", 1)[0]
    return unquote_to_bytes(path[1:].split(b"/", 1)[0])


def too_large(max_body: int, option: str) -> EarlyAnswer:
    """413 naming the ``option`` that set ``max_body``, in JSON like the push API's other refusals: its callers
    are programs that parse the answer."""
    message = f"request body larger than {max_body} bytes ({option})"
    return 413, [(b"Content-Type", b"application/json")], json.dumps({"error": message}).encode()


class _BoundedRequest(Request):
    """Counts a body as it arrives: a chunked one (no declared length) is refused past the bound."""

    _received = 0

    def handleContentChunk(self, data):
        channel = self.channel
        if channel is not None and channel._refused:
            channel._dropped += len(data)       # the rest of the read that crossed the bound: dropped, and counted
            return
        self._received += len(data)
        site = channel.site if channel is not None else None
        if site is not None and self._received > site.max_body:
            channel.answer_early(too_large(site.max_body, site.body_option), site.body_option)
            return
        super().handleContentChunk(data)


class _GuardedChannel(HTTPChannel):
    """An HTTP/1.1 channel that lets the site refuse a request on its headers (see the module docstring).

    The site's plain channel, not Twisted's HTTP/2-negotiating wrapper: the
    bundled site speaks plain HTTP/1.1 on loopback.
    """

    _refused = False
    _dropped = 0
    _linger = None

    def allHeadersReceived(self):
        if self.length != 0:   # a body follows (None: chunked)
            answer, limit = self.site.early_answer(self._path, self.requests[-1].requestHeaders, self.length)
            if answer is not None:
                self.answer_early(answer, limit)
                return
        super().allHeadersReceived()

    def answer_early(self, answer: EarlyAnswer, limit: Optional[str]) -> None:
        """Answer now, close our side, and drop whatever the client still sends.

        ``limit`` names the option a size refusal enforces, for the log; a
        guard's refusal (``None``) was logged by the guard.
        """
        if self._refused:
            return
        self._refused = True
        status, headers, body = answer
        if limit is not None:
            self.site.limit_log.hit(limit, f"refused a request from {_peer(self.transport)} with HTTP {status}: "
                                           f"its body is larger than {self.site.max_body} bytes ({limit})")
        head = [b"HTTP/1.1 %d %s" % (status, RESPONSES.get(status, b"Error"))]
        head += [name + b": " + value for name, value in headers]
        head += [b"Content-Length: %d" % len(body), b"Connection: close"]
        self.persistent = False
        for request in self.requests:
            if request.content is not None:
                request.content.close()
                request.content = None
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        # Half-close: the FIN follows the answer, while what the client still sends is read (and
        # dropped); closing both ways would reset the connection, and the answer could be lost with it.
        half_close = getattr(self.transport, "loseWriteConnection", None)
        (half_close or self.transport.loseConnection)()
        self._linger = self.callLater(self.site.linger, self._linger_over)
        self.setRawMode()

    def _linger_over(self):
        self._linger = None
        self._cut("lingered after a refusal", self.site.linger_option,
                  f"still connected {self.site.linger:g} s after its request was refused")

    def _cut(self, kind: str, option: str, why: str):
        """Drop a refused client that did not go: logged under a kind of its own, not its refusal's."""
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        self.site.limit_log.hit(kind, f"{_peer(self.transport)}: {why} ({option}): cut, {self._dropped} bytes "
                                      f"dropped")
        self.transport.abortConnection()

    def rawDataReceived(self, data):
        if self._refused:
            self._dropped += len(data)
            if self._dropped > self.site.max_body:
                self._cut("sent on after a refusal", self.site.body_option,
                          f"sent more than {self.site.max_body} bytes after its request was refused")
            return
        super().rawDataReceived(data)

    def allContentReceived(self):
        if not self._refused:    # a refused request is never handed to a resource
            super().allContentReceived()

    def connectionLost(self, reason):
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        super().connectionLost(reason)


class BoundedSite(Site):
    """The bundled site: request bodies bounded by ``max_body``, guards asked before a body is read.

    ``guards`` maps a first path segment (b"rpc") to a :data:`Guard`, which
    logs its own refusals; a body over ``max_body`` is logged here, rate-limited
    (one line per interval, with a count) as every limit hit is.
    """

    protocol = _GuardedChannel
    requestFactory = _BoundedRequest

    def __init__(self, resource, *, max_body: int, guards: Mapping[bytes, Guard] = None,
                 linger: float = HTTPConfig.close_linger, reactor=None, body_option: str = "push-max-body",
                 linger_option: str = "close-linger"):
        super().__init__(resource, reactor=reactor)
        if max_body < 1 or linger <= 0:
            raise ValueError("max_body and linger must be positive")
        self.max_body = max_body
        self.linger = linger
        #: The options that set ``max_body`` and ``linger``, named in refusals and log lines: the [HTTP] site's by
        #: default; the RTMPS port's site has its own (server/rtmpt.py ``rtmpt_only_site``).
        self.body_option, self.linger_option = body_option, linger_option
        self.guards = dict(guards or {})
        self.limit_log = RateLimitedLog(log, self.reactor, prefix="HTTP: ")

    def early_answer(self, target: bytes, headers: Headers, length: Optional[int]):
        """(the answer, the limit it enforces) for a request about to send a body; (None, None) to read it."""
        guard = self.guards.get(_first_segment(target))
        if guard is not None:
            answer = guard(headers, length)
            if answer is not None:
                return answer, None
        if length is not None and length > self.max_body:
            return too_large(self.max_body, self.body_option), self.body_option
        return None, None


def build_site(http_config, applications, push=None, *, reactor=None,
               examples_dir: str = EXAMPLES_DIR) -> BoundedSite:
    """The [HTTP] site: ``build_site_root``'s resources, with the push API's guard and body bound."""
    root = build_site_root(http_config, applications, push, examples_dir)
    guards = {b"rpc": push.refuse_early} if push is not None else {}
    return BoundedSite(root, max_body=http_config.push_max_body, guards=guards, linger=http_config.close_linger,
                       reactor=reactor)


def _peer(transport) -> str:
    peer = transport.getPeer()
    return f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"
