"""A command-line tool run as users run it, in its own process, with waits on what it prints (never sleeps)."""
import os
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import ProcessProtocol


class ToolProcess(ProcessProtocol):
    """Collects stdout and stderr lines; ``said(text, stream)`` fires once a line containing ``text`` appears."""

    def __init__(self):
        self.out = []
        self.err = []
        self._partial = {1: b"", 2: b""}
        self._waiting = []          # (predicate, Deferred)
        self.ended = Deferred()
        self.exit_code = None

    def childDataReceived(self, fd, data):
        if fd not in self._partial:
            return
        *complete, self._partial[fd] = (self._partial[fd] + data).split(b"\n")
        (self.out if fd == 1 else self.err).extend(line.decode("utf-8", "replace") for line in complete)
        waiting, self._waiting = self._waiting, []
        for predicate, d in waiting:
            if predicate():
                d.callback(None)
            else:
                self._waiting.append((predicate, d))

    def processEnded(self, reason):
        for fd, rest in self._partial.items():
            if rest:
                (self.out if fd == 1 else self.err).append(rest.decode("utf-8", "replace"))
        self.exit_code = reason.value.exitCode
        waiting, self._waiting = self._waiting, []
        for _, d in waiting:
            d.errback(AssertionError(f"the process ended first; stdout {self.out!r}, stderr {self.err!r}"))
        self.ended.callback(self.exit_code)

    def said(self, text: str, stream: str = "out", times: int = 1) -> Deferred:
        """Fires once ``times`` lines containing ``text`` have appeared (those already there count)."""
        def predicate():
            return sum(text in line for line in (self.out if stream == "out" else self.err)) >= times
        if predicate():
            return succeed(None)
        if self.ended.called:
            return fail(AssertionError(f"the process ended first; stdout {self.out!r}, stderr {self.err!r}"))
        d = Deferred()
        self._waiting.append((predicate, d))
        return d


def run_tool(test, argv):
    """Start ``python argv...`` beside the test's reactor; killed at cleanup if still running."""
    process = ToolProcess()
    transport = reactor.spawnProcess(process, sys.executable, [sys.executable, *argv], env=dict(os.environ))
    process.transport = transport

    def stop():
        if not process.ended.called:
            transport.signalProcess("KILL")
        return process.ended
    test.addCleanup(stop)
    return process


def run_cli(test, *args):
    """``fmspy-gateway ARGS`` (as ``python -m fmspy_gateway.cli``, the same entry point)."""
    return run_tool(test, ["-m", "fmspy_gateway.cli", *args])
