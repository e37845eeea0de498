"""A real server with every transport on 127.0.0.1, port 0: RTMP, RTMPS (+ RTMPTS) and RTMPT on an HTTP site.

Trial TestCases on the global reactor, as ``server.LoopbackServerMixin``.
The certificate is made by the test (``certs.make_certificate``).
"""
import json
import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.utils import getProcessOutputAndValue
from twisted.web.resource import Resource

from fmspy_gateway.app.application import Services
from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.app.live_application import LiveApplication
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.config import RTMPConfig, RTMPSConfig, RTMPTConfig
from fmspy_gateway.server.http import BoundedSite
from fmspy_gateway.server.protocol import RTMPServerFactory
from fmspy_gateway.server.rtmpt import RTMPTSessions, mount, rtmpt_only_site
from fmspy_gateway.server.tls import ReloadableTLS, SecurePortFactory
from fmspy_gateway.server.transport import listen_direct

from ..conftest import require_system_librtmp, require_tool
from .certs import make_certificate
from .test_streaming import H264_AAC, LAVFI_SOURCE, Probe, Tool, WatchedStreams
from .test_third_party import RAW_AMF0

HERE = os.path.dirname(os.path.abspath(__file__))


class TunnelServerMixin:
    rtmp_config = RTMPConfig()
    rtmpt_config = RTMPTConfig(enabled=True)
    tls13 = False

    def applications(self):
        live = LiveApplication("live")
        live.configure_streaming(object(), Services(LocalHub(), clock=reactor, rtmp=self.rtmp_config))
        live.live = WatchedStreams(reactor, self.rtmp_config.max_gop_bytes, self.rtmp_config.slow_player_timeout)
        self.live_app = live
        return {"echotest": EchoApplication("echotest"), "live": live}

    def setUp(self):
        self.tools = []
        self.addCleanup(self._stop_tools)
        self.work = tempfile.mkdtemp(prefix="fmspy-tunnels-")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.cert_path, self.key_path = make_certificate(self.work)
        self.rtmps_config = RTMPSConfig(enabled=True, port=0, certificate=self.cert_path, key=self.key_path,
                                         tls13=self.tls13)
        self.factory = RTMPServerFactory(self.applications(), self.rtmp_config, reactor=reactor)
        self.addCleanup(self.factory.close_all)
        self.sessions = RTMPTSessions(self.factory, self.rtmpt_config, reactor=reactor)
        # Plain RTMP.
        self.listening = listen_direct(reactor, 0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.listening.stopListening)
        self.port = self.listening.getHost().port
        # RTMPS, and RTMPTS on the same port.
        self.tls = ReloadableTLS(self.rtmps_config)
        self.secure_factory = SecurePortFactory(
            self.tls, self.factory, rtmpt_only_site(self.sessions, self.rtmpt_config.max_request_bytes, reactor),
            reactor=reactor)
        self.secure = listen_direct(reactor, 0, self.secure_factory, interface="127.0.0.1")
        self.addCleanup(self.secure.stopListening)
        self.tls_port = self.secure.getHost().port
        # RTMPT on an HTTP site.
        self.site = BoundedSite(mount(Resource(), self.sessions), max_body=1024 * 1024, reactor=reactor)
        self.http = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self.http.stopListening)
        self.http_port = self.http.getHost().port

    def url(self, path="echotest"):
        return f"rtmp://127.0.0.1:{self.port}/{path}"

    def rtmps_url(self, path="echotest", host="localhost"):
        return f"rtmps://{host}:{self.tls_port}/{path}"

    def rtmpt_url(self, path="echotest"):
        return f"rtmpt://127.0.0.1:{self.http_port}/{path}"

    def rtmpts_url(self, path="echotest", host="localhost"):
        return f"rtmpts://{host}:{self.tls_port}/{path}"

    def client_tls(self, host="localhost"):
        """What our client needs to trust the test's self-signed certificate."""
        with open(self.cert_path, "rb") as f:
            return optionsForClientTLS(host, trustRoot=Certificate.loadPEM(f.read()))

    # -- real clients ------------------------------------------------------------------------

    def _stop_tools(self):
        running = [t for t in self.tools if t.running]
        for tool in running:
            tool.kill()
        return gatherResults([t.done for t in running])

    def run_tool(self, name, args, deadline=25) -> Tool:
        tool = Tool(require_tool(name), args, deadline)
        self.tools.append(tool)
        return tool

    def path(self, name):
        return os.path.join(self.work, name)

    def publish_ffmpeg(self, url, seconds=4) -> Tool:
        """ffmpeg publishing H.264/AAC in real time, as an encoder would."""
        source = [arg if arg != "6" else str(seconds) for arg in LAVFI_SOURCE]
        return self.run_tool("ffmpeg", ["-hide_banner", "-nostdin", "-loglevel", "verbose", "-y", "-re",
                                        *source, *H264_AAC, "-f", "flv", url])

    def play_ffmpeg(self, url, out, seconds=2) -> Tool:
        return self.run_tool("ffmpeg", ["-hide_banner", "-nostdin", "-loglevel", "verbose", "-y",
                                        "-rw_timeout", "10000000", "-i", url, "-t", str(seconds),
                                        "-c", "copy", "-copyinkf", "-f", "flv", out])

    @inlineCallbacks
    def probe(self, path):
        tool = self.run_tool("ffprobe", ["-v", "error", "-show_streams", "-show_packets", "-of", "json", path])
        yield tool.done
        self.assertEqual(tool.code, 0, tool.describe())
        return Probe(json.loads(tool.out))

    def check_media(self, probe, min_seconds, why=""):
        """Both codecs, enough of them, a keyframe first."""
        self.assertEqual(probe.codec("video"), ["h264"], why)
        self.assertEqual(probe.codec("audio"), ["aac"], why)
        for kind in ("video", "audio"):
            self.assertGreaterEqual(probe.span(kind), min_seconds, f"{kind}. {why}")
        self.assertIn("K", probe.packets_of("video")[0]["flags"], why)

    @inlineCallbacks
    def librtmp_echo(self, url):
        """librtmp (the system's, via librtmp_echo.py) calling echo at ``url``; checks and returns its result."""
        python = require_system_librtmp()
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump([v.hex() for v in RAW_AMF0], f)
        self.addCleanup(os.unlink, f.name)
        out, err, code = yield getProcessOutputAndValue(
            python, [os.path.join(HERE, "librtmp_echo.py"), url, f.name], env=dict(os.environ),
            reactor=reactor)
        self.assertEqual(code, 0, err.decode(errors="replace"))
        result = json.loads(out)
        self.assertEqual(result["scalars"], ["hello", "", 42.5, -1.0, True, False, None])
        self.assertEqual(len(result["raw"]), len(RAW_AMF0))
        return result

    @inlineCallbacks
    def play_with_ffmpeg_and_rtmpdump(self, url, publisher):
        """ffmpeg and rtmpdump playing ``url`` while ``publisher`` publishes it; checks all three and the media."""
        out, dump_out = self.path("played.flv"), self.path("dumped.flv")
        player = self.play_ffmpeg(url, out, seconds=2)
        dump = self.run_tool("rtmpdump", ["-r", url, "-v", "-m", "10", "-B", "2", "-o", dump_out])
        yield player.done
        yield dump.done
        yield publisher.done
        self.assertEqual(publisher.code, 0, publisher.describe())
        self.assertEqual(player.code, 0, player.describe())
        self.assertFalse(dump.overdue, dump.describe())
        self.assertIn(dump.code, (0, 2), dump.describe())
        self.check_media((yield self.probe(out)), 1.5, player.describe())
        self.check_media((yield self.probe(dump_out)), 1.5, dump.describe())
