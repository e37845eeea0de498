"""The push API: the backend calls its Flash clients through JSON-RPC 2.0 at POST /rpc.

Methods: ``broadcast(app, room, method, args)`` -> clients reached;
``call(client, method, args)`` -> the client's result; ``disconnect(client,
reason)``; ``clients(app, room)``; ``rooms(app)``; and a remote shared
object's ``so.get``, ``so.set``, ``so.delete``, ``so.clear``, ``so.send``
(``app, name, ..., persistent``), which change the object as the application
itself would (``Application.shared_object``), so its Flash listeners see the
change; ``drain(grace, target)``: this node stops accepting connections and
moves its clients elsewhere (``server/drain.py``).  Every request carries
``Authorization: Bearer <push-token>``; without it the answer is 401 and
nothing happens.  Parameters are checked against the schemas below before
anything is done.

What a request may cost is bounded before it is parsed, and every answer is
JSON-RPC, never an HTML error page or a traceback: the token is checked on
the headers, before the body is read (:meth:`PushResource.refuse_early`,
called by the site, ``server/http.py``), the body is at most
``push-max-body`` bytes (else 413), JSON nested too deeply to parse is a
-32700, a value the client's AMF cannot carry (an integer beyond a double, a
"" key) is a -32602 naming the field, and messages quote values only cut
short (``brief``).
"""
import hmac
import json
import logging
from typing import Any, Mapping, Optional

import jsonschema
from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ..app.calls import CallFailed
from ..app.hub import ClientNotFound
from ..app.logs import RateLimitedLog
from ..app.shared_objects import SharedObjectRefused
from ..rtmp.budget import brief, brief_name
from .mapping import MappingError, amf_to_json, json_to_amf

log = logging.getLogger(__name__)

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
#: Server errors of this API (JSON-RPC reserves -32000..-32099 for them).
NOT_FOUND, CLIENT_CALL_FAILED = -32001, -32002
#: A shared object refused the change (a limit, a persistence mismatch) or holds a value JSON cannot carry.
SHARED_OBJECT_FAILED = -32003

#: Largest request body accepted, in bytes (``[HTTP] push-max-body``).
MAX_REQUEST_BYTES = 1024 * 1024
#: Longest ``timeout`` a ``call`` may ask for, in seconds (``[HTTP] push-max-call-timeout``).
MAX_CALL_TIMEOUT = 300.0

_NAME = {"type": "string"}
_ARGS = {"type": "array"}
_SO_NAME = {"type": "string", "minLength": 1}
_PERSISTENT = {"type": "boolean"}
# Each method: parameter names in positional order, and their schemas.
METHODS = {
    "broadcast": (("app", "room", "method", "args"),
                  {"app": _NAME, "room": _NAME, "method": {"type": "string", "minLength": 1}, "args": _ARGS}),
    "call": (("client", "method", "args", "timeout"),
             {"client": _NAME, "method": {"type": "string", "minLength": 1}, "args": _ARGS,
              "timeout": {"type": "number", "exclusiveMinimum": 0}}),
    "disconnect": (("client", "reason"), {"client": _NAME, "reason": _NAME}),
    "clients": (("app", "room"), {"app": _NAME, "room": _NAME}),
    "rooms": (("app",), {"app": _NAME}),
    "so.get": (("app", "name", "persistent"), {"app": _NAME, "name": _SO_NAME, "persistent": _PERSISTENT}),
    "so.set": (("app", "name", "values", "persistent"),
               {"app": _NAME, "name": _SO_NAME, "values": {"type": "object", "minProperties": 1},
                "persistent": _PERSISTENT}),
    "so.delete": (("app", "name", "keys", "persistent"),
                  {"app": _NAME, "name": _SO_NAME, "keys": {"type": "array", "items": _NAME, "minItems": 1},
                   "persistent": _PERSISTENT}),
    "so.clear": (("app", "name", "persistent"), {"app": _NAME, "name": _SO_NAME, "persistent": _PERSISTENT}),
    "so.send": (("app", "name", "handler", "args", "persistent"),
                {"app": _NAME, "name": _SO_NAME, "handler": {"type": "string", "minLength": 1}, "args": _ARGS,
                 "persistent": _PERSISTENT}),
    "drain": (("grace", "target"), {"grace": {"type": "number", "minimum": 0},
                                    "target": {"type": "string", "pattern": r"^rtmp://[^/\s:]+(:[0-9]{1,5})?$"}}),
}
_OPTIONAL = {"broadcast": {"args"}, "call": {"args", "timeout"}, "disconnect": {"reason"}, "clients": {"room"},
             "so.get": {"persistent"}, "so.set": {"persistent"}, "so.delete": {"persistent"},
             "so.clear": {"persistent"}, "so.send": {"args", "persistent"}, "drain": {"grace", "target"}}

