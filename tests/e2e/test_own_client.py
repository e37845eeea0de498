"""Our client against our server over loopback: connect, echo in both encodings, refusals, hostile peers."""
import datetime
import math

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.calls import CallFailed
from fmspy_gateway.config import RTMPConfig
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.rtmp.limits import Limits
from fmspy_gateway.server.client import connect_client

from .server import LoopbackServerMixin

COMMON_VALUES = [
    None, True, False, 0, 1, -1, 2 ** 28 - 1, -2 ** 28, 2 ** 28, 2 ** 53, 1.5, -0.25, 1e308,
    "", "hello", "snow \u2603 and a non-BMP \U0001F600", "x" * 70000,
    [1, "two", [3.0]], {"a": 1, "nested": {"b": [None, "c"]}},
    datetime.datetime(2009, 2, 13, 23, 31, 30, 123000), datetime.datetime(1969, 12, 31, 23, 59, 59, 500000),
]


class OwnClientTests(LoopbackServerMixin, TestCase):
    @inlineCallbacks
    def echo_all(self, object_encoding):
        client = yield connect_client(self.url(), object_encoding=object_encoding, reactor=reactor)
        try:
            self.assertEqual(client.connect_info["code"], "NetConnection.Connect.Success")
            self.assertEqual(client.connect_info["objectEncoding"], object_encoding)
            for value in COMMON_VALUES:
                echoed = yield client.call("echo", value)
                self.assertEqual(echoed, value)
                # Anonymous objects come back as pyamf.ASObject, a dict.
                expected_type = dict if type(value) is dict else type(value)
                if object_encoding == 3 and type(value) is int and not -2 ** 28 <= value < 2 ** 28:
                    expected_type = float   # outside int29, AMF3 carries it as a double
                self.assertIsInstance(echoed, expected_type, f"type of {value!r:.40}")
                self.assertIs(type(echoed) is bool, type(value) is bool)
            for special in (float("nan"), float("inf"), float("-inf"), -0.0):
                echoed = yield client.call("echo", special)
                if math.isnan(special):
                    self.assertTrue(math.isnan(echoed))
                else:
                    self.assertEqual(echoed, special)
                    self.assertEqual(math.copysign(1, echoed), math.copysign(1, special))
        finally:
            yield client.close()

    def test_echo_amf0(self):
        return self.echo_all(0)

    def test_echo_amf3(self):
        return self.echo_all(3)

    @inlineCallbacks
    def test_unknown_application_is_refused(self):
        with self.assertRaises(CallFailed) as raised:
            yield connect_client(self.url("nosuchapp"), reactor=reactor)
        self.assertEqual(raised.exception.code, "NetConnection.Connect.InvalidApp")

    @inlineCallbacks
    def test_unknown_method_fails_the_call_only(self):
        client = yield connect_client(self.url(), reactor=reactor)
        with self.assertRaises(CallFailed) as raised:
            yield client.call("noSuchMethod", 1)
        self.assertEqual(raised.exception.code, "NetConnection.Call.Failed")
        self.assertNotIn("Traceback", raised.exception.description)
        self.assertEqual((yield client.call("echo", "still here")), "still here")
        yield client.close()


class HostilePeer(Protocol):
    """Completes the handshake, then sends whatever the test wants."""

    def __init__(self, payload):
        self.payload = payload
        self.connection = Connection(Role.CLIENT)
        self.handshaken = False

    def connectionMade(self):
        self.transport.write(self.connection.data_to_send())

    def dataReceived(self, data):
        if not self.handshaken:
            self.handshaken = bool(self.connection.receive_data(data))   # HandshakeCompleted
            self.transport.write(self.connection.data_to_send())
            if self.handshaken:
                self.transport.write(self.payload)

    def connectionLost(self, reason):
        self.factory.lost.callback(None)


def many_streams_claiming_16mb(count):
    """Format 0 chunks on chunk streams 320.. each announcing a 16 MB video message, one chunk each."""
    chunks = []
    for csid in range(320, 320 + count):
        rest = csid - 64
        chunks.append(bytes((1, rest & 0xFF, rest >> 8)) + bytes.fromhex("000000 ffffff 09 01000000") + b"z" * 128)
    return b"".join(chunks)


class HostileInputTests(LoopbackServerMixin, TestCase):
    rtmp_config = RTMPConfig(limits=Limits(max_message_size=16 * 1024 * 1024))
    #: The option whose limit stops thousands of chunk streams each claiming 16 MB.
    chunk_stream_limit = "maxChunkStreams"

    @inlineCallbacks
    def hostile(self, payload, *expected):
        """``expected``: words of the line the server logs as it drops the hostile connection."""
        lines = []

        def observer(event):
            lines.append(formatEvent(event))
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        good = yield connect_client(self.url(), reactor=reactor)
        factory = ClientFactory.forProtocol(lambda: HostilePeer(payload))
        from twisted.internet.defer import Deferred
        factory.lost = Deferred()
        reactor.connectTCP("127.0.0.1", self.port, factory)
        yield factory.lost
        # The server dropped the hostile connection; the good client is still served.
        self.assertEqual((yield good.call("echo", "unharmed")), "unharmed")
        # The server lingers briefly on a closing socket (reading what is left); wait for it, bounded.
        from twisted.internet.task import deferLater
        for _ in range(300):
            if len(self.factory.connections) == 1:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(len(self.factory.connections), 1)
        yield good.close()
        # Which limit fired, not only that the connection closed (a server dropping everyone passes that).
        self.assertTrue([line for line in lines if all(word in line for word in expected)], lines)

    def test_thousands_of_chunk_streams_claiming_16mb(self):
        return self.hostile(many_streams_claiming_16mb(5000), "limit hit", self.chunk_stream_limit)

    def test_garbage_after_handshake(self):
        return self.hostile(bytes(range(256)) * 64, "closing: protocol error")


class BufferedBytesLimitTests(HostileInputTests):
    """With chunk streams allowed, the buffered-bytes limit is what stops the same attack."""

    rtmp_config = RTMPConfig(limits=Limits(max_message_size=16 * 1024 * 1024, max_chunk_streams=100000,
                                           max_buffered_bytes=256 * 1024))
    chunk_stream_limit = "maxBufferedBytes"
