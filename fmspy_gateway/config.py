"""fmspy.cfg -> frozen dataclasses: where the file is looked for, how it is read, what each option may hold.

Nothing is read at import time and nothing is global: ``load_config()`` returns a
``Config`` that the caller passes on (FMSPy read its file into a module global on
import, which made every test depend on the working directory).

Every mistake in a file becomes a ``ConfigError`` whose message is one line naming
the file, the section, the option and what was expected: that line is all an
operator sees when twistd refuses to start, so it must say what to fix.

The format is FMSPy's (same sections, same option names), read with three
deliberate differences from FMSPy's ``SafeConfigParser``:

* Option names are case-sensitive, as the user guide writes them
  (``handshakeTimeout``). FMSPy lower-cased them, so an old file may say
  ``handshaketimeout``; in [RTMP] and [HTTP] such a spelling is reported with the
  right one instead of being silently ignored.
* No ``%`` interpolation: URLs and tokens are taken literally (``%%`` is two signs).
* ``;`` and ``#`` start an inline comment when whitespace precedes them, so
  ``name = shop ; rtmp://host/shop`` means ``shop``. ``http://host/x#frag`` and
  ``abc;def`` keep their ``#`` and ``;``; a value cannot contain `` #`` or `` ;``.

[DEFAULT] sections are refused: with several layered files their meaning would be
a puzzle, and FMSPy's files never used one.
"""
from __future__ import annotations

import ast
import configparser
import dataclasses
import difflib
import math
import os
import re
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from fmspy_gateway.rtmp.budget import ValueBudget
from fmspy_gateway.rtmp.limits import Limits
from fmspy_gateway.rtmp.messages import MAX_CHUNK_SIZE

__all__ = [
    "DEFAULT_SEARCH_PATH", "ConfigError", "RTMPConfig", "HTTPConfig", "RTMPSConfig", "RTMPTConfig", "ClusterConfig", "ApplicationConfig",
    "Config", "load_config", "with_overrides", "Option", "option", "from_section", "declared_options",
    "parse_settings", "parse_application",
]

#: Where fmspy.cfg is looked for, as FMSPy's FAQ says: the package's install
#: directory (the bundled file is package data), /etc, /usr/local/etc, then the
#: current directory (resolved when ``load_config`` runs). Later files override
#: earlier ones option by option.
DEFAULT_SEARCH_PATH: Tuple[str, ...] = (
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "fmspy.cfg"),
    "/etc/fmspy.cfg",
    "/usr/local/etc/fmspy.cfg",
    os.path.join(os.curdir, "fmspy.cfg"),
)


class ConfigError(Exception):
    """A configuration the server cannot start with; ``str()`` is one line saying what to fix.

    ``file``, ``section`` and ``option`` repeat what the message names, for callers
    (and tests) that want them without parsing the text.
    """

    def __init__(self, message: str, *, file: Optional[str] = None, section: Optional[str] = None,
                 option: Optional[str] = None):
        super().__init__(" ".join(message.splitlines()))
        self.file = file
        self.section = section
        self.option = option


@dataclass(frozen=True)
class RTMPConfig:
    """The [RTMP] section: the listening socket and the per-connection timers and limits.

    The field defaults are the documented defaults of fmspy.cfg.
    """

    #: TCP port (0 picks a free one, for tests).
    port: int = 1935
    #: Address to listen on; empty means every interface.
    interface: str = ""
    #: listen(2) backlog.
    backlog: int = 50
    #: Seconds from TCP connect to the end of the handshake (``handshakeTimeout``).
    handshake_timeout: float = 30.0
    #: Seconds of silence after which the server sends a PingRequest (``pingInterval``).
    ping_interval: float = 60.0
    #: Seconds of silence after which the connection is closed (``keepAliveTimeout``);
    #: greater than ``ping_interval`` so that a ping can be answered first.
    keepalive_timeout: float = 180.0
    #: Seconds a server-to-client call waits for the client's answer (``callTimeout``).
    call_timeout: float = 30.0
    #: Streams one connection may create with createStream (``maxStreams``).
    max_streams: int = 256
    #: Characters of a stream name in play or publish, its query excluded (``maxStreamNameLength``).
    max_stream_name_length: int = 256
    #: Commands a client may send while its connect is still being decided (``maxQueuedCommands``).
    max_queued_commands: int = 32
    #: Entries of each Enhanced RTMP codec list or map one connect may declare (``maxFourCcEntries``); the
    #: rest are ignored, and logged: a real client names a dozen codecs at most.
    max_fourcc_entries: int = 64
    #: Bytes of each live stream kept since its latest keyframe, for players joining (``maxGopBytes``).
    max_gop_bytes: int = 8 * 1024 * 1024
    #: Seconds a player may stay unable to take data before it is disconnected (``slowPlayerTimeout``).
    slow_player_timeout: float = 10.0
    #: Seconds live media for a player may wait to be written together with what follows it
    #: (``mediaFlushInterval``); 0: written at the end of the reactor turn that brought it.
    media_flush_interval: float = 0.0
    #: A publisher's socket read once per ``mediaFlushInterval`` rather than as its media comes
    #: (``mergedReads``); its own commands' answers wait up to that long too.
    merged_reads: bool = False
    #: Merged reads: reads of the transport's buffer (64 KB) per publisher, the first included, that a media
    #: write waits for while they fill it (``mergedReadTurns``); what is left beyond goes with the next write.
    merged_read_turns: int = 16
    #: Seconds from the end of the handshake to an accepted connect (``connectTimeout``).
    connect_timeout: float = 30.0
    #: Seconds a connection the server closes may take to send what is queued and see the client go
    #: (``closeLinger``); a client still connected then is cut.  RTMPT sessions wait as long for the poll
    #: that takes their last bytes.
    close_linger: float = 2.0
    #: Bytes queued for one client that does not read, before the server stops reading its
    #: commands and, after ``slowPlayerTimeout`` over it, disconnects it (``maxOutgoingBytes``).
    max_outgoing_bytes: int = 16 * 1024 * 1024
    #: Connections open at once, all addresses together; 0 = unlimited (``maxConnections``).
    max_connections: int = 0
    #: Connections open at once from one IP address; 0 = unlimited (``maxConnectionsPerAddress``).
    max_connections_per_address: int = 0
    #: Ignored or refused messages (unknown types, media or data before connect, values over budget)
    #: a connection may send with no accepted command or media in between before it is closed as
    #: junk (``maxIgnoredMessages``); ordinary clients send none.
    max_ignored_messages: int = 100
    #: ``maxMessageSize``, ``maxChunkSize``, ``maxChunkStreams``, ``maxBufferedBytes``,
    #: ``maxValueNodes``, ``maxValueBytes``.
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class HTTPConfig:
    """The [HTTP] section: the bundled web server (examples now, the gateway's push API later)."""

    enabled: bool = False
    port: int = 3000
    #: Loopback by default: the push API is not meant for the open internet.
    interface: str = "127.0.0.1"
    #: ``examples-enabled``: serve the bundled examples under /examples/.
    examples_enabled: bool = False
    #: ``push-token``: the shared secret of the push API; None when unset or empty.
    push_token: Optional[str] = None
    #: ``push-max-body``: the largest push API request body read, in bytes.
    push_max_body: int = 1024 * 1024
    #: ``push-max-call-timeout``: the longest ``timeout`` a push API ``call`` may ask for, in seconds.
    push_max_call_timeout: float = 300.0
    #: ``admin-token``: the bearer token of /api/v1/ and /metrics; None: reads open, DELETE refused.
    admin_token: Optional[str] = None
    #: ``close-linger``: seconds a refused request's client may keep sending (read and dropped) before its
    #: connection is cut: long enough to read the answer and stop, short enough that they cannot pile up.
    close_linger: float = 2.0


