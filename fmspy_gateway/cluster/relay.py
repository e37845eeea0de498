"""Pulling live streams from the node that publishes them (docs/ARCHITECTURE.md, "Live streams across nodes").

A play on this node of a name the hub says is published on another node
(``app/stream_commands.py``) asks ``RelayPuller.pull``: one ``Pull`` per
stream, made by the first such player and shared by the rest.  A pull is
an RTMP client of ours (``server/client.py``) that connects to the origin's
advertised URL (``Hub.advertised``) with the cluster's secret
(``app/relay.py`` ``RELAY_CREDENTIAL``), creates a stream and plays the
name there, live only.  What the origin sends its player (metadata,
sequence headers, the frames since the last keyframe, then the live
messages) is published into the local ``LiveStream`` as a local publisher's
would be, so the normal fan-out, its GOP cache and late joiners work
unchanged.  Media never travels through the hub (nginx-rtmp's ``pull``, the
SRS edge).

A pull ends, and the local players get UnpublishNotify and StreamEOF
(``LiveStream.stop``), when the origin says its publisher left (or never had
the stream), when the connection to it is lost (the origin node was killed)
or cannot be made; it is dropped quietly when its last local player leaves.
"""
import logging
from typing import Dict, Optional, Tuple

from twisted.internet.defer import DeferredList, succeed

from ..app.relay import RELAY_CREDENTIAL, Relay
from ..app.replies import NetStreamCode
from ..rtmp.budget import brief_name
from ..rtmp.events import CommandReceived, DataReceived, MediaReceived
from ..server.client import connect_client

log = logging.getLogger(__name__)

#: What the origin says on the pulled stream that ends the pull (its publisher left, or it has no such stream).
ENDING_CODES = (NetStreamCode.PLAY_UNPUBLISH_NOTIFY, NetStreamCode.PLAY_STOP, NetStreamCode.PLAY_STREAM_NOT_FOUND,
                NetStreamCode.PLAY_FAILED, NetStreamCode.FAILED)
#: The data message every play starts with; this node's players get their own (``replies.play_started``).
SAMPLE_ACCESS = "|RtmpSampleAccess"
#: play's start argument: live only, as ffmpeg and librtmp send FMS's -1.
LIVE_ONLY = -1000


class RelayPuller(Relay):
    """This node's pulls, one per (application, stream name); what ``Application.relay`` is in a cluster.

    ``call_timeout`` bounds the origin's answer to createStream ([RTMP] callTimeout).
    """

    def __init__(self, hub, secret: str, reactor=None, call_timeout: Optional[float] = 30.0):
        super().__init__(secret)
        if reactor is None:
            from twisted.internet import reactor
        self.hub = hub
        self.reactor = reactor
        self.call_timeout = call_timeout
        #: (application name, stream name) -> the pull feeding that stream here.
        self.pulls: Dict[Tuple[str, str], "Pull"] = {}

    def pull(self, application, live, publication) -> None:
        key = (application.name, live.name)
        pull = self.pulls[key] = Pull(self, application, live, publication)
        # After the player that asked has joined the stream: a pull that fails at once still tells it.
        self.reactor.callLater(0, pull.start)

    def forget(self, pull: "Pull") -> None:
        key = (pull.application.name, pull.live.name)
        if self.pulls.get(key) is pull:
            del self.pulls[key]

    def stop(self):
        """The node stops: every pull is dropped; fires once their connections are closed."""
        closing = [pull.drop("the node is stopping") for pull in list(self.pulls.values())]
        return DeferredList(closing)


