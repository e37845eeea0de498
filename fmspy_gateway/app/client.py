"""A connected client as applications see it: who it is, where it is, and how to reach it."""
import time
from dataclasses import dataclass
from itertools import islice
from typing import Any, Mapping, Optional, Tuple

from twisted.internet.defer import Deferred

from ..config import RTMPConfig
from ..rtmp.budget import brief_name
from .notification import Notification


#: Enhanced RTMP ``capsEx`` bits we read or state (veovera enhanced-rtmp v2, "Enhancing NetConnection connect
#: Command"; Multitrack is 2 and TimestampNanoOffset 8).
CAPS_EX_RECONNECT, CAPS_EX_MOD_EX = 1, 4


def _fourcc(value) -> bool:
    """A FourCC ("hvc1", ".mp3") or the wildcard "*": anything else in a list or map is ignored."""
    return isinstance(value, str) and (len(value) == 4 or value == "*")


def _flags(value) -> Optional[int]:
    """A capability mask as an int, or None for what is not one (a string, NaN, a negative or huge number)."""
    if type(value) not in (int, float) or not 0 <= value < 2 ** 32 or value != int(value):
        return None
    return int(value)


@dataclass(frozen=True)
class EnhancedCapabilities:
    """What a client declared in connect under Enhanced RTMP (``fourCcList``, the FourCC maps, ``capsEx``).

    Read once, at connect, from values the client chose: whatever is not of
    the specified shape is ignored entry by entry, never an error, so a
    legacy or sloppy client connects as before.  ``declared`` says whether
    the client spoke Enhanced RTMP at all: only then does the connect
    ``_result`` state ours (``replies.connect_properties``).
    """

    #: ``fourCcList`` (legacy E-RTMP v1): the codecs the client handles, ``("*",)`` for any.
    fourcc_list: Tuple[str, ...] = ()
    #: ``videoFourCcInfoMap`` / ``audioFourCcInfoMap``: FourCC -> CanDecode 1 | CanEncode 2 | CanForward 4.
    video: Tuple[Tuple[str, int], ...] = ()
    audio: Tuple[Tuple[str, int], ...] = ()
    #: ``capsEx``: Reconnect 1 | Multitrack 2 | ModEx 4 | TimestampNanoOffset 8.
    caps_ex: int = 0
    declared: bool = False
    #: Entries past ``maxFourCcEntries`` in the list and the two maps, not looked at (the session logs them).
    ignored: int = 0

    @classmethod
    def from_connect(cls, params: Mapping[str, Any],
                     max_entries: int = RTMPConfig.max_fourcc_entries) -> "EnhancedCapabilities":
        """What ``params`` declares; of each list and map only the first ``max_entries`` entries are read."""
        if not any(key in params for key in _DECLARING_KEYS):
            return LEGACY     # most clients: one shared value, not one per idle connection
        fourcc_list = params.get("fourCcList")
        fourcc_list = fourcc_list if isinstance(fourcc_list, list) else []
        maps = [value if isinstance(value, dict) else {}
                for value in (params.get("videoFourCcInfoMap"), params.get("audioFourCcInfoMap"))]
        video, audio = (cls._info_map(islice(value.items(), max_entries)) for value in maps)
        return cls(
            fourcc_list=tuple(v for v in fourcc_list[:max_entries] if _fourcc(v)),
            video=video,
            audio=audio,
            caps_ex=_flags(params.get("capsEx")) or 0,
            declared=True,
            ignored=sum(max(len(entries) - max_entries, 0) for entries in (fourcc_list, *maps)),
        )

    @staticmethod
    def _info_map(items) -> Tuple[Tuple[str, int], ...]:
        pairs = ((key, _flags(flags)) for key, flags in items if _fourcc(key))
        return tuple((key, flags) for key, flags in pairs if flags is not None)

    @property
    def reconnect(self) -> bool:
        """The client handles ``NetConnection.Connect.ReconnectRequest`` (a drain may ask it to move)."""
        return bool(self.caps_ex & CAPS_EX_RECONNECT)


