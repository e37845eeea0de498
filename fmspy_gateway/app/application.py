"""The base of every RTMP application: what ``rtmp://host/<name>`` connects to.

An application is a class configured by its fmspy.cfg section.  Methods a
client may call are marked ``@remote``; nothing else is reachable by name, so
a client can never call hooks, private helpers or attributes.  Hooks may
return a Deferred; one that raises or fails is logged, and the client gets
the proper error, never the server going down.

Options are data: every section has the streaming options of
``StreamingSettings``; a class adds its own by naming a frozen dataclass of
``config.option`` fields as ``Settings``, and ``config.parse_application``
reads the section against both once, at start (see docs/ARCHITECTURE.md,
"Configuration").  A class that declares no ``Settings`` gets its other
options as raw strings in ``self.options``, unchecked, as before.

Lifecycle: ``from_config`` builds the application when the server is made;
``start()`` runs when the server starts and ``stop()`` when it stops, after
every client connection has closed (tap.py's ``ApplicationService``).
"""
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Tuple

from twisted.internet.defer import Deferred, succeed

from ..config import ApplicationConfig, ConfigError, _parse_buffer_size, option, parse_application
from ..rtmp.budget import brief_name
from .fileio import default_executor
from .hub import DEFAULT_ROOM, LocalHub, Room
from .live import LiveStreams
from .recording import DEFAULT_MAX_METADATA_SIZE, RECORD_CHOICES, RecordPolicy, check_record_suffix, safe_stream_path
from .shared_object_store import SharedObjectStore
from .shared_objects import Access, SharedObjectHandle, SharedObjectSettings


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
    #: Live streams across nodes (app/relay.py ``Relay``); None: one node, no stream is looked for elsewhere.
    relay: Any = None


def check_record_dir(path: str, option: str, name: str = "recordDir", purpose: str = "recording") -> None:
    """Create ``path`` if missing and prove a file can be written there; else a one-line ConfigError.

    Checked at start, not at the first ``publish(name, "record")``: a
    recording that cannot be written would otherwise be found out by a
    publisher hours later, and a startup traceback says nothing about the
    option.  Writing a file is the only test that holds for root, read-only
    mounts and network file systems alike (``os.access`` does not).
    """
    fix = f"create a writable directory there, or leave {name} empty to disable {purpose}"
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{option}: {path} is not a directory; {fix}", option=name)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{option}: cannot create {path} ({e.strerror or e}); {fix}", option=name)
    try:
        tempfile.TemporaryFile(dir=path).close()
    except OSError as e:
        raise ConfigError(f"{option}: cannot write in {path} ({e.strerror or e}); {fix}", option=name)


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


@dataclass(frozen=True)
class StreamingSettings:
    """The options of every application section: where recordings go and what is recorded.

    Every application streams, as on FMS, so these are declared once, here,
    and read from every section whatever its class declares besides.
    """

    #: ``recordDir``: absolute (relative to the fmspy.cfg that set it); None: no recording.
    record_dir: Optional[str] = option("recordDir", str, "a directory name", None, path=True)
    #: ``record``: off, or all, audio, video: every live publish is recorded too (needs recordDir).
    record: str = option("record", _parse_record, "one of off, all, audio, video", "off")
    #: ``recordSuffix``: strftime pattern after the stream name.
    record_suffix: str = option("recordSuffix", check_record_suffix, "a strftime pattern giving only letters, "
                                "digits, '_', '.' and '-', such as -%Y%m%d-%H%M%S", "")
    #: ``recordMaxSize``: bytes; 0: no limit.
    record_max_size: int = option("recordMaxSize", _parse_limit_size,
                                  "0 (no limit) or a byte count such as 64K or 100M", 0)
    #: ``recordMaxDuration``: seconds; 0: no limit.
    record_max_duration: float = option("recordMaxDuration", _parse_limit_seconds,
                                        "0 (no limit) or seconds, such as 3600", 0.0)
    #: ``recordMaxMetadataSize``: bytes; a recording's onMetaData larger than this is not decoded for playback
    #: (a tool's injected keyframe table can be megabytes, decoded on every open of the file).
    record_max_metadata_size: int = option("recordMaxMetadataSize", _parse_buffer_size,
                                           "a byte count such as 64K or 1M", DEFAULT_MAX_METADATA_SIZE)

    def validate(self, section: ApplicationConfig) -> None:
        if self.record != "off" and not self.record_dir:
            source = section.option_sources.get("record", section.source)
            raise ConfigError(f"{source}: [{section.section}] record = {self.record} needs recordDir: set "
                              "recordDir to the directory recordings go to, or record = off", file=source,
                              section=section.section, option="record")

    @property
    def policy(self) -> RecordPolicy:
        return RecordPolicy(kind=self.record, suffix=self.record_suffix, max_size=self.record_max_size,
                            max_duration=self.record_max_duration)