@dataclass(frozen=True)
class RTMPSConfig:
    """The [RTMPS] section: RTMP inside TLS on its own port (and RTMPT inside TLS there: RTMPTS).

    The certificate files are only named here; ``server.tls`` reads them at
    start and again on SIGHUP, so that a missing or unreadable file is one
    line naming the option.
    """

    enabled: bool = False
    #: TCP port; 443 is what ``rtmps://host/app`` (and ``rtmpts://``) means without a port.
    port: int = 443
    #: Address to listen on; empty means every interface.
    interface: str = ""
    #: PEM file with the server certificate, optionally followed by its intermediates.
    certificate: str = ""
    #: PEM file with the certificate's private key (unencrypted).
    key: str = ""
    #: Optional PEM file with intermediate certificates sent after the certificate.
    chain: str = ""
    #: Offer TLS 1.3 as well as 1.2 (``tls13``).  Off by default: librtmp built with GnuTLS (Debian's
    #: rtmpdump and python3-librtmp) fails its handshake on the session tickets a TLS 1.3 server sends,
    #: and pyOpenSSL cannot turn those off.
    tls13: bool = False


@dataclass(frozen=True)
class RTMPTConfig:
    """The [RTMPT] section: RTMP tunnelled through HTTP POSTs, on the [HTTP] site and the RTMPS port.

    Each session is an RTMP connection for the [RTMP] limits and timers as
    well (``maxConnections``, ``keepAliveTimeout``, ...); these bound what an
    HTTP client can open without holding a socket.
    """

    enabled: bool = False
    #: Sessions open at once, all addresses together (``maxSessions``).
    max_sessions: int = 1000
    #: Sessions open at once from one IP address (``maxSessionsPerAddress``); proxies share one address.
    max_sessions_per_address: int = 100
    #: Bytes waiting for one session's next poll before it is dropped (``maxPendingBytes``).
    max_pending_bytes: int = 1024 * 1024
    #: The most RTMP bytes one response carries (``maxResponseBytes``; Red5 uses 32768).
    max_response_bytes: int = 32768
    #: The largest POST body read (``maxRequestBytes``) on the RTMPS port; the [HTTP] site has push-max-body.
    max_request_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class ClusterConfig:
    """The [Cluster] section: several processes and machines acting as one server through Redis.

    Without ``redis`` the server is one process with the in-process hub
    (``app/hub.py`` LocalHub); with it every node registers in Redis and
    rooms, clients, live streams and shared objects are cluster-wide.
    """

    #: ``redis://[:password@]host:port/db`` or ``unix:///path/redis.sock``; empty: one process.
    redis: str = ""
    #: This node's name, unique in the cluster; empty: host name and pid (``app.hub.default_node_name``).
    node: str = ""
    #: ``rtmp://host:port`` other nodes pull this node's live streams from; empty: from [RTMP].
    advertise: str = ""
    #: Shared by the nodes; relay connections present it.  Required when ``redis`` is set.
    secret: str = ""
    #: Processes on this machine sharing the RTMP and HTTP ports (more than 1 needs ``redis``).
    workers: int = 1
    #: Seconds between a node's heartbeats; a node silent for 3 heartbeats is gone.
    heartbeat: float = 5.0
    #: Seconds a drained node (push API ``drain``) waits before it closes the clients still connected.
    drain_grace: float = 30.0
    #: Seconds the workers' supervisor waits for them to stop (closing their clients) before it kills them.
    worker_stop_timeout: float = 60.0
    #: Seconds another node may take to answer a broadcast or a disconnect (added to a call's timeout);
    #: None: one heartbeat.
    reply_timeout: Optional[float] = None
    #: Seconds a Redis command may go unanswered before Redis counts as lost.
    command_timeout: float = 10.0
    #: Seconds to reach Redis at start (and each reconnection attempt).
    connect_timeout: float = 10.0
    #: Bytes of one message between nodes (a broadcast's, a call's or its answer's values); larger is refused.
    max_envelope_bytes: int = 1024 * 1024
    #: Seconds a graceful stop waits for every connection's leave chain (the hub's leave, then the
    #: on_room_leave / on_room_destroy / on_disconnect hooks) before the applications stop anyway.
    stop_timeout: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.redis)


