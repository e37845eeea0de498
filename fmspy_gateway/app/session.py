"""One connection's conversation with the application server.

The Twisted glue feeds each decoded event to ``Session.handle``; the session
answers through the rtmp ``Connection`` its peer holds, then the glue flushes.
Here live the connect exchange, calls from the client to application methods,
and the replies Flash clients expect, shaped as DESIGN.md's protocol facts say.
"""
import logging
import secrets
from typing import Any, Optional, Protocol

from twisted.internet.defer import maybeDeferred

from ..rtmp.connection import Connection
from ..rtmp.events import CommandReceived
from ..rtmp.messages import PeerBandwidthLimit, UserControl
from .application import Application, CallError
from .calls import CallFailed, PendingCalls
from .client import Client

log = logging.getLogger(__name__)

#: What connect's properties say about us; values real servers send (DESIGN.md).
FMS_VERSION = "FMS/3,5,1,516"
CAPABILITIES = 31
MODE = 1
#: Window and bandwidth we announce at connect, as nginx-rtmp and Red5 do.
WINDOW_ACK_SIZE = 2_500_000
#: Chunk size we send with after connect: fewer headers than the default 128.
CHUNK_SIZE = 4096


class Peer(Protocol):
    """What a session needs from the glue that owns the socket."""

    #: The sans-I/O connection to queue messages on.
    connection: Connection
    #: "host:port" of the remote end.
    address: str

    def flush(self) -> None:
        """Write what the connection has queued."""

    def close(self, reason: str) -> None:
        """Flush, then drop the connection; ``reason`` is logged."""


def status(code: str, description: str, level: str = "status", **extra) -> dict:
    """An information object; ``level, code, description`` first, in that order (Flash is picky)."""
    info = {"level": level, "code": code, "description": description}
    info.update(extra)
    return info


def split_app_path(app: str):
    """'chat/room1?token=x' -> ('chat', 'room1'); the query string is not part of either."""
    path = app.split("?", 1)[0].strip("/")
    name, _, room = path.partition("/")
    return name, (room or None)


class Session:
    """Connect, then calls in both directions, for one peer."""

    def __init__(self, applications, peer: Peer, clock=None, call_timeout: Optional[float] = 30.0):
        #: name -> Application, the enabled applications.
        self.applications = applications
        self.peer = peer
        self.application: Optional[Application] = None
        self.client: Optional[Client] = None
        self.closed = False
        self.outgoing_calls = PendingCalls(clock, call_timeout, first_transaction_id=1)

    # -- events from the glue ----------------------------------------------------

    def handle(self, event) -> None:
        if isinstance(event, CommandReceived):
            self._on_command(event)

    def connection_lost(self, reason: str) -> None:
        self.closed = True
        self.outgoing_calls.fail_all(f"connection closed: {reason}")

    def _on_command(self, command: CommandReceived) -> None:
        if self.client is None:
            if command.name == "connect" and command.stream_id == 0:
                self._on_connect(command)
            else:
                self.peer.close(f"{command.name!r} before connect")
            return
        if command.name == "_result":
            self.outgoing_calls.resolve(command.transaction_id, command.arguments[0] if command.arguments else None)
        elif command.name == "_error":
            self.outgoing_calls.reject(command.transaction_id, command.arguments[0] if command.arguments else None)
        elif command.name == "connect":
            self.peer.close("second connect on one connection")
        else:
            self._on_call(command)

    # -- connect ------------------------------------------------------------------

    def _on_connect(self, command: CommandReceived) -> None:
        params = command.command_object if isinstance(command.command_object, dict) else {}
        app_path = params.get("app")
        name, room = split_app_path(app_path) if isinstance(app_path, str) else ("", None)
        application = self.applications.get(name)
        encoding = params.get("objectEncoding", 0)
        if application is None:
            self._send_connect_reply("_error", status(
                "NetConnection.Connect.InvalidApp", f"Application '{name}' is not available on this server.",
                level="error", objectEncoding=encoding))
            self.peer.close(f"connect to unknown application {name!r}")
            return
        self.application = application
        self.client = Client(secrets.token_hex(8), self.peer.address, params, command.arguments, room)
        self._accept(encoding)

    def _accept(self, encoding) -> None:
        connection = self.peer.connection
        connection.set_window_ack_size(WINDOW_ACK_SIZE)
        connection.set_peer_bandwidth(WINDOW_ACK_SIZE, PeerBandwidthLimit.DYNAMIC)
        connection.send_user_control(UserControl.STREAM_BEGIN, 0)
        connection.set_chunk_size(CHUNK_SIZE)
        self._send_connect_reply("_result", status(
            "NetConnection.Connect.Success", "Connection succeeded.", objectEncoding=encoding),
            {"fmsVer": FMS_VERSION, "capabilities": CAPABILITIES, "mode": MODE})
        log.info("client %s (%s) connected to %s", self.client.id, self.client.address, self.application.name)

    def _send_connect_reply(self, name: str, info: dict, properties: Any = None) -> None:
        # Always AMF0, whatever objectEncoding says: the Flash Player expects it so.
        self.peer.connection.send_command(name, 1, properties, [info])

    # -- calls from the client ----------------------------------------------------

    def _on_call(self, command: CommandReceived) -> None:
        method = self.application.find_method(command.name)
        if method is None:
            self._fail_call(CallError(f"Method '{command.name}' not found."), command)
            return
        d = maybeDeferred(method, self.client, *command.arguments)
        d.addCallbacks(self._answer_call, self._fail_call, (command,), None, (command,))
        d.addErrback(lambda failure: log.error("answering %r failed: %s", command.name, failure.getTraceback()))

    def _answer_call(self, value: Any, command: CommandReceived) -> None:
        if command.transaction_id == 0 or self.closed:
            return
        self.peer.connection.send_command("_result", command.transaction_id, None, [value], amf3=command.amf3)
        self.peer.flush()

    def _fail_call(self, failure, command: CommandReceived) -> None:
        error = getattr(failure, "value", failure)
        if isinstance(error, CallError):
            info = status(error.code, error.description, level="error")
            if error.application is not None:
                info["application"] = error.application
        elif isinstance(error, CallFailed):
            info = status(error.code, error.description, level="error")
        else:
            # Never a stack trace to the client: it goes to the log.
            log.error("method %r of %s raised:\n%s", command.name, self.application.name,
                      failure.getTraceback() if hasattr(failure, "getTraceback") else repr(error))
            info = status("NetConnection.Call.Failed", f"Method '{command.name}' failed.", level="error")
        if command.transaction_id == 0 or self.closed:
            return
        self.peer.connection.send_command("_error", command.transaction_id, None, [info], amf3=command.amf3)
        self.peer.flush()
