"""Values that expand past the value budget, and replies that cannot be encoded, on a real server (issue 8).

The attacker is our client with the hostile message written byte by byte
(AMF3 references, not our encoder's choices): the ~130-byte exponential tree
A0 = [], Ai = [Ai-1, Ai-1] and one 10 KB string followed by 50,000 two-byte
references to it.  Each is sent to echotest's ``echo`` and to chat's
``identify`` over and over, beside a ``Bystander`` whose calls must keep
being answered, until the bystander has been served several times during
the attack.  Each must come back as ``_error`` naming the option, the
server must log it in one line naming the option (rate-limited: one line
for the whole attack), and the attacker's connection must still answer.
"""
import struct

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.calls import CallFailed
from fmspy_gateway.app.chat import NOT_IDENTIFIED, ChatApplication
from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.rtmp.chunks import Message
from fmspy_gateway.rtmp.messages import MessageType
from fmspy_gateway.server.client import connect_client

from .bystander import Bystander, LogLines
from .server import LoopbackServerMixin

#: Seconds an attacker's call may wait for its answer (a safety net: the answer comes at once or never).
ANSWER_TIMEOUT = 5
#: Bystander calls that must be answered while the attack goes on.
SERVED_DURING_ATTACK = 5
#: Attacks at most, should the bystander somehow not be served (it then fails its own assertions).
MAX_ATTACKS = 300


def u29(n: int) -> bytes:
    """An AMF3 variable-length integer (values below 2**21 are enough here)."""
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return bytes([n >> 7 | 0x80, n & 0x7F])
    return bytes([n >> 14 | 0x80, n >> 7 & 0x7F | 0x80, n & 0x7F])


def amf0_command_head(name: str, transaction_id: int) -> bytes:
    raw = name.encode()
    return b"\x02" + struct.pack(">H", len(raw)) + raw + b"\x00" + struct.pack(">d", transaction_id) + b"\x05"


def exponential_tree(depth: int = 22) -> bytes:
    """AMF3 bytes of A_depth: each Ai is its first child inline and a reference to that child.

    Objects are numbered as their reading starts (A_depth is 0, A_0 is
    ``depth``), so Ai's second child is a reference to index depth - i + 1.
    """
    def array(i):
        if i == 0:
            return b"\x09\x01\x01"                      # [] : dense count 0, no named keys
        return b"\x09\x05\x01" + array(i - 1) + b"\x09" + u29((depth - i + 1) << 1)
    return array(depth)


def amplified_strings(size: int = 10 * 1024, references: int = 50_000) -> bytes:
    """AMF3 bytes of an array: one ``size``-character string, then ``references`` references to it."""
    string = b"\x06" + u29(size << 1 | 1) + b"x" * size
    return b"\x09" + u29((references + 1) << 1 | 1) + b"\x01" + string + b"\x06\x00" * references


def amf3_command(name: str, transaction_id: int, amf3_value: bytes) -> Message:
    """A command message (17): format byte, name and id in AMF0, then the value switched to AMF3."""
    payload = b"\x00" + amf0_command_head(name, transaction_id) + b"\x11" + amf3_value
    return Message(MessageType.COMMAND_AMF3, 0, 0, payload, 3)


