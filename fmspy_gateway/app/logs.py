"""Logging helpers shared by the application layer."""
import time


def log_failure(logger, what: str):
    """An errback that logs a failure with its traceback (for the server's log, never the client)."""
    def errback(failure):
        logger.error("%s failed:\n%s", what, failure.getTraceback())
    return errback


class RateLimitedLog:
    """Warnings about one connection's limit hits and refused traffic, one line per kind per interval.

    A hostile client can hit a limit thousands of times a second; logging each
    hit would make the log the attack (1 MB of one-byte messages once cost 23 s
    of CPU in log lines).  The first hit of a kind is logged at once; later ones
    within ``interval`` seconds are only counted, and the count is told with
    the next line of that kind, or by ``close()`` when the connection ends.
    """

    def __init__(self, logger, clock=None, prefix: str = "", interval: float = 10.0):
        self._logger = logger
        self._seconds = clock.seconds if clock is not None else time.monotonic
        self._prefix = prefix
        self._interval = interval
        self._kinds = {}   # kind -> [time of the last line, hits not logged since]
        #: Every hit of every kind, logged or not, for tests and status.
        self.counts = {}

    def hit(self, kind: str, message: str) -> None:
        """One hit of ``kind`` (an option name such as maxValueNodes, or "ignored message")."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        now = self._seconds()
        state = self._kinds.get(kind)
        if state is not None and now - state[0] < self._interval:
            state[1] += 1
            return
        unlogged = state[1] if state is not None else 0
        more = f" ({unlogged} more since the last line)" if unlogged else ""
        self._logger.warning("%s%s%s", self._prefix, message, more)
        self._kinds[kind] = [now, 0]

    def close(self) -> None:
        """Tell the hits counted but not logged yet."""
        for kind, (_, unlogged) in self._kinds.items():
            if unlogged:
                self._logger.warning("%s%d more of %s not logged", self._prefix, unlogged, kind)
        self._kinds.clear()
