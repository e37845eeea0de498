"""Connections that try to cost the server more than their share, each beside a healthy client (issue 8).

A client that never reads its echo replies, a chat listener that never
reads while another talks, a flood of one-byte junk messages, a connection
that never sends connect, and more connections from one address than
allowed.  Each runs on a real server on loopback beside a ``Bystander``
whose calls must keep being answered and whose server's memory must stay
bounded; each asserts which limit fired through the line it logged.
"""
import dataclasses
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from fmspy_gateway.app.chat import ChatApplication
from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.config import RTMPConfig
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.rtmp.events import HandshakeCompleted
from fmspy_gateway.rtmp.messages import UserControl
from fmspy_gateway.server.client import connect_client

from .bystander import Bystander, LogLines
from .server import LoopbackServerMixin

#: Seconds any one step may take before the test gives up (a safety net, never a measurement).
WAIT = 30
#: A small budget and short timeouts, so that each attack is over in seconds.
CONFIG = RTMPConfig(max_outgoing_bytes=4 * 1024 * 1024, slow_player_timeout=2.0, connect_timeout=2.0,
                    max_ignored_messages=100)


class RawClient(Protocol):
    """The core's client side over TCP doing only what the test says: no connect unless sent."""

    def __init__(self):
        self.connection = Connection(Role.CLIENT)
        self.handshaken = Deferred()
        self.closed = Deferred()
        self.lost = False

    def connectionMade(self):
        self.transport.write(self.connection.data_to_send())

    def dataReceived(self, data):
        events = self.connection.receive_data(data)
        self.flush()        # C2 first: what the test sends once handshaken must come after it
        if any(isinstance(event, HandshakeCompleted) for event in events):
            self.handshaken.callback(self)

    def flush(self):
        out = self.connection.data_to_send()
        if out and not self.lost:
            self.transport.write(out)

    def connectionLost(self, reason):
        self.lost = True
        self.closed.callback(reason.getErrorMessage())


@implementer(IPushProducer)
class EchoFlood:
    """Writes 1 MB echo calls (wanting replies) as fast as the socket takes them, and reads nothing.

    It writes only while its own transport is not paused, so the attacker
    itself holds about one call; what grows, if anything, is the server.
    """

    def __init__(self, client, calls=300, size=1024 * 1024):
        self.client = client
        self.left = calls
        self.value = "e" * size
        self.paused = False
        self.transaction_id = 100
        client.transport.registerProducer(self, True)
        self._next = reactor.callLater(0, self._write)

    def _write(self):
        self._next = None
        if self.paused or not self.left or not self.client.transport.connected:
            return
        self.left -= 1
        self.transaction_id += 1
        self.client.connection.send_command("echo", self.transaction_id, None, [self.value])
        self.client.flush()
        self._next = reactor.callLater(0, self._write)

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        if self._next is None:
            self._next = reactor.callLater(0, self._write)

    def stopProducing(self):
        self.left = 0

    def stop(self):
        self.left = 0
        if self._next is not None and self._next.active():
            self._next.cancel()