class Pull:
    """One stream pulled from its origin: the publisher (and ``upstream``) of this node's ``LiveStream``.

    States: connecting (``protocol`` None), playing, ended (``ended`` set;
    nothing more reaches the local stream).
    """

    def __init__(self, puller: RelayPuller, application, live, publication):
        self.puller = puller
        self.application = application
        self.live = live
        self.publication = publication
        #: The connection to the origin, once made.
        self.protocol = None
        #: The stream id the origin gave us.
        self.stream_id = None
        #: Why the pull ended, once it has.
        self.ended: Optional[str] = None
        # Published at once: a second player here joins this pull instead of making another.
        live.upstream = self
        live.start(self)

    @property
    def what(self) -> str:
        return f"{self.application.name}/{brief_name(self.live.name)} from node {self.publication.node}"

    def start(self):
        if self.ended:
            return
        d = self.puller.hub.advertised(self.publication.node)
        d.addCallback(self._connect)
        d.addCallback(self._create_stream)
        d.addCallback(self._play)
        d.addErrback(self._failed)

    def _connect(self, advertised):
        if self.ended:
            return None
        if not advertised:
            raise LookupError(f"node {self.publication.node} advertises no RTMP address (gone?)")
        url = f"{advertised}/{self.application.name}"
        log.info("relay: pulling %s (%s)", self.what, url)
        return connect_client(url, reactor=self.puller.reactor, call_timeout=self.puller.call_timeout,
                              **{RELAY_CREDENTIAL: self.puller.secret})

    def _create_stream(self, protocol):
        if protocol is None:
            return None
        self.protocol = protocol
        protocol.closed.addCallback(self._connection_lost)
        if self.ended:
            protocol.close()
            return None
        protocol.on_events = self._on_events
        return protocol.call("createStream")

    def _play(self, stream_id):
        if stream_id is None or self.ended:
            return
        self.stream_id = stream_id
        self.protocol.stream_command(stream_id, "play", self.live.name, LIVE_ONLY)

    def _failed(self, failure):
        self._end(f"cannot pull it: {failure.getErrorMessage()}", logging.WARNING)

    def _connection_lost(self, reason):
        self._end(f"the connection to the origin is lost ({reason})", logging.WARNING)

    # -- what the origin sends ---------------------------------------------------------------

    def _on_events(self, events):
        if self.ended:
            return
        live = self.live
        for event in events:
            if isinstance(event, MediaReceived):
                if event.stream_id == self.stream_id:
                    live.publish(event.type_id, event.timestamp, event.payload)
            elif isinstance(event, DataReceived):
                if event.stream_id == self.stream_id:
                    self._on_data(event.values)
            elif isinstance(event, CommandReceived) and event.name == "onStatus":
                self._on_status(event.arguments[0] if event.arguments else None)
                if self.ended:
                    return
        # As after a local publisher's read: every player it fed gets its bytes now, once.
        live.registry.flush()

    def _on_data(self, values):
        if not values or values[0] == SAMPLE_ACCESS:
            return
        if values[0] == "onMetaData":
            self.live.set_metadata(tuple(values))
        else:
            self.live.send_data(values)

    def _on_status(self, info):
        code = info.get("code") if isinstance(info, dict) else None
        if code == NetStreamCode.PLAY_START:
            log.info("relay: playing %s", self.what)
        elif code in ENDING_CODES:
            self._end(f"the origin said {code}", logging.INFO)

    # -- ending ------------------------------------------------------------------------------

    def drop(self, why: str):
        """This node no longer wants the stream (its last player left): close, telling nobody."""
        return self._end(why, logging.INFO)

    def _end(self, why: str, level: int):
        """Stop feeding the local stream; its players (if any) get UnpublishNotify and StreamEOF."""
        if self.ended:
            return succeed(None)
        self.ended = why
        log.log(level, "relay: stopped pulling %s: %s", self.what, why)
        self.puller.forget(self)
        live = self.live
        if live.upstream is self:
            live.upstream = None
        if live.publisher is self:
            live.stop()
            live.registry.forget_if_idle(live)
        protocol = self.protocol
        if protocol is not None and protocol.transport is not None and protocol.connected:
            return protocol.close()
        return succeed(None)


def relay_for(config, hub, reactor) -> Optional[RelayPuller]:
    """The node's puller when [Cluster] redis is set (tap.py); None for one process, whose hub names no other node."""
    if not config.cluster.enabled:
        return None
    return RelayPuller(hub, config.cluster.secret, reactor, call_timeout=config.rtmp.call_timeout)
