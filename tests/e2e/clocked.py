"""A real server on 127.0.0.1 port 0 whose timers run on a ``task.Clock``, for end-to-end tests.

The sockets are real (the global reactor carries the bytes); the server's
timers -- VOD pacing, ``slowPlayerTimeout``, pings, deadlines -- run on
``self.clock``, which only the test moves.  "The stream went on for five
seconds" then costs no real time, and nothing a test checks depends on how
fast this machine is.  Used by ``test_netstream_commands.py`` (our client)
and ``test_streaming.py`` (ffmpeg, rtmpdump, GStreamer).
"""
import logging
import os
import shutil
import tempfile

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, succeed

from fmspy_gateway.app.playback import VOD_TICK
from fmspy_gateway.config import RTMPConfig
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.server.protocol import RTMPServerFactory, RTMPServerProtocol
from fmspy_gateway.server.transport import listen_direct

#: Real seconds any single wait may take before the test fails (nothing waits on real time).
WAIT = 10


class TappedConnection(Connection):
    """A client-side core connection that hands every batch of events it parsed to ``sink``."""

    def __init__(self, sink):
        super().__init__(Role.CLIENT)
        self.sink = sink

    def receive_data(self, data, now=None):
        events = super().receive_data(data, now)
        self.sink(events)
        return events


class LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


class CountingProtocol(RTMPServerProtocol):
    """Tells the factory how many bytes it has read, so a test knows the server has seen what it sent."""

    received = 0

    def dataReceived(self, data):
        self.received += len(data)
        super().dataReceived(data)
        self.factory.read(self)


class CountingFactory(RTMPServerFactory):
    protocol_class = CountingProtocol

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._waiting = []

    def buildProtocol(self, addr):
        return CountingProtocol(self)

    def read(self, protocol):
        for entry in list(self._waiting):
            if entry[0]():
                self._waiting.remove(entry)
                entry[1].callback(None)

    def protocol_of(self, client):
        """The server's end of ``client`` (a connected client protocol of ours)."""
        port = client.transport.getHost().port
        [protocol] = [p for p in self.connections if p.transport.getPeer().port == port]
        return protocol

    def wait_received(self, client, total) -> Deferred:
        """Fires once the server's end of ``client`` has read ``total`` bytes."""
        port = client.transport.getHost().port
        found = lambda: any(p.received >= total for p in self.connections  # noqa: E731
                            if p.transport.getPeer().port == port)
        if found():
            return succeed(None)
        d = Deferred()
        self._waiting.append((found, d))
        return d.addTimeout(WAIT, reactor)


class ClockedServerMixin:
    """Listens in setUp on 127.0.0.1 port 0 with ``applications()``, timers on ``self.clock``.

    ``self.work`` is a scratch directory (``self.record_dir`` inside it),
    ``self.log`` the lines logged under ``fmspy_gateway``.
    """

    rtmp_config = RTMPConfig()

    def applications(self):
        raise NotImplementedError

    def setUp(self):
        self.clock = task.Clock()
        self.work = tempfile.mkdtemp(prefix="fmspy-clocked-")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.record_dir = os.path.join(self.work, "records")
        os.makedirs(self.record_dir)
        self.apps = self.applications()
        self.factory = CountingFactory(self.apps, self.rtmp_config, reactor=self.clock)
        self.listening = listen_direct(reactor, 0, self.factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        self.addCleanup(self.listening.stopListening)
        self.addCleanup(self.factory.close_all)
        self.log = LogCapture()
        logging.getLogger("fmspy_gateway").addHandler(self.log)
        self.addCleanup(logging.getLogger("fmspy_gateway").removeHandler, self.log)

    def url(self, path):
        return f"rtmp://127.0.0.1:{self.port}/{path}"

    def advance(self, seconds):
        """Let ``seconds`` pass on the server's clock, one VOD tick at a time."""
        self.clock.advance(1e-6)      # ten float steps of 0.1 s fall short of 1 s: a hair more
        for _ in range(round(seconds / VOD_TICK)):
            self.clock.advance(VOD_TICK)
