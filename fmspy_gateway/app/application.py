"""The base of every RTMP application: what ``rtmp://host/<name>`` connects to.

An application is a class configured by its fmspy.cfg section.  Methods a
client may call are marked ``@remote``; nothing else is reachable by name, so
a client can never call hooks, private helpers or attributes.  Hooks may
return a Deferred; one that raises or fails is logged, and the client gets
the proper error, never the server going down.
"""
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from twisted.internet.defer import Deferred

from ..config import ConfigError, _parse_buffer_size
from ..rtmp.budget import brief_name
from .hub import DEFAULT_ROOM, LocalHub, Room
from .live import LiveStreams
from .recording import RECORD_CHOICES, RecordPolicy, check_record_suffix, safe_stream_path


def remote(method: Callable) -> Callable:
    """Mark a method as callable by clients (``nc.call("name", ...)``)."""
    method.remote = True
    return method


class CallError(Exception):
    """An error an application means the client to see.

    It reaches the client as ``_error`` with ``code`` (default
    NetConnection.Call.Failed), ``description`` and, if given, ``application``.
    Any other exception in a method is logged and reported without details.
    """

    def __init__(self, description: str, code: str = "NetConnection.Call.Failed", application: Any = None):
        super().__init__(description)
        self.description = description
        self.code = code
        self.application = application


@dataclass(frozen=True)
class Accept:
    """What ``on_connect`` may return to accept with more than a plain yes."""

    #: Sent to the client under ``application`` in the connect result.
    application: Any = None
    #: Puts the client in this room instead of the one its URL names.
    room: Optional[str] = None


class ConnectRejected(Exception):
    """Raise from ``on_connect`` to refuse: the client sees NetConnection.Connect.Rejected.

    ``reason`` becomes the description; ``application`` is sent along as is.
    """

    def __init__(self, reason: str = "Connection rejected.", application: Any = None):
        super().__init__(reason)
        self.reason = reason
        self.application = application


class StreamRejected(Exception):
    """Raise from ``on_publish`` / ``on_play`` to refuse; ``reason`` reaches the client's onStatus."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ConnectRedirected(Exception):
    """Raise from ``on_connect`` to send the client elsewhere, as FMS does (code 302)."""

    def __init__(self, url: str, reason: str = "Connection redirected."):
        super().__init__(reason)
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class Services:
    """What the server hands every application it builds."""

    #: Everything that crosses connections (app/hub.py); one for all applications of a server.
    hub: Any
    #: The reactor's clock (``callLater``, ``seconds``), for applications that keep time.
    clock: Any = None
    #: The shared HTTP client (a treq ``HTTPClient``) for applications that call backends.
    http_client: Any = None
    #: The [RTMP] configuration (streaming limits among it).
    rtmp: Any = None


def check_record_dir(path: str, option: str) -> None:
    """Create ``path`` if missing and prove a file can be written there; else a one-line ConfigError.

    Checked at start, not at the first ``publish(name, "record")``: a
    recording that cannot be written would otherwise be found out by a
    publisher hours later, and a startup traceback says nothing about the
    option.  Writing a file is the only test that holds for root, read-only
    mounts and network file systems alike (``os.access`` does not).
    """
    fix = "create a writable directory there, or leave recordDir empty to disable recording"
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{option}: {path} is not a directory; {fix}", option="recordDir")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{option}: cannot create {path} ({e.strerror or e}); {fix}", option="recordDir")
    try:
        tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        raise ConfigError(f"{option}: cannot write in {path} ({e.strerror or e}); {fix}", option="recordDir")


def _parse_record(text: str) -> str:
    if text.lower() not in RECORD_CHOICES:
        raise ValueError(text)
    return text.lower()


def _parse_limit_size(text: str) -> int:
    return 0 if text == "0" else _parse_buffer_size(text)


def _parse_limit_seconds(text: str) -> float:
    seconds = float(text)
    if not 0 <= seconds < float("inf"):
        raise ValueError(text)
    return seconds


def record_policy(section, record_dir: Optional[str]) -> RecordPolicy:
    """The section's ``record*`` options, each checked at start with a one-line ``ConfigError``."""
    get = section._get   # the getters' machinery (file, section and option in the message)
    policy = RecordPolicy(
        kind=get("record", "off", _parse_record, "one of off, all, audio, video"),
        suffix=get("recordSuffix", "", check_record_suffix,
                   "a strftime pattern giving only letters, digits, '_', '.' and '-', such as -%Y%m%d-%H%M%S"),
        max_size=get("recordMaxSize", 0, _parse_limit_size, "0 (no limit) or a byte count such as 64K or 100M"),
        max_duration=get("recordMaxDuration", 0.0, _parse_limit_seconds, "0 (no limit) or seconds, such as 3600"))
    if policy.kind != "off" and not record_dir:
        source = section.option_sources.get("record", section.source)
        raise ConfigError(f"{source}: [{section.section}] record = {policy.kind} needs recordDir: set recordDir "
                          "to the directory recordings go to, or record = off", file=source,
                          section=section.section, option="record")
    return policy


