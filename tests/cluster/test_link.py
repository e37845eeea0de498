"""The Redis link's connections parse a whole read at once (``cluster/link.py`` ``_WholeReads``).

No Redis here: the bytes a Redis server sends are fed to the protocols, whose
``callLater`` is a Clock's, so a test sees whether anything was left for a
later reactor turn.
"""
import txredisapi
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from fmspy_gateway.cluster.link import _Commands, _Subscriber


def _message(channel: bytes, payload: bytes) -> bytes:
    """One pub/sub message as Redis sends it: three bulk strings."""
    return b"*3\r\n$7\r\nmessage\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in (channel, payload))


class _Link:
    def __init__(self):
        self.messages = []

    def on_message(self, channel, payload):
        self.messages.append((channel, payload))


class _Factory:
    def __init__(self):
        self.link = _Link()


def _connected(protocol_class, clock, **kwargs):
    protocol = protocol_class(**kwargs)
    protocol.callLater = clock.callLater
    protocol.factory = _Factory()
    protocol.transport = StringTransport()
    protocol.connected = 1              # what connectionMade sets once Redis is reached
    return protocol


def test_every_message_of_one_read_is_delivered_before_the_read_returns():
    clock = Clock()
    subscriber = _connected(_Subscriber, clock, charset=None, convertNumbers=False)
    subscriber.dataReceived(b"".join(_message(b"fmspy:room:chat:", b"line %d" % n) for n in range(10)))
    assert subscriber.factory.link.messages == [(b"fmspy:room:chat:", b"line %d" % n) for n in range(10)]
    assert clock.getDelayedCalls() == []


def test_txredisapi_alone_parses_one_bulk_string_per_reactor_turn():
    # Why _WholeReads exists: the same bytes, read by txredisapi's own subscriber, wait for later turns.
    clock = Clock()
    heard = []
    subscriber = _connected(txredisapi.SubscriberProtocol, clock, charset=None, convertNumbers=False)
    subscriber.messageReceived = lambda pattern, channel, payload: heard.append(payload)
    subscriber.dataReceived(b"".join(_message(b"c", b"%d" % n) for n in range(10)))
    assert heard == []                                  # not even the first: its last bulk string waits a turn
    assert clock.getDelayedCalls()
    clock.advance(0)                                    # (a Clock runs, in one advance, the calls made meanwhile)
    assert heard == [b"%d" % n for n in range(10)]


def test_a_message_split_across_reads_is_delivered_when_its_last_byte_comes():
    clock = Clock()
    subscriber = _connected(_Subscriber, clock, charset=None, convertNumbers=False)
    data = _message(b"c", b"x" * 1000) + _message(b"c", b"second")
    for cut in (5, 20, 400, len(data) - 3):
        subscriber.factory.link.messages.clear()
        subscriber.dataReceived(data[:cut])
        assert len(subscriber.factory.link.messages) == (1 if cut > len(_message(b"c", b"x" * 1000)) else 0)
        subscriber.dataReceived(data[cut:])
        assert [payload for _, payload in subscriber.factory.link.messages][-1] == b"second"
        assert len(subscriber.factory.link.messages) == 2
    assert clock.getDelayedCalls() == []


def test_a_burst_is_parsed_a_bounded_number_of_bulk_strings_per_turn_and_in_order():
    clock = Clock()
    subscriber = _connected(_Subscriber, clock, charset=None, convertNumbers=False)
    per_turn = _Subscriber.MAX_BULKS_PER_TURN // 3                  # three bulk strings a message
    subscriber.dataReceived(b"".join(_message(b"c", b"%d" % n) for n in range(5000)))   # some 130 KB
    assert len(subscriber.factory.link.messages) == per_turn      # the rest waits: other sockets go first
    turns = 1
    while clock.getDelayedCalls():
        (call,) = clock.getDelayedCalls()
        call.func(*call.args, **call.kw)                             # one reactor turn
        call.cancel()
        turns += 1
    assert [payload for _, payload in subscriber.factory.link.messages] == [b"%d" % n for n in range(5000)]
    assert turns == -(-5000 // per_turn)


def test_replies_to_several_commands_in_one_read_all_answer_in_that_read():
    clock = Clock()
    commands = _connected(_Commands, clock, charset="utf-8", convertNumbers=False)
    answers = []
    for key in ("a", "b", "c"):
        commands.execute_command("GET", key).addCallback(answers.append)
    commands.dataReceived(b"$3\r\none\r\n$-1\r\n*2\r\n$1\r\nx\r\n$1\r\ny\r\n")
    assert answers == ["one", None, ["x", "y"]]
    assert clock.getDelayedCalls() == []
