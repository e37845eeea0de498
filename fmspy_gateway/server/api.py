"""The operations HTTP API under /api/v1/, its OpenAPI description, /metrics and the /status page.

``install(root, status, token)`` puts them on the [HTTP] site's root:

* ``/api/v1/summary``, ``applications``, ``rooms``, ``clients`` (``start``,
  ``count``, ``app``), ``clients/<id>`` (GET, DELETE disconnects),
  ``streams``, ``gateway``; ``/api/v1/openapi.json`` describes them;
* ``/metrics``: Prometheus (``server/metrics.py``);
* ``/status/``: the status page, static files shipped in the package
  (``fmspy_gateway/status/``), which reads the API from the browser.

``[HTTP] admin-token``: when set, every API and metrics request needs
``Authorization: Bearer <token>`` (401 otherwise; the OpenAPI description,
the API's index, which says whether a token is needed, and the page's own
files stay readable).  When empty the read-only answers
are open (the site listens on loopback by default) and DELETE is refused
with 403: disconnecting a client always takes a token.
"""
import hmac
import json
import logging
import os
from typing import Optional

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.web.resource import Resource
from twisted.web.static import File

from ..app.logs import RateLimitedLog
from ..rtmp.budget import brief_name
from .later import render_later
from .metrics import MetricsResource
from .ops import ServerStatus

log = logging.getLogger(__name__)

STATUS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "status")
#: The largest page of clients one request may ask for.
MAX_PAGE = 1000


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


_STR, _INT, _NUM, _BOOL = {"type": "string"}, {"type": "integer", "minimum": 0}, {"type": "number"}, {"type": "boolean"}

SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": _STR}},
    "Summary": {
        "type": "object", "additionalProperties": False,
        "required": ["version", "node", "pid", "started_at", "uptime_seconds", "connections",
                     "connections_accepted", "clients", "applications", "streams", "bytes_in", "bytes_out",
                     "bits_in_per_second", "bits_out_per_second", "cpu_percent", "cpu_seconds", "memory_bytes",
                     "amf_codec", "limit_hits", "closed_by_limit"],
        "properties": {
            "version": _STR, "node": _STR, "pid": _INT, "started_at": _NUM, "uptime_seconds": _NUM,
            "connections": _INT, "connections_accepted": _INT, "clients": _INT, "applications": _INT,
            "streams": _INT, "bytes_in": _INT, "bytes_out": _INT, "bits_in_per_second": _INT,
            "bits_out_per_second": _INT, "cpu_percent": _NUM, "cpu_seconds": _NUM, "memory_bytes": _INT,
            "amf_codec": _STR,
            "limit_hits": {"type": "object", "additionalProperties": _INT,
                           "description": "limit hits and dropped messages since start, by option or kind"},
            "closed_by_limit": {"type": "object", "additionalProperties": _INT,
                                "description": "connections the server closed for a limit, by option"},
        },
    },
    "Application": {
        "type": "object", "additionalProperties": False,
        "required": ["name", "class", "clients", "rooms", "streams", "gateway"],
        "properties": {"name": _STR, "class": _STR, "clients": _INT, "rooms": _INT, "streams": _INT,
                       "gateway": _BOOL},
    },
    "Room": {
        "type": "object", "additionalProperties": False, "required": ["app", "name", "default", "clients"],
        "properties": {"app": _STR, "name": _STR, "default": _BOOL, "clients": _INT},
    },
    "ClientStream": {
        "type": "object", "additionalProperties": False, "required": ["app", "name", "type"],
        "properties": {"app": _STR, "name": _STR, "type": {"enum": ["publish", "play"]}},
    },
    "Client": {
        "type": "object", "additionalProperties": False,
        "description": "A client. Its transport, bytes and rates are null when it is connected to another node "
                       "(clients/{id} finds a client on any node; ask its node for those figures).",
        "required": ["id", "node", "address", "transport", "app", "room", "agent", "page_url", "swf_url", "tc_url",
                     "object_encoding",
                     "connected_at", "connected_seconds", "bytes_in", "bytes_out", "bits_in_per_second",
                     "bits_out_per_second", "streams"],
        "properties": {
            "id": _STR, "node": _STR, "address": _STR,
            "transport": {"enum": ["rtmp", "rtmps", "rtmpt", "rtmpts", None]},
            "app": _STR, "room": _STR, "agent": _nullable(_STR),
            "page_url": _nullable(_STR), "swf_url": _nullable(_STR), "tc_url": _nullable(_STR),
            "object_encoding": {"enum": [0, 3]}, "connected_at": _NUM, "connected_seconds": _NUM,
            "bytes_in": _nullable(_INT), "bytes_out": _nullable(_INT), "bits_in_per_second": _nullable(_INT),
            "bits_out_per_second": _nullable(_INT),
            "streams": {"type": "array", "items": {"$ref": "#/components/schemas/ClientStream"}},
        },
    },
    "ClientPage": {
        "type": "object", "additionalProperties": False, "required": ["total", "start", "count", "clients"],
        "properties": {"total": _INT, "start": _INT, "count": _INT,
                       "clients": {"type": "array", "items": {"$ref": "#/components/schemas/Client"}}},
    },
    "Video": {
        "type": "object", "additionalProperties": False,
        "required": ["codec", "profile", "level", "width", "height", "frame_rate", "data_rate_kbps"],
        "properties": {"codec": _nullable(_STR), "profile": _nullable(_STR), "level": _nullable(_NUM),
                       "width": _nullable(_INT), "height": _nullable(_INT), "frame_rate": _nullable(_NUM),
                       "data_rate_kbps": _nullable(_NUM)},
    },
    "Audio": {
        "type": "object", "additionalProperties": False,
        "required": ["codec", "profile", "sample_rate", "channels", "data_rate_kbps"],
        "properties": {"codec": _nullable(_STR), "profile": _nullable(_STR), "sample_rate": _nullable(_INT),
                       "channels": _nullable(_INT), "data_rate_kbps": _nullable(_NUM)},
    },
    "Stream": {
        "type": "object", "additionalProperties": False,
        "required": ["app", "name", "publishing", "publisher", "publisher_address", "published_at", "age_seconds",
                     "bytes_in", "bits_in_per_second", "bits_out_per_second", "players", "recording", "video",
                     "audio"],
        "properties": {
            "app": _STR, "name": _STR, "publishing": _BOOL, "publisher": _nullable(_STR),
            "publisher_address": _nullable(_STR), "published_at": _nullable(_NUM), "age_seconds": _nullable(_NUM),
            "bytes_in": _INT, "bits_in_per_second": _INT, "bits_out_per_second": _INT, "players": _INT,
            "recording": _BOOL,
            "video": {"anyOf": [{"$ref": "#/components/schemas/Video"}, {"type": "null"}]},
            "audio": {"anyOf": [{"$ref": "#/components/schemas/Audio"}, {"type": "null"}]},
        },
    },
    "Route": {
        "type": "object", "additionalProperties": False,
        "required": ["route", "endpoint", "calls", "ok", "errors", "errors_by_kind", "http_statuses", "in_flight",
                     "latency_p50_ms", "latency_p99_ms", "last_outcome", "last_at", "circuit", "health"],
        "properties": {
            "route": _STR, "endpoint": _STR, "calls": _INT, "ok": _INT, "errors": _INT,
            "errors_by_kind": {"type": "object", "additionalProperties": _INT,
                               "propertyNames": {"enum": ["backend-error", "timeout", "http-status", "not-json",
                                                          "overloaded", "circuit-open", "unreachable",
                                                          "invalid-params", "invalid-result", "cancelled",
                                                          "other"]}},
            "http_statuses": {"type": "object", "additionalProperties": _INT},
            "in_flight": _INT, "latency_p50_ms": _nullable(_NUM), "latency_p99_ms": _nullable(_NUM),
            "last_outcome": _nullable(_STR), "last_at": _nullable(_NUM),
            "circuit": {"enum": ["closed", "open", "half-open"]}, "health": {"enum": ["ok", "idle", "failing"]},
        },
    },
    "Endpoint": {
        "type": "object", "additionalProperties": False,
        "required": ["url", "name", "circuit", "consecutive_failures", "in_flight", "queued", "max_concurrent",
                     "max_queued"],
        "properties": {"url": _STR, "name": _STR, "circuit": {"enum": ["closed", "open", "half-open"]},
                       "consecutive_failures": _INT, "in_flight": _INT, "queued": _INT, "max_concurrent": _INT,
                       "max_queued": _INT},
    },
    "Gateway": {
        "type": "object", "additionalProperties": False, "required": ["app", "routes", "endpoints"],
        "properties": {"app": _STR,
                       "routes": {"type": "array", "items": {"$ref": "#/components/schemas/Route"}},
                       "endpoints": {"type": "array", "items": {"$ref": "#/components/schemas/Endpoint"}}},
    },
    "Disconnected": {
        "type": "object", "additionalProperties": False, "required": ["disconnected"],
        "properties": {"disconnected": _STR},
    },
}


def _json(ref: str, array: bool = False) -> dict:
    schema = {"$ref": f"#/components/schemas/{ref}"}
    if array:
        schema = {"type": "array", "items": schema}
    return {"content": {"application/json": {"schema": schema}}}


def _get(summary: str, ref: str, array: bool = False, parameters=()) -> dict:
    return {"get": {"summary": summary, "parameters": list(parameters),
                    "responses": {"200": {"description": "OK", **_json(ref, array)},
                                  "401": {"description": "admin-token set and not given", **_json("Error")},
                                  "503": {"description": "the hub did not answer", **_json("Error")}}}}


