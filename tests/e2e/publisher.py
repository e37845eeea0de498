"""A publisher built on our own client, for tests: what ffmpeg and OBS cannot do (publish "record",
media on message stream 0 as node-media-server's relay sends it).

It connects, creates a stream, sends ``publish(name, mode)``, waits for the
server's answer and, once NetStream.Publish.Start arrived, sends the metadata
and every audio/video tag of an FLV file (paced at real time or as fast as
possible), then deleteStream, waits for NetStream.Unpublish.Success (so the
server has closed any recording) and disconnects.
"""
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.task import deferLater

from fmspy_gateway.rtmp import flv
from fmspy_gateway.server.client import connect_client

#: Chunk size the publisher sends with (as ffmpeg does, far above the default 128).
CHUNK_SIZE = 4096
#: onStatus codes that end a publish attempt.
PUBLISH_ANSWERS = ("NetStream.Publish.Start", "NetStream.Publish.BadName", "NetStream.Publish.Denied",
                   "NetStream.Record.Failed", "NetStream.Record.NoAccess")


@dataclass
class PublishResult:
    #: Every onStatus info object received, in order.
    statuses: List[dict] = field(default_factory=list)
    #: The code that answered publish.
    answer: Optional[str] = None
    #: Audio/video messages and their payload bytes sent.
    messages: int = 0
    media_bytes: int = 0

    @property
    def codes(self):
        return [s.get("code") for s in self.statuses]


class _StatusWaiter:
    """onStatus handler: keeps every status and lets the test wait for one of some codes."""

    def __init__(self, result: PublishResult):
        self.result = result
        self._waiting = []

    def __call__(self, info=None, *rest):
        info = info if isinstance(info, dict) else {"code": None}
        self.result.statuses.append(info)
        for codes, d in list(self._waiting):
            if info.get("code") in codes:
                self._waiting.remove((codes, d))
                d.callback(info)

    def wait(self, codes, reactor, timeout: float) -> Deferred:
        for info in self.result.statuses:
            if info.get("code") in codes:
                return succeed(info)
        d = Deferred()
        self._waiting.append((codes, d))
        d.addTimeout(timeout, reactor)
        return d


def _read_flv(path):
    """(onMetaData object or None, [(type_id, timestamp, body)] of the audio/video tags)."""
    metadata, media = None, []
    with open(path, "rb") as f:
        for tag in flv.iter_tags(f):
            if tag.type_id in (flv.AUDIO, flv.VIDEO):
                media.append((tag.type_id, tag.timestamp, tag.body))
            elif tag.type_id == flv.SCRIPT and metadata is None:
                values = flv.parse_script_body(tag.body)
                if values and values[0] == "onMetaData" and len(values) > 1:
                    metadata = values[1]
    return metadata, media


@inlineCallbacks
def publish_flv(url: str, name: str, path: str, mode: str = "record", *, reactor,
                paced: bool = False, timeout: float = 10.0, media_stream_id: Optional[int] = None,
                started: Optional[Deferred] = None, gate: Optional[Callable] = None):
    """Publish the FLV at ``path`` as ``name`` on the application of ``url``; fires with a PublishResult.

    ``paced``: send each tag when its timestamp comes due (as a live encoder
    would); otherwise as fast as the socket takes them.  ``media_stream_id``:
    send the audio and video on that message stream instead of the published
    one, as node-media-server's relay does with 0.  ``started`` fires when
    Publish.Start arrived, for a test that starts players then.  ``gate``:
    called as ``gate(client, type_id, timestamp, body)`` before each audio/video
    tag, after what was sent before it is flushed; a Deferred it returns is
    waited for (a test's flow control: "hold here until the players joined",
    "until the server read it all"), so that no pacing needs real time.
    """
    result = PublishResult()
    statuses = _StatusWaiter(result)
    metadata, media = _read_flv(path)
    client = yield connect_client(url, reactor=reactor, handlers={"onStatus": statuses})
    try:
        connection = client.connection
        connection.set_chunk_size(CHUNK_SIZE)
        stream_id = yield client.call("createStream", timeout=timeout)
        connection.send_command("publish", 0, None, [name, mode], stream_id=stream_id)
        client.flush()
        answer = yield statuses.wait(PUBLISH_ANSWERS, reactor, timeout)
        result.answer = answer.get("code")
        if result.answer != "NetStream.Publish.Start":
            return result
        if started is not None:
            started.callback(stream_id)
        media_on = stream_id if media_stream_id is None else media_stream_id
        if metadata is not None:
            connection.send_data(["@setDataFrame", "onMetaData", metadata], stream_id=stream_id)
        started = time.monotonic()
        for type_id, timestamp, body in media:
            if gate is not None:
                client.flush()
                yield gate(client, type_id, timestamp, body)
            if paced:
                due = started + timestamp / 1000 - time.monotonic()
                if due > 0.005:
                    client.flush()
                    yield deferLater(reactor, due, lambda: None)
            connection.send_media(type_id, media_on, timestamp, body)
            result.messages += 1
            result.media_bytes += len(body)
        client.flush()
        connection.send_command("deleteStream", 0, None, [stream_id])
        client.flush()
        yield statuses.wait(("NetStream.Unpublish.Success",), reactor, timeout)
        return result
    finally:
        if client.connected:
            yield client.close()
