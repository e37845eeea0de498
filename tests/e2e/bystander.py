"""A healthy client kept busy beside a hostile one: the proof that an attack hurt only the attacker.

Every hostile end-to-end test starts a ``Bystander`` on the same server
before the attack and calls ``finish()`` after it.  The bystander calls
``echo`` back to back on its own connection; each call must be answered
within ``DEADLINE`` seconds (a call timeout, not a measured time), and the
server process's resident memory must not have grown by more than
``MAX_GROWTH`` bytes.  A server that stalls its reactor, or that buffers
what the attacker sends, fails one of the two.
"""
import logging
import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks

from fmspy_gateway.server.client import connect_client

#: Seconds within which every call of the bystander must be answered (issue 8: 0.5 s).
DEADLINE = 0.5
#: Resident memory the server may gain during an attack.
MAX_GROWTH = 64 * 1024 * 1024


def resident_bytes(pid: int = None) -> int:
    """VmRSS of a process (this one by default), from /proc."""
    with open(f"/proc/{pid or os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc status")


class Bystander:
    """Echo calls in a loop on a separate connection; ``finish()`` says whether all were answered."""

    def __init__(self, url: str, pid: int = None):
        self.url = url
        self.pid = pid
        self.answered = 0
        self.failures = []
        self._running = False
        self._stopped = None
        self._memory_before = 0

    @inlineCallbacks
    def start(self):
        self.client = yield connect_client(self.url, reactor=reactor, call_timeout=DEADLINE)
        self._memory_before = resident_bytes(self.pid)
        # One answered call before the attack, so the loop is known to work.
        yield self.client.call("echo", "ready")
        self._running = True
        self._stopped = Deferred()
        self._loop()

    def _loop(self):
        if not self._running:
            self._stopped.callback(None)
            return
        d = self.client.call("echo", self.answered)
        d.addCallbacks(self._answered, self._failed)

    def _answered(self, value):
        if value != self.answered:
            self.failures.append(f"echo returned {value!r}, expected {self.answered!r}")
        self.answered += 1
        reactor.callLater(0.01, self._loop)

    def _failed(self, failure):
        self.failures.append(failure.getErrorMessage())
        self._running = False
        self._stopped.callback(None)

    @inlineCallbacks
    def finish(self, testcase, min_answered: int = 3):
        """Stop the loop and assert on ``testcase`` that the bystander was served throughout."""
        if self._running:
            self._running = False
            yield self._stopped
        growth = resident_bytes(self.pid) - self._memory_before
        self.client.close()
        testcase.assertEqual(self.failures, [], "the bystander's calls were not all answered in time")
        testcase.assertGreaterEqual(self.answered, min_answered, "the bystander was hardly served")
        testcase.assertLess(growth, MAX_GROWTH, f"server memory grew by {growth} bytes")


class LogLines(logging.Handler):
    """The warnings the server logs (with the standard library) while a test runs."""

    def __init__(self, testcase):
        super().__init__(logging.WARNING)
        self.lines = []
        logger = logging.getLogger("fmspy_gateway")
        logger.addHandler(self)
        testcase.addCleanup(logger.removeHandler, self)

    def emit(self, record):
        self.lines.append(record.getMessage())

    def naming(self, *words):
        return [line for line in self.lines if all(word in line for word in words)]
