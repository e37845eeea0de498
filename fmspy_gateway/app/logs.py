"""Logging helpers shared by the application layer."""
import time

from ..rtmp.budget import brief_name


def log_failure(logger, what: str, *args):
    """An errback that logs a failure with its traceback (for the server's log, never the client).

    ``what`` is a %-format of ``args``, formatted only if the failure comes:
    every connect, call and leave chains a few of these, and they almost
    never fire.  String arguments (names a client chose) are cut first.
    """
    def errback(failure):
        described = what % tuple(brief_name(a) if isinstance(a, str) else a for a in args) if args else what
        logger.error("%s failed:\n%s", described, failure.getTraceback())
    return errback


class RateLimitedLog:
    """Warnings about one connection's limit hits and refused traffic, one line per kind per interval.

    A hostile client can hit a limit thousands of times a second; logging each
    hit would make the log the attack (1 MB of one-byte messages once cost 23 s
    of CPU in log lines).  The first hit of a kind is logged at once; later ones
    within ``interval`` seconds are only counted, and the count is told with
    the next line of that kind, or by ``close()`` when the connection ends.
    """

    # Every connection has one, and most are never hit: slots, and the dicts made at the first hit.
    __slots__ = ("_logger", "_clock", "_prefix", "_interval", "_kinds", "_counts")

    def __init__(self, logger, clock=None, prefix: str = "", interval: float = 10.0):
        self._logger = logger
        self._clock = clock
        self._prefix = prefix
        self._interval = interval
        self._kinds = None   # kind -> [time of the last line, hits not logged since]
        self._counts = None

    @property
    def counts(self) -> dict:
        """Every hit of every kind, logged or not, for tests and status (read only)."""
        return self._counts if self._counts is not None else {}

    def hit(self, kind: str, message: str) -> None:
        """One hit of ``kind`` (an option name such as maxValueNodes, or "ignored message")."""
        if self._counts is None:
            self._counts, self._kinds = {}, {}
        self._counts[kind] = self._counts.get(kind, 0) + 1
        now = self._clock.seconds() if self._clock is not None else time.monotonic()
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
        for kind, (_, unlogged) in (self._kinds or {}).items():
            if unlogged:
                self._logger.warning("%s%d more of %s not logged", self._prefix, unlogged, kind)
        if self._kinds:
            self._kinds.clear()
