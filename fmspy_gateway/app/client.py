"""A connected client as applications see it: who it is, where it is, and how to reach it."""
import time
from typing import Any, Mapping, Optional, Tuple

from twisted.internet.defer import Deferred

from ..rtmp.budget import brief_name


class Client:
    """One RTMP connection that asked to connect to an application.

    Identity comes from the connect command; ``call`` / ``notify`` /
    ``disconnect`` go back through the connection's session.
    """

    __slots__ = ("id", "address", "application_name", "params", "args", "room_name", "room",
                 "connected_at", "_session", "__weakref__")

    def __init__(self, client_id: str, address: str, application_name: str, params: Mapping[str, Any],
                 args: Tuple[Any, ...] = (), room_name: str = "", session=None, connected_at: Optional[float] = None):
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
        return bool(self._session.notify_client(method, args))

    def disconnect(self, reason: str = "disconnected by the application") -> None:
        self._session.close(reason)

    def __repr__(self):
        return f"<Client {self.id} {self.address} {self.application_name}/{brief_name(self.room_name)}>"