_REQUIRED: Any = object()  # marks a getter call without a default


@dataclass(frozen=True)
class ApplicationConfig:
    """One application section: ``[ClassName]`` or ``[ClassName:label]`` for a further instance.

    ``options`` holds the application's own options as raw strings (without
    ``enabled`` and ``name``).  ``parse_application`` parses them once, at
    start, against the declarations of the application's class into
    ``parsed`` (``settings_of``); a class that declares nothing reads the raw
    strings, and the ``get_*`` methods type them and, on a bad value, raise
    a ``ConfigError`` naming the file the value came from.
    """

    class_name: str
    label: Optional[str] = None
    #: Applications are disabled unless a file enables them.
    enabled: bool = False
    #: The RTMP application name (``rtmp://host/name``); never None when enabled.
    name: Optional[str] = None
    options: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}), hash=False)
    #: The last file that configured this section (later files override earlier ones).
    source: str = ""
    #: The file each option came from, for error messages; options missing here are from ``source``.
    option_sources: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False, repr=False)
    #: The section's options parsed against the application class's declarations (``parse_application``):
    #: declaration class -> its frozen settings object.  Empty until then (``load_config`` knows no classes).
    parsed: Mapping[type, Any] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False, repr=False, compare=False)

    @property
    def section(self) -> str:
        """The section name as written in fmspy.cfg."""
        return self.class_name if self.label is None else f"{self.class_name}:{self.label}"

    def get_str(self, option: str, default: Any = _REQUIRED) -> str:
        """The raw value; without a default a missing option is an error."""
        return self._get(option, default, lambda text: text, "a value")

    def get_int(self, option: str, default: Any = _REQUIRED, *, minimum: Optional[int] = None,
                maximum: Optional[int] = None) -> int:
        return self._get(option, default, lambda text: _parse_int(text, minimum, maximum),
                         _bounded("an integer", minimum, maximum))

    def get_float(self, option: str, default: Any = _REQUIRED, *, minimum: Optional[float] = None,
                  maximum: Optional[float] = None) -> float:
        return self._get(option, default, lambda text: _parse_float(text, minimum, maximum),
                         _bounded("a number", minimum, maximum))

    def get_bool(self, option: str, default: Any = _REQUIRED) -> bool:
        return self._get(option, default, _parse_bool, _BOOL)

    def _get(self, option: str, default: Any, parse: Callable[[str], Any], expected: str) -> Any:
        source = self.option_sources.get(option, self.source)
        if option not in self.options:
            if default is _REQUIRED:
                raise ConfigError(f"{source}: [{self.section}] {option} is missing: expected {expected}",
                                  file=source, section=self.section, option=option)
            return default
        return _parse_value(parse, expected, self.options[option], source, self.section, option)

    def settings_of(self, declaration: type) -> Any:
        """The frozen settings object ``parse_application`` made of this section for ``declaration``."""
        try:
            return self.parsed[declaration]
        except KeyError:
            raise LookupError(f"[{self.section}] was not parsed against {declaration.__name__} "
                              "(parse_application)") from None


# --- application options, declared as data ---------------------------------
# An application class declares its options as a frozen dataclass whose fields
# are made with ``option()`` (an fmspy.cfg option: name, parser, what is
# expected, default) or ``from_section()`` (a fact of the section itself).
# ``parse_application`` reads a section against such declarations once, at
# start, with the same one-line errors as [RTMP]'s.

_OPTION_KEY = "fmspy_gateway.option"
_SECTION_KEY = "fmspy_gateway.section"
_SECTION_FACTS = {"section": lambda app: app.section, "source": lambda app: app.source,
                  "name": lambda app: app.name}


@dataclass(frozen=True)
class Option:
    """How one field of a settings dataclass is read from its fmspy.cfg option (see ``option``)."""

    #: The option as written in fmspy.cfg (case-sensitive).
    name: str
    #: Takes the stripped text, returns the value or raises ValueError.
    parse: Callable[[str], Any]
    #: What the error message says was expected ("a positive number of seconds").
    expected: str
    #: A file or directory name: made absolute relative to the fmspy.cfg that set it (the default
    #: relative to the section's file); an empty value means the default.
    path: bool = False
    #: The default, computed from the section (``ApplicationConfig``), for the field without a fixed one.
    default_from: Optional[Callable[[ApplicationConfig], Any]] = None


def option(name: str, parse: Callable[[str], Any], expected: str, default: Any = dataclasses.MISSING, *,
           path: bool = False, default_from: Optional[Callable[[ApplicationConfig], Any]] = None) -> Any:
    """A dataclass field read from the option ``name``; without ``default`` or ``default_from`` it is required."""
    metadata = {_OPTION_KEY: Option(name, parse, expected, path, default_from)}
    if default is dataclasses.MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def from_section(fact: str) -> Any:
    """A dataclass field holding a fact of the section, not an option: ``"section"`` (its name as
    written, ``GatewayApplication:shop``), ``"source"`` (the file that configured it) or ``"name"``
    (its RTMP application name)."""
    if fact not in _SECTION_FACTS:
        raise ValueError(f"from_section({fact!r}): expected one of {', '.join(_SECTION_FACTS)}")
    return field(metadata={_SECTION_KEY: fact})


def declared_options(declaration: type) -> Tuple[str, ...]:
    """The fmspy.cfg option names a settings dataclass declares, in field order."""
    return tuple(f.metadata[_OPTION_KEY].name for f in dataclasses.fields(declaration) if _OPTION_KEY in f.metadata)


