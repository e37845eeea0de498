"""Draining a node: stop taking connections, ask clients that can to move elsewhere, close the rest later.

Started by the push API's ``drain`` method (``bridge/push.py``; the CLI
``fmspy-gateway drain`` calls it), before a node is stopped or replaced.
Three steps, in this order:

1. The RTMP and RTMPS listeners stop listening, so the kernel hands new
   connections to whoever else listens on the port (the other workers of a
   shared port, ``cluster/workers.py``) or refuses them; the factory refuses
   what still arrives through RTMPT on the HTTP port, which keeps serving
   the push and operations APIs.
2. Every connected client that declared Enhanced RTMP's Reconnect
   (``capsEx & 1``) gets ``NetConnection.Connect.ReconnectRequest``
   (``Session.request_reconnect``), with the ``tcUrl`` of another node when
   one is known; it keeps being served until it leaves (the spec's SHOULD).
3. After the grace period (``[Cluster] drainGrace``, or the request's
   ``grace``) every connection still open is closed: the clients that could
   not be asked, and those that were asked and did not move.

A drain cannot be undone: the node is meant to be stopped afterwards.
"""
import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from twisted.application import service
from twisted.internet.defer import Deferred, maybeDeferred, succeed

log = logging.getLogger(__name__)

#: The longest grace a request may ask for, in seconds: a day.
MAX_GRACE = 86400.0
#: The description clients read in the ReconnectRequest.
DESCRIPTION = "This server is being drained: please reconnect."


class DrainError(ValueError):
    """A drain request that cannot be honoured (a grace out of range); ``str()`` says why."""


@dataclass(frozen=True)
class DrainStarted:
    """What a drain did at once: the answer of the push API's ``drain``."""

    #: Clients asked to reconnect (they declared capsEx Reconnect).
    asked: int
    #: Clients that cannot be asked: closed when the grace ends unless they leave first.
    to_close: int
    #: Seconds until every connection still open is closed.
    grace: float
    #: ``rtmp://host:port`` the asked clients were sent to; None: the URL they used.
    target: Optional[str]
    #: False when the node was already draining (this request changed nothing).
    started: bool = True

    def to_dict(self) -> dict:
        return {"asked": self.asked, "toClose": self.to_close, "grace": self.grace, "target": self.target,
                "started": self.started}


def no_target() -> Deferred:
    """The target finder of a node that knows no other node: clients reconnect to the URL they used."""
    return succeed(None)


def another_node(hub) -> Callable[[], Deferred]:
    """The target finder of a node in a cluster: the advertised URL of another live node (the first by name,
    so that every drained worker of a machine sends its clients to the same one), None when there is none."""
    def find() -> Deferred:
        def pick(nodes) -> Optional[str]:
            return next((nodes[name] for name in sorted(nodes) if name != hub.node and nodes[name]), None)
        return hub.nodes().addCallback(pick)
    return find


class Drain(service.Service):
    """One node's drain (see the module docstring); built by tap.py, started by the push API.

    A service only so that a server stopped during the grace forgets the
    pending close (the applications' service closes every client anyway).
    """

    def __init__(self, factory, listeners: Iterable, grace: float, find_target: Callable[[], Deferred] = no_target,
                 clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.factory = factory
        self.listeners = tuple(listeners)
        self.grace = grace
        self.find_target = find_target
        self.clock = clock
        #: The answer of the first drain, once it ran; later requests get it again.
        self.result: Optional[DrainStarted] = None
        self._closing = None     # the DelayedCall that ends the grace

    def start(self, grace: Optional[float] = None, target: Optional[str] = None) -> Deferred:
        """Drain now; fires with a ``DrainStarted`` (or fails with ``DrainError`` before doing anything)."""
        if grace is not None and not (isinstance(grace, (int, float)) and 0 <= grace <= MAX_GRACE
                                      and math.isfinite(grace)):
            raise DrainError(f"grace must be between 0 and {MAX_GRACE:g} seconds")
        if self.result is not None:
            return succeed(DrainStarted(self.result.asked, self.result.to_close, self.result.grace,
                                        self.result.target, started=False))
        grace = self.grace if grace is None else float(grace)
        # Claimed before anything waits, so that a second request meanwhile changes nothing.
        self.result = DrainStarted(0, 0, grace, target)
        self.factory.draining = True
        for listener in self.listeners:
            listener.stopService()
        found = succeed(target) if target else maybeDeferred(self.find_target)
        found.addErrback(self._no_target)
        return found.addCallback(self._ask, grace)

    def _no_target(self, failure) -> None:
        log.warning("drain: no other node found (%s); clients reconnect to the URL they used",
                    failure.getErrorMessage())
        return None

    def _ask(self, target: Optional[str], grace: float) -> DrainStarted:
        asked = to_close = 0
        for protocol in list(self.factory.connections):
            session = protocol.session
            if session is not None and session.request_reconnect(DESCRIPTION, target):
                asked += 1
            else:
                to_close += 1
        self.result = DrainStarted(asked, to_close, grace, target)
        log.warning("drain: stopped accepting connections; asked %d client(s) to reconnect to %s; closing "
                    "every connection still open in %g s (%d cannot be asked)", asked, target or "the URL they used",
                    grace, to_close)
        self._closing = self.clock.callLater(grace, self._close)
        return self.result

    def stopService(self):
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        return super().stopService()

    def _close(self) -> None:
        left = len(self.factory.connections)
        if left:
            log.warning("drain: grace over: closing %d connection(s) still open", left)
        self.factory.close_all("server drained")