@dataclass(frozen=True)
class NoSettings:
    """The ``Settings`` of a class with no options beyond ``StreamingSettings`` (echotest, live).

    Declared all the same, so that its sections are strict: a misspelt option
    (``recordDri``) is an error at start, with a suggestion, instead of being
    ignored (and recording silently off).
    """


class Application:
    """Base class of applications; subclasses add ``@remote`` methods and override hooks.

    Every hook receives the ``Client`` (see ``app.client``) and may return a
    Deferred.  The default hooks accept everything and do nothing.
    """

    #: The frozen dataclass declaring this class's own options (fields made with ``config.option``),
    #: parsed once at start into ``self.settings``; with one, an option neither it nor
    #: ``StreamingSettings`` names is refused at start.  None: the class declares nothing, and its
    #: options reach it as raw strings in ``self.options`` (``section.get_int`` etc. type them).
    Settings: Optional[type] = None

    #: Persistent HTTP connections per host this application may keep busy at once through
    #: ``Services.http_client``; the server's shared pool keeps at least the largest figure.
    http_connections: int = 0
    #: The longest HTTP response head (status line and headers) it accepts from a backend; the shared
    #: pool's bound is the largest figure (0: no HTTP, no say).
    http_head_bytes: int = 0

    @classmethod
    def declarations(cls) -> Tuple[type, ...]:
        """What this class's sections are parsed against: its ``Settings``, ``StreamingSettings``, ``SharedObjectSettings``."""
        return ((cls.Settings,) if cls.Settings is not None else ()) + (StreamingSettings, SharedObjectSettings)

    @classmethod
    def parse_config(cls, section: ApplicationConfig) -> ApplicationConfig:
        """``section`` parsed against ``declarations()`` (config.parse_application): a ConfigError at start."""
        return parse_application(section, cls.declarations(), strict=cls.Settings is not None)

    @classmethod
    def parsed_config(cls, section: ApplicationConfig) -> ApplicationConfig:
        """``section`` as the registry hands it (already parsed), or parsed now (a test's own section)."""
        return section if section.parsed else cls.parse_config(section)

    @classmethod
    def from_config(cls, section: ApplicationConfig, services: Services) -> "Application":
        """Build the application of an fmspy.cfg section, from its parsed settings; nothing is read later."""
        section = cls.parsed_config(section)
        application = cls(section.name, section.options, services.hub)
        if cls.Settings is not None:
            application.settings = section.settings_of(cls.Settings)
        application.configure_streaming(section, services)
        return application

    def __init__(self, name: str, options: Optional[Mapping[str, str]] = None, hub=None):
        #: The RTMP application name clients connect to.
        self.name = name
        #: The fmspy.cfg section's options as written, strings (what a class without ``Settings`` reads).
        self.options = dict(options or {})
        #: The frozen ``Settings`` object of a class that declares one (set by ``from_config``).
        self.settings: Any = None
        #: Everything that crosses connections: rooms, clients, where streams are published (app/hub.py).
        #: Shared by all applications of a server; every method answers with a Deferred.
        self.hub = hub if hub is not None else LocalHub()
        #: The default room's value, made once: every client not in a named room holds it.
        self._default_room: Optional[Room] = None
        #: The application's live streams: every application streams, as on FMS.
        self.live = LiveStreams()
        #: The leave chains of clients gone and not yet through them (the hub's leave, then on_room_leave,
        #: on_room_destroy, on_disconnect; app/session.py ``_leave``): what a graceful stop waits for before
        #: ``stop()``, since a hub that answers later (Redis) leaves them running after the connection closed.
        self.leaving: set = set()
        #: Pulls streams published on other nodes, and knows the cluster's secret (app/relay.py); None: one node.
        self.relay = None
        #: Where ``publish(name, "record")`` writes and recorded streams play from; None: no recording.
        self.record_dir: Optional[str] = None
        #: ``record``, ``recordSuffix``, ``recordMaxSize``, ``recordMaxDuration`` (needs ``record_dir``).
        self.record_policy = RecordPolicy()
        #: ``recordMaxMetadataSize``: the largest onMetaData of a recording decoded when it is played.
        self.record_max_metadata_size = StreamingSettings.record_max_metadata_size
        #: The application's own handles on its shared objects (``shared_object``), by name.
        self._shared_objects: dict = {}

    def configure_streaming(self, section: Optional[ApplicationConfig], services: Services) -> None:
        """Streaming limits from [RTMP], and the section's ``StreamingSettings`` (None: a bare application).

        The directory of ``recordDir`` is created and written to now, at start
        (``check_record_dir``); ``record_dir`` and ``record_policy`` are what
        the streaming code reads.
        """
        rtmp = services.rtmp
        if rtmp is not None:
            self.live = LiveStreams(services.clock, rtmp.max_gop_bytes, rtmp.slow_player_timeout)
        self.relay = services.relay
        if not isinstance(section, ApplicationConfig):
            return          # built by hand (tests, tools): no section, the defaults
        streaming = type(self).parsed_config(section).settings_of(StreamingSettings)
        if streaming.record_dir:
            source = section.option_sources.get("recordDir", section.source)
            check_record_dir(streaming.record_dir,
                             f"{source}: [{section.section}] recordDir = {section.options['recordDir']}")
        self.record_dir = streaming.record_dir
        self.record_policy = streaming.policy
        self.record_max_metadata_size = streaming.record_max_metadata_size
        self.configure_shared_objects(section, services)

    def configure_shared_objects(self, section: ApplicationConfig, services: Services) -> None:
        """Hand the hub's shared objects this section's limits and persistent store (``sharedObjectDir``).

        The directory is created and written to now, as ``recordDir`` is; the
        store writes through the reactor's thread pool (``app/fileio.py``).
        """
        settings = type(self).parsed_config(section).settings_of(SharedObjectSettings)
        store = None
        if settings.directory:
            source = section.option_sources.get("sharedObjectDir", section.source)
            check_record_dir(settings.directory,
                             f"{source}: [{section.section}] sharedObjectDir = {section.options['sharedObjectDir']}",
                             "sharedObjectDir", "persistent shared objects")
            store = SharedObjectStore(settings.directory, default_executor(services.clock))
        self.hub.shared_objects.configure(self.name, settings.limits, store)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Deferred:
        """The server starts (tap.py, in the order of fmspy.cfg); fire when ready.  Default: nothing to do.

        Everything that can be checked is checked earlier, in ``from_config``,
        where an error is one line before twistd daemonizes; ``start`` opens
        what needs the running reactor.  A failure is logged and the
        application is not stopped later.
        """
        return succeed(None)

    def stop(self) -> Deferred:
        """The server stops: every client connection has closed and its hooks have run.

        Called in the reverse order of ``start``; the server's shared HTTP
        pool closes after the last one fires.  Default: wait until the
        persistent shared objects' last states are on disk (an override
        should do the same, or call this).
        """
        return self.hub.shared_objects.flushed(self.name)

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

    def stream_published_elsewhere(self, publication) -> None:
        """Another node of the cluster began publishing ``publication.name`` (``hub.on_stream_announced``).

        Players waiting here for that name (they played it before anyone
        published it) start getting it through a pull, as a play made now
        would; their ``on_play`` ran when they played.  Not a hook to
        override: it is how a waiting play across nodes ends like a local one.
        """
        live = self.live.get(publication.name)
        if self.relay is None or live is None or live.publisher is not None or not live.players:
            return
        self.relay.pull(self, live, publication)

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

    def on_shared_object_use(self, client, name: str, persistent: bool):
        """A client asks to listen to shared object ``name``: an ``Access`` (default ALLOW), or a Deferred of one.

        DENY_READ: Status SharedObject.NoReadAccess; DENY_WRITE: it listens, but
        its changes and messages get SharedObject.NoWriteAccess.
        """
        return Access.ALLOW

    def on_shared_object_change(self, client, name: str, changes: dict):
        """A client asks to change slots (``changes``: key -> new value, None to delete).

        True allows all, False refuses all, an iterable of keys refuses those:
        each refused change gets SharedObject.NoWriteAccess, for that client only.
        """
        return True

    def on_shared_object_changed(self, client, name: str, changes: dict):
        """Slots of ``name`` changed (key -> new value, None deleted); ``client`` None: the application or a backend."""

    # -- shared objects ----------------------------------------------------------------------

    def shared_object(self, name: str, persistent: bool = False) -> SharedObjectHandle:
        """The application's handle on its shared object ``name`` (app/shared_objects.py ``SharedObjectHandle``).

        One handle per name, kept until its ``release()``: while held, it keeps
        the object in memory and its mirror up to date.  A handle asked with
        the other persistence fails its changes with SharedObject.BadPersistence.
        """
        handle = self._shared_objects.get(name)
        if handle is not None and handle.persistent == persistent:
            return handle
        created = SharedObjectHandle(self, name, persistent)
        if handle is None and created.usable:
            self._shared_objects[name] = created
        return created

    def forget_shared_object(self, handle: SharedObjectHandle) -> None:
        """``handle`` was released or refused: the next ``shared_object`` call makes a new one."""
        if self._shared_objects.get(handle.name) is handle:
            del self._shared_objects[handle.name]

    # -- rooms and clients ---------------------------------------------------------------

    # Through the hub only, each answer a Deferred: the rooms and clients may be on other nodes.

    @property
    def default_room(self) -> Room:
        return self.room(DEFAULT_ROOM)

    def room(self, name: str = DEFAULT_ROOM) -> Room:
        """The room value ``name`` of this application (a value: naming a room looks nothing up)."""
        if name != DEFAULT_ROOM:
            return self.hub.room(self.name, name)
        room = self._default_room
        if room is None or room.hub is not self.hub:     # the service may hand us another hub before start
            room = self._default_room = self.hub.room(self.name, name)
        return room

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
