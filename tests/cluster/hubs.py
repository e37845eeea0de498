"""RedisHubs on the test's own redis-server: started and stopped, their clients, waiting for them.

``start_hub`` gives a started node, stopped at cleanup; ``client_of`` a
connected client of a node (a real ``Client`` over the hub contract's
``FakeSession``); ``settle`` waits until messages between nodes have
arrived; ``LogWatch`` waits for a log line (an outage's start and end are
events a test can wait on); ``wait_until`` repeats a look-up through Redis
until it holds, with a generous limit (never an assertion on time).
"""
import logging

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, maybeDeferred
from twisted.internet.task import deferLater

from fmspy_gateway.app.client import Client
from fmspy_gateway.cluster import RedisHub
from tests.app.hub_contract import FakeSession

#: How many flush rounds ``settle`` allows before it gives up (each round is a ping through Redis).
SETTLE_ROUNDS = 50
#: Generous: what a test waits for through heartbeats and reconnects, on a loaded machine.
PATIENCE = 60.0
POLL = 0.05


@inlineCallbacks
def start_hub(test, server, node, **options):
    """A started ``RedisHub`` named ``node`` on ``server``, stopped at the test's cleanup."""
    # generous, so that a loaded machine does not look like a dead node or a silent one
    options.setdefault("heartbeat", 2.0)
    options.setdefault("reply_timeout", 30.0)
    options.setdefault("advertise", f"rtmp://127.0.0.1:1935/{node}")
    hub = RedisHub(server.url, node, reactor=reactor, **options)
    yield hub.start()
    test.addCleanup(hub.stop)
    return hub


_count = 0


@inlineCallbacks
def client_of(hub, room="lobby", application="chat", clock=reactor):
    """A client of ``application`` in ``room`` connected to ``hub``'s node; fires once it joined."""
    global _count
    _count += 1
    session = FakeSession(hub, clock)
    params = {"app": f"{application}/{room}", "flashVer": "TEST 1,0,0,0", "tcUrl": f"rtmp://h/{application}"}
    client = Client(f"{hub.node}-client-{_count}", f"192.0.2.1:{40000 + _count}", application, params, (), room,
                    session, connected_at=1000.0 + _count)
    session.client = client
    client.room = hub.room(application, room)
    session.created = yield hub.join(client, client.room)     # whether this join made the room
    return client


@inlineCallbacks
def settle(*hubs):
    """Until every hub has answered a ping with nothing in flight and nothing issued meanwhile."""
    for _ in range(SETTLE_ROUNDS):
        quiet = yield gatherResults([hub.flush() for hub in hubs])
        if all(quiet):
            return
    raise AssertionError(f"the hubs did not go quiet in {SETTLE_ROUNDS} rounds")


@inlineCallbacks
def wait_until(look, holds, what: str):
    """Repeat ``look()`` (a Deferred) until ``holds(answer)``; fails after ``PATIENCE`` seconds."""
    deadline = reactor.seconds() + PATIENCE
    while True:
        answer = yield maybeDeferred(look)
        if holds(answer):
            return answer
        if reactor.seconds() > deadline:
            raise AssertionError(f"{what}: still {answer!r} after {PATIENCE:g} s")
        yield deferLater(reactor, POLL, lambda: None)


class LogWatch(logging.Handler):
    """The lines of a logger, kept; ``said(text)`` fires once a line containing ``text`` has been logged."""

    def __init__(self, test, name="fmspy_gateway.cluster"):
        super().__init__(logging.DEBUG)
        self.lines = []
        self._waiting = []
        logger = logging.getLogger(name)
        logger.addHandler(self)
        test.addCleanup(logger.removeHandler, self)

    def emit(self, record):
        line = record.getMessage()
        self.lines.append(line)
        waiting, self._waiting = self._waiting, []
        for text, d in waiting:
            if text in line:
                d.callback(line)
            else:
                self._waiting.append((text, d))

    def said(self, text) -> Deferred:
        d = Deferred()
        for line in self.lines:
            if text in line:
                d.callback(line)
                return d
        self._waiting.append((text, d))
        timeout = reactor.callLater(PATIENCE, lambda: d.called or d.errback(
            AssertionError(f"nothing logged with {text!r} in {PATIENCE:g} s; logged: {self.lines!r}")))
        return d.addBoth(lambda result: (timeout.active() and timeout.cancel(), result)[1])

    def count(self, text) -> int:
        return sum(text in line for line in self.lines)