class HostileValueTests(LoopbackServerMixin, TestCase):
    def applications(self):
        hub = LocalHub()
        return {"echotest": EchoApplication("echotest", hub=hub),
                "chat": ChatApplication("chat", hub=hub)}

    @inlineCallbacks
    def attacker(self, path):
        client = yield connect_client(self.url(path), reactor=reactor, call_timeout=ANSWER_TIMEOUT)
        self.addCleanup(client.close)
        return client

    def send_raw(self, client, method, build):
        """Send a hand-made command; the Deferred fails with the server's ``_error`` as CallFailed."""
        transaction_id, d = client.calls.new(f"raw {method}", ANSWER_TIMEOUT)
        message = build(transaction_id)
        client.connection.send_message(message)
        client.flush()
        return d, len(message.payload)

    @inlineCallbacks
    def attack(self, path, method, amf3_value, limit, max_wire_bytes, healthy):
        """Send the value to ``method`` until the bystander was served during it; check every answer.

        Between two attacks the attacker makes the ``healthy(client)`` call: its connection is still
        served, and it is no junk-only connection (``maxIgnoredMessages`` closes those).
        """
        lines = LogLines(self)
        bystander = Bystander(self.url("echotest"))
        yield bystander.start()
        self.addCleanup(bystander.client.close)     # should an assertion stop the test before finish()
        client = yield self.attacker(path)
        served_before, attacks = bystander.answered, 0
        while bystander.answered < served_before + SERVED_DURING_ATTACK and attacks < MAX_ATTACKS:
            d, size = self.send_raw(client, method, lambda txn: amf3_command(method, txn, amf3_value))
            self.assertLess(size, max_wire_bytes)
            failure = yield self.assertFailure(d, CallFailed)
            self.assertEqual(failure.code, "NetConnection.Call.Failed")
            self.assertIn(f"({limit})", failure.description)
            self.assertNotIn("Traceback", failure.description)
            yield healthy(client)
            attacks += 1
        yield bystander.finish(self)
        # One line for the whole attack, naming the option (the rest are counted, told at the close).
        self.assertEqual(len(lines.naming("command refused", method, f"({limit})")), 1, lines.lines)
        return client

    @inlineCallbacks
    def echo_served(self, client):
        self.assertEqual((yield client.call("echo", "still served")), "still served")

    @inlineCallbacks
    def still_not_identified(self, client):
        # The refused identify identified nobody; the connection answers as chat does.
        failure = yield self.assertFailure(client.call("say", "hello?"), CallFailed)
        self.assertEqual(failure.code, NOT_IDENTIFIED)

    @inlineCallbacks
    def test_exponential_tree_to_echo(self):
        client = yield self.attack("echotest", "echo", exponential_tree(), "maxValueNodes", 200, self.echo_served)
        yield self.echo_served(client)

    @inlineCallbacks
    def test_amplified_strings_to_echo(self):
        client = yield self.attack("echotest", "echo", amplified_strings(), "maxValueBytes", 120 * 1024,
                                   self.echo_served)
        yield self.echo_served(client)

    @inlineCallbacks
    def test_exponential_tree_to_chat_identify(self):
        client = yield self.attack("chat", "identify", exponential_tree(), "maxValueNodes", 200,
                                   self.still_not_identified)
        self.assertIsNone((yield client.call("identify", "ann")))

    @inlineCallbacks
    def test_amplified_strings_to_chat_identify(self):
        client = yield self.attack("chat", "identify", amplified_strings(), "maxValueBytes", 120 * 1024,
                                   self.still_not_identified)
        self.assertIsNone((yield client.call("identify", "ann")))

    @inlineCallbacks
    def test_raw_amf0_echo_of_an_empty_key_gets_an_error(self):
        lines = LogLines(self)
        client = yield self.attacker("echotest")
        # {"": 0} in AMF0: object marker, an empty name, a number, the end marker.
        body = b"\x03\x00\x00\x00" + struct.pack(">d", 0) + b"\x00\x00\x09"
        d, _ = self.send_raw(client, "echo", lambda txn: Message(
            MessageType.COMMAND_AMF0, 0, 0, amf0_command_head("echo", txn) + body, 3))
        failure = yield self.assertFailure(d, CallFailed)
        self.assertIn("The result of 'echo' cannot be sent", failure.description)
        self.assertIn("empty property name", failure.description)
        self.assertEqual(len(lines.naming("result of echo cannot be sent", "empty property name")), 1, lines.lines)
        self.assertFalse([line for line in lines.lines if "Traceback" in line])
        self.assertEqual((yield client.call("echo", "still served")), "still served")
