"""A connected client as applications see it: who it is and how to reach it."""
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple


@dataclass
class Client:
    """One RTMP connection that completed connect to an application."""

    #: Unique id, stable for the life of the connection (a string, as FMS gives).
    id: str
    #: "host:port" of the peer.
    address: str
    #: The connect command object as sent (app, flashVer, tcUrl, objectEncoding, ...).
    params: Mapping[str, Any]
    #: Extra arguments the client passed to ``NetConnection.connect``.
    args: Tuple[Any, ...] = ()
    #: The room named in the URL after the application (rtmp://host/app/room), None for the default.
    room_name: Optional[str] = None
    #: Seconds since the epoch when connect arrived.
    connected_at: float = field(default_factory=time.time)

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