#: The connect properties by which a client speaks Enhanced RTMP.
_DECLARING_KEYS = ("fourCcList", "videoFourCcInfoMap", "audioFourCcInfoMap", "capsEx")
#: What a client that declared none of them has.
LEGACY = EnhancedCapabilities()


class Client:
    """One RTMP connection that asked to connect to an application.

    Identity comes from the connect command; ``call`` / ``notify`` /
    ``disconnect`` go back through the connection's session.
    """

    __slots__ = ("id", "address", "application_name", "params", "args", "room_name", "room",
                 "connected_at", "capabilities", "_session", "__weakref__")

    def __init__(self, client_id: str, address: str, application_name: str, params: Mapping[str, Any],
                 args: Tuple[Any, ...] = (), room_name: str = "", session=None, connected_at: Optional[float] = None,
                 max_fourcc_entries: int = RTMPConfig.max_fourcc_entries):
        #: Unique id, stable for the life of the connection (a string, as FMS gives).
        self.id = client_id
        #: "host:port" of the peer.
        self.address = address
        self.application_name = application_name
        #: The connect command object as sent (app, flashVer, tcUrl, objectEncoding, ...).
        self.params = params
        #: Extra arguments the client passed to ``NetConnection.connect``.
        self.args = tuple(args)
        #: The room the URL named (rtmp://host/app/room), then the one the client entered; "" is the default room.
        self.room_name = room_name
        #: The room (a ``Room`` value, app/hub.py) the client is in once connected, else None.
        self.room = None
        #: Seconds since the epoch when connect arrived.
        self.connected_at = time.time() if connected_at is None else connected_at
        #: What the client declared under Enhanced RTMP (codecs, ``capsEx``), read once from ``params``.
        self.capabilities = EnhancedCapabilities.from_connect(params, max_fourcc_entries)
        self._session = session

    @property
    def agent(self) -> Optional[str]:
        """The client's flashVer (e.g. "WIN 32,0,0,465" or "FMLE/3.0 (compatible; FMSc/1.0)")."""
        return self.params.get("flashVer")

    @property
    def page_url(self) -> Optional[str]:
        return self.params.get("pageUrl")

    @property
    def swf_url(self) -> Optional[str]:
        return self.params.get("swfUrl")

    @property
    def tc_url(self) -> Optional[str]:
        return self.params.get("tcUrl")

    @property
    def object_encoding(self) -> int:
        """0 (AMF0) or 3 (AMF3), as the client asked in connect."""
        return 3 if self.params.get("objectEncoding") == 3 else 0

    @property
    def amf3(self) -> bool:
        return self.object_encoding == 3

    @property
    def peer(self):
        """The connection's glue (bytes in/out, for the status API), or None."""
        return self._session.peer if self._session is not None else None

    @property
    def session(self):
        """The connection's session (its streams, for the status API), or None."""
        return self._session

    @property
    def connected(self) -> bool:
        session = self._session
        return session is not None and session.client is self and session.connected and not session.closed

    def call(self, method: str, *args, timeout: Optional[float] = None) -> Deferred:
        """Call ``method`` on the client; fires with its ``_result``, fails with CallFailed/CallTimedOut."""
        return self._session.call_client(method, args, timeout)

    def notify(self, method: str, *args) -> bool:
        """Call ``method`` on the client without waiting for an answer (transaction id 0).

        Returns whether it was sent: a client over its output budget (``maxOutgoingBytes``) is not
        reading, and what it would not read is dropped (counted in its connection's log).
        """
        return self.hear(Notification(method, args))

    def hear(self, notification: Notification) -> bool:
        """``notify`` with a notification made once for many clients (a room's broadcast, by the hub)."""
        return bool(self._session.notify_client(notification))

    def disconnect(self, reason: str = "disconnected by the application") -> None:
        self._session.close(reason)

    def __repr__(self):
        return f"<Client {self.id} {self.address} {self.application_name}/{brief_name(self.room_name)}>"
