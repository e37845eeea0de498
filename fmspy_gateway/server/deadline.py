"""One DelayedCall per connection, at the protocol core's next deadline.

The core decides every deadline (``rtmp/timers.py``: handshake, connect,
ping, keep-alive); the glue only has to wake it.  Re-armed lazily, as
aioquic's asyncio glue does: ``arm`` after a read moves the call only when
the core's deadline became sooner than the call (the end of the handshake,
the first bytes after a ping), never per read; a call that fires early
finds nothing due, and the glue arms it again at the later deadline.
"""
from typing import Callable, Optional


#: Seconds a call may be due after the core's deadline and still count as at it.
_SLACK = 1e-6


class Deadline:
    """The scheduled wake-up of one core ``Connection``; ``fire(now)`` is called when it is due."""

    __slots__ = ("_reactor", "_fire", "_call")

    def __init__(self, reactor, fire: Callable[[float], None]):
        self._reactor = reactor
        self._fire = fire
        self._call = None

    def arm(self, deadline: Optional[float]) -> None:
        """Make sure a call fires no later than ``deadline`` (None: nothing to add)."""
        if deadline is None:
            return
        call = self._call
        if call is not None and call.active():
            # A call due up to a microsecond after the deadline is the same deadline: the float sum
            # seconds() + (deadline - seconds()) lands a hair past it, and without the slack every
            # connection would re-arm at once.
            if call.getTime() <= deadline + _SLACK:
                return
            # Not call.reset(): moving a DelayedCall sooner makes Twisted search its whole list of
            # calls (list.index), a cost that grows with the number of connections; a cancel is O(1).
            call.cancel()
        # The Deadline itself is what the reactor calls (``__call__``): no bound method per call scheduled.
        self._call = self._reactor.callLater(max(deadline - self._reactor.seconds(), 0), self)

    def cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    @property
    def scheduled(self) -> Optional[float]:
        """When the call fires, or None when none is pending (for tests and the status page)."""
        call = self._call
        return call.getTime() if call is not None and call.active() else None

    def __call__(self) -> None:
        """The DelayedCall fired."""
        call, self._call = self._call, None
        # Never earlier than the deadline it was scheduled for: float sums may land a hair before it.
        self._fire(max(call.getTime(), self._reactor.seconds()))