class HostileConnectionTests(LoopbackServerMixin, TestCase):
    rtmp_config = CONFIG

    def applications(self):
        return {"echotest": EchoApplication("echotest"), "chat": ChatApplication("chat")}

    @inlineCallbacks
    def bystander(self):
        bystander = Bystander(self.url())
        yield bystander.start()
        return bystander

    def server_side(self, transport):
        port = transport.getHost().port
        [protocol] = [p for p in self.factory.connections if p.transport.getPeer().port == port]
        return protocol

    def lost(self, protocol) -> Deferred:
        """Fires when the server side of a connection is gone."""
        d = Deferred()
        connection_lost = protocol.connectionLost
        protocol.connectionLost = lambda reason: (connection_lost(reason), d.callback(None))
        return d.addTimeout(WAIT, reactor)

    def not_reading(self, client):
        """From now on ``client`` reads nothing, and the kernel holds little for it."""
        client.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        server_side = self.server_side(client.transport)
        server_side.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        client.transport.pauseProducing()
        self.addCleanup(self._drop, client)
        return server_side

    def _drop(self, client):
        if client.transport.connected:
            client.transport.abortConnection()
            return client.closed

    @inlineCallbacks
    def raw_client(self) -> Deferred:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=10)
        client = yield endpoint.connect(Factory.forProtocol(RawClient))
        self.addCleanup(lambda: client.lost or (client.transport.abortConnection(), client.closed)[1])
        return client

    # -- item 4: output nobody reads -------------------------------------------------------------

    @inlineCallbacks
    def test_a_client_that_never_reads_its_echo_replies_is_bounded_then_disconnected(self):
        log = LogLines(self)
        bystander = yield self.bystander()
        attacker = yield connect_client(self.url(), reactor=reactor)
        server_side = self.not_reading(attacker)
        gone = self.lost(server_side)
        flood = EchoFlood(attacker)
        self.addCleanup(flood.stop)
        yield gone
        self.assertTrue(log.naming("limit hit", "maxOutgoingBytes", "slowPlayerTimeout"), log.lines)
        self.assertTrue(log.naming("not reading", "maxOutgoingBytes"), log.lines)
        self.assertGreater(flood.transaction_id - 100, 4, "the attacker hardly sent anything")
        yield bystander.finish(self)

    @inlineCallbacks
    def test_a_chat_listener_that_never_reads_loses_what_is_said_not_the_servers_memory(self):
        log = LogLines(self)
        bystander = yield self.bystander()
        listener = yield connect_client(self.url("chat/room"), reactor=reactor)
        yield listener.call("identify", "listener")
        talker = yield connect_client(self.url("chat/room"), reactor=reactor, handlers={"message": lambda text: None})
        self.addCleanup(talker.close)
        yield talker.call("identify", "talker")
        server_side = self.not_reading(listener)
        gone = self.lost(server_side)
        text = "t" * 64 * 1024
        said = 0
        while not gone.called and said < 1000:        # up to 64 MB said, until the listener is dropped
            yield talker.call("say", text)
            said += 1
        yield gone
        self.assertGreater(said * len(text), CONFIG.max_outgoing_bytes, "not enough was said")
        self.assertTrue(log.naming("dropped notification", "maxOutgoingBytes"), log.lines)
        self.assertTrue(log.naming("limit hit", "maxOutgoingBytes", "slowPlayerTimeout"), log.lines)
        yield talker.call("say", "still served")
        yield bystander.finish(self)

    # -- item 3: junk ------------------------------------------------------------------------------

    @inlineCallbacks
    def test_a_flood_of_one_byte_ignored_messages_is_closed_with_a_few_counted_log_lines(self):
        log = LogLines(self)
        bystander = yield self.bystander()
        # 1 MB of one-byte messages of an unknown type (2 bytes each after the first header), from
        # each of 10 connections at once.
        junk = bytes([0x09]) + b"\0\0\0" + b"\0\0\x01" + b"\x30" + b"\0\0\0\0" + b"x" + b"\xc9x" * (512 * 1024)
        attackers = []
        for _ in range(10):
            attacker = yield self.raw_client()
            yield attacker.handshaken.addTimeout(WAIT, reactor)
            attackers.append((attacker, self.lost(self.server_side(attacker.transport))))
        for attacker, _ in attackers:
            attacker.transport.write(junk)
        for attacker, gone in attackers:
            yield attacker.closed.addTimeout(WAIT, reactor)
            yield gone      # its last line (the count not logged) comes as the server lets it go
        self.assertEqual(len(log.naming("limit hit", "maxIgnoredMessages")), 10, log.lines)
        # Per connection: the first ignored message, the limit, and the count of those not logged.
        about_it = [line for line in log.lines if "ignored" in line]
        self.assertLessEqual(len(about_it), 3 * 10, about_it)
        self.assertEqual(len(log.naming("100 more of ignored message not logged")), 10, log.lines)
        yield bystander.finish(self, min_answered=1)     # the attack is over in a fraction of a second

    # -- item 9: connections that never finish ----------------------------------------------------

    @inlineCallbacks
    def test_a_connection_that_never_sends_connect_is_closed_by_connect_timeout(self):
        log = LogLines(self)
        bystander = yield self.bystander()
        attacker = yield self.raw_client()
        yield attacker.handshaken.addTimeout(WAIT, reactor)

        def ping():
            # A byte now and then resets the idle timer; it must not keep the connection.
            if not attacker.lost:
                attacker.connection.send_user_control(UserControl.PING_REQUEST, 0)
                attacker.flush()

        pinger = LoopingCall(ping)
        pinger.start(0.3)
        self.addCleanup(lambda: pinger.running and pinger.stop())
        yield attacker.closed.addTimeout(WAIT, reactor)
        self.assertTrue(log.naming("limit hit", "connectTimeout"), log.lines)
        yield bystander.finish(self)

    @inlineCallbacks
    def test_more_connections_from_one_address_than_allowed_are_refused_at_once(self):
        log = LogLines(self)
        bystander = yield self.bystander()
        open_now = len([p for p in self.factory.connections if p.transport.getPeer().host == "127.0.0.1"])
        self.factory.config = dataclasses.replace(CONFIG, max_connections_per_address=open_now + 1)
        allowed = yield self.raw_client()
        yield allowed.handshaken.addTimeout(WAIT, reactor)
        refused = []
        for _ in range(20):
            client = yield self.raw_client()
            refused.append(client)
        for client in refused:
            yield client.closed.addTimeout(WAIT, reactor)        # closed at once, not after handshakeTimeout
            self.assertFalse(client.handshaken.called)
        self.assertFalse(allowed.lost)
        # 20 refusals, one line per interval (the count comes with the next line).
        self.assertEqual(len(log.naming("refused a connection from 127.0.0.1", "maxConnectionsPerAddress")), 1,
                         log.lines)
        self.assertEqual(self.factory.refusals.counts["maxConnectionsPerAddress"], 20)
        yield bystander.finish(self, min_answered=1)
