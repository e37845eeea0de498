"""One DelayedCall per connection, at the protocol core's next deadline.

The core decides every deadline (``rtmp/timers.py``: handshake, connect,
ping, keep-alive); the glue only has to wake it.  Re-armed lazily, as
aioquic's asyncio glue does: ``arm`` after a read moves the call only when
the core's deadline became sooner than the call (the end of the handshake,
the first bytes after a ping), never per read; a call that fires early
finds nothing due, and the glue arms it again at the later deadline.
"""
from typing import Callable, Optional


class Deadline:
    """The scheduled wake-up of one core ``Connection``; ``fire(now)`` is called when it is due."""

    __slots__ = ("_reactor", "_fire", "_call", "_due")

    def __init__(self, reactor, fire: Callable[[float], None]):
        self._reactor = reactor
        self._fire = fire
        self._call = None
        #: The core's deadline the pending call was scheduled for.  Compared with, not ``call.getTime()``:
        #: callLater adds the delay to its own later reading of the clock, so the call's time lands past
        #: the deadline by however long the two readings were apart (microseconds, more under load or
        #: tracemalloc), and every read would then see a deadline "sooner" than the call and re-arm,
        #: leaving a cancelled DelayedCall in the reactor's heap each time.
        self._due = None

    def arm(self, deadline: Optional[float]) -> None:
        """Make sure a call fires no later than ``deadline`` (None: nothing to add)."""
        if deadline is None:
            return
        call = self._call
        if call is not None and call.active():
            if self._due <= deadline:
                return
            # Not call.reset(): moving a DelayedCall sooner makes Twisted search its whole list of
            # calls (list.index), a cost that grows with the number of connections; a cancel is O(1).
            call.cancel()
        # The Deadline itself is what the reactor calls (``__call__``): no bound method per call scheduled.
        self._call = self._reactor.callLater(max(deadline - self._reactor.seconds(), 0), self)
        self._due = deadline

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
        self._call = None
        # Never earlier than the deadline it was scheduled for: float sums may land a hair before it.
        self._fire(max(self._due, self._reactor.seconds()))
