"""The deadlines of one connection: handshake, connect, ping after silence, keep-alive.

Kept as aioquic keeps its own: the core never reads a clock.  Time comes in
as an argument (``Connection.receive_data(data, now=...)``,
``Connection.handle_timer(now)``); ``Connection.get_timer()`` says when
the core next wants to be woken, or None.  The glue keeps one scheduled
call per connection and re-arms it lazily: bytes received only record
``now``; the deadline they move is read when the call fires, so a busy
connection costs no timer work per read.

``Timers`` is owned by ``connection.Connection`` and decides; the
connection acts (queues the PingRequest, hands up ``events.TimedOut``).
"""
from dataclasses import dataclass
from typing import Optional

from .events import TimedOut


@dataclass(frozen=True)
class Timeouts:
    """Seconds for each deadline, named as the [RTMP] options are; None turns a deadline off."""

    #: From the start (the connection's ``now``) to a completed handshake (``handshakeTimeout``).
    handshake_timeout: Optional[float] = None
    #: From the end of the handshake to ``Connection.connect_accepted()`` (``connectTimeout``).  Bytes do
    #: not move it: a peer sending a byte now and then never connecting is still closed.
    connect_timeout: Optional[float] = None
    #: Silence (nothing received) after which one PingRequest is sent (``pingInterval``).
    ping_interval: Optional[float] = None
    #: Silence after which the peer is given up (``keepAliveTimeout``); more than ``ping_interval``
    #: so that the ping can be answered first.
    keepalive_timeout: Optional[float] = None


#: No deadline at all: what a ``Connection`` built without ``timeouts`` has (tests, tools, fuzzing).
NO_TIMEOUTS = Timeouts()

#: What ``Timers.handle_timer`` asks of the connection besides timing out.
PING = "ping"


class Timers:
    """The state behind the deadlines; every method is given the time, none reads one."""

    __slots__ = ("timeouts", "started", "last_received", "handshake_completed_at", "connect_accepted",
                 "pinged", "timed_out")

    def __init__(self, timeouts: Timeouts = NO_TIMEOUTS, now: float = 0.0):
        self.timeouts = timeouts
        #: When the connection began: the handshake deadline and PingRequest timestamps count from it.
        self.started = now
        #: When bytes last arrived: the ping and keep-alive deadlines count from it.
        self.last_received = now
        self.handshake_completed_at: Optional[float] = None
        self.connect_accepted = False
        #: A PingRequest went out and nothing has arrived since.
        self.pinged = False
        #: The TimedOut handed up, once one was: no deadline after it.
        self.timed_out: Optional[TimedOut] = None

    def received(self, now: float) -> None:
        """Bytes arrived: the silence deadlines move (the handshake and connect ones do not)."""
        self.last_received = now
        self.pinged = False

    def handshake_completed(self, now: float) -> None:
        self.handshake_completed_at = now

    def get_timer(self) -> Optional[float]:
        """The earliest deadline, or None when there is none."""
        if self.timed_out is not None:
            return None
        timeouts = self.timeouts
        if self.handshake_completed_at is None:
            if timeouts.handshake_timeout is None:
                return None
            return self.started + timeouts.handshake_timeout
        deadline = None
        if not self.connect_accepted and timeouts.connect_timeout is not None:
            deadline = self.handshake_completed_at + timeouts.connect_timeout
        if not self.pinged and timeouts.ping_interval is not None:
            ping_at = self.last_received + timeouts.ping_interval
            if deadline is None or ping_at < deadline:
                deadline = ping_at
        if timeouts.keepalive_timeout is not None:
            close_at = self.last_received + timeouts.keepalive_timeout
            if deadline is None or close_at < deadline:
                deadline = close_at
        return deadline

    def handle_timer(self, now: float):
        """What is due at ``now``: a ``TimedOut``, ``PING``, or None (woken early: nothing is due)."""
        if self.timed_out is not None:
            return None
        timeouts = self.timeouts
        if self.handshake_completed_at is None:
            limit = timeouts.handshake_timeout
            if limit is not None and now >= self.started + limit:
                return self._expire("handshakeTimeout", limit,
                                    f"handshake not completed within {limit:g} s (handshakeTimeout)")
            return None
        limit = timeouts.connect_timeout
        if not self.connect_accepted and limit is not None and now >= self.handshake_completed_at + limit:
            return self._expire("connectTimeout", limit,
                                f"no connect accepted within {limit:g} s of the handshake (connectTimeout)")
        idle = now - self.last_received
        limit = timeouts.keepalive_timeout
        if limit is not None and idle >= limit:
            return self._expire("keepAliveTimeout", limit, f"nothing received for {idle:g} s (keepAliveTimeout)")
        if not self.pinged and timeouts.ping_interval is not None and idle >= timeouts.ping_interval:
            self.pinged = True
            return PING
        return None

    def ping_timestamp(self, now: float) -> int:
        """A PingRequest's value: milliseconds since the connection began, as a u32."""
        return int((now - self.started) * 1000) & 0xFFFFFFFF

    def _expire(self, limit: str, seconds: float, reason: str) -> TimedOut:
        self.timed_out = TimedOut(limit, seconds, reason)
        return self.timed_out