def parse_settings(app: ApplicationConfig, declaration: type) -> Any:
    """``declaration`` (a frozen dataclass of ``option`` / ``from_section`` fields) made from ``app``'s options.

    A bad value or a missing required option is a one-line ``ConfigError``
    naming the file, the section and the option.  After every field is
    read, the declaration's ``validate(app)`` method, if it has one, checks
    what concerns several options at once.  Options the declaration does not
    name are left alone (``parse_application`` decides about those).
    """
    values: Dict[str, Any] = {}
    for f in dataclasses.fields(declaration):
        if _SECTION_KEY in f.metadata:
            values[f.name] = _SECTION_FACTS[f.metadata[_SECTION_KEY]](app)
        elif _OPTION_KEY in f.metadata:
            values[f.name] = _read_option(app, f, f.metadata[_OPTION_KEY])
    settings = declaration(**values)
    validate = getattr(settings, "validate", None)
    if validate is not None:
        validate(app)
    return settings


def _read_option(app: ApplicationConfig, f: dataclasses.Field, spec: Option) -> Any:
    source = app.option_sources.get(spec.name, app.source)
    raw = app.options.get(spec.name)
    if raw is not None and not (spec.path and raw == ""):
        value = _parse_value(spec.parse, spec.expected, raw, source, app.section, spec.name)
    elif spec.default_from is not None:
        value = spec.default_from(app)
    elif f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        raise ConfigError(f"{source}: [{app.section}] {spec.name} is missing: expected {spec.expected}",
                          file=source, section=app.section, option=spec.name)
    if spec.path and isinstance(value, str) and value:
        value = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(source)), value))
    return value


def parse_application(app: ApplicationConfig, declarations: Sequence[type], *,
                      strict: bool = True) -> ApplicationConfig:
    """``app`` with ``parsed`` filled: one frozen settings object per declaration (``settings_of``).

    ``strict``: an option no declaration names is refused, with the known
    names and a suggestion (a misspelt ``timout`` would otherwise leave the
    default silently in force).  Not strict (an application class that
    declares no options of its own): such options stay raw strings in
    ``options``, for the application to read, as before declarations existed.
    """
    known = [name for declaration in declarations for name in declared_options(declaration)]
    if strict:
        for name, raw in app.options.items():
            if name not in known:
                source = app.option_sources.get(name, app.source)
                raise ConfigError(f"{source}: [{app.section}] {name} = {raw!r}: expected one of "
                                  f"{', '.join(known)}{_suggestion(name, known)}",
                                  file=source, section=app.section, option=name)
    parsed = {declaration: parse_settings(app, declaration) for declaration in declarations}
    return dataclasses.replace(app, parsed=types.MappingProxyType(parsed))


