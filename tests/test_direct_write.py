"""write_at_once (fmspy_gateway/direct_write.py) on a Twisted TCP client transport: at once when idle,
through TLS when the transport runs Twisted's startTLS (the server's own transport: tests/server/test_transport.py)."""
import socket

from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial.unittest import TestCase

from fmspy_gateway.direct_write import write_at_once

WAIT = 10.0     # seconds: a bound on waiting, never a measured time


class Made(Protocol):
    def connectionMade(self):
        self.factory.made.callback(self)


def turn():
    d = Deferred()
    reactor.callLater(0.001, d.callback, None)
    return d


class ClientTransportTests(TestCase):
    @inlineCallbacks
    def setUp(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.addCleanup(self.listener.close)
        factory = ClientFactory.forProtocol(Made)
        factory.made = Deferred()
        reactor.connectTCP("127.0.0.1", self.listener.getsockname()[1], factory)
        self.client = yield factory.made.addTimeout(WAIT, reactor)
        self.addCleanup(self.client.transport.abortConnection)
        self.listener.settimeout(WAIT)
        self.peer, _ = self.listener.accept()
        self.addCleanup(self.peer.close)
        self.peer.settimeout(WAIT)

    def test_an_idle_write_reaches_the_kernel_before_the_next_reactor_turn(self):
        write_at_once(self.client.transport, b"POST / HTTP/1.1\r\n")
        self.assertEqual(self.peer.recv(100), b"POST / HTTP/1.1\r\n")

    @inlineCallbacks
    def received(self, at_least: int, turns: int = int(WAIT / 0.001)) -> bytes:
        self.peer.setblocking(False)
        seen = b""
        for _ in range(turns):
            try:
                seen += self.peer.recv(65536)
            except BlockingIOError:
                pass
            if len(seen) >= at_least:
                return seen
            yield turn()
        return seen

    @inlineCallbacks
    def test_a_transport_running_start_tls_gets_no_plaintext_on_its_socket(self):
        self.client.transport.startTLS(ssl.CertificateOptions())
        self.assertTrue(self.client.transport.TLS)
        hello = yield self.received(5)
        self.assertEqual(hello[:1], b"\x16", hello[:20])       # a TLS handshake record, now sent: nothing waits
        transport = self.client.transport
        self.assertEqual((transport._tempDataLen, len(transport.dataBuffer) - transport.offset), (0, 0))
        write_at_once(transport, b"secret request")
        # Plaintext written straight to the socket would be in the kernel already; a few turns let Twisted
        # write whatever it would (TLS holds application data until its handshake, which this peer never does).
        more = yield self.received(1, turns=20)
        self.assertNotIn(b"secret request", hello + more)
