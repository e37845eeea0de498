"""GatewayApplication: an RTMP application whose calls and hooks are answered by JSON-RPC backends.

A client's ``nc.call("getUser", responder, 42)`` becomes a POST of
``{"jsonrpc": "2.0", "method": "users.get", "params": [42], "id": N}`` to the
route's endpoint; the result goes back as ``_result``, any failure as
``_error`` naming what went wrong (never a stack trace).  ``@connect`` decides
who may connect; ``@disconnect``, ``@enter`` and ``@leave`` are notifications.
``@so.use`` and ``@so.change`` decide who may read and write a remote shared
object, failing closed; ``@so.changed`` tells the backend of every change applied.
"""
import json
import logging
from typing import Any, Dict, Optional, Tuple
from urllib.parse import quote

from twisted.internet.defer import CancelledError

from ..app.application import Accept, Application, CallError, ConnectRejected, StreamRejected
from ..app.logs import RateLimitedLog
from ..app.shared_objects import Access
from ..rtmp.budget import brief, brief_name
from .mapping import MappingError, amf_to_json, json_to_amf
from .routes import GatewaySettings, Route, load_routes
from .rpc import BackendError, HeaderFields, JSONRPCClient, RPCError
from .stats import GatewayStats

log = logging.getLogger(__name__)

#: Headers that tell the backend who is calling, on every request.
CONTEXT_HEADERS = ("X-RTMP-Client-Id", "X-RTMP-Application", "X-RTMP-Room", "X-RTMP-Client-Address",
                   "X-RTMP-Session")