_APP_PARAM = {"name": "app", "in": "query", "required": False, "schema": _STR, "description": "one application only"}

OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "fmspy-gateway operations API", "version": "1",
             "description": "What the RTMP server and its gateway are doing. With [HTTP] admin-token set every "
                            "request needs Authorization: Bearer <admin-token>."},
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer",
                                           "description": "[HTTP] admin-token"}},
    },
    "security": [{"adminToken": []}],
    "paths": {
        "/api/v1/summary": _get("The server: version, node, uptime, connections, bytes and rates, CPU, memory",
                                "Summary"),
        "/api/v1/applications": _get("Every application, with its clients, rooms and streams", "Application", True),
        "/api/v1/rooms": _get("Rooms with their member counts", "Room", True, [_APP_PARAM]),
        "/api/v1/clients": _get("This node's connected clients, a page at a time", "ClientPage", False, [
            {"name": "start", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
            {"name": "count", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 0, "maximum": MAX_PAGE}},
            _APP_PARAM]),
        "/api/v1/clients/{id}": {
            **_get("One client, on any node", "Client"),
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": _STR}],
            "delete": {"summary": "Disconnect the client",
                       "responses": {"200": {"description": "disconnected", **_json("Disconnected")},
                                     "401": {"description": "wrong or missing token", **_json("Error")},
                                     "403": {"description": "no admin-token configured", **_json("Error")},
                                     "404": {"description": "no such client", **_json("Error")},
                                     "503": {"description": "the hub did not answer", **_json("Error")}}},
        },
        "/api/v1/streams": _get("Live streams: publisher, age, rates, players, codecs, recording", "Stream", True),
        "/api/v1/gateway": _get("Gateway routes: calls, errors by kind, latency, circuits", "Gateway", True),
    },
}


class _Auth:
    """The admin-token check shared by the API and /metrics; refusals logged rate-limited."""

    def __init__(self, token: Optional[str], clock=None):
        self.token = token.encode() if token else None
        self.limit_log = RateLimitedLog(log, clock, prefix="HTTP: ")

    def allowed(self, request) -> bool:
        if self.token is None:
            return True
        given = request.getHeader(b"authorization") or ""
        return hmac.compare_digest(given.encode() if isinstance(given, str) else given, b"Bearer " + self.token)

    def refuse(self, request) -> bytes:
        self.limit_log.hit("admin-token", "refused an operations API request without the right bearer token "
                                          "(HTTP 401)")
        request.setHeader(b"www-authenticate", b'Bearer realm="fmspy-gateway operations"')
        return _answer(request, 401, {"error": "missing or wrong bearer token ([HTTP] admin-token)"})


def _answer(request, code: int, value) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _arg(request, name: str) -> Optional[str]:
    values = request.args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None


def _int_arg(request, name: str, default: int, maximum: int) -> int:
    text = _arg(request, name)
    if text is None or text == "":
        return default
    if not text.isdigit():
        raise ValueError(f"{name} must be a whole number 0-{maximum}")
    return min(int(text), maximum)