REQUEST_SCHEMA = {
    "type": "object",
    "required": ["jsonrpc", "method"],
    "properties": {
        "jsonrpc": {"const": "2.0"},
        "method": {"type": "string"},
        "params": {"type": ["array", "object"]},
        "id": {"type": ["string", "integer", "null"]},
    },
}
_REQUEST = jsonschema.Draft202012Validator(REQUEST_SCHEMA)
_PARAMS = {
    name: jsonschema.Draft202012Validator({
        "type": "object", "properties": properties, "additionalProperties": False,
        "required": [p for p in order if p not in _OPTIONAL.get(name, ())],
    })
    for name, (order, properties) in METHODS.items()
}


class PushError(Exception):
    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _first_error(validator, instance) -> str:
    """The first schema violation in one short line, or "".

    Not jsonschema's own message: it embeds the repr of the failing value,
    which for a request that is not an object is the whole request.
    """
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.path])
    if not errors:
        return ""
    error = errors[0]
    where = ".".join(brief_name(p) if isinstance(p, str) else str(p) for p in error.path)
    text = _explain(error)
    return f"{where}: {text}" if where else text


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "integer" if isinstance(value, int) else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _explain(error) -> str:
    keyword, expected, value = error.validator, error.validator_value, error.instance
    if keyword == "type":
        wanted = expected if isinstance(expected, str) else " or ".join(expected)
        return f"must be of type {wanted}, not {_json_type(value)}"
    if keyword == "const":
        return f"must be {json.dumps(expected)}, not {brief(value)}"
    if keyword == "required":
        missing = [name for name in expected if isinstance(value, dict) and name not in value]
        return f"{missing[0]!r} is required" if missing else "a required member is missing"
    if keyword == "additionalProperties":
        known = error.schema.get("properties", {})
        extra = [name for name in value if name not in known] if isinstance(value, dict) else []
        return f"unexpected parameter {brief(extra[0])}" if extra else "unexpected parameters"
    if keyword in ("minLength", "minItems", "minProperties"):
        return "must not be empty"
    if keyword == "exclusiveMinimum":
        return f"must be greater than {expected}"
    return f"fails {keyword!r}"


def _not_json(constant):
    raise ValueError(f"{constant} is not JSON")


