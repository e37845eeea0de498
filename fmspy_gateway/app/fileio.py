"""Where recording and playback do their file I/O: never on the reactor thread.

An *executor* runs a blocking function and answers with a Deferred that fires
on the reactor thread: ``ThreadPoolExecutor`` (Twisted's thread pool,
``deferToThreadPool``) in the server, ``SynchronousExecutor`` in tests and
tools (the function runs at once; the Deferred has already fired, so a test
sees exactly what it saw before the I/O moved).  ``SerialQueue`` keeps the
tasks of one file in order, one at a time, whatever the executor: a
recording's writes, a playback's reads and its close never overlap on one
file object, while different files use the pool's threads in parallel.
"""
from collections import deque

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure


class SynchronousExecutor:
    """Runs the function now, on the calling thread: for tests, tools and a server without threads."""

    def run(self, function, *args, **kwargs) -> Deferred:
        try:
            return succeed(function(*args, **kwargs))
        except Exception:
            return fail()


class ThreadPoolExecutor:
    """Runs the function in ``reactor``'s thread pool; the Deferred fires on the reactor thread."""

    def __init__(self, reactor, threadpool=None):
        self.reactor = reactor
        self.threadpool = threadpool if threadpool is not None else reactor.getThreadPool()

    def run(self, function, *args, **kwargs) -> Deferred:
        return deferToThreadPool(self.reactor, self.threadpool, function, *args, **kwargs)


def default_executor(clock):
    """The thread pool of ``clock`` when it is a reactor that has one; else run synchronously (a ``task.Clock``)."""
    if clock is not None and hasattr(clock, "getThreadPool") and hasattr(clock, "callFromThread"):
        return ThreadPoolExecutor(clock)
    return SynchronousExecutor()


class SerialQueue:
    """The tasks of one file, run through ``executor`` one after another, in the order given.

    ``run`` answers with the task's own Deferred.  A failed task does not stop
    the queue: the caller decides (a recording that failed closes itself).
    """

    __slots__ = ("executor", "_waiting", "_busy")

    def __init__(self, executor):
        self.executor = executor
        self._waiting = deque()
        self._busy = False

    @property
    def idle(self) -> bool:
        return not self._busy and not self._waiting

    def run(self, function, *args) -> Deferred:
        d = Deferred()
        self._waiting.append((function, args, d))
        if not self._busy:
            self._pump()
        return d

    def _pump(self):
        self._busy = True
        while self._waiting:
            function, args, d = self._waiting.popleft()
            state = []          # empty until the task answered; "left" once we stopped waiting here
            self.executor.run(function, *args).addBoth(self._answered, d, state)
            if not state:
                state.append("left")
                return          # running in a thread: _answered goes on with the rest
        self._busy = False

    def _answered(self, result, d, state):
        inline = not state
        state.append("done")
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)
        if not inline:
            self._pump()
