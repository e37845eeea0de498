"""Per-route figures of a gateway application: calls, errors by kind, latency, in flight.

Read by the status API and /metrics (``server/ops.py``, ``server/metrics.py``);
written by ``GatewayApplication`` around each backend request.  Counting is a
few integer additions per call; percentiles are computed when asked, from the
latest ``SAMPLES`` latencies of each route.
"""
import bisect
import time
from collections import deque
from typing import Dict, List, Optional, Tuple

from twisted.internet.defer import CancelledError

#: Upper bounds (seconds) of the latency histogram buckets, as Prometheus expects them (le=...).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Latencies kept per route for p50/p99.
SAMPLES = 1024

#: Error kinds the figures use, one name per way a call can fail (BackendError kinds renamed for operators).
ERROR_KINDS = ("backend-error", "timeout", "http-status", "not-json", "overloaded", "circuit-open",
               "unreachable", "invalid-params", "invalid-result", "cancelled", "other")
_KIND_OF = {"rpc-error": "backend-error", "timeout": "timeout", "http": "http-status", "bad-response": "not-json",
            "bad-encoding": "not-json", "overloaded": "overloaded", "unavailable": "circuit-open",
            "refused": "unreachable", "cancelled": "cancelled"}


def error_kind(error) -> str:
    """The figures' name for how a backend request failed."""
    if isinstance(error, CancelledError):
        return "cancelled"
    return _KIND_OF.get(getattr(error, "kind", None), "other")


class RouteFigures:
    """The figures of one route (``client_method`` as routes.cfg writes it: ``getUser``, ``*``, ``@connect``)."""

    def __init__(self, name: str, endpoint: str):
        self.name = name
        self.endpoint = endpoint
        self.calls = 0
        self.ok = 0
        self.errors: Dict[str, int] = {}
        #: HTTP statuses of "http-status" errors, by status.
        self.statuses: Dict[int, int] = {}
        self.in_flight = 0
        self.latency_sum = 0.0
        #: Non-cumulative counts per bucket of BUCKETS, plus one for +Inf.
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.samples: deque = deque(maxlen=SAMPLES)
        #: The kind of the latest outcome ("ok" or an error kind), and when (epoch seconds).
        self.last_outcome: Optional[str] = None
        self.last_at: Optional[float] = None

    def observe(self, seconds: float) -> None:
        self.latency_sum += seconds
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.samples.append(seconds)

    def histogram(self) -> List[Tuple[float, int]]:
        """(upper bound, cumulative count) per latency bucket, the last bound infinity: Prometheus's ``le=``.

        The figures carry their own bounds so that /metrics (``server/metrics.py``)
        reads them without importing this package (``server`` never imports ``bridge``).
        """
        answer, cumulative = [], 0
        for bound, count in zip(BUCKETS + (float("inf"),), self.buckets):
            cumulative += count
            answer.append((bound, cumulative))
        return answer

    def percentile(self, fraction: float) -> Optional[float]:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def failed(self, kind: str, status: Optional[int] = None) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if status is not None:
            self.statuses[status] = self.statuses.get(status, 0) + 1
        self.last_outcome, self.last_at = kind, time.time()


class GatewayStats:
    """The figures of every route of one gateway application, created on first use."""

    def __init__(self, clock=None):
        self._now = clock.seconds if clock is not None else time.monotonic
        self.routes: Dict[str, RouteFigures] = {}

    def figures(self, route) -> RouteFigures:
        figures = self.routes.get(route.client_method)
        if figures is None:
            figures = self.routes[route.client_method] = RouteFigures(route.client_method, route.endpoint)
        return figures

    def track(self, route, d):
        """Count one backend request of ``route`` whose outcome ``d`` will bring; returns ``d``."""
        figures = self.figures(route)
        figures.calls += 1
        figures.in_flight += 1
        return d.addBoth(self._done, figures, self._now())

    def _done(self, outcome, figures: RouteFigures, started: float):
        figures.in_flight -= 1
        figures.observe(max(0.0, self._now() - started))
        if hasattr(outcome, "value") and hasattr(outcome, "getTraceback"):   # a Failure
            error = outcome.value
            figures.failed(error_kind(error), getattr(error, "status", None))
        else:
            figures.ok += 1
            figures.last_outcome, figures.last_at = "ok", time.time()
        return outcome

    def refused(self, route, kind: str) -> None:
        """A call that never reached the backend (invalid params), or whose result was refused."""
        figures = self.figures(route)
        if kind == "invalid-params":
            figures.calls += 1
        elif kind == "invalid-result" and figures.ok:
            figures.ok -= 1     # counted ok when the backend answered; the gateway refused what it said
        figures.failed(kind)

    def snapshot(self) -> List[RouteFigures]:
        return [self.routes[name] for name in sorted(self.routes)]
