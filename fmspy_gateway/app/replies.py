"""Every status code, reply shape and start-up sequence the application server sends (the wire facts: docs/PROTOCOL.md, sections 6 and 9).

One definition each: the NetConnection and NetStream status codes
(``NetConnectionCode``, ``NetStreamCode``), the information objects that carry
them (``status``, ``error``), the connect reply's properties, and the
sequences of messages a client waits for at the start and end of a play or a
publish (``play_started``, ``play_stopped``, ``play_completed``,
``publish_notified``, ``unpublish_notified``).  A sequence is sent through the
session that owns the connection (``app/session.py``: ``send_status``,
``send_user_control``, ``send_data``), never straight to a ``Connection``.
"""
from ..rtmp.messages import UserControl
from .client import CAPS_EX_MOD_EX, CAPS_EX_RECONNECT

#: What connect's properties say about us; values real servers send.
FMS_VERSION = "FMS/3,5,1,516"
CAPABILITIES = 31
MODE = 1
#: Enhanced RTMP FourCcInfoMask: we relay every codec's bytes unchanged, and decode or encode none.
CAN_FORWARD = 4
#: Enhanced RTMP capsEx we honour: ReconnectRequest (a drain sends it) and ModEx prefixes (rtmp/flv.py skips
#: them to find keyframes and sequence headers).  Not Multitrack: the GOP cache keeps one sequence header
#: per media type, so a late player of a many-track stream would miss the other tracks' headers.
CAPS_EX = CAPS_EX_RECONNECT | CAPS_EX_MOD_EX


class NetConnectionCode:
    """The ``code`` of NetConnection information objects (connect replies, ``_error`` of calls)."""

    CONNECT_SUCCESS = "NetConnection.Connect.Success"
    CONNECT_REJECTED = "NetConnection.Connect.Rejected"
    CONNECT_INVALID_APP = "NetConnection.Connect.InvalidApp"
    CONNECT_CLOSED = "NetConnection.Connect.Closed"
    #: Enhanced RTMP: an onStatus asking the client to reconnect (to ``tcUrl`` if given); a drain sends it.
    CONNECT_RECONNECT_REQUEST = "NetConnection.Connect.ReconnectRequest"
    CALL_FAILED = "NetConnection.Call.Failed"
    CALL_TIMEOUT = "NetConnection.Call.Timeout"


class NetStreamCode:
    """The ``code`` of NetStream onStatus (and onFC*, onPlayStatus) information objects."""

    FAILED = "NetStream.Failed"
    PUBLISH_START = "NetStream.Publish.Start"
    PUBLISH_BAD_NAME = "NetStream.Publish.BadName"
    PUBLISH_DENIED = "NetStream.Publish.Denied"
    UNPUBLISH_SUCCESS = "NetStream.Unpublish.Success"
    RECORD_START = "NetStream.Record.Start"
    RECORD_STOP = "NetStream.Record.Stop"
    RECORD_FAILED = "NetStream.Record.Failed"
    PLAY_RESET = "NetStream.Play.Reset"
    PLAY_START = "NetStream.Play.Start"
    PLAY_STOP = "NetStream.Play.Stop"
    PLAY_COMPLETE = "NetStream.Play.Complete"
    PLAY_FAILED = "NetStream.Play.Failed"
    PLAY_STREAM_NOT_FOUND = "NetStream.Play.StreamNotFound"
    PLAY_PUBLISH_NOTIFY = "NetStream.Play.PublishNotify"
    PLAY_UNPUBLISH_NOTIFY = "NetStream.Play.UnpublishNotify"
    PAUSE_NOTIFY = "NetStream.Pause.Notify"
    UNPAUSE_NOTIFY = "NetStream.Unpause.Notify"
    SEEK_NOTIFY = "NetStream.Seek.Notify"
    SEEK_FAILED = "NetStream.Seek.Failed"


#: The data message a player gets at play start: lets Flash read the stream's audio and video (BitmapData.draw).
SAMPLE_ACCESS = ("|RtmpSampleAccess", True, True)


