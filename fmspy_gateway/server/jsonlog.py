"""Structured logs: one JSON object per line, each line about a connection carrying its client.

Use it through twistd's own option::

    twistd -n --logger fmspy_gateway.server.jsonlog.observer fmspy-gateway

Every line has ``time`` (ISO 8601, UTC), ``level``, ``logger`` (the module
that logged) and ``message`` (the text the default format shows).  A line
about one connection, whether the event names its ``address`` (the glue's
lines) or its text starts with it (the application and gateway layers
prefix their lines with "host:port: "), also gets ``address`` and, once
that connection is a connected client, ``client`` (its id) and ``app``.
A failure adds ``traceback``.  The text format stays twistd's default.

twistd builds the observer before the server exists, so the running
server's status (``ServerStatus``) registers itself here when it starts
(``attach``); the address -> connection index is rebuilt from the factory when the
number of connections changed (at most 20 times a second), else at most
once a second, so a line costs
a dict lookup, not a walk of every connection.
"""
import json
import re
import sys
import time
import weakref
from datetime import datetime, timezone

from twisted.logger import ILogObserver, formatEvent
from zope.interface import implementer

from . import logging_bridge

#: Running servers' statuses (normally one); weak, so a stopped server's goes away.
_statuses = weakref.WeakSet()
_ADDRESS = re.compile(r"(?:^|: )((?:\d{1,3}\.){3}\d{1,3}:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}): ")
#: Seconds between rebuilds of the address index, and when the number of connections changed.
REINDEX, REINDEX_CHANGED = 1.0, 0.05


def attach(status) -> None:
    """Let JSON lines name the clients of this server (called by ``StatusService``)."""
    _statuses.add(status)


def detach(status) -> None:
    _statuses.discard(status)


class _Index:
    def __init__(self):
        self._by_address = weakref.WeakValueDictionary()
        self._built = 0.0
        self._count = -1

    def connection(self, address: str):
        protocol = self._by_address.get(address)
        if protocol is not None and getattr(protocol, "address", None) == address:
            return protocol
        now = time.monotonic()
        factories = [status.factory for status in list(_statuses)]
        count = sum(len(getattr(factory, "connections", ())) for factory in factories)
        # Rebuilt when connections came or went since (at most every REINDEX_CHANGED seconds: a churn of
        # thousands of connections must not make every line a walk), else at most once per REINDEX seconds.
        since = now - self._built
        if since < REINDEX_CHANGED or (count == self._count and since < REINDEX):
            return None
        self._built, self._count = now, count
        self._by_address = weakref.WeakValueDictionary()
        for factory in factories:
            for connection in list(getattr(factory, "connections", ())):
                key = getattr(connection, "address", None)
                if key:
                    self._by_address[key] = connection
        return self._by_address.get(address)


@implementer(ILogObserver)
class JSONLinesObserver:
    """Writes each event as one JSON line to ``out`` (a text stream)."""

    def __init__(self, out=None):
        self.out = out if out is not None else sys.stdout
        self.index = _Index()

    def __call__(self, event):
        line = {"time": datetime.fromtimestamp(event.get("log_time", time.time()), timezone.utc)
                .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": getattr(event.get("log_level"), "name", "info"),
                "logger": event.get("logger_name") or event.get("log_namespace") or "",
                "message": self._text(event)}
        address = event.get("address")
        if not isinstance(address, str):
            match = _ADDRESS.search(line["message"])
            address = match.group(1) if match else None
        if address:
            line["address"] = address
            connection = self.index.connection(address)
            client = getattr(getattr(connection, "session", None), "client", None)
            if client is not None:
                line["client"] = client.id
                line["app"] = client.application_name
        failure = event.get("log_failure")
        if failure is not None:
            try:
                line["traceback"] = failure.getTraceback()
            except Exception:
                line["traceback"] = repr(failure)
        try:
            self.out.write(json.dumps(line, default=repr, ensure_ascii=False) + "\n")
            self.out.flush()
        except (OSError, ValueError):
            pass

    @staticmethod
    def _text(event) -> str:
        if event.get("log_namespace") == logging_bridge.NAMESPACE and "text" in event:
            return str(event["text"])           # the standard library's records (server/logging_bridge.py)
        text = formatEvent(event)
        return text if text is not None else ""


def observer():
    """The factory twistd's ``--logger`` calls: JSON lines on standard output."""
    return JSONLinesObserver(sys.stdout)
