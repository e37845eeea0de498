"""The direct-write TCP transport: immediate when idle, buffered and in order when the kernel is full."""
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from fmspy_gateway.server.transport import DirectWriteServer, listen_direct


@implementer(IPushProducer)
class Recorder(Protocol):
    def __init__(self):
        self.paused = 0
        self.resumed = 0

    def connectionMade(self):
        self.transport.registerProducer(self, True)
        self.factory.made.callback(self)

    def pauseProducing(self):
        self.paused += 1

    def resumeProducing(self):
        self.resumed += 1

    def stopProducing(self):
        pass


class DirectWriteTests(TestCase):
    @inlineCallbacks
    def setUp(self):
        factory = Factory.forProtocol(Recorder)
        factory.made = Deferred()
        self.port = listen_direct(reactor, 0, factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.client = socket.socket()
        self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.client.connect(("127.0.0.1", self.port.getHost().port))
        self.addCleanup(self.client.close)
        self.server = yield factory.made
        self.addCleanup(self.server.transport.abortConnection)

    def test_transport_is_the_direct_one(self):
        self.assertIsInstance(self.server.transport, DirectWriteServer)

    def test_an_idle_write_reaches_the_kernel_before_the_next_reactor_turn(self):
        self.server.transport.write(b"hello")
        # No reactor turn has happened since write(): Twisted's buffered path would not have sent yet.
        self.client.settimeout(2)
        self.assertEqual(self.client.recv(5), b"hello")

    @inlineCallbacks
    def test_what_the_kernel_cannot_take_is_buffered_in_order_and_pauses_the_producer(self):
        chunks = [bytes([n % 251]) * 100_000 for n in range(40)]     # 4 MB, far more than the buffers hold
        for chunk in chunks:
            self.server.transport.write(chunk)
        self.assertGreater(self.server.paused, 0)
        expected = b"".join(chunks)
        received = bytearray()
        self.client.setblocking(False)
        while len(received) < len(expected):
            try:
                data = self.client.recv(65536)
            except BlockingIOError:
                d = Deferred()
                reactor.callLater(0.001, d.callback, None)
                yield d          # let the reactor write more
                continue
            self.assertTrue(data, "connection closed early")
            received += data
        self.assertEqual(bytes(received), expected)
        self.assertGreater(self.server.resumed, 0)

    @inlineCallbacks
    def test_queued_bytes_counts_what_the_kernel_has_not_taken(self):
        transport = self.server.transport
        self.assertEqual(transport.queued_bytes, 0)
        total = 4_000_000
        for _ in range(40):
            transport.write(b"q" * (total // 40))
        queued = transport.queued_bytes
        self.assertGreater(queued, 0)
        self.assertLessEqual(queued, total)
        received = 0
        self.client.setblocking(False)
        while received < total:
            try:
                received += len(self.client.recv(65536))
            except BlockingIOError:
                d = Deferred()
                reactor.callLater(0.001, d.callback, None)
                yield d
        self.assertEqual(transport.queued_bytes, 0)
