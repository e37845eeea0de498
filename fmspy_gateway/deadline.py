"""Waking up at deadlines with as few DelayedCalls as possible.

``Deadline``: one DelayedCall per RTMP connection, at the protocol core's
next deadline.  The core decides every deadline (``rtmp/timers.py``:
handshake, connect, ping, keep-alive); the glue only has to wake it.
Re-armed lazily, as aioquic's asyncio glue does: ``arm`` after a read moves
the call only when the core's deadline became sooner than the call (the end
of the handshake, the first bytes after a ping), never per read; a call
that fires early finds nothing due, and the glue arms it again at the later
deadline.

``TimeoutQueue``: many short-lived things that each time out after one of a
few fixed durations (the gateway's backend requests, its idle backend
connections), on one ``Deadline``.

Here, not in ``server/``: the server's connections and ``bridge/`` both use
it, and neither layer may import the other.  It imports only the standard
library; the clock is anything with ``callLater`` and ``seconds``.
"""
from typing import Any, Callable, Dict, Optional, Tuple


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
        if call is not None:        # pending: a call that fired or was cancelled is None here
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


class TimeoutQueue:
    """Things that each expire after one of a few fixed durations, all woken by one ``Deadline``.

    Why: one ``callLater`` per backend request for its timeout and one per
    idle pooled connection, each cancelled a moment later when the answer
    comes or the connection is reused, cost every bridged call two
    DelayedCalls, their pushes into the reactor's heap (a Python-level
    comparison per step) and their cancellations.  Here adding is a dict
    insertion and discarding a dict deletion; the one call is armed at the
    earliest deadline and moves only when something due sooner arrives.

    Things of one duration expire in the order they were added, which is
    the order of their deadlines: each duration keeps its own dict
    (insertion-ordered), and the earliest deadline is the first entry of
    one of them.  With nothing waiting, no call stays scheduled.
    """

    __slots__ = ("_clock", "_waiting", "_duration_of", "_deadline")

    def __init__(self, clock):
        self._clock = clock
        #: duration -> {thing: (deadline, expire)}, oldest first.
        self._waiting: Dict[float, Dict[Any, Tuple[float, Callable[[], None]]]] = {}
        self._duration_of: Dict[Any, float] = {}
        self._deadline = Deadline(clock, self._fire)

    def __len__(self) -> int:
        return len(self._duration_of)

    def add(self, thing, duration: float, expire: Callable[[], None]) -> None:
        """``expire()`` is called ``duration`` seconds from now unless ``thing`` is discarded first."""
        if thing in self._duration_of:
            self.discard(thing)
        deadline = self._clock.seconds() + duration
        waiting = self._waiting.get(duration)
        if waiting is None:
            waiting = self._waiting[duration] = {}
        waiting[thing] = (deadline, expire)
        self._duration_of[thing] = duration
        self._deadline.arm(deadline)

    def discard(self, thing) -> bool:
        """``thing`` will not expire; whether it was waiting."""
        duration = self._duration_of.pop(thing, None)
        if duration is None:
            return False
        waiting = self._waiting[duration]
        del waiting[thing]
        if not waiting:
            del self._waiting[duration]
            if not self._waiting:
                self._deadline.cancel()
        return True

    def _fire(self, now: float) -> None:
        due = []
        for duration, waiting in self._waiting.items():
            for thing, entry in waiting.items():
                if entry[0] > now:
                    break
                due.append((duration, thing, entry))
        try:
            for duration, thing, entry in due:
                # One expiring may have discarded (or added again) others: only what still waits, as it was
                # added then, expires.
                if self._waiting.get(duration, {}).get(thing) is entry:
                    self.discard(thing)
                    entry[1]()
        finally:
            # What is left (all of it if an expire raised: it is due, so the call comes at once).
            if self._waiting:
                self._deadline.arm(min(next(iter(waiting.values()))[0] for waiting in self._waiting.values()))
