"""The push API: the backend calls its Flash clients through JSON-RPC 2.0 at POST /rpc.

Methods: ``broadcast(app, room, method, args)`` -> clients reached;
``call(client, method, args)`` -> the client's result; ``disconnect(client,
reason)``; ``clients(app, room)``; ``rooms(app)``.  Every request carries
``Authorization: Bearer <push-token>``; without it the answer is 401 and
nothing happens.  Parameters are checked against the schemas below before
anything is done.
"""
import hmac
import json
import logging
from typing import Any, Mapping

import jsonschema
from twisted.internet.defer import maybeDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ..app.calls import CallFailed
from .mapping import MappingError, amf_to_json, json_to_amf

log = logging.getLogger(__name__)

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
#: Server errors of this API (JSON-RPC reserves -32000..-32099 for them).
NOT_FOUND, CLIENT_CALL_FAILED = -32001, -32002

#: Largest request body accepted, in bytes.
MAX_REQUEST_BYTES = 1024 * 1024

_NAME = {"type": "string"}
_ARGS = {"type": "array"}
# Each method: parameter names in positional order, and their schemas.
METHODS = {
    "broadcast": (("app", "room", "method", "args"),
                  {"app": _NAME, "room": _NAME, "method": {"type": "string", "minLength": 1}, "args": _ARGS}),
    "call": (("client", "method", "args"),
             {"client": _NAME, "method": {"type": "string", "minLength": 1}, "args": _ARGS,
              "timeout": {"type": "number", "exclusiveMinimum": 0}}),
    "disconnect": (("client", "reason"), {"client": _NAME, "reason": _NAME}),
    "clients": (("app", "room"), {"app": _NAME, "room": _NAME}),
    "rooms": (("app",), {"app": _NAME}),
}
_OPTIONAL = {"broadcast": {"args"}, "call": {"args", "timeout"}, "disconnect": {"reason"}, "clients": {"room"}}

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
    error = next(iter(sorted(validator.iter_errors(instance), key=lambda e: list(e.path))), None)
    if error is None:
        return ""
    where = ".".join(str(p) for p in error.path)
    return f"{where}: {error.message}" if where else error.message


class PushAPI:
    """The methods themselves, over the applications and their directory."""

    def __init__(self, applications: Mapping[str, Any]):
        self.applications = applications

    def _application(self, name):
        app = self.applications.get(name)
        if app is None:
            raise PushError(NOT_FOUND, f"no application {name!r}")
        return app

    def _client(self, client_id):
        for app in self.applications.values():
            client = app.directory.client(client_id)
            if client is not None:
                return client
        raise PushError(NOT_FOUND, f"no client {client_id!r}")

    @staticmethod
    def _to_amf(args):
        try:
            return [json_to_amf(a) for a in args]
        except MappingError as e:
            raise PushError(INVALID_PARAMS, f"Invalid params: args: {e}")

    def broadcast(self, app, room, method, args=()):
        self._application(app)
        target = self.applications[app].room(room)
        return target.broadcast(method, *self._to_amf(args)) if target is not None else 0

    def call(self, client, method, args=(), timeout=None):
        target = self._client(client)

        def answered(result):
            try:
                return amf_to_json(result, path="result")
            except MappingError as e:
                raise PushError(CLIENT_CALL_FAILED, f"the client's answer cannot be sent as JSON: {e}")

        def failed(failure):
            error = failure.value
            if isinstance(error, CallFailed):
                raise PushError(CLIENT_CALL_FAILED, error.description or "the client's call failed",
                                {"code": error.code, "description": error.description})
            return failure

        return target.call(method, *self._to_amf(args), timeout=timeout).addCallbacks(answered, failed)

    def disconnect(self, client, reason="disconnected by the backend"):
        self._client(client).disconnect(reason)
        return True

    def clients(self, app, room=None):
        application = self._application(app)
        clients = application.clients if room is None else list(application.room(room) or ())
        return [{"id": c.id, "address": c.address, "room": c.room_name, "agent": c.agent,
                 "connectedAt": c.connected_at} for c in clients]

    def rooms(self, app):
        return [{"name": room.name, "clients": len(room)} for room in self._application(app).rooms]


class PushResource(Resource):
    """POST /rpc: authenticate, parse, validate, dispatch, answer (JSON-RPC 2.0)."""

    isLeaf = True

    def __init__(self, api: PushAPI, token: str):
        super().__init__()
        self.api = api
        self._token = token.encode() if token else None

    def render_POST(self, request):
        if not self._authorized(request):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Bearer realm="fmspy-gateway push API"')
            request.setHeader(b"content-type", b"application/json")
            reason = "missing or wrong bearer token" if self._token else "the push API is off: no [HTTP] push-token"
            return json.dumps({"error": reason}).encode()
        body = request.content.read(MAX_REQUEST_BYTES + 1)
        request.setHeader(b"content-type", b"application/json")
        request_id = None
        try:
            if len(body) > MAX_REQUEST_BYTES:
                raise PushError(INVALID_REQUEST, f"request larger than {MAX_REQUEST_BYTES} bytes")
            try:
                message = json.loads(body)
            except ValueError:
                raise PushError(PARSE_ERROR, "Parse error: the body is not JSON")
            if isinstance(message, dict) and isinstance(message.get("id"), (str, int)):
                request_id = message["id"]
            problem = _first_error(_REQUEST, message)
            if problem:
                raise PushError(INVALID_REQUEST, f"Invalid request: {problem}")
            method, params = message["method"], self._named_params(message)
            d = maybeDeferred(getattr(self.api, method), **params)
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

    def _authorized(self, request) -> bool:
        if self._token is None:
            return False
        given = request.getHeader(b"authorization") or b""
        return hmac.compare_digest(given.encode() if isinstance(given, str) else given, b"Bearer " + self._token)

    @staticmethod
    def _named_params(message) -> dict:
        method = message["method"]
        if method not in METHODS:
            raise PushError(METHOD_NOT_FOUND, f"Method not found: {method!r} (known: {', '.join(METHODS)})")
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
