"""routes.cfg and a gateway's fmspy.cfg options -> frozen routes, checked once at start.

A route says where a client's call goes: which JSON-RPC method, at which
endpoint, within what time, checked against which JSON Schemas.  Everything is
read, parsed and compiled when the application starts (routes are data; see
docs/ARCHITECTURE.md, "Configuration"), so a typo in routes.cfg or a broken
schema file stops twistd with one line saying what to fix, instead of failing
the first client that calls.

routes.cfg is read by the same reader as fmspy.cfg (case-sensitive names,
inline ``;``/``#`` comments after whitespace, no interpolation), so both files
follow one set of rules and their errors read alike.
"""
from __future__ import annotations

import datetime
import functools
import itertools
import json
import os
import re
import types
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import urlsplit

from jsonschema import FormatChecker
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from jsonschema_specifications import REGISTRY as _SPECIFICATIONS
from referencing.jsonschema import specification_with

from ..app.application import StreamingSettings
from ..config import (
    _BOOL, _SECONDS, ApplicationConfig, ConfigError, _bounded, _parse_bool, _parse_buffer_size, _parse_int,
    _parse_seconds, _read_file, _suggestion, from_section, option, parse_application)

__all__ = ["HOOKS", "Schema", "Route", "Routes", "GatewaySettings", "gateway_settings", "load_routes"]

#: The lifecycle events routes.cfg may name as ``@event``.  publish, play and
#: unpublish are accepted now so that routes.cfg files stay valid when the
#: streaming hooks arrive.  The ``so.*`` hooks are a remote shared object's:
#: ``@so.use`` and ``@so.change`` decide (bridge/application.py), ``@so.changed``
#: is told of every change applied.
HOOKS = ("connect", "disconnect", "enter", "leave", "publish", "play", "unpublish",
         "so.use", "so.change", "so.changed")
#: Hooks the gateway notifies without waiting for an answer: a ``result=`` schema on them
#: could never be applied, so routes.cfg may not give one.
_NOTIFIED_ONLY = ("so.changed",)

#: JSON-RPC 2.0 reserves method names starting with "rpc." for the protocol itself.
_RESERVED_PREFIX = "rpc."
#: A client method name as routes.cfg can write it.
_METHOD_RE = re.compile(r"\S+")
_ROUTE_OPTIONS = ("endpoint", "params", "result", "timeout", "context")
#: Lines longer than this are cut: jsonschema messages quote the whole offending
#: value, and a client must not be able to make the gateway echo megabytes.
_MAX_LINE = 300


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_LINE else text[:_MAX_LINE - 3] + "..."


# --- schemas ----------------------------------------------------------------

_DATE_TIME_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
                           r"([Zz]|[+-]([0-9]{2}):([0-9]{2}))")


def _is_date_time(instance: Any) -> bool:
    """RFC 3339 date-time: jsonschema checks it only if rfc3339-validator is installed."""
    if not isinstance(instance, str):
        return True
    match = _DATE_TIME_RE.fullmatch(instance)
    if not match:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    offset_ok = match.group(9) is None or (int(match.group(9)) <= 23 and int(match.group(10)) <= 59)
    return hour <= 23 and minute <= 59 and second <= 60 and offset_ok  # 60: leap second


@functools.lru_cache(maxsize=None)
def _format_checker(validator_class) -> FormatChecker:
    """The draft's own format checker, plus date-time when no optional package provides it.

    Without this, ``"format": "date-time"`` would silently accept anything on a
    machine that lacks rfc3339-validator, and schemas would mean different
    things on different machines.
    """
    checker = FormatChecker(formats=())
    checker.checkers = dict(validator_class.FORMAT_CHECKER.checkers)
    if "date-time" not in checker.checkers:
        checker.checks("date-time")(_is_date_time)
    return checker


def _unresolvable_refs(node: Any, resolver, specification) -> List[str]:
    """The ``$ref``s of a schema that point nowhere (another file, a URL, a missing ``#/$defs/...``).

    Checked at start because jsonschema only finds out while validating a
    call, and because no registry with retrieval is given: a schema must never
    make the gateway fetch a URL in the middle of a call.
    """
    bad: List[str] = []
    if isinstance(node, list):
        for item in node:
            bad += _unresolvable_refs(item, resolver, specification)
    elif isinstance(node, dict):
        if isinstance(specification.id_of(node), str):
            resolver = resolver.in_subresource(specification.create_resource(node))
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef", "$recursiveRef") and isinstance(value, str):
                try:
                    resolver.lookup(value)
                except Exception:  # noqa: BLE001 -- Unresolvable, and referencing's own faults (a draft 3
                    bad.append(value)  # schema's crawl calls .get on a string): either way, not resolvable
            elif key not in ("enum", "const", "default", "examples"):  # data, not schemas
                bad += _unresolvable_refs(value, resolver, specification)
    return bad