class PushAPI:
    """The methods themselves, over the applications and the hub they share (app/hub.py).

    Every method asks the hub and answers with its Deferred: the client or
    room may be on another node.  ``hub`` defaults to the applications' own.
    ``drain`` is this node's drain (``server/drain.py`` ``Drain``, passed
    in by tap.py); without it the ``drain`` method answers that it is off.
    """

    def __init__(self, applications: Mapping[str, Any], *, hub=None, max_call_timeout: float = MAX_CALL_TIMEOUT,
                 drain=None):
        self.applications = applications
        self._drain = drain
        if hub is None:
            hub = next((app.hub for app in applications.values()), None)
        self.hub = hub
        self.max_call_timeout = max_call_timeout

    def _application(self, name):
        app = self.applications.get(name)
        if app is None:
            raise PushError(NOT_FOUND, f"no application {brief(name)}")
        return app

    def _client(self, client_id):
        """Fires with the client's ``ClientInfo`` (wherever it is), or fails with NOT_FOUND."""
        def found(info):
            if info is None:
                raise PushError(NOT_FOUND, f"no client {brief(client_id)}")
            return info
        return self.hub.locate(client_id).addCallback(found)

    @staticmethod
    def _to_amf(args, encoding: int = 0):
        """``args`` as AMF values ``encoding`` (0: AMF0, 3: AMF3) can carry, or a -32602 naming the field.

        A broadcast reaches clients of both encodings, so it is mapped for
        AMF0, the narrower one (no "" keys).
        """
        try:
            return [json_to_amf(a, path=f"args[{i}]", encoding=encoding) for i, a in enumerate(args)]
        except MappingError as e:
            raise PushError(INVALID_PARAMS, f"Invalid params: {e}")

    def broadcast(self, app, room, method, args=()):
        self._application(app)
        values = self._to_amf(args)     # invalid args are invalid whether or not anyone is in the room
        return self.hub.broadcast(self.hub.room(app, room), method, values)

    def call(self, client, method, args=(), timeout=None):
        # "not <=" also refuses NaN and infinities; math.isfinite would overflow on a 400-digit integer.
        if timeout is not None and not timeout <= self.max_call_timeout:
            raise PushError(INVALID_PARAMS, f"Invalid params: timeout: {brief(timeout)} is more than the "
                                            f"maximum of {self.max_call_timeout:g} s (push-max-call-timeout)")
        def answered(result):
            try:
                return amf_to_json(result, path="result")
            except MappingError as e:
                raise PushError(CLIENT_CALL_FAILED, f"the client's answer cannot be sent as JSON: {e}")

        def failed(failure):
            error = failure.value
            if isinstance(error, ClientNotFound):
                raise PushError(NOT_FOUND, f"no client {brief(client)}")
            if isinstance(error, CallFailed):
                raise PushError(CLIENT_CALL_FAILED, error.description or "the client's call failed",
                                {"code": error.code, "description": error.description})
            return failure

        def call(target):
            # Mapped for what the client reads: its object encoding travels in its description.
            return self.hub.call(target.id, method, self._to_amf(args, target.object_encoding), timeout=timeout)

        return self._client(client).addCallback(call).addCallbacks(answered, failed)

    def disconnect(self, client, reason="disconnected by the backend"):
        def done(found):
            if not found:
                raise PushError(NOT_FOUND, f"no client {brief(client)}")
            return True
        return self.hub.disconnect(client, reason).addCallback(done)

    def clients(self, app, room=None):
        self._application(app)
        return self.hub.clients(app, room).addCallback(lambda clients: [
            {"id": c.id, "address": c.address, "room": c.room, "agent": c.agent, "connectedAt": c.connected_at}
            for c in clients])

    def rooms(self, app):
        self._application(app)
        return self.hub.rooms(app).addCallback(
            lambda rooms: [{"name": room.name, "clients": room.clients} for room in rooms])

    def drain(self, grace=None, target=None):
        """This node only (the one the request reached), whichever node holds the backend's clients."""
        if self._drain is None:
            raise PushError(NOT_FOUND, "drain is not available on this server")
        try:
            d = self._drain.start(grace, target)
        except ValueError as e:
            raise PushError(INVALID_PARAMS, f"Invalid params: {e}")
        return d.addCallback(lambda started: started.to_dict())

    # -- remote shared objects ----------------------------------------------------------------

    # Through the application's own handle (``Application.shared_object``, app/shared_objects.py), which
    # keeps the object in memory and its mirror current: the push API changes an object exactly as the
    # application would, and its listeners hear it wherever they are.  Values are mapped for AMF0, the
    # narrower encoding: listeners of both encodings read them.

    def so_get(self, app, name, persistent=False):
        so = self._application(app).shared_object(name, persistent)

        def read(_):
            try:
                data = amf_to_json(so.data(), path="data")
            except MappingError as e:
                raise PushError(SHARED_OBJECT_FAILED, f"the shared object holds a value JSON cannot carry: {e}")
            return {"version": so.version, "data": data}

        return so.ready().addCallbacks(read, _shared_object_failed)

    def so_set(self, app, name, values, persistent=False):
        application = self._application(app)
        try:
            slots = {key: json_to_amf(value, path=f"values.{brief_name(key)}", encoding=0)
                     for key, value in values.items()}
        except MappingError as e:
            raise PushError(INVALID_PARAMS, f"Invalid params: {e}")
        so = application.shared_object(name, persistent)
        with so.batch():             # every slot in one version, one message per listener
            changes = [so.set(key, value) for key, value in slots.items()]
        return self._applied(changes)

    def so_delete(self, app, name, keys, persistent=False):
        so = self._application(app).shared_object(name, persistent)
        with so.batch():
            changes = [so.delete(key) for key in keys]
        return self._applied(changes)

    def so_clear(self, app, name, persistent=False):
        so = self._application(app).shared_object(name, persistent)
        return self._applied([so.clear()])

    def so_send(self, app, name, handler, args=(), persistent=False):
        application = self._application(app)
        values = self._to_amf(args)
        so = application.shared_object(name, persistent)
        return self._applied([so.send(handler, *values)])

    @staticmethod
    def _applied(changes):
        """Fires with the version the changes made once all are applied; a refusal is a -32003 saying why."""
        return gatherResults(changes, consumeErrors=True).addCallbacks(
            lambda versions: {"version": max(versions)},
            lambda failure: _shared_object_failed(failure.value.subFailure))


def _shared_object_failed(failure):
    """A refused use or change as a -32003 naming the status code a Flash client would get, and why."""
    refused = failure.check(SharedObjectRefused)
    if refused is None:
        return failure
    raise PushError(SHARED_OBJECT_FAILED, f"{failure.value.code}: {failure.value.reason}",
                    {"code": failure.value.code})


