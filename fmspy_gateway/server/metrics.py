"""Prometheus /metrics through prometheus-client: one custom Collector reading the live state at scrape time.

Nothing is counted twice: the figures are those of ``ServerStatus``
(``server/ops.py``) and of each gateway's route figures (``bridge/stats.py``),
turned into metric families when Prometheus scrapes.  The registry is the
resource's own, not prometheus-client's global one, so that several servers
(tests) can live in one process.  Metric names follow SRS's exporter under
the ``fmspy_`` prefix.
"""
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from twisted.internet.defer import maybeDeferred
from twisted.web.resource import Resource

from ..app.logs import RateLimitedLog
from ..rtmp.budget import brief_name
from .later import render_later

log = logging.getLogger(__name__)

_BREAKER_VALUE = {"closed": 0, "half-open": 1, "open": 2}


class StatusCollector:
    """Yields the server's metric families from a ServerStatus and the hub's answers of one scrape.

    ``applications`` is ``ServerStatus.applications_list()``'s answer, or
    None when the hub did not answer: then the per-application client and
    room gauges have no samples and ``fmspy_hub_up`` is 0.
    """

    def __init__(self, status, applications):
        self.status = status
        self.applications = applications

    def collect(self):
        status = self.status
        summary = status.local_summary()
        info = InfoMetricFamily("fmspy_build", "Version and node of this server")
        info.add_metric([], {"version": summary["version"], "node": summary["node"], "pid": str(summary["pid"]),
                             "amf_codec": summary["amf_codec"]})
        yield info
        yield GaugeMetricFamily("fmspy_uptime_seconds", "Seconds since the server started",
                                value=summary["uptime_seconds"])
        yield GaugeMetricFamily("fmspy_cpu_percent", "CPU use of the process over the last sample, in percent",
                                value=summary["cpu_percent"])
        yield CounterMetricFamily("fmspy_cpu_seconds", "CPU seconds used by the process",
                                  value=summary["cpu_seconds"])
        yield GaugeMetricFamily("fmspy_memory_bytes", "Resident memory of the process", value=summary["memory_bytes"])
        yield GaugeMetricFamily("fmspy_connections", "RTMP connections open", value=summary["connections"])
        yield CounterMetricFamily("fmspy_connections_accepted", "RTMP connections accepted since start",
                                  value=summary["connections_accepted"])
        yield CounterMetricFamily("fmspy_receive_bytes", "Bytes received from RTMP clients",
                                  value=summary["bytes_in"])
        yield CounterMetricFamily("fmspy_send_bytes", "Bytes sent to RTMP clients", value=summary["bytes_out"])
        refused = CounterMetricFamily("fmspy_connections_refused", "Connections refused by a limit",
                                      labels=["option"])
        for option, count in sorted(getattr(getattr(status.factory, "refusals", None), "counts", {}).items()):
            refused.add_metric([option], count)
        yield refused

        clients = GaugeMetricFamily("fmspy_clients", "Connected clients per application", labels=["app"])
        rooms = GaugeMetricFamily("fmspy_rooms", "Rooms per application", labels=["app"])
        for app in self.applications or ():
            clients.add_metric([app["name"]], app["clients"])
            rooms.add_metric([app["name"]], app["rooms"])
        yield clients
        yield rooms

        streams = status.streams()
        publishing = GaugeMetricFamily("fmspy_streams", "Live streams being published per application",
                                       labels=["app"])
        per_app = {}
        for stream in streams:
            per_app[stream["app"]] = per_app.get(stream["app"], 0) + (1 if stream["publishing"] else 0)
        for app, count in sorted(per_app.items()):
            publishing.add_metric([app], count)
        yield publishing
        players = GaugeMetricFamily("fmspy_stream_players", "Players of each live stream", labels=["app", "stream"])
        received = CounterMetricFamily("fmspy_stream_receive_bytes", "Media bytes published on each live stream",
                                       labels=["app", "stream"])
        for stream in streams:
            players.add_metric([stream["app"], stream["name"]], stream["players"])
            received.add_metric([stream["app"], stream["name"]], stream["bytes_in"])
        yield players
        yield received
        hits = CounterMetricFamily("fmspy_limit_hits", "Limit hits and dropped messages since start, by "
                                   "option or kind (maxOutgoingBytes, media dropped, ...)", labels=["kind"])
        for kind, count in summary["limit_hits"].items():
            hits.add_metric([kind], count)
        yield hits
        closed = CounterMetricFamily("fmspy_connections_closed_by_limit", "Connections the server closed for a "
                                     "limit, by option", labels=["option"])
        for option, count in summary["closed_by_limit"].items():
            closed.add_metric([option], count)
        yield closed

        calls = CounterMetricFamily("fmspy_gateway_calls", "Backend requests per route", labels=["app", "route"])
        errors = CounterMetricFamily("fmspy_gateway_errors", "Failed backend requests per route and kind",
                                     labels=["app", "route", "kind"])
        in_flight = GaugeMetricFamily("fmspy_gateway_in_flight", "Backend requests in flight per route",
                                      labels=["app", "route"])
        latency = HistogramMetricFamily("fmspy_gateway_latency_seconds", "Backend request latency per route",
                                        labels=["app", "route"])
        breaker = GaugeMetricFamily("fmspy_gateway_circuit_state",
                                    "Circuit breaker per endpoint: 0 closed, 1 half-open, 2 open",
                                    labels=["app", "endpoint"])
        queued = GaugeMetricFamily("fmspy_gateway_queued", "Requests waiting per endpoint", labels=["app", "endpoint"])
        for app in status.applications.values():
            stats = getattr(app, "stats", None)
            if stats is None:
                continue
            for figures in stats.snapshot():
                labels = [app.name, figures.name]
                calls.add_metric(labels, figures.calls)
                in_flight.add_metric(labels, figures.in_flight)
                for kind, count in sorted(figures.errors.items()):
                    errors.add_metric(labels + [kind], count)
                buckets = [("+Inf" if bound == float("inf") else repr(bound), count)
                           for bound, count in figures.histogram()]
                latency.add_metric(labels, buckets, figures.latency_sum)
        for gateway in status.gateway():
            for endpoint in gateway["endpoints"]:
                breaker.add_metric([gateway["app"], endpoint["name"]], _BREAKER_VALUE[endpoint["circuit"]])
                queued.add_metric([gateway["app"], endpoint["name"]], endpoint["queued"])
        yield calls
        yield errors
        yield in_flight
        yield latency
        yield breaker
        yield queued
        hub = GaugeMetricFamily("fmspy_hub_up", "Whether the hub between connections answered this scrape",
                                labels=["kind"])
        hub.add_metric([status.hub_kind], 0 if self.applications is None else 1)
        yield hub


class MetricsResource(Resource):
    """GET /metrics: the exposition format as prometheus-client writes it, once the hub has answered.

    A hub that fails does not fail the scrape: everything this process knows
    is still exposed, with ``fmspy_hub_up 0`` (the failure logged, one line
    per interval).  The registry is made per scrape, around that scrape's answers.
    """

    isLeaf = True

    def __init__(self, status, clock=None):
        super().__init__()
        self.status = status
        self.limit_log = RateLimitedLog(log, clock)

    def render_GET(self, request):
        answers = maybeDeferred(self.status.applications_list)
        answers.addErrback(self._hub_failed)
        return render_later(request, answers.addCallback(self._exposition, request), self._failed)

    def _hub_failed(self, failure):
        self.limit_log.hit("hub", f"/metrics: the hub did not answer ({failure.type.__name__}: "
                                  f"{brief_name(str(failure.value), 200)}); exposed fmspy_hub_up 0")
        return None

    def _exposition(self, applications, request) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatusCollector(self.status, applications))
        body = generate_latest(registry)
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return body

    def _failed(self, request, failure) -> bytes:
        log.error("/metrics failed:\n%s", failure.getTraceback())
        request.setResponseCode(500)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"the figures could not be gathered (the server's log says why)\n"
