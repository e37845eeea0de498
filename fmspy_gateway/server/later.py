"""Answering an HTTP request when a Deferred fires: the one way the operations resources render.

The status API and /metrics read rooms and clients through the hub, whose
answers may come from another node (a Redis-backed hub); so they return
``NOT_DONE_YET`` and write when the answer is there.  ``render_later`` is
used by every such resource (``server/api.py``, ``server/metrics.py``), so
that a client that went away meanwhile, and a failure, are handled once.
"""
import logging
from typing import Callable

from twisted.internet.defer import Deferred
from twisted.web.server import NOT_DONE_YET

from ..app.logs import log_failure

log = logging.getLogger(__name__)


def render_later(request, body: Deferred, failed: Callable) -> int:
    """Write the bytes ``body`` fires with and finish ``request``; return ``NOT_DONE_YET`` from ``render``.

    ``failed(request, failure)`` gives the bytes of a failed answer (and sets
    its code and headers): an error the requester can read, never a stack
    trace.  A request whose connection was lost before the answer came is
    left alone: writing to it would raise.
    """
    gone = []
    request.notifyFinish().addBoth(gone.append)     # fires when finished, or when the connection is lost

    def write(data: bytes) -> None:
        if not gone:
            request.write(data)
            request.finish()

    body.addErrback(lambda failure: failed(request, failure))
    body.addCallback(write)
    body.addErrback(log_failure(log, "answering %r %r", request.method, request.uri))
    return NOT_DONE_YET