class PushResource(Resource):
    """POST /rpc: authenticate, parse, validate, dispatch, answer (JSON-RPC 2.0).

    Authentication and the body bound come first, on the headers alone: the
    site calls :meth:`refuse_early` before it reads a body, so an
    unauthenticated or oversized upload is answered 401 / 413 at once and
    never stored.  ``render_POST`` checks both again, for a site without
    that hook (and for bodies small enough to have arrived with the headers).
    """

    isLeaf = True

    def __init__(self, api: PushAPI, token: str, *, max_body: int = MAX_REQUEST_BYTES, clock=None):
        super().__init__()
        self.api = api
        self._token = token.encode() if token else None
        self.max_body = max_body
        self.limit_log = RateLimitedLog(log, clock, prefix="push API: ")

    # -- before the body --------------------------------------------------------------------

    def refuse_early(self, headers, length: Optional[int]):
        """The answer (status, headers, body) for a request refused on its headers, or None to read it.

        ``length`` is the declared body length (None: chunked); a length over
        ``max_body`` is the site's to refuse (413), a missing or wrong token
        is ours (401).
        """
        if self._authorized(headers.getRawHeaders(b"authorization", [b""])[0]):
            return None
        if self._token is None:
            reason = "the push API is off: no [HTTP] push-token"
        else:
            reason = "missing or wrong bearer token"
            self.limit_log.hit("push-token", "refused a request without the right bearer token (HTTP 401)")
        return 401, [(b"Content-Type", b"application/json"),
                     (b"WWW-Authenticate", b'Bearer realm="fmspy-gateway push API"')], \
            json.dumps({"error": reason}).encode()

    def _authorized(self, given) -> bool:
        if self._token is None:
            return False
        return hmac.compare_digest(given.encode() if isinstance(given, str) else given, b"Bearer " + self._token)

    # -- the request ------------------------------------------------------------------------

    def render_POST(self, request):
        refusal = self.refuse_early(request.requestHeaders, None)
        if refusal is None:
            body = request.content.read(self.max_body + 1)
            if len(body) > self.max_body:
                self.limit_log.hit("push-max-body", f"refused a request body larger than {self.max_body} bytes "
                                                    "(push-max-body, HTTP 413)")
                refusal = 413, [(b"Content-Type", b"application/json")], json.dumps(
                    {"error": f"request body larger than {self.max_body} bytes (push-max-body)"}).encode()
        if refusal is not None:
            status, headers, payload = refusal
            request.setResponseCode(status)
            for name, value in headers:
                request.setHeader(name, value)
            return payload
        request.setHeader(b"content-type", b"application/json")
        request_id = None
        try:
            message = self._parse(body)
            if isinstance(message, dict) and isinstance(message.get("id"), (str, int)):
                request_id = message["id"]
            problem = _first_error(_REQUEST, message)
            if problem:
                raise PushError(INVALID_REQUEST, f"Invalid request: {problem}")
            method, params = message["method"], self._named_params(message)
            d = maybeDeferred(getattr(self.api, method.replace(".", "_")), **params)
        except PushError as e:
            return _response(request_id, error=e)

        gone = []
        request.notifyFinish().addErrback(gone.append)

        def respond(payload):
            if not gone:
                request.write(payload)
                request.finish()

        d.addCallbacks(lambda result: _response(request_id, result=result),
                       lambda failure: _response(request_id, error=self._as_push_error(failure)))
        d.addCallback(respond)
        return NOT_DONE_YET

    @staticmethod
    def _parse(body: bytes):
        """The JSON value of ``body``; -32700 for anything else, however it fails.

        NaN and Infinity are not JSON (Python's parser accepts them); nesting
        too deep for the parser raises RecursionError, which is no crash
        either.
        """
        try:
            return json.loads(body, parse_constant=_not_json)
        except RecursionError:
            raise PushError(PARSE_ERROR, "Parse error: the body is nested too deeply") from None
        except ValueError as e:   # JSONDecodeError, UnicodeDecodeError, NaN/Infinity, over 4300 digits
            raise PushError(PARSE_ERROR, f"Parse error: the body is not JSON ({brief_name(str(e), 80)})") from None

    @staticmethod
    def _named_params(message) -> dict:
        method = message["method"]
        if method not in METHODS:
            raise PushError(METHOD_NOT_FOUND, f"Method not found: {brief(method)} (known: {', '.join(METHODS)})")
        order, _ = METHODS[method]
        params = message.get("params", {})
        if isinstance(params, list):
            if len(params) > len(order):
                raise PushError(INVALID_PARAMS, f"Invalid params: {method} takes at most {len(order)}")
            params = dict(zip(order, params))
        problem = _first_error(_PARAMS[method], params)
        if problem:
            raise PushError(INVALID_PARAMS, f"Invalid params: {problem}")
        return params

    @staticmethod
    def _as_push_error(failure) -> PushError:
        if isinstance(failure.value, PushError):
            return failure.value
        log.error("push API request failed:\n%s", failure.getTraceback())
        return PushError(-32603, "Internal error")


def _response(request_id, result=None, error: PushError = None) -> bytes:
    if error is not None:
        body = {"jsonrpc": "2.0", "error": {"code": error.code, "message": error.message}, "id": request_id}
        if error.data is not None:
            body["error"]["data"] = error.data
    else:
        body = {"jsonrpc": "2.0", "result": result, "id": request_id}
    return json.dumps(body, separators=(",", ":")).encode()