class APIResource(Resource):
    """/api/v1/...: JSON answers from a ServerStatus."""

    isLeaf = True

    def __init__(self, status: ServerStatus, auth: _Auth, clock=None):
        super().__init__()
        self.status = status
        self.auth = auth
        #: Answers that failed (the hub did not answer), one line per interval.
        self.limit_log = RateLimitedLog(log, clock)

    def _path(self, request):
        return [p.decode("utf-8", "replace") for p in request.postpath if p != b""]

    def render_GET(self, request):
        path = self._path(request)
        if path == ["openapi.json"]:
            return _answer(request, 200, OPENAPI)
        if path == []:
            # Open, so that the status page learns it needs a token without a failed request first.
            return _answer(request, 200, {"endpoints": sorted(OPENAPI["paths"]), "openapi": "/api/v1/openapi.json",
                                          "token_required": self.auth.token is not None})
        if not self.auth.allowed(request):
            return self.auth.refuse(request)
        try:
            answer = self._get(path, request)
        except ValueError as e:
            return _answer(request, 400, {"error": str(e)})
        return self._later(request, answer)

    def _get(self, path, request) -> Deferred:
        """A Deferred of (HTTP code, value) for a GET below /api/v1/; a bad argument raises ValueError now."""
        status = self.status
        if path == ["summary"]:
            return _ok(maybeDeferred(status.summary))
        if path == ["applications"]:
            return _ok(maybeDeferred(status.applications_list))
        if path == ["rooms"]:
            return _ok(maybeDeferred(status.rooms, _arg(request, "app")))
        if path == ["clients"]:
            return _ok(maybeDeferred(status.clients, _int_arg(request, "start", 0, 10 ** 9),
                                     _int_arg(request, "count", 100, MAX_PAGE), _arg(request, "app")))
        if len(path) == 2 and path[0] == "clients":
            return maybeDeferred(status.client, path[1]).addCallback(
                lambda client: (404, {"error": "no such client"}) if client is None else (200, client))
        if path == ["streams"]:
            return _ok(maybeDeferred(status.streams))
        if path == ["gateway"]:
            return _ok(maybeDeferred(status.gateway))
        return succeed((404, {"error": "no such endpoint; see /api/v1/openapi.json"}))

    def render_DELETE(self, request):
        path = self._path(request)
        if len(path) != 2 or path[0] != "clients":
            return _answer(request, 405, {"error": "only clients/<id> can be deleted"})
        if self.auth.token is None:
            return _answer(request, 403, {"error": "disconnecting needs [HTTP] admin-token to be set"})
        if not self.auth.allowed(request):
            return self.auth.refuse(request)

        def disconnected(info):
            if info is None:
                return 404, {"error": "no such client"}
            log.info("operations API: disconnected client %s (%s) on node %s", info.id, info.address, info.node)
            return 200, {"disconnected": info.id}
        return self._later(request, maybeDeferred(self.status.disconnect, path[1], "disconnected by an administrator")
                           .addCallback(disconnected))

    def _later(self, request, answer: Deferred) -> int:
        """Render (code, value) when ``answer`` fires (``server/later.py``); a failure is a 503 in JSON."""
        return render_later(request, answer.addCallback(lambda result: _answer(request, *result)), self._failed)

    def _failed(self, request, failure) -> bytes:
        self.limit_log.hit("hub", f"operations API: {request.method.decode('ascii', 'replace')} "
                                  f"{request.uri.decode('ascii', 'replace')} answered 503: "
                                  f"{failure.type.__name__}: {brief_name(str(failure.value), 200)}")
        log.debug("operations API failure:\n%s", failure.getTraceback())
        return _answer(request, 503, {"error": "the figures could not be gathered: the hub did not answer "
                                               "(the server's log says why)"})


def _ok(answer: Deferred) -> Deferred:
    return answer.addCallback(lambda value: (200, value))


class StatusFiles(File):
    """The status page's files, with a Content-Security-Policy: its own scripts only, nothing from elsewhere.

    The page shows what clients sent (agents, page URLs); it sets them as
    text, and the policy makes sure that even a mistake there could not run
    or load anything.
    """

    POLICY = (b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
              b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

    def render(self, request):
        request.setHeader(b"content-security-policy", self.POLICY)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"no-cache")
        return super().render(request)


class _Guarded(Resource):
    """A resource behind the admin token (/metrics)."""

    isLeaf = True

    def __init__(self, inner: Resource, auth: _Auth):
        super().__init__()
        self.inner = inner
        self.auth = auth

    def render(self, request):
        if not self.auth.allowed(request):
            return self.auth.refuse(request)
        return self.inner.render(request)


def install(root: Resource, status: ServerStatus, token: Optional[str], *, clock=None,
            status_dir: str = STATUS_DIR, interface: Optional[str] = None) -> None:
    """Put /api/v1/, /metrics and /status/ on the site's root resource.

    ``interface`` is the address the site listens on: beyond loopback and
    without a token, anyone who reaches it reads every client's address and
    URLs, which the log says once.
    """
    if token is None and interface is not None and not (interface.startswith("127.") or interface == "::1"):
        log.warning("HTTP: the operations API and /metrics are readable by anyone reaching %s (no [HTTP] "
                    "admin-token): set admin-token, or keep interface = 127.0.0.1", interface)
    auth = _Auth(token, clock)
    api = Resource()
    api.putChild(b"v1", APIResource(status, auth, clock))
    root.putChild(b"api", api)
    root.putChild(b"metrics", _Guarded(MetricsResource(status, clock), auth))
    if os.path.isdir(status_dir):
        root.putChild(b"status", StatusFiles(status_dir))


#: First path segments whose successful GETs are left out of the access log.
_POLLED = (b"api", b"metrics", b"status")


def quiet_polling(site):
    """Leave the status page's and Prometheus's successful GETs out of ``site``'s access log.

    Twisted logs every request of a site without a log file to the server's
    own log; an open status page polls six answers every two seconds, and a
    scraper comes every few seconds, which would bury the lines that matter.
    Refusals (401) and errors, and every DELETE, are still logged.
    """
    log_request = site.log

    def log_unless_polled(request):
        segment = request.path[1:].split(b"/", 1)[0]
        if not (request.method == b"GET" and segment in _POLLED and request.code < 400):
            log_request(request)
    site.log = log_unless_polled
    return site