@dataclass(frozen=True)
class Schema:
    """A JSON Schema file, parsed, checked and compiled once at start.

    Build it with ``Schema.load(path)``.  ``schema`` is the parsed document
    (a plain dict: treat it as read-only); it is also what the AMF mapping may
    consult to choose types.
    """

    #: Absolute path of the file, for messages.
    path: str
    schema: Mapping[str, Any] = field(hash=False)
    _validator: Any = field(default=None, repr=False, compare=False, hash=False)

    @classmethod
    def load(cls, path: str) -> "Schema":
        """Read and compile ``path``; ValueError with a one-line reason when it is not a usable schema."""
        try:
            with open(path, encoding="utf-8-sig") as stream:
                document = json.load(stream)
        except OSError as exc:
            raise ValueError(f"cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ValueError("not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            raise ValueError("JSON nested too deeply to read") from None
        if not isinstance(document, dict):
            raise ValueError(f"a {type(document).__name__} where a JSON Schema object was expected")
        dialect = document.get("$schema")
        if dialect is not None and not isinstance(dialect, str):
            raise ValueError(f"$schema {_one_line(repr(dialect))} is not a JSON Schema draft jsonschema knows: "
                             "expected a URI string")
        validator_class = validator_for(document, default=None) if dialect is not None else validator_for(document)
        if validator_class is None:
            raise ValueError(f"$schema {_one_line(repr(dialect))} is not a JSON Schema draft jsonschema knows")
        try:
            validator_class.check_schema(document)
            specification = specification_with(validator_class.ID_OF(validator_class.META_SCHEMA))
            resolver = _SPECIFICATIONS.resolver_with_root(specification.create_resource(document))
            bad = _unresolvable_refs(document, resolver, specification)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.json_path}: {_one_line(exc.message)}") from None
        except RecursionError:
            raise ValueError("nested too deeply to check as a JSON Schema") from None
        if bad:
            raise ValueError(f"$ref {bad[0]!r} cannot be resolved: expected a reference within this file "
                             "(such as #/$defs/name); other files and URLs are not loaded")
        validator = validator_class(document, registry=_SPECIFICATIONS,
                                    format_checker=_format_checker(validator_class))
        return cls(path=path, schema=document, _validator=validator)

    def errors(self, instance: Any, root: str = "params", limit: int = 10) -> List[str]:
        """[] when ``instance`` is valid; otherwise one line per problem, at most ``limit``.

        Each line starts with the JSON path of the failing value under ``root``
        (``params[0].id: 'x' is not of type 'integer'``), so a Flash developer
        sees which argument is wrong.  Pass ``root="result"`` for a backend's result.
        """
        found = itertools.islice(self._validator.iter_errors(instance), limit)
        return [_one_line(f"{root}{error.json_path[1:]}: {error.message}") for error in found]


# --- routes -----------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    """Where one client method (or the ``*`` fallback, or an ``@hook``) goes."""

    #: As written in routes.cfg: a method name, ``*`` for the fallback, ``@connect`` etc. for hooks.
    client_method: str
    #: The JSON-RPC method; ``*`` means the name the client called.  Never ``*`` for a hook.
    backend_method: str
    #: Absolute http(s) URL: the route's own ``endpoint=`` or the application's ``endpoint``.
    endpoint: str
    #: Seconds per backend call: the route's own ``timeout=`` or the application's ``timeout``.
    timeout: float
    params_schema: Optional[Schema] = None
    result_schema: Optional[Schema] = None
    #: ``context=yes``: the gateway appends the caller's context object as the last positional param.
    context: bool = False

    def backend_name(self, called: str) -> str:
        """The JSON-RPC method to call for a client call named ``called``."""
        return called if self.backend_method == "*" else self.backend_method


@dataclass(frozen=True)
class Routes:
    """One section of routes.cfg: the whole surface a gateway application exposes."""

    section: str
    #: Exact, case-sensitive client method names.
    methods: Mapping[str, Route] = field(default_factory=lambda: types.MappingProxyType({}), hash=False)
    #: The ``*`` route; None means unknown methods are refused.
    fallback: Optional[Route] = None
    #: Hook name without the ``@`` (one of HOOKS) -> route.
    hooks: Mapping[str, Route] = field(default_factory=lambda: types.MappingProxyType({}), hash=False)

    def route(self, client_method: str) -> Optional[Route]:
        """The route for a call, exact names first; None means: refuse the call.

        The fallback never forwards a name routes.cfg could not have listed
        (empty, with whitespace, an ``@hook``) nor one JSON-RPC reserves
        (``rpc.*``): a client must not reach more through ``*`` than through a
        written route.
        """
        route = self.methods.get(client_method)
        if route is not None or self.fallback is None:
            return route
        if not _METHOD_RE.fullmatch(client_method) or client_method.startswith(("@", _RESERVED_PREFIX)):
            return None
        return self.fallback

    def hook(self, name: str) -> Optional[Route]:
        """The route of hook ``name`` (``"connect"``, not ``"@connect"``), None when not declared."""
        return self.hooks.get(name)