@dataclass(frozen=True)
class Config:
    """Everything fmspy.cfg says, in the order the sections were first seen."""

    rtmp: RTMPConfig = field(default_factory=RTMPConfig)
    http: HTTPConfig = field(default_factory=HTTPConfig)
    applications: Tuple[ApplicationConfig, ...] = ()
    rtmps: RTMPSConfig = field(default_factory=RTMPSConfig)
    rtmpt: RTMPTConfig = field(default_factory=RTMPTConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    #: The files read, absolute, in the order they were layered.
    files: Tuple[str, ...] = ()

    def enabled_applications(self) -> Tuple[ApplicationConfig, ...]:
        return tuple(app for app in self.applications if app.enabled)


def load_config(path: Optional[str] = None, *, search_path: Sequence[str] = DEFAULT_SEARCH_PATH) -> Config:
    """Read fmspy.cfg and return a validated ``Config``; raise ``ConfigError`` on any mistake.

    With ``path`` (``--config FILE``) only that file is read and it must exist.
    Otherwise every existing file of ``search_path`` is read, in order, each
    overriding the options of the ones before; the same file reached twice (the
    package's fmspy.cfg seen again as ./fmspy.cfg) is read once.
    """
    if path is not None:
        files = [os.path.abspath(path)]
        if not os.path.exists(files[0]):
            raise ConfigError(f"{files[0]}: no such configuration file", file=files[0])
    else:
        files = _existing_files(search_path)
        if not files:
            raise ConfigError(f"no fmspy.cfg found: looked for {_listing(search_path)}; "
                              "create one there or pass --config FILE")

    sections = _layer(files)
    if "RTMP" not in sections:
        # FMSPy said "NoSectionError: No section: 'RTMP'" here, nearly always
        # because it had found no file at all; say what was read and where.
        where = "" if path is not None else f"; fmspy.cfg is looked for as {_listing(search_path)}"
        raise ConfigError(f"no [RTMP] section in the files read ({', '.join(files)}): expected the [RTMP] "
                          f"section of an fmspy.cfg (it may be empty){where}", file=files[-1], section="RTMP")

    rtmp = _rtmp_config(sections.pop("RTMP"))
    http = _http_config(sections.pop("HTTP")) if "HTTP" in sections else HTTPConfig()
    rtmps = _rtmps_config(sections.pop("RTMPS")) if "RTMPS" in sections else RTMPSConfig()
    rtmpt = _rtmpt_config(sections.pop("RTMPT")) if "RTMPT" in sections else RTMPTConfig()
    cluster = _cluster_config(sections.pop("Cluster")) if "Cluster" in sections else ClusterConfig()
    applications = tuple(_application_config(section) for section in sections.values())
    _check_unique_names(applications)
    return Config(rtmp=rtmp, http=http, applications=applications, files=tuple(files), rtmps=rtmps,
                  rtmpt=rtmpt, cluster=cluster)


def with_overrides(config: Config, *, rtmp_port: Union[int, str, None] = None,
                   rtmp_interface: Optional[str] = None, http_port: Union[int, str, None] = None) -> Config:
    """``config`` with the command line's ``--rtmp-port``, ``--rtmp-interface``, ``--http-port`` applied.

    None leaves a value alone; ports may come as twistd's option strings.
    ``http_port`` does not enable HTTP: that stays the file's decision.
    """
    rtmp, http = config.rtmp, config.http
    if rtmp_port is not None:
        rtmp = dataclasses.replace(rtmp, port=_override_port("--rtmp-port", rtmp_port))
    if rtmp_interface is not None:
        rtmp = dataclasses.replace(rtmp, interface=rtmp_interface.strip())
    if http_port is not None:
        http = dataclasses.replace(http, port=_override_port("--http-port", http_port))
    return dataclasses.replace(config, rtmp=rtmp, http=http)


# --- values -----------------------------------------------------------------
# Each parser takes the stripped text and raises ValueError; the caller turns
# that into a ConfigError with the expectation below.

_PORT = "an integer port 0-65535"
_BOOL = "yes or no (or true/false, on/off, 1/0)"
#: The longest time any option may name: Twisted waits for its next timer with epoll, which refuses a wait of
#: more than 2**31 ms (24.8 days), so a timer further off, once the nearest, would stop the reactor's loop.
MAX_SECONDS = 24 * 24 * 3600
_SECONDS = f"a positive number of seconds (at most {MAX_SECONDS})"
#: The longest ``mediaFlushInterval``: beyond a second the wait is a player's buffer, not a merged write.
MAX_MEDIA_FLUSH_INTERVAL = 1.0
#: ``mergedReadTurns`` at most: 256 reads of 64 KB, 16 MB per publisher per interval, the players' write waiting.
MAX_MERGED_READ_TURNS = 256
_POSITIVE = "a positive integer"
_COUNT = "a whole number, 0 for no limit"
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")  # no nan, no inf
_SIZE_RE = re.compile(r"([0-9]+)\s*([KMG]?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
#: An RTMP message length is 24 bits, so 16M covers every message there is.
_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
#: Set Chunk Size carries 31 bits.
_MAX_CHUNK_SIZE = MAX_CHUNK_SIZE
_APP_NAME_RE = re.compile(r"[^/?#\s]+")
_CLASS_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_LABEL_RE = re.compile(r"[^:\s]+")


def _in_range(value, minimum, maximum):
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(value)
    return value


def _parse_int(text: str, minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
    if not _INT_RE.fullmatch(text):
        raise ValueError(text)
    return _in_range(int(text), minimum, maximum)


def _parse_float(text: str, minimum: Optional[float] = None, maximum: Optional[float] = None) -> float:
    if not _FLOAT_RE.fullmatch(text):
        raise ValueError(text)
    value = float(text)
    if not math.isfinite(value):        # "1e400": digits only, but not a number a timer can wait for
        raise ValueError(text)
    return _in_range(value, minimum, maximum)


def _parse_bool(text: str) -> bool:
    try:
        return configparser.ConfigParser.BOOLEAN_STATES[text.lower()]
    except KeyError:
        raise ValueError(text) from None


def _parse_port(text: str) -> int:
    return _parse_int(text, 0, 65535)


def _parse_positive_int(text: str) -> int:
    return _parse_int(text, 1)


def _parse_count(text: str) -> int:
    return _parse_int(text, 0)


def _parse_seconds(text: str) -> float:
    seconds = _parse_float(text)
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(text)
    return seconds


def _parse_flush_interval(text: str) -> float:
    seconds = _parse_float(text)
    if not 0 <= seconds <= MAX_MEDIA_FLUSH_INTERVAL:
        raise ValueError(text)
    return seconds


def _parse_merged_read_turns(text: str) -> int:
    return _parse_int(text, 1, MAX_MERGED_READ_TURNS)


def _parse_size(text: str, maximum: Optional[int]) -> int:
    """Bytes, optionally with a binary K/M/G suffix: ``65536``, ``64K``, ``4M``."""
    match = _SIZE_RE.fullmatch(text)
    if not match:
        raise ValueError(text)
    return _in_range(int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()], 1, maximum)


def _parse_message_size(text: str) -> int:
    return _parse_size(text, _MAX_MESSAGE_SIZE)


def _parse_chunk_size(text: str) -> int:
    return _parse_size(text, _MAX_CHUNK_SIZE)


def _parse_buffer_size(text: str) -> int:
    return _parse_size(text, None)


def _parse_app_name(text: str) -> str:
    if not _APP_NAME_RE.fullmatch(text):
        raise ValueError(text)
    return text


def _bounded(what: str, minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f"{what} {minimum}-{maximum}"
    if minimum is not None:
        return f"{what} >= {minimum}"
    if maximum is not None:
        return f"{what} <= {maximum}"
    return what


def _size_expected(maximum: Optional[int]) -> str:
    return f"{_bounded('a byte count', 1, maximum)} such as 65536, 64K or 4M"


def _parse_value(parse: Callable[[str], Any], expected: str, raw: str, source: str, section: str,
                 option: str) -> Any:
    try:
        return parse(raw)
    except ValueError:
        raise ConfigError(f"{source}: [{section}] {option} = {raw!r}: expected {expected}",
                          file=source, section=section, option=option) from None


def _override_port(flag: str, value: Union[int, str]) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        return _parse_port(str(value).strip())
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: expected {_PORT}", option=flag) from None


# --- files ------------------------------------------------------------------

def _listing(paths: Sequence[str]) -> str:
    return ", ".join(os.path.abspath(p) for p in paths) + " (in that order)"


def _existing_files(search_path: Sequence[str]) -> List[str]:
    files, seen = [], set()
    for candidate in search_path:
        candidate = os.path.abspath(candidate)
        real = os.path.realpath(candidate)
        if os.path.exists(candidate) and real not in seen:
            seen.add(real)
            files.append(candidate)
    return files


def _read_file(path: str) -> Dict[str, Dict[str, str]]:
    """One file's sections and options as written; any problem is a ConfigError naming the file."""
    parser = configparser.ConfigParser(
        interpolation=None, strict=True, inline_comment_prefixes=(";", "#"),
        default_section="\0")  # so that [DEFAULT] is an ordinary section, refused below
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        with open(path, encoding="utf-8-sig") as stream:
            parser.read_file(stream, source=path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}", file=path) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text", file=path) from None
    except configparser.Error as exc:
        raise _syntax_error(path, exc) from None
    if "DEFAULT" in parser:
        raise ConfigError(f"{path}: [DEFAULT]: expected no [DEFAULT] section; write each option in the "
                          "section it belongs to", file=path, section="DEFAULT")
    return {name: dict(parser[name]) for name in parser.sections()}


def _syntax_error(path: str, exc: configparser.Error) -> ConfigError:
    """ConfigParser's exceptions, retold as one line each."""
    if isinstance(exc, configparser.DuplicateOptionError):
        return ConfigError(f"{path}: line {exc.lineno}: [{exc.section}] {exc.option}: expected each option "
                           "once per section, it is set twice", file=path, section=exc.section,
                           option=exc.option)
    if isinstance(exc, configparser.DuplicateSectionError):
        return ConfigError(f"{path}: line {exc.lineno}: [{exc.section}]: expected each section once per "
                           "file, it appears twice", file=path, section=exc.section)
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return ConfigError(f"{path}: line {exc.lineno}: {exc.line.strip()!r}: expected a [section] header "
                           "before the first option", file=path)
    if isinstance(exc, configparser.ParsingError) and exc.errors:
        lineno, line = exc.errors[0]
        try:  # CPython stores the line already repr()'d
            line = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            pass
        return ConfigError(f"{path}: line {lineno}: {line.strip()!r}: expected 'option = value', "
                           "a [section] header or a comment", file=path)
    return ConfigError(f"{path}: {exc}", file=path)


class _Section:
    """One section after layering: each option with the file it came from.

    It remembers which options were asked for, so that whatever nobody asked
    for can be reported as unknown.
    """

    def __init__(self, name: str):
        self.name = name
        self.source = ""
        self.settings: Dict[str, Tuple[str, str]] = {}  # option -> (raw value, file)
        self._asked: List[str] = []

    def get(self, option: str, parse: Callable[[str], Any], expected: str, default: Any) -> Any:
        self._asked.append(option)
        if option not in self.settings:
            return default
        raw, source = self.settings[option]
        return _parse_value(parse, expected, raw, source, self.name, option)

    def source_of(self, option: str) -> Optional[str]:
        return self.settings[option][1] if option in self.settings else None

    def error(self, option: str, expected: str) -> ConfigError:
        raw, source = self.settings[option]
        return ConfigError(f"{source}: [{self.name}] {option} = {raw!r}: expected {expected}",
                           file=source, section=self.name, option=option)

    def reject_unknown(self) -> None:
        for option in self.settings:
            if option not in self._asked:
                raise self.error(option, f"one of {', '.join(self._asked)}{_suggestion(option, self._asked)}")


def _suggestion(option: str, known: Sequence[str]) -> str:
    same_but_case = [name for name in known if name.lower() == option.lower()]
    close = same_but_case or difflib.get_close_matches(option, known, n=1)
    return f" (did you mean {close[0]}? names are case-sensitive)" if close else ""


def _layer(files: Sequence[str]) -> Dict[str, _Section]:
    sections: Dict[str, _Section] = {}
    for path in files:
        for name, options in _read_file(path).items():
            section = sections.setdefault(name, _Section(name))
            section.source = path
            for option, value in options.items():
                section.settings[option] = (value, path)
    return sections


# --- sections ---------------------------------------------------------------

def _rtmp_config(section: _Section) -> RTMPConfig:
    default = RTMPConfig()
    limits = default.limits
    get = section.get
    rtmp = RTMPConfig(
        port=get("port", _parse_port, _PORT, default.port),
        interface=get("interface", str, "an address", default.interface),
        backlog=get("backlog", _parse_positive_int, _POSITIVE, default.backlog),
        handshake_timeout=get("handshakeTimeout", _parse_seconds, _SECONDS, default.handshake_timeout),
        ping_interval=get("pingInterval", _parse_seconds, _SECONDS, default.ping_interval),
        keepalive_timeout=get("keepAliveTimeout", _parse_seconds, _SECONDS, default.keepalive_timeout),
        call_timeout=get("callTimeout", _parse_seconds, _SECONDS, default.call_timeout),
        max_streams=get("maxStreams", _parse_positive_int, _POSITIVE, default.max_streams),
        max_stream_name_length=get("maxStreamNameLength", _parse_positive_int, _POSITIVE,
                                   default.max_stream_name_length),
        max_queued_commands=get("maxQueuedCommands", _parse_positive_int, _POSITIVE, default.max_queued_commands),
        max_fourcc_entries=get("maxFourCcEntries", _parse_positive_int, _POSITIVE, default.max_fourcc_entries),
        max_gop_bytes=get("maxGopBytes", _parse_buffer_size, _size_expected(None), default.max_gop_bytes),
        slow_player_timeout=get("slowPlayerTimeout", _parse_seconds, _SECONDS, default.slow_player_timeout),
        media_flush_interval=get("mediaFlushInterval", _parse_flush_interval,
                                 f"0 to {MAX_MEDIA_FLUSH_INTERVAL:g} seconds", default.media_flush_interval),
        merged_reads=get("mergedReads", _parse_bool, _BOOL, default.merged_reads),
        merged_read_turns=get("mergedReadTurns", _parse_merged_read_turns,
                              f"1 to {MAX_MERGED_READ_TURNS}", default.merged_read_turns),
        connect_timeout=get("connectTimeout", _parse_seconds, _SECONDS, default.connect_timeout),
        close_linger=get("closeLinger", _parse_seconds, _SECONDS, default.close_linger),
        max_outgoing_bytes=get("maxOutgoingBytes", _parse_buffer_size, _size_expected(None),
                               default.max_outgoing_bytes),
        max_connections=get("maxConnections", _parse_count, _COUNT, default.max_connections),
        max_connections_per_address=get("maxConnectionsPerAddress", _parse_count, _COUNT,
                                        default.max_connections_per_address),
        max_ignored_messages=get("maxIgnoredMessages", _parse_positive_int, _POSITIVE,
                                 default.max_ignored_messages),
        limits=Limits(
            max_message_size=get("maxMessageSize", _parse_message_size, _size_expected(_MAX_MESSAGE_SIZE),
                                 limits.max_message_size),
            max_chunk_size=get("maxChunkSize", _parse_chunk_size, _size_expected(_MAX_CHUNK_SIZE),
                               limits.max_chunk_size),
            max_chunk_streams=get("maxChunkStreams", _parse_positive_int, _POSITIVE,
                                  limits.max_chunk_streams),
            max_buffered_bytes=get("maxBufferedBytes", _parse_buffer_size, _size_expected(None),
                                   limits.max_buffered_bytes),
            value_budget=ValueBudget(
                max_nodes=get("maxValueNodes", _parse_positive_int, _POSITIVE, limits.value_budget.max_nodes),
                max_bytes=get("maxValueBytes", _parse_buffer_size, _size_expected(None),
                              limits.value_budget.max_bytes),
            ),
        ),
    )
    section.reject_unknown()

    # The ping must have a chance to be answered before the connection is given up.
    if rtmp.keepalive_timeout <= rtmp.ping_interval:
        if section.source_of("keepAliveTimeout") is not None:
            raise section.error("keepAliveTimeout", f"more than pingInterval ({rtmp.ping_interval:g})")
        raise section.error("pingInterval", f"less than keepAliveTimeout ({rtmp.keepalive_timeout:g}, "
                                            "the default)")
    # Reads merge into the media writes: without an interval there are none to merge into.
    if rtmp.merged_reads and not rtmp.media_flush_interval:
        raise section.error("mergedReads", "no unless mediaFlushInterval is more than 0 (reads are merged into "
                                           "its writes)")
    # A message can only be assembled if it fits in the buffer.
    if rtmp.limits.max_buffered_bytes < rtmp.limits.max_message_size:
        if section.source_of("maxBufferedBytes") is not None:
            raise section.error("maxBufferedBytes",
                                f"at least maxMessageSize ({rtmp.limits.max_message_size})")
        raise section.error("maxMessageSize", f"at most maxBufferedBytes ({rtmp.limits.max_buffered_bytes}, "
                                              "the default)")
    return rtmp


def _http_config(section: _Section) -> HTTPConfig:
    default = HTTPConfig()
    http = HTTPConfig(
        enabled=section.get("enabled", _parse_bool, _BOOL, default.enabled),
        port=section.get("port", _parse_port, _PORT, default.port),
        interface=section.get("interface", str, "an address", default.interface),
        examples_enabled=section.get("examples-enabled", _parse_bool, _BOOL, default.examples_enabled),
        push_token=section.get("push-token", lambda t: t or None, "a token", default.push_token),
        push_max_body=section.get("push-max-body", _parse_buffer_size, _size_expected(None),
                                  default.push_max_body),
        push_max_call_timeout=section.get("push-max-call-timeout", _parse_seconds, _SECONDS,
                                          default.push_max_call_timeout),
        admin_token=section.get("admin-token", lambda t: t or None, "a token", default.admin_token),
        close_linger=section.get("close-linger", _parse_seconds, _SECONDS, default.close_linger),
    )
    section.reject_unknown()
    return http


def _rtmps_config(section: _Section) -> RTMPSConfig:
    default = RTMPSConfig()
    get = section.get
    rtmps = RTMPSConfig(
        enabled=get("enabled", _parse_bool, _BOOL, default.enabled),
        port=get("port", _parse_port, _PORT, default.port),
        interface=get("interface", str, "an address", default.interface),
        certificate=get("certificate", str, "a file name", default.certificate).strip(),
        key=get("key", str, "a file name", default.key).strip(),
        chain=get("chain", str, "a file name", default.chain).strip(),
        tls13=get("tls13", _parse_bool, _BOOL, default.tls13),
    )
    section.reject_unknown()
    if rtmps.enabled:
        for option in ("certificate", "key"):
            if not getattr(rtmps, option):
                source = section.source_of(option) or section.source
                raise ConfigError(f"{source}: [RTMPS] {option} is missing: expected the PEM file of the server's "
                                  f"{'certificate' if option == 'certificate' else 'private key'} "
                                  "(RTMPS is enabled)", file=source, section="RTMPS", option=option)
    return rtmps


def _rtmpt_config(section: _Section) -> RTMPTConfig:
    default = RTMPTConfig()
    get = section.get
    rtmpt = RTMPTConfig(
        enabled=get("enabled", _parse_bool, _BOOL, default.enabled),
        max_sessions=get("maxSessions", _parse_positive_int, _POSITIVE, default.max_sessions),
        max_sessions_per_address=get("maxSessionsPerAddress", _parse_positive_int, _POSITIVE,
                                     default.max_sessions_per_address),
        max_pending_bytes=get("maxPendingBytes", _parse_buffer_size, _size_expected(None),
                              default.max_pending_bytes),
        max_response_bytes=get("maxResponseBytes", _parse_buffer_size, _size_expected(None),
                               default.max_response_bytes),
        max_request_bytes=get("maxRequestBytes", _parse_buffer_size, _size_expected(None),
                              default.max_request_bytes),
    )
    section.reject_unknown()
    return rtmpt


_REDIS_URL_RE = re.compile(r"redis://(?::[^@/]*@)?[^:/@\s]+(?::[0-9]{1,5})?(?:/[0-9]+)?/?|unix:///\S+")
_REDIS_EXPECTED = "redis://[:password@]host:port/db or unix:///path/redis.sock (empty: one process)"
_NODE_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _parse_redis_url(text: str) -> str:
    if text and not _REDIS_URL_RE.fullmatch(text):
        raise ValueError(text)
    return text


def _parse_node_name(text: str) -> str:
    if text and not _NODE_RE.fullmatch(text):
        raise ValueError(text)
    return text


def _parse_rtmp_url(text: str) -> str:
    if text and not re.fullmatch(r"rtmp://[^/\s:]+(?::[0-9]{1,5})?/?", text):
        raise ValueError(text)
    return text.rstrip("/")


def _parse_optional_seconds(text: str) -> Optional[float]:
    return _parse_seconds(text) if text else None


def _cluster_config(section: _Section) -> ClusterConfig:
    default = ClusterConfig()
    get = section.get
    cluster = ClusterConfig(
        redis=get("redis", _parse_redis_url, _REDIS_EXPECTED, default.redis),
        node=get("node", _parse_node_name, "a name of letters, digits, '.', '_' or '-' (at most 64)",
                 default.node),
        advertise=get("advertise", _parse_rtmp_url, "rtmp://host:port (empty: from [RTMP])", default.advertise),
        secret=get("secret", str, "a shared secret", default.secret),
        workers=get("workers", _parse_positive_int, _POSITIVE, default.workers),
        heartbeat=get("heartbeat", _parse_seconds, _SECONDS, default.heartbeat),
        drain_grace=get("drainGrace", _parse_seconds, _SECONDS, default.drain_grace),
        worker_stop_timeout=get("workerStopTimeout", _parse_seconds, _SECONDS, default.worker_stop_timeout),
        reply_timeout=get("replyTimeout", _parse_optional_seconds, f"{_SECONDS} (empty: one heartbeat)",
                          default.reply_timeout),
        command_timeout=get("commandTimeout", _parse_seconds, _SECONDS, default.command_timeout),
        connect_timeout=get("connectTimeout", _parse_seconds, _SECONDS, default.connect_timeout),
        max_envelope_bytes=get("maxEnvelopeBytes", _parse_message_size, _size_expected(_MAX_MESSAGE_SIZE),
                               default.max_envelope_bytes),
        stop_timeout=get("stopTimeout", _parse_seconds, _SECONDS, default.stop_timeout),
    )
    section.reject_unknown()
    if cluster.redis and not cluster.secret:
        raise ConfigError(f"{section.source}: [Cluster] secret is missing: expected a shared secret "
                          "(required when redis is set)", file=section.source, section="Cluster", option="secret")
    if cluster.workers > 1 and not cluster.redis:
        raise ConfigError(f"{section.source}: [Cluster] workers = {cluster.workers}: more than 1 worker needs "
                          "redis (the workers share rooms and streams through it)", file=section.source,
                          section="Cluster", option="workers")
    return cluster


#: The server's own sections, by their upper-cased name: a near miss is a mistake, not an application.
_SERVER_SECTIONS = {name.upper(): name for name in ("RTMP", "HTTP", "RTMPS", "RTMPT", "Cluster")}


def _application_config(section: _Section) -> ApplicationConfig:
    canonical = _SERVER_SECTIONS.get(section.name.strip().upper())
    if canonical is not None:
        raise ConfigError(f"{section.source}: [{section.name}]: expected [{canonical}] "
                          "exactly (section names are case-sensitive)", file=section.source,
                          section=section.name)
    class_name, colon, label = section.name.partition(":")
    if not _CLASS_NAME_RE.fullmatch(class_name) or (colon and not _LABEL_RE.fullmatch(label)):
        raise ConfigError(f"{section.source}: [{section.name}]: expected an application section named "
                          "[ClassName] or [ClassName:label] (label without spaces or ':')",
                          file=section.source, section=section.name)

    enabled = section.get("enabled", _parse_bool, _BOOL, False)
    name = section.get("name", _parse_app_name, "an application name without '/', '?', '#' or spaces "
                       "(rtmp://host/name)", None)
    for option in section.settings:
        if option not in ("enabled", "name") and option.lower() in ("enabled", "name"):
            raise section.error(option, f"{option.lower()} (names are case-sensitive)")
    if enabled and name is None:
        source = section.source_of("enabled")
        raise ConfigError(f"{source}: [{section.name}] name is missing: expected the RTMP application name "
                          "(rtmp://host/name) of an enabled application", file=source, section=section.name,
                          option="name")

    options = {option: raw for option, (raw, _) in section.settings.items()
               if option not in ("enabled", "name")}
    sources = {option: source for option, (_, source) in section.settings.items()}
    return ApplicationConfig(
        class_name=class_name, label=label if colon else None, enabled=enabled, name=name,
        options=types.MappingProxyType(options), source=section.source,
        option_sources=types.MappingProxyType(sources))


def _check_unique_names(applications: Sequence[ApplicationConfig]) -> None:
    """Two enabled applications cannot share rtmp://host/name: connects would reach only one."""
    by_name: Dict[str, ApplicationConfig] = {}
    for app in applications:
        if not app.enabled:
            continue
        if app.name in by_name:
            first = by_name[app.name]
            source = app.option_sources.get("name", app.source)
            raise ConfigError(f"{source}: [{app.section}] name = {app.name!r}: expected a name no other "
                              f"enabled application uses; [{first.section}] in "
                              f"{first.option_sources.get('name', first.source)} has it",
                              file=source, section=app.section, option="name")
        by_name[app.name] = app
