"""A real server on 127.0.0.1, port 0, for end-to-end tests (trial TestCases on the global reactor)."""
from twisted.internet import reactor

from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.config import RTMPConfig
from fmspy_gateway.server.protocol import RTMPServerFactory
from fmspy_gateway.server.transport import listen_direct


class LoopbackServerMixin:
    """Listens in setUp; in cleanup closes every server connection and stops listening."""

    rtmp_config = RTMPConfig()

    def applications(self):
        return {"echotest": EchoApplication("echotest")}

    def setUp(self):
        self.factory = RTMPServerFactory(self.applications(), self.rtmp_config, reactor=reactor)
        self.listening = listen_direct(reactor, 0, self.factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        self.addCleanup(self.listening.stopListening)
        self.addCleanup(self.factory.close_all)

    def url(self, path="echotest"):
        return f"rtmp://127.0.0.1:{self.port}/{path}"