def status(code: str, description: str, level: str = "status", **extra) -> dict:
    """An information object; ``level, code, description`` first, in that order (Flash is picky)."""
    info = {"level": level, "code": code, "description": description}
    info.update(extra)
    return info


def error(code: str, description: str, **extra) -> dict:
    return status(code, description, level="error", **extra)


def connect_properties(enhanced: bool = False) -> dict:
    """connect's ``_result`` properties; with ``enhanced`` (the client declared Enhanced RTMP), what we forward.

    Stated only to a client that declared its own: the spec asks the server
    to answer in kind, and a legacy client keeps the reply it always had.
    Both forms are stated (the v1 ``fourCcList`` and the v2 maps), as the
    spec recommends to servers, since clients have not all moved to the maps.
    """
    properties = {"fmsVer": FMS_VERSION, "capabilities": CAPABILITIES, "mode": MODE}
    if enhanced:
        properties.update(fourCcList=["*"], videoFourCcInfoMap={"*": CAN_FORWARD},
                          audioFourCcInfoMap={"*": CAN_FORWARD}, capsEx=CAPS_EX)
    return properties



# -- sequences ------------------------------------------------------------------------------
#
# Each takes the session that owns the connection (``app/session.py``) and the stream id.
# They queue; the caller's session flushes (once per read, or where it says so).


def play_started(session, stream_id: int, name: str, reset: bool, recorded: bool = False) -> None:
    """What a play starts with, live or recorded (FMS, nginx-rtmp): StreamBegin, [StreamIsRecorded],
    [Play.Reset], Play.Start, ``|RtmpSampleAccess``."""
    session.send_user_control(UserControl.STREAM_BEGIN, stream_id)
    if recorded:
        session.send_user_control(UserControl.STREAM_IS_RECORDED, stream_id)
    if reset:
        session.send_status(stream_id, NetStreamCode.PLAY_RESET, f"Playing and resetting {name}.")
    session.send_status(stream_id, NetStreamCode.PLAY_START, f"Started playing {name}.")
    session.send_data(list(SAMPLE_ACCESS), stream_id, "|RtmpSampleAccess")


def play_stopped(session, stream_id: int, name: str) -> None:
    """A play ended by the server or by deleteStream (nginx-rtmp, FMS): StreamEOF, then Play.Stop.

    librtmp (rtmpdump, GStreamer's ``rtmpsrc``) sends deleteStream and reads
    on until the server says the stream ended; without this it waited for the
    next ping (``pingInterval``, 60 s) before it stopped.
    """
    session.send_user_control(UserControl.STREAM_EOF, stream_id)
    session.send_status(stream_id, NetStreamCode.PLAY_STOP, f"Stopped playing {name}.")


def play_completed(session, stream_id: int, name: str, duration_s: float) -> None:
    """A recorded stream played to its end (or its duration): Play.Stop, StreamEOF, onPlayStatus Play.Complete."""
    session.send_status(stream_id, NetStreamCode.PLAY_STOP, f"Stopped playing {name}.")
    session.send_user_control(UserControl.STREAM_EOF, stream_id)
    session.send_command("onPlayStatus", [{"level": "status", "code": NetStreamCode.PLAY_COMPLETE,
                                           "duration": duration_s, "bytes": 0}], stream_id)


def publish_notified(session, stream_id: int, name: str) -> None:
    """A waiting (or already playing) player's stream got a publisher: StreamBegin, Play.PublishNotify."""
    session.send_user_control(UserControl.STREAM_BEGIN, stream_id)
    session.send_status(stream_id, NetStreamCode.PLAY_PUBLISH_NOTIFY, f"{name} is now published.")


def unpublish_notified(session, stream_id: int, name: str) -> None:
    """A player's publisher left: Play.UnpublishNotify, StreamEOF; the player stays, waiting for the next one."""
    session.send_status(stream_id, NetStreamCode.PLAY_UNPUBLISH_NOTIFY, f"{name} is now unpublished.")
    session.send_user_control(UserControl.STREAM_EOF, stream_id)
