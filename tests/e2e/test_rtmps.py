"""RTMPS end to end: ffmpeg, rtmpdump, librtmp and our own client over TLS, with a certificate made here."""
import os
import signal
import ssl

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from fmspy_gateway.server.ops import ServerStatus
from fmspy_gateway.app.calls import ConnectionClosed
from fmspy_gateway.config import RTMPConfig
from fmspy_gateway.server.client import connect_client
from fmspy_gateway.server.tls import CertificateReloader

from .certs import make_certificate
from .tunnels import TunnelServerMixin


class RTMPSTests(TunnelServerMixin, TestCase):
    timeout = 60

    @inlineCallbacks
    def test_our_client_calls_echo_over_rtmps(self):
        client = yield connect_client(self.rtmps_url(), reactor=reactor, tls=self.client_tls())
        self.assertEqual((yield client.call("echo", "over tls")), "over tls")
        [protocol] = list(self.factory.connections)
        self.assertEqual(protocol.transport_name, "rtmps")
        status = ServerStatus(self.factory, self.factory.applications, clock=reactor)
        self.assertEqual(status.describe_client(protocol.session.client)["transport"], "rtmps")
        self.assertEqual(protocol.transport.getHandle().get_protocol_version_name(), "TLSv1.2")
        yield client.close()

    @inlineCallbacks
    def test_librtmp_connects_and_echoes_over_rtmps(self):
        yield self.librtmp_echo(self.rtmps_url())

    @inlineCallbacks
    def test_ffmpeg_publishes_and_ffmpeg_and_rtmpdump_play_over_rtmps(self):
        publisher = self.publish_ffmpeg(self.rtmps_url("live/cam"), seconds=5)
        yield self.live_app.live.wait_keyframes("cam", 1)
        self.assertEqual({p.transport_name for p in self.factory.connections}, {"rtmps"})
        yield self.play_with_ffmpeg_and_rtmpdump(self.rtmps_url("live/cam"), publisher)

    @inlineCallbacks
    def test_sighup_reloads_the_certificate_and_keeps_connections(self):
        reloader = CertificateReloader(self.tls, reactor=reactor)
        reloader.startService()
        self.addCleanup(reloader.stopService)
        old_trust = self.client_tls()
        before = yield connect_client(self.rtmps_url(), reactor=reactor, tls=old_trust)
        renewed = make_certificate(self.work)
        os.replace(renewed[0], self.cert_path)
        os.replace(renewed[1], self.key_path)
        context = self.tls.context
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):
            if self.tls.context is not context:
                break
            yield deferLater(reactor, 0.02, lambda: None)
        self.assertIsNot(self.tls.context, context)
        # The connection made before keeps working; new ones get the new certificate.
        self.assertEqual((yield before.call("echo", "still here")), "still here")
        after = yield connect_client(self.rtmps_url(), reactor=reactor, tls=self.client_tls())
        self.assertEqual((yield after.call("echo", "renewed")), "renewed")
        with self.assertRaises(Exception):
            yield connect_client(self.rtmps_url(), reactor=reactor, tls=old_trust)
        yield before.close()
        yield after.close()

    @inlineCallbacks
    def test_plain_rtmp_client_on_the_tls_port_is_refused_cleanly(self):
        with self.assertRaises(ConnectionClosed):
            yield connect_client(f"rtmp://127.0.0.1:{self.tls_port}/echotest", reactor=reactor, call_timeout=5)
        self.assertEqual(self.factory.connections, set())
        self.assertEqual(self.secure_factory.pending, set())

    @inlineCallbacks
    def test_tls_below_1_2_is_refused(self):
        def handshake(maximum):
            import socket
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            context.maximum_version = maximum
            try:
                context.set_ciphers("ALL:@SECLEVEL=0")
            except ssl.SSLError:
                pass
            with socket.create_connection(("127.0.0.1", self.tls_port), timeout=5) as sock:
                try:
                    with context.wrap_socket(sock) as tls:
                        return tls.version()
                except (ssl.SSLError, ConnectionError) as e:
                    return f"refused: {e}"
        self.assertEqual((yield deferToThread(handshake, ssl.TLSVersion.TLSv1_2)), "TLSv1.2")
        self.assertTrue((yield deferToThread(handshake, ssl.TLSVersion.TLSv1_1)).startswith("refused"))


class RTMPSWithTLS13Tests(TunnelServerMixin, TestCase):
    """``tls13 = yes``: clients that can (ffmpeg, ours) get TLS 1.3."""

    timeout = 60
    tls13 = True

    @inlineCallbacks
    def test_our_client_gets_tls_1_3(self):
        client = yield connect_client(self.rtmps_url(), reactor=reactor, tls=self.client_tls())
        self.assertEqual((yield client.call("echo", 13)), 13)
        [protocol] = list(self.factory.connections)
        self.assertEqual(protocol.transport.getHandle().get_protocol_version_name(), "TLSv1.3")
        yield client.close()

    @inlineCallbacks
    def test_ffmpeg_publishes_and_plays_over_tls_1_3(self):
        publisher = self.publish_ffmpeg(self.rtmps_url("live/cam"), seconds=4)
        yield self.live_app.live.wait_keyframes("cam", 1)
        [protocol] = list(self.factory.connections)
        self.assertEqual(protocol.transport.getHandle().get_protocol_version_name(), "TLSv1.3")
        out = self.path("played.flv")
        player = self.play_ffmpeg(self.rtmps_url("live/cam"), out, seconds=2)
        yield player.done
        yield publisher.done
        self.assertEqual(publisher.code, 0, publisher.describe())
        self.assertEqual(player.code, 0, player.describe())
        self.check_media((yield self.probe(out)), 1.5, player.describe())


class RTMPSHostileTests(TunnelServerMixin, TestCase):
    timeout = 60
    rtmp_config = RTMPConfig(handshake_timeout=2.0, connect_timeout=2.0)

    @inlineCallbacks
    def test_connections_that_never_finish_tls_are_dropped_at_the_handshake_deadline(self):
        from .bystander import Bystander
        bystander = Bystander(self.url())
        yield bystander.start()

        def attack():
            import socket
            sockets = []
            for n in range(400):
                sock = socket.create_connection(("127.0.0.1", self.tls_port), timeout=5)
                if n % 2:
                    sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")   # half a ClientHello
                sockets.append(sock)
            return sockets
        from twisted.internet.task import LoopingCall
        peak = [0]

        def sample():
            peak[0] = max(peak[0], len(self.secure_factory.pending))
        sampler = LoopingCall(sample)
        sampler.start(0.01)
        sockets = yield deferToThread(attack)
        self.addCleanup(lambda: [s.close() for s in sockets])
        yield deferLater(reactor, 2.5, lambda: None)
        sampler.stop()
        self.assertGreater(peak[0], 100)              # held while they could still finish...
        self.assertEqual(self.secure_factory.pending, set())   # ...and none past handshakeTimeout

        def closed():
            ends = 0
            for sock in sockets:
                sock.settimeout(2)
                try:
                    ends += sock.recv(100) == b""
                except ConnectionResetError:
                    ends += 1
            return ends
        self.assertEqual((yield deferToThread(closed)), 400)
        yield bystander.finish(self)