# --- fmspy.cfg options ------------------------------------------------------

def _parse_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        raise ValueError(text)
    parts.port  # raises ValueError on a bad port  # noqa: B018
    return text


def _parse_section(text: str) -> str:
    if not text:
        raise ValueError(text)
    return text


def _at_least(minimum: int):
    """An integer option's parser and expectation (``an integer >= 1``), as ApplicationConfig.get_int says it."""
    return (lambda text: _parse_int(text, minimum)), _bounded("an integer", minimum, None)


_URL = "an http:// or https:// URL with a host, such as http://127.0.0.1:8080/rpc"
_SIZE = "a byte count such as 65536, 64K or 4M"


@dataclass(frozen=True)
class GatewaySettings:
    """The options of one ``[GatewayApplication:*]`` section of fmspy.cfg, declared as data.

    ``config.parse_application`` reads them once at start (``GatewayApplication.Settings``);
    each field names its option, parser and default.
    """

    #: The fmspy.cfg section (``GatewayApplication:shop``) and the file that configured it, for messages.
    application: str = from_section("section")
    source: str = from_section("source")
    #: ``routes``: the section of routes.cfg; default: the application's name.
    routes_section: str = option("routes", _parse_section, "a section name of routes.cfg",
                                 default_from=lambda app: app.name)
    #: ``routes-file``, absolute (a relative one is taken from the fmspy.cfg that set it);
    #: default: routes.cfg beside the fmspy.cfg that configured the application.
    routes_file: str = option("routes-file", str, "a file name", path=True, default_from=lambda app: "routes.cfg")
    #: ``endpoint``: the default backend URL.  None when every route names its own
    #: (``load_routes`` refuses a route that has none to fall back on).
    endpoint: Optional[str] = option("endpoint", _parse_url, _URL, None)
    #: ``timeout``: seconds per backend call, for routes without their own.
    timeout: float = option("timeout", _parse_seconds, _SECONDS, 5.0)
    #: ``fail-open``: accept connects when the @connect backend cannot be reached.
    fail_open: bool = option("fail-open", _parse_bool, _BOOL, False)
    #: ``max-concurrent``: requests in flight per endpoint.
    max_concurrent: int = option("max-concurrent", *_at_least(1), 32)
    #: ``max-queued``: requests waiting per endpoint beyond those; more are refused.
    max_queued: int = option("max-queued", *_at_least(0), 256)
    #: ``breaker-threshold``: consecutive failures that open an endpoint's circuit.
    breaker_threshold: int = option("breaker-threshold", *_at_least(1), 5)
    #: ``breaker-reset``: seconds before a half-open probe.
    breaker_reset: float = option("breaker-reset", _parse_seconds, _SECONDS, 10.0)
    #: ``max-response-bytes``: larger backend responses are refused (K/M/G suffixes accepted).
    max_response_bytes: int = option("max-response-bytes", _parse_buffer_size, _SIZE, 4 * 1024 * 1024)
    #: ``max-response-head-bytes``: a backend answer whose status line and headers are longer is refused.
    max_response_head_bytes: int = option("max-response-head-bytes", _parse_buffer_size, _SIZE, 64 * 1024)


def gateway_settings(app: ApplicationConfig) -> GatewaySettings:
    """A gateway section's settings; a bad or unknown option is a ConfigError naming file, section and option.

    The section is parsed as the registry parses it (``GatewaySettings`` and every application's
    ``StreamingSettings``, unknown options refused with a suggestion); an already parsed one is reused.
    """
    if GatewaySettings not in app.parsed:
        app = parse_application(app, (GatewaySettings, StreamingSettings))
    return app.settings_of(GatewaySettings)


# --- routes.cfg -------------------------------------------------------------

#: The route options that are values rather than schema files: parser, what is expected.
_OPTION_PARSERS = {"endpoint": (_parse_url, _URL), "timeout": (_parse_seconds, _SECONDS),
                   "context": (_parse_bool, _BOOL)}
_ROUTE_SYNTAX = ("'<backend method> [endpoint=URL] [params=SCHEMA] [result=SCHEMA] [timeout=SECONDS] "
                 "[context=yes|no]'")


