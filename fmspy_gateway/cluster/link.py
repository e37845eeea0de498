"""The node's two connections to Redis (txredisapi): one for commands, one subscribed to channels.

Redis pub/sub needs a connection of its own (a subscribed connection takes
no other commands), so a node holds two; the link is *up* while both are
usable and *down* as soon as either is lost.  txredisapi's factories
reconnect with exponential backoff (``initial_delay`` up to ``max_delay``);
the link only tells its owner (``on_up`` / ``on_down``), and the owner
decides what an outage means (redis_hub.py).  Nothing waits on a connection
that is not there: ``commands`` is None while the link is down, so a caller
fails at once instead of queueing behind a reconnect.

Replies are not converted to numbers (a client id or room name made of
digits stays a string); the subscriber reads bytes (envelopes are AMF).
"""
import socket
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint

#: Reconnection backoff, seconds (txredisapi multiplies by e, with jitter, up to the maximum).
INITIAL_DELAY = 0.5
MAX_DELAY = 10.0


@dataclass(frozen=True)
class RedisAddress:
    """Where Redis is: a unix socket path, or host and port; the password and database number."""

    url: str
    path: Optional[str] = None
    host: str = "localhost"
    port: int = 6379
    password: Optional[str] = None
    db: int = 0

    @classmethod
    def parse(cls, url: str) -> "RedisAddress":
        """``redis://[:password@]host:port/db`` or ``unix:///path/redis.sock`` (config.py checked the syntax)."""
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return cls(url, path=unquote(parts.path))
        if parts.scheme != "redis" or not parts.hostname:
            raise ValueError(f"not a Redis URL: {url!r}")
        db = parts.path.strip("/")
        return cls(url, host=parts.hostname, port=parts.port or 6379,
                   password=unquote(parts.password) if parts.password else None, db=int(db) if db else 0)

    @property
    def shown(self) -> str:
        """The URL without its password, for log lines."""
        return f"unix://{self.path}" if self.path else f"redis://{self.host}:{self.port}/{self.db}"

    def endpoint(self, reactor, timeout: float):
        if self.path:
            return UNIXClientEndpoint(reactor, self.path, timeout=timeout)
        return HostnameEndpoint(reactor, self.host, self.port, timeout=timeout)


class RedisUnreachable(Exception):
    """At start: no usable connection to Redis; ``str()`` is the one line to print."""


def _resp(*words: str) -> bytes:
    return b"".join([f"*{len(words)}\r\n".encode()] +
                    [b"$%d\r\n%s\r\n" % (len(word.encode()), word.encode()) for word in words])


def probe(address: RedisAddress, timeout: float) -> None:
    """Ask Redis for a PONG, blocking, before the reactor runs: at start-up, "unreachable" is one line and
    an exit status (tap.py), not a reconnect loop in the log.  Raises ``RedisUnreachable``."""
    where = f"Redis unreachable at {address.shown}"
    words = [("AUTH", address.password)] if address.password else []
    words += [("SELECT", str(address.db))] if address.db else []
    words.append(("PING",))
    try:
        family = socket.AF_UNIX if address.path else socket.AF_INET
        if address.path:
            connection = socket.socket(family, socket.SOCK_STREAM)
            connection.settimeout(timeout)
            connection.connect(address.path)
        else:
            connection = socket.create_connection((address.host, address.port), timeout=timeout)
        with connection:
            connection.sendall(b"".join(_resp(*command) for command in words))
            answers = b""
            while answers.count(b"\r\n") < len(words):
                chunk = connection.recv(4096)
                if not chunk:
                    raise RedisUnreachable(f"{where}: it closed the connection")
                answers += chunk
    except OSError as error:
        raise RedisUnreachable(f"{where}: {error.strerror or error}") from None
    for answer in answers.split(b"\r\n")[:len(words)]:
        if answer.startswith(b"-"):
            raise RedisUnreachable(f"{where}: it answered {answer[1:].decode('utf-8', 'replace')[:200]}")
    if not answers.split(b"\r\n")[len(words) - 1].startswith(b"+PONG"):
        raise RedisUnreachable(f"{where}: it does not answer as Redis does")


