"""NetStream commands answered before streaming exists, so clients never stall on them.

ffmpeg, OBS and Flash send these around connect, publish and play; each gets
the reply those clients wait for.  publish and play are refused with the
status codes FMS uses until the server streams.
"""
import logging

from ..rtmp.events import CommandReceived
from .replies import error, status

log = logging.getLogger(__name__)


class StreamCommands:
    """The stream-level commands of one session."""

    __slots__ = ("session", "max_streams", "_next_stream_id", "_open")

    def __init__(self, session, max_streams: int):
        self.session = session
        #: Streams the connection may have open (``maxStreams``); createStream beyond is refused.
        self.max_streams = max_streams
        self._next_stream_id = 1
        self._open = None    # stream ids created and not deleted; made on the first createStream

    def handles(self, name) -> bool:
        return name in _COMMANDS

    def handle(self, command: CommandReceived):
        _COMMANDS[command.name](self, command)

    def _reply(self, command, value=None):
        if command.transaction_id:
            self.session.peer.connection.send_command("_result", command.transaction_id, None, [value],
                                                      amf3=command.amf3)

    def _on_status(self, stream_id, info):
        self.session.peer.connection.send_command("onStatus", 0, None, [info], stream_id=stream_id)

    def create_stream(self, command):
        if self._open is None:
            self._open = set()
        if len(self._open) >= self.max_streams:
            log.warning("%s: createStream refused: %d streams open (maxStreams)",
                        self.session.peer.address, len(self._open))
            self.session.send_call_error(command, error("NetConnection.Call.Failed", "Too many streams."))
            return
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        self._open.add(stream_id)
        self._reply(command, stream_id)

    def delete_stream(self, command):
        stream_id = command.arguments[0] if command.arguments else command.stream_id
        if self._open:
            self._open.discard(stream_id)

    def get_stream_length(self, command):
        self._reply(command, 0)

    def acknowledge(self, command):
        """releaseStream, FCPublish, FCUnpublish: nothing to do yet, but an answer is awaited."""
        self._reply(command)

    def fc_subscribe(self, command):
        name = command.arguments[0] if command.arguments else ""
        self.session.peer.connection.send_command("onFCSubscribe", 0, None, [status(
            "NetStream.Play.Start", f"Subscribed to {name}.")])

    def publish(self, command):
        name = command.arguments[0] if command.arguments else ""
        self._on_status(command.stream_id, error(
            "NetStream.Publish.BadName", f"Publishing {name!r} is not available on this server."))

    def play(self, command):
        name = command.arguments[0] if command.arguments else ""
        self._on_status(command.stream_id, error(
            "NetStream.Play.StreamNotFound", f"Stream {name!r} not found."))

    def ignore(self, command):
        """Commands that need no answer when nothing plays (closeStream, receiveAudio, pause, seek...)."""


_COMMANDS = {
    "createStream": StreamCommands.create_stream,
    "deleteStream": StreamCommands.delete_stream,
    "closeStream": StreamCommands.ignore,     # the stream stays usable until deleteStream
    "getStreamLength": StreamCommands.get_stream_length,
    "releaseStream": StreamCommands.acknowledge,
    "FCPublish": StreamCommands.acknowledge,
    "FCUnpublish": StreamCommands.acknowledge,
    "FCSubscribe": StreamCommands.fc_subscribe,
    "publish": StreamCommands.publish,
    "play": StreamCommands.play,
    "play2": StreamCommands.play,
    "receiveAudio": StreamCommands.ignore,
    "receiveVideo": StreamCommands.ignore,
    "pause": StreamCommands.ignore,
    "seek": StreamCommands.ignore,
}