def load_routes(settings: GatewaySettings) -> Routes:
    """Read ``settings.routes_section`` of ``settings.routes_file``, loading each schema file once."""
    path = settings.routes_file
    if not os.path.exists(path):
        raise ConfigError(f"{path}: [{settings.routes_section}]: no such routes file: expected the file named by "
                          f"routes-file in [{settings.application}] of {settings.source} (default: routes.cfg "
                          "beside it)", file=path, section=settings.routes_section)
    sections = _read_file(path)
    name = settings.routes_section
    if name not in sections:
        raise ConfigError(f"{path}: [{name}] is missing: expected a section of the routes of "
                          f"[{settings.application}] (its routes option, default its name); the file has "
                          f"{', '.join(f'[{s}]' for s in sections) or 'no sections'}"
                          f"{_suggestion(name, list(sections))}",
                          file=path, section=name)

    schemas: Dict[str, Schema] = {}
    methods: Dict[str, Route] = {}
    hooks: Dict[str, Route] = {}
    fallback = None
    for client_method, value in sections[name].items():
        route = _route(settings, path, name, client_method, value, schemas)
        if client_method == "*":
            fallback = route
        elif client_method.startswith("@"):
            hooks[client_method[1:]] = route
        else:
            methods[client_method] = route
    return Routes(section=name, methods=types.MappingProxyType(methods), fallback=fallback,
                  hooks=types.MappingProxyType(hooks))


def _route(settings: GatewaySettings, path: str, section: str, client_method: str, value: str,
           schemas: Dict[str, Schema]) -> Route:
    """One ``<client method> = <backend method> key=value...`` line."""

    def error(expected: str) -> ConfigError:
        return ConfigError(f"{path}: [{section}] {client_method} = {value!r}: expected {expected}",
                           file=path, section=section, option=client_method)

    if not _METHOD_RE.fullmatch(client_method):
        raise error("a client method name without whitespace, '*' or an @hook")
    if client_method.startswith("@") and client_method[1:] not in HOOKS:
        raise error(f"a hook among {', '.join('@' + h for h in HOOKS)}{_suggestion(client_method[1:], HOOKS)}")
    if "*" in client_method and client_method != "*":
        raise error("'*' alone as the fallback route (name patterns are not supported)")

    tokens = value.split()
    if not tokens or "=" in tokens[0]:
        raise error(f"the backend method first: {_ROUTE_SYNTAX}")
    backend, options = tokens[0], {}
    if "*" in backend and backend != "*":
        raise error("a backend method name, or '*' alone for the client's method name")
    if backend == "*" and client_method.startswith("@"):
        raise error("the backend method to notify of this hook (a name, not '*')")
    if (client_method if backend == "*" else backend).startswith(_RESERVED_PREFIX):
        raise error("a backend method not starting with 'rpc.' (JSON-RPC reserves those names)")
    for token in tokens[1:]:
        key, equals, raw = token.partition("=")
        if not equals or not raw:
            raise error(f"key=value options after the backend method, not {token!r}: {_ROUTE_SYNTAX}")
        if key not in _ROUTE_OPTIONS:
            raise error(f"options among {', '.join(_ROUTE_OPTIONS)}, not {key!r}{_suggestion(key, _ROUTE_OPTIONS)}")
        if key in options:
            raise error(f"{key}= at most once")
        if key in _OPTION_PARSERS:
            parse, expected = _OPTION_PARSERS[key]
            try:
                raw = parse(raw)
            except ValueError:
                raise error(f"{key}= {expected}, not {raw!r}") from None
        options[key] = raw
    if "result" in options and client_method.startswith("@") and client_method[1:] in _NOTIFIED_ONLY:
        raise error(f"no result= on {client_method}: it is a notification, its answer is never read")

    endpoint = options.get("endpoint", settings.endpoint)
    if endpoint is None:
        raise ConfigError(f"{settings.source}: [{settings.application}] endpoint is missing: expected the default "
                          f"backend {_URL}, needed by [{section}] {client_method} in {path} (or give that route "
                          "its own endpoint=URL)", file=settings.source, section=settings.application,
                          option="endpoint")
    return Route(client_method=client_method, backend_method=backend, endpoint=endpoint,
                 timeout=options.get("timeout", settings.timeout),
                 params_schema=_schema(options.get("params"), "params", path, section, client_method, schemas),
                 result_schema=_schema(options.get("result"), "result", path, section, client_method, schemas),
                 context=options.get("context", False))


def _schema(name: Optional[str], key: str, path: str, section: str, client_method: str,
            schemas: Dict[str, Schema]) -> Optional[Schema]:
    """The schema file ``name`` (relative to routes.cfg), loaded at most once per routes file."""
    if name is None:
        return None
    schema_path = os.path.normpath(os.path.join(os.path.dirname(path), name))
    if schema_path not in schemas:
        try:
            schemas[schema_path] = Schema.load(schema_path)
        except ValueError as exc:
            raise ConfigError(f"{schema_path}: {exc}; expected a JSON Schema file, named by {key}= of "
                              f"[{section}] {client_method} in {path}", file=schema_path, section=section,
                              option=client_method) from None
    return schemas[schema_path]