class _WholeReads:
    """Parse a read from Redis in one reactor turn (up to a bound), not one bulk string per turn.

    txredisapi's reader goes back to line mode after every bulk string by
    pausing the socket and parsing the rest of the read a reactor turn later
    (``callLater(0)``), so a pub/sub message (three bulk strings) took three
    turns and ten messages in one read took thirty.  Our writes go out once
    per turn (``TurnWrites``): a thousand listeners of a shared object or
    members of a room were written once per message from the other nodes,
    even when messages waited in the socket, and a node that fell behind
    could never catch up by writing several at once.  Here the rest is
    parsed by a loop in the same ``dataReceived`` (not by recursion, which a
    read of many small replies would take past Python's limit), up to
    ``MAX_BULKS_PER_TURN`` bulk strings: past them the rest waits for the
    next turn as txredisapi has it wait, so that a burst from Redis (a 64 KB
    read can hold some 2,000 small messages, each perhaps for a thousand
    local listeners) does not keep every other socket waiting behind it.
    Nothing is refused at the bound (it is not a limit on what Redis sends):
    the rest is only parsed a turn later.
    """

    #: Bulk strings parsed in one turn at most (a pub/sub message is three).
    MAX_BULKS_PER_TURN = 300

    _rest = None
    _bulks = 0

    def setLineMode(self, extra=b""):
        self._bulks += 1
        if extra and self._bulks >= self.MAX_BULKS_PER_TURN:
            super().setLineMode(extra)      # txredisapi's way: paused, the rest parsed a reactor turn later
            return
        self.line_mode = 1
        if extra:
            self._rest = extra              # parsed by the loop in dataReceived, before it returns

    def dataReceived(self, data, unpause=False):
        # ``unpause``: txredisapi's own call back, a turn after a pause (setLineMode past the bound).
        self._bulks = 0
        super().dataReceived(data, unpause)
        while self._rest is not None and not (self.transport is not None and self.transport.disconnecting):
            rest, self._rest = self._rest, None
            super().dataReceived(rest)


class _Commands(_WholeReads, txredisapi.RedisProtocol):
    """The command connection, its replies parsed a whole read at a time."""


class _Subscriber(_WholeReads, txredisapi.SubscriberProtocol):
    """The subscribed connection: each message of a channel goes to the link's ``on_message``."""

    def messageReceived(self, pattern, channel, message):
        self.factory.link.on_message(channel, message)


class _Factory(txredisapi.RedisFactory):
    """One reconnecting connection that tells its link when it is usable and when it is lost."""

    initialDelay = INITIAL_DELAY
    maxDelay = MAX_DELAY

    def __init__(self, link, role, address: RedisAddress, charset, protocol, reply_timeout):
        super().__init__(None, address.db or None, 1, isLazy=True, charset=charset, password=address.password,
                         replyTimeout=reply_timeout, convertNumbers=False)
        self.protocol = protocol
        self.link, self.role = link, role

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.whenConnected().addCallback(self.link._connected, self.role)
        protocol.whenDisconnected().addCallback(self.link._disconnected, self.role)
        return protocol


class RedisLink:
    """Commands and subscriptions to one Redis, reconnecting; ``on_up()`` when both are usable, ``on_down()``
    when either is lost, ``on_message(channel bytes, payload bytes)`` for every message of a subscribed channel.
    """

    def __init__(self, address: RedisAddress, *, on_up: Callable[[], None], on_down: Callable[[], None],
                 on_message: Callable[[bytes, bytes], None], reply_timeout: float, reactor):
        self.address = address
        self._on_up, self._on_down, self.on_message = on_up, on_down, on_message
        self._reactor = reactor
        self._factories = {
            "commands": _Factory(self, "commands", address, "utf-8", _Commands, reply_timeout),
            # the subscriber's SUBSCRIBE waits for messages as long as it is subscribed: no reply timeout
            "subscriber": _Factory(self, "subscriber", address, None, _Subscriber, None),
        }
        self._connections = {"commands": None, "subscriber": None}
        self.up = False
        #: While the first ``stop`` runs, the Deferreds of those who asked again; ``_stopped`` once it is over.
        self._stopping = None
        self._stopped = False

    @property
    def commands(self):
        """The command connection while the link is up, else None."""
        return self._connections["commands"] if self.up else None

    @property
    def subscriber(self):
        """The subscribed connection while the link is up, else None."""
        return self._connections["subscriber"] if self.up else None

    def start(self, connect_timeout: float):
        for factory in self._factories.values():
            factory.startConnecting(self.address.endpoint(self._reactor, connect_timeout))

    def stop(self):
        """Close both connections and stop reconnecting; fires when they are closed.

        Once only: asked again, it waits for the first stop, or fires at once
        after it.  The first stop ends inside txredisapi's reconnecting
        service (the last connection's close is an input of its state
        machine), and what waited for it runs there: the hub stopping the
        same shared objects next, say (``RedisHub.stop``).  Stopping that
        service again from there is a re-entry its machine refuses with a
        RuntimeError.
        """
        if self._stopping is not None:
            waiter = Deferred()
            self._stopping.append(waiter)
            return waiter
        if self._stopped:
            return succeed(None)
        self.up = False
        self._stopping = []
        stopped = gatherResults([factory.disconnect() for factory in self._factories.values()], consumeErrors=True)
        return stopped.addBoth(self._stop_done)

    def _stop_done(self, result):
        """The first stop's outcome goes to its caller; those who asked again only hear that it is over."""
        waiting, self._stopping, self._stopped = self._stopping, None, True
        for waiter in waiting:
            waiter.callback(None)
        return result

    def _connected(self, protocol, role):
        self._connections[role] = protocol
        if not self.up and all(self._connections.values()):
            self.up = True
            self._on_up()

    def _disconnected(self, protocol, role):
        if self._connections[role] is not protocol:
            return
        self._connections[role] = None
        if self.up:
            self.up = False
            self._on_down()