class Application:
    """Base class of applications; subclasses add ``@remote`` methods and override hooks.

    Every hook receives the ``Client`` (see ``app.client``) and may return a
    Deferred.  The default hooks accept everything and do nothing.
    """

    @classmethod
    def from_config(cls, section, services: Services) -> "Application":
        """Build the application of an fmspy.cfg section; override to read and check options at start."""
        application = cls(section.name, section.options, services.hub)
        application.configure_streaming(section, services)
        return application

    def __init__(self, name: str, options: Optional[Mapping[str, str]] = None, hub=None):
        #: The RTMP application name clients connect to.
        self.name = name
        #: Application-specific options from the fmspy.cfg section, as strings.
        self.options = dict(options or {})
        #: Everything that crosses connections: rooms, clients, where streams are published (app/hub.py).
        #: Shared by all applications of a server; every method answers with a Deferred.
        self.hub = hub if hub is not None else LocalHub()
        #: The application's live streams: every application streams, as on FMS.
        self.live = LiveStreams()
        #: Where ``publish(name, "record")`` writes and recorded streams play from; None: no recording.
        self.record_dir: Optional[str] = None
        #: ``record``, ``recordSuffix``, ``recordMaxSize``, ``recordMaxDuration`` (needs ``record_dir``).
        self.record_policy = RecordPolicy()

    def configure_streaming(self, section, services: Services) -> None:
        """Streaming limits from [RTMP] and the section's ``recordDir`` (relative to its fmspy.cfg)."""
        rtmp = services.rtmp
        if rtmp is not None:
            self.live = LiveStreams(services.clock, rtmp.max_gop_bytes, rtmp.slow_player_timeout)
        record_dir = section.get_str("recordDir", "") if hasattr(section, "get_str") else ""
        if record_dir:
            source = section.option_sources.get("recordDir", section.source) if hasattr(
                section, "option_sources") else section.source
            self.record_dir = os.path.join(os.path.dirname(os.path.abspath(source)), record_dir)
            check_record_dir(self.record_dir, f"{source}: [{section.section}] recordDir = {record_dir}")
        if hasattr(section, "_get"):
            self.record_policy = record_policy(section, self.record_dir)

    def record_path(self, name: str) -> Optional[str]:
        """The file a stream name records to and plays from, or None when that cannot be."""
        return safe_stream_path(self.record_dir, name) if self.record_dir else None

    # -- hooks -------------------------------------------------------------------------

    def on_connect(self, client, *args):
        """A client asks to connect, with the extra arguments of ``NetConnection.connect``.

        Return None/True (or an ``Accept``) to accept, False or raise
        ``ConnectRejected`` to refuse, raise ``ConnectRedirected`` to redirect.
        """
        return True

    def on_disconnect(self, client):
        """A connected client is gone (it has already left its room)."""

    def on_room_create(self, room: Room):
        """A named room gets its first client (default rooms always exist)."""

    def on_room_enter(self, room: Room, client):
        """A client entered a room, right after connecting."""

    def on_room_leave(self, room: Room, client):
        """A client left its room, on disconnect."""

    def on_room_destroy(self, room: Room):
        """A named room lost its last client."""

    def on_publish(self, client, name: str, mode: str, query: str = ""):
        """A client wants to publish ``name`` ("live", "record" or "append"); ``query`` is what followed '?'.

        Return None/True to allow; False or ``raise StreamRejected(reason)`` to refuse.
        """
        return True

    def on_unpublish(self, client, name: str):
        """A client stopped publishing ``name``."""

    def on_play(self, client, name: str, query: str = ""):
        """A client wants to play ``name``; same answers as ``on_publish``."""
        return True

    # -- rooms and clients ---------------------------------------------------------------

    # Through the hub only, each answer a Deferred: the rooms and clients may be on other nodes.

    @property
    def default_room(self) -> Room:
        return self.room(DEFAULT_ROOM)

    def room(self, name: str = DEFAULT_ROOM) -> Room:
        """The room value ``name`` of this application (a value: naming a room looks nothing up)."""
        return self.hub.room(self.name, name)

    def rooms(self) -> Deferred:
        """Fires with a ``RoomInfo`` (application, name, clients) per room of this application."""
        return self.hub.rooms(self.name)

    def clients(self, room: Optional[str] = None) -> Deferred:
        """Fires with the ``ClientInfo`` of this application's clients (of one room when given)."""
        return self.hub.clients(self.name, room)

    def client(self, client_id: str) -> Deferred:
        """Fires with the ``ClientInfo`` of this application's client with that id, or None."""
        return self.hub.locate(client_id).addCallback(
            lambda info: info if info is not None and info.application == self.name else None)

    # -- calls -------------------------------------------------------------------------------

    def handle_call(self, client, name: Optional[str], args: tuple, wants_reply: bool):
        """Answer a client's call; the result (or a Deferred of it) becomes ``_result``.

        ``wants_reply`` is False for transaction id 0.  The default finds a
        remote method by name; a gateway overrides this to route calls elsewhere.
        """
        method = self.find_method(name)
        if method is None:
            raise CallError(f"Method '{brief_name(name)}' not found.")
        try:
            return method(client, *args)
        except TypeError as exc:
            # Raised by the call itself (no frame of the method in the traceback): the client sent
            # arguments the method does not take.  The client's mistake, told to it; not a server error.
            if exc.__traceback__.tb_next is not None:
                raise
            raise CallError(f"Method '{brief_name(name)}' was called with {len(args)} argument"
                            f"{'' if len(args) == 1 else 's'}, which it does not take.") from None

    def find_method(self, name: Optional[str]) -> Optional[Callable]:
        """The method a call named ``name`` reaches, or None.

        Dotted names (``service.method``) walk attributes.  The method must be
        marked ``@remote``, or be named ``invoke_<name>`` as FMSPy's were.
        """
        if not name:
            return None
        *path, last = name.split(".")
        target: Any = self
        for part in path:
            if not part or part.startswith("_"):
                return None
            target = getattr(target, part, None)
            if target is None:
                return None
        if not last or last.startswith("_"):
            return None
        legacy = getattr(target, "invoke_" + last, None)
        if callable(legacy):
            return legacy
        method = getattr(target, last, None)
        return method if callable(method) and getattr(method, "remote", False) else None
