"""README, "Behaviour", HTTP client: "One persistent connection pool serves the whole gateway."

Two gateway applications, as twistd builds them (tap.makeService), call the same backend on loopback one
after the other: the backend sees one TCP connection, reused across the applications, not one per
application (nor one per call).
"""
import os
import shutil
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway import tap
from fmspy_gateway.server.client import connect_client

from ..bridge.test_rpc import Backend
from ..sites import TrackingSite


class SharedPoolTests(TestCase):
    @inlineCallbacks
    def setUp(self):
        self.backend = Backend()
        self.site = TrackingSite(self.backend)
        port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(lambda: defer.gatherResults(list(self.site.closed)))
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}/rpc"
        folder = tempfile.mkdtemp(prefix="fmspy-gateway-pool-")
        self.addCleanup(shutil.rmtree, folder, True)
        with open(os.path.join(folder, "routes.cfg"), "w") as f:
            f.write("[a]\n* = *\n[b]\n* = *\n")
        config = os.path.join(folder, "fmspy.cfg")
        with open(config, "w") as f:
            f.write("[RTMP]\nport = 0\ninterface = 127.0.0.1\n"
                    + "".join(f"[GatewayApplication:{name}]\nenabled = yes\nname = {name}\nendpoint = {url}\n"
                              "timeout = 5\n" for name in ("a", "b")))
        options = tap.Options()
        options.parseOptions(["--config", config])
        self.service = tap.makeService(options, reactor=reactor)
        yield self.service.startService()
        self.addCleanup(self.service.stopService)
        self.rtmp_port = self.service.getServiceNamed("rtmp").args[0]

    @inlineCallbacks
    def test_two_applications_share_one_backend_connection(self):
        answers = []
        for app in ("a", "b", "a"):
            client = yield connect_client(f"rtmp://127.0.0.1:{self.rtmp_port}/{app}", reactor=reactor)
            self.addCleanup(client.close)
            answers.append((yield client.call("echo", app)))
        self.assertEqual(answers, [{"method": "echo", "params": [app]} for app in ("a", "b", "a")])
        self.assertEqual([headers["x-rtmp-application"] for _, _, _, headers, _ in self.backend.seen],
                         [["a"], ["b"], ["a"]])
        self.assertEqual(self.site.connections, 1)