def _header_value(value: str) -> str:
    """Header-safe text: non-ASCII and control characters percent-encoded (UTF-8).

    Nearly every value (client ids, application and room names, addresses) is printable ASCII without
    a "%", which ``quote`` would return unchanged: checked first, since ``quote`` costs more than the check.
    """
    if value.isascii() and value.isprintable() and "%" not in value:
        return value
    return quote(value, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


class GatewayApplication(Application):
    """Routes every call of its clients to a JSON-RPC backend, as routes.cfg says."""

    #: Every option of a gateway section, declared as data (bridge/routes.py); parsed once at start.
    Settings = GatewaySettings

    @classmethod
    def from_config(cls, section, services):
        section = cls.parsed_config(section)
        settings = section.settings_of(GatewaySettings)
        routes = load_routes(settings)
        rpc = JSONRPCClient(services.http_client, services.clock, max_concurrent=settings.max_concurrent,
                            max_queued=settings.max_queued, breaker_threshold=settings.breaker_threshold,
                            breaker_reset=settings.breaker_reset,
                            max_response_bytes=settings.max_response_bytes)
        application = cls(section.name, section.options, services.hub, settings=settings, routes=routes,
                          rpc=rpc)
        application.configure_streaming(section, services)
        return application

    @property
    def http_connections(self) -> int:
        """A persistent backend connection for every request the gateway may have in flight."""
        return self.settings.max_concurrent

    @property
    def http_head_bytes(self) -> int:
        """The longest response head (status line and headers) this gateway's backends may send."""
        return self.settings.max_response_head_bytes

    def stop(self):
        """The server stops, its clients gone: end what is still in flight or queued for the backends,
        then what every application waits for (persistent shared objects reaching the disk)."""
        self.rpc.close()
        return super().stop()

    def __init__(self, name, options=None, hub=None, *, settings, routes, rpc):
        super().__init__(name, options, hub)
        self.settings = settings
        self.routes = routes
        self.rpc = rpc
        self._sessions: Dict[str, Any] = {}     # client id -> what @connect returned as "session"
        self._in_flight: Dict[str, set] = {}     # client id -> Deferreds of its backend calls
        #: client id -> (the room they name, the context headers of its requests), dropped at disconnect.
        self._client_headers: Dict[str, Tuple[str, HeaderFields]] = {}
        self._application_headers: Optional[HeaderFields] = None
        #: Backend results refused (invalid, unsendable): one log line per kind and interval, with a count,
        #: since one client calling in a loop could otherwise make each refusal a line.
        self.result_log = RateLimitedLog(log, prefix=f"{name}: ")
        #: Shared-object decisions refused for want of a clear answer (backend down, garbage): a client
        #: writing in a loop while the backend is down would otherwise make each refusal a line.
        self.shared_object_log = RateLimitedLog(log, getattr(rpc, "_clock", None), prefix=f"{name}: ")
        #: Calls, errors by kind and latency per route, for the status API and /metrics (bridge/stats.py).
        self.stats = GatewayStats(getattr(rpc, "_clock", None))

    # -- who is calling ------------------------------------------------------------------

    def context(self, client) -> dict:
        """What the backend learns about the caller (also the ``context`` parameter of a route).

        ``client`` None: the application or the backend itself acted (a shared object changed
        through the push API), and only the application is known.
        """
        if client is None:
            return {"client": None, "application": self.name, "room": None, "address": None, "session": None}
        return {"client": client.id, "application": self.name, "room": client.room_name, "address": client.address,
                "session": self._sessions.get(client.id)}

    def _headers(self, client) -> HeaderFields:
        """The context headers of a request for ``client``, encoded once per client and room.

        A client's id, address, session and room are what they were once
        @connect accepted it, so the fields are kept, with the room they name
        (``room_name`` is a plain attribute: a change makes them again), and
        dropped at disconnect.  They are kept only while the client is
        connected: the @connect request's own are made for it alone (the
        session is not known yet, and a refused client never disconnects),
        as are those of anything sent for it once it has gone.
        """
        if client is None:
            if self._application_headers is None:
                self._application_headers = self.rpc.header_fields({"X-RTMP-Application": _header_value(self.name)})
            return self._application_headers
        kept = self._client_headers.get(client.id)
        if kept is not None and kept[0] == client.room_name:
            return kept[1]
        headers = {
            "X-RTMP-Client-Id": client.id,
            "X-RTMP-Application": self.name,
            "X-RTMP-Room": client.room_name,
            "X-RTMP-Client-Address": client.address,
        }
        session = self._sessions.get(client.id)
        if session is not None:
            headers["X-RTMP-Session"] = json.dumps(session, separators=(",", ":"))
        fields = self.rpc.header_fields({name: _header_value(value) for name, value in headers.items()})
        if client.connected:
            self._client_headers[client.id] = (client.room_name, fields)
        return fields

    # -- backend calls ----------------------------------------------------------------------

    def _request(self, route: Route, method: str, params: list, client, wants_reply: bool):
        """Send one request for ``client``; cancelled if the client disconnects first."""
        if route.context:
            params = params + [self.context(client)]
        if route.params_schema is not None:
            problems = route.params_schema.errors(params)
            if problems:
                self.stats.refused(route, "invalid-params")
                raise CallError(f"Invalid parameters for '{brief_name(method)}': {problems[0]}")
        send = self.rpc.call if wants_reply else self.rpc.notify
        d = self.stats.track(route, send(route.endpoint, route.backend_name(method), params, timeout=route.timeout,
                                         headers=self._headers(client)))
        return self._cancelled_on_leave(client, d)

    def _cancelled_on_leave(self, client, d):
        """``d``, a backend call made for ``client``, cancelled if the client leaves before it is answered."""
        calls = self._in_flight.get(client.id)
        if calls is None:
            calls = self._in_flight[client.id] = set()
        calls.add(d)
        return d.addBoth(self._answered, client.id, calls, d)

    def _answered(self, result, client_id: str, calls: set, d):
        """A call of ``_cancelled_on_leave`` is over: it is no longer the client's to cancel."""
        calls.discard(d)
        if not calls:
            self._in_flight.pop(client_id, None)
        return result

    def handle_call(self, client, name, args, wants_reply):
        route = self.routes.route(name) if name else None
        if route is None:
            raise CallError(f"Method '{brief_name(name)}' not found.")
        try:
            # The arguments were measured against the value budget where they entered (rtmp core),
            # so this walk, and the JSON body it builds, are bounded by maxValueNodes/maxValueBytes.
            params = [amf_to_json(arg, path=f"params[{i}]") for i, arg in enumerate(args)]
        except MappingError as e:
            raise CallError(f"Cannot send '{brief_name(name)}' to the backend: {e}")
        d = self._request(route, name, params, client, wants_reply)
        if not wants_reply:
            return d.addErrback(self._log_notification_failure, name)
        return d.addCallbacks(self._result, self._failure, (route, name, client), None, (name,))

    def _result(self, result, route: Route, name: str, client=None):
        """The backend's result as AMF the client's encoding can carry, or a CallError saying why not.

        Mapped for the client's object encoding (AMF0 clients get no
        ByteArray, which only an AMF3 switch could carry, and no "" keys);
        what cannot be mapped (an integer beyond a double, nesting over the
        bound) is an ``_error`` naming the reason and the path, at once:
        never an encoder traceback and a client waiting for its own timeout.
        """
        name = brief_name(name)
        if route.result_schema is not None:
            problems = route.result_schema.errors(result, root="result")
            if problems:
                self.stats.refused(route, "invalid-result")
                self.result_log.hit("invalid result", f"backend result for {name!r} is invalid "
                                                      f"({route.result_schema.path}): {problems[0]}")
                raise CallError(f"The backend returned an invalid result for '{name}'.")
        try:
            return json_to_amf(result, route.result_schema.schema if route.result_schema is not None else None,
                               path="result", encoding=_encoding(client))
        except MappingError as e:
            self.result_log.hit("unsendable result", f"backend result for {name!r} cannot be sent to the "
                                                     f"client: {e}")
            raise CallError(f"The backend's result for '{name}' cannot be sent to the client: {e}")

    def _failure(self, failure, name: str):
        error = failure.value
        if isinstance(error, CancelledError):
            # The client left; nothing will be sent, and it is no error of ours.
            raise CallError(f"'{name}' was cancelled.")
        if isinstance(error, RPCError):
            raise CallError(error.message, application={"code": error.code, "message": error.message,
                                                        "data": _json_to_amf_or_none(error.data)})
        if isinstance(error, BackendError):
            raise CallError(f"'{name}' failed: {error.description}")
        return failure

    def _log_notification_failure(self, failure, name):
        if not failure.check(CancelledError):
            log.warning("%s: notification %r failed: %s", self.name, brief_name(name),
                        getattr(failure.value, "description", failure.getErrorMessage()))

    def _log_frequent_notification_failure(self, failure, name):
        """As ``_log_notification_failure``, rate-limited: for notifications that may come many a second."""
        if not failure.check(CancelledError):
            self.shared_object_log.hit(f"{name} failed", f"notification {brief_name(name)!r} failed: "
                                       f"{getattr(failure.value, 'description', failure.getErrorMessage())}")

    def _hook(self, hook: str, client, params: list, failed=None):
        """Notify the backend of a lifecycle event, if routes.cfg names a method for it.

        ``failed`` logs a failure (default: ``_log_notification_failure``, a line each).
        """
        route = self.routes.hook(hook)
        if route is None:
            return None
        d = self.stats.track(route, self.rpc.notify(route.endpoint, route.backend_method, params,
                                                    timeout=route.timeout, headers=self._headers(client)))
        return d.addErrback(failed or self._log_notification_failure, "@" + hook)

    # -- hooks ----------------------------------------------------------------------------------

    def on_connect(self, client, *args):
        route = self.routes.hook("connect")
        if route is None:
            return True
        try:
            connect = {"params": amf_to_json(dict(client.params), path="params"),
                       "args": [amf_to_json(a, path=f"args[{i}]") for i, a in enumerate(args)]}
        except MappingError as e:
            raise ConnectRejected(f"Cannot pass the connect parameters to the backend: {e}")
        params = [connect["params"], connect["args"]]
        if route.context:
            params.append(self.context(client))
        d = self.stats.track(route, self.rpc.call(route.endpoint, route.backend_method, params,
                                                  timeout=route.timeout, headers=self._headers(client)))
        return d.addCallbacks(self._connect_decided, self._connect_failed, (client,))

    def _connect_decided(self, answer, client):
        if answer is True:
            return True
        if isinstance(answer, dict) and answer.get("accept") is True:
            if answer.get("session") is not None:
                self._sessions[client.id] = answer["session"]
            room = answer.get("room")
            value = answer.get("application")
            # The connect reply is always AMF0 (session.py): map for AMF0 whatever the client speaks.
            return Accept(application=_json_to_amf_or_none(value, encoding=0),
                          room=str(room) if room is not None else None)
        if answer is False or (isinstance(answer, dict) and answer.get("accept") is False):
            reason = answer.get("reason") if isinstance(answer, dict) else None
            raise ConnectRejected(str(reason) if reason else "Connection rejected by the backend.")
        log.warning("%s: @connect answered %s; expected true, false or {\"accept\": ...}", self.name,
                    brief(answer))
        raise ConnectRejected("Connection rejected: the backend gave no clear answer.")

    def _connect_failed(self, failure):
        error = failure.value
        if isinstance(error, RPCError):
            raise ConnectRejected(error.message)
        if isinstance(error, BackendError):
            if self.settings.fail_open:
                log.warning("%s: @connect backend failed (%s); accepting (fail-open)", self.name, error.description)
                return True
            log.warning("%s: @connect backend failed (%s); rejecting", self.name, error.description)
            raise ConnectRejected("The service is unavailable, please try again later.")
        return failure

    def on_publish(self, client, name, mode, query=""):
        return self._stream_decision("publish", client, {"name": name, "mode": mode, "query": query})

    def on_play(self, client, name, query=""):
        return self._stream_decision("play", client, {"name": name, "query": query})

    def on_unpublish(self, client, name):
        return self._hook("unpublish", client, [{"name": name}, self.context(client)])

    def _stream_decision(self, hook: str, client, stream: dict):
        """@publish / @play: the backend allows or refuses a stream, as nginx-rtmp's on_publish does."""
        route = self.routes.hook(hook)
        if route is None:
            return True
        d = self.stats.track(route, self.rpc.call(route.endpoint, route.backend_method,
                                                  [stream, self.context(client)], timeout=route.timeout,
                                                  headers=self._headers(client)))

        def decided(answer):
            if answer is True or (isinstance(answer, dict) and answer.get("accept") is True):
                return True
            reason = answer.get("reason") if isinstance(answer, dict) else None
            name = brief_name(stream["name"])
            raise StreamRejected(str(reason) if reason else f"The backend refused to {hook} {name}.")

        def failed(failure):
            error = failure.value
            if isinstance(error, RPCError):
                raise StreamRejected(error.message)
            if isinstance(error, BackendError):
                if self.settings.fail_open:
                    return True
                log.warning("%s: @%s backend failed (%s); refusing", self.name, hook, error.description)
                raise StreamRejected("The service is unavailable, please try again later.")
            return failure

        return d.addCallbacks(decided, failed)

    # -- remote shared objects -------------------------------------------------------------

    def on_shared_object_use(self, client, name, persistent):
        """@so.use: may ``client`` read (and write) shared object ``name``?  The backend decides.

        It is called ``[{"name", "persistent"}, context]`` and answers ``true``
        (read and write), ``false`` (neither), or ``{"access": "allow" | "read"
        | "none"}`` ("read": the client listens, its changes are refused).
        Anything else, a JSON-RPC error, or a backend that cannot be reached
        denies (fail closed, whatever ``fail-open`` says: that option admits
        connections, it never hands out access to shared state).
        """
        if self.routes.hook("so.use") is None:
            return super().on_shared_object_use(client, name, persistent)
        return self._shared_object_decision("so.use", client, {"name": name, "persistent": persistent},
                                            _access, Access.DENY_READ)

    def on_shared_object_change(self, client, name, changes):
        """@so.change: may ``client`` make these changes?  The backend allows all, none, or all but some.

        Called ``[{"name", "changes": {key: value or null (a delete)}}, context]``;
        answers ``true``, ``false``, or the list of refused keys (``[]``:
        none refused).  Failing closed as ``@so.use`` does.  A change made by
        the application or the backend itself (``client`` None) is not asked about.
        """
        if client is None or self.routes.hook("so.change") is None:
            return super().on_shared_object_change(client, name, changes)
        mapped = self._changes_as_json("so.change", name, changes, "refused")
        if mapped is None:
            return False
        return self._shared_object_decision("so.change", client, {"name": name, "changes": mapped},
                                            lambda answer: _refused_keys(answer, changes), False)

    def _changes_as_json(self, hook: str, name: str, changes, outcome: str):
        """``changes`` as the backend reads them, or None (logged, rate-limited) when JSON cannot carry them."""
        try:
            return amf_to_json(dict(changes), path="changes")
        except MappingError as e:
            self.shared_object_log.hit(f"{hook} unmappable", f"@{hook} of {brief_name(name)!r}: the change cannot "
                                                             f"be sent to the backend as JSON ({e}); {outcome}")
            return None

    def on_shared_object_changed(self, client, name, changes):
        """@so.changed: a notification ``[{"name", "changes"}, context]`` after a change was applied.

        ``context.client`` is null when the application or the backend (the push API) made the change.
        """
        if self.routes.hook("so.changed") is None:
            return None
        mapped = self._changes_as_json("so.changed", name, changes, "not sent")
        if mapped is None:
            return None
        # One a change, and changes may come by the hundred a second: failures are logged rate-limited.
        return self._hook("so.changed", client, [{"name": name, "changes": mapped}, self.context(client)],
                          self._log_frequent_notification_failure)

    def _shared_object_decision(self, hook: str, client, subject: dict, read, refused):
        """Ask the backend of ``hook`` about ``subject``; ``read(answer)`` is the decision, None if unclear.

        Everything but a clear answer is ``refused``, logged (rate-limited) with the reason.  A route's
        ``params=`` schema is checked first: what fails it is refused without asking (values a client
        may not write, whatever the backend would say).
        """
        route = self.routes.hook(hook)
        params = [subject, self.context(client)]

        def refuse(why):
            self.shared_object_log.hit(f"{hook} refused", f"@{hook} of {brief_name(subject['name'])!r}: {why}; "
                                                          "refused (fail closed)")
            return refused

        if route.params_schema is not None:
            problems = route.params_schema.errors(params)
            if problems:
                self.stats.refused(route, "invalid-params")
                return refuse(f"invalid params ({route.params_schema.path}): {problems[0]}")
        d = self.stats.track(route, self.rpc.call(route.endpoint, route.backend_method, params,
                                                  timeout=route.timeout, headers=self._headers(client)))

        def decided(answer):
            if route.result_schema is not None:
                problems = route.result_schema.errors(answer, root="result")
                if problems:
                    self.stats.refused(route, "invalid-result")
                    return refuse(f"invalid answer ({route.result_schema.path}): {problems[0]}")
            decision = read(answer)
            return refuse(f"the backend answered {brief(answer)}, {_EXPECTED[hook]}") if decision is None \
                else decision

        def failed(failure):
            error = failure.value
            if isinstance(error, CancelledError):
                return refused              # the client left: nobody to tell
            if isinstance(error, RPCError):
                return refuse(f"the backend answered error {error.code}: {brief_name(error.message)}")
            if isinstance(error, BackendError):
                return refuse(f"the backend failed ({error.description})")
            log.error("%s: @%s failed:\n%s", self.name, hook, failure.getTraceback())
            return refused

        return self._cancelled_on_leave(client, d).addCallbacks(decided, failed)

    def on_room_enter(self, room, client):
        return self._hook("enter", client, [self.context(client)])

    def on_room_leave(self, room, client):
        # Leaving means the client is gone: its calls stop now, not after the @leave notification.
        self._cancel_calls(client)
        return self._hook("leave", client, [self.context(client)])

    def _cancel_calls(self, client):
        for d in list(self._in_flight.pop(client.id, ())):
            d.cancel()

    def on_disconnect(self, client):
        self._cancel_calls(client)
        d = self._hook("disconnect", client, [self.context(client)])
        self._sessions.pop(client.id, None)
        self._client_headers.pop(client.id, None)
        return d


#: What each shared-object decision hook may answer, for the log line of an unclear answer.
_EXPECTED = {"so.use": 'expected true, false or {"access": "allow" | "read" | "none"}',
             "so.change": "expected true, false or a list of refused keys"}
_ACCESS = {"allow": Access.ALLOW, "read": Access.DENY_WRITE, "none": Access.DENY_READ}


def _access(answer):
    """@so.use's answer as an Access, None when it is none of the documented ones."""
    if answer is True or answer is False:
        return Access.ALLOW if answer else Access.DENY_READ
    if isinstance(answer, dict) and isinstance(answer.get("access"), str):
        return _ACCESS.get(answer["access"])
    return None


def _refused_keys(answer, changes):
    """@so.change's answer as the hook's: True, False, or the refused keys among ``changes``; None if unclear."""
    if answer is True or answer is False:
        return answer
    if isinstance(answer, list) and all(isinstance(key, str) for key in answer):
        refused = set(answer)
        return [key for key in changes if key in refused] or True
    return None


def _encoding(client) -> int:
    """The client's object encoding (0 or 3); 3, the wider, when no client is known."""
    return getattr(client, "object_encoding", 3) if client is not None else 3


def _json_to_amf_or_none(value, encoding: int = 0):
    """Extra data for the client (an error's data, connect's value): dropped, with a log line, if unsendable.

    AMF0 by default: the narrower encoding, fit for any client.
    """
    try:
        return json_to_amf(value, path="data", encoding=encoding)
    except MappingError as e:
        log.warning("backend data dropped, it cannot be sent to the client: %s", e)
        return None
