"""``[Cluster] workers = N``: N processes on this machine, N nodes of the cluster, sharing the listening ports.

The process twistd starts becomes a supervisor (``WorkerPool``): it serves
nothing itself; it starts N workers, each a ``twistd -n fmspy-gateway`` of
its own with ``--worker <node>-<i>``, restarts one that dies (after a
backoff that grows while workers keep dying young, logged), and at its own
shutdown (SIGTERM, SIGINT) stops them all and waits for them.  A worker also
ends if the supervisor dies without stopping it (``die_with_supervisor``:
the kernel's parent-death signal), so none is left orphaned.

**How the ports are shared: SO_REUSEPORT.**  The supervisor binds each port
(``tap.bind_listener(..., listen=False)``), so that a port in use or a wrong
address is one line at start and port 0 becomes one real port for all; it
keeps those sockets bound, never listening, so the port stays reserved
while a worker restarts.  Each worker binds the same address with
SO_REUSEPORT and listens on its own socket; the kernel spreads new
connections over the listening sockets by a hash of the peer's address and
port.  Chosen over one inherited listening socket because that one is
shared by every worker's accept loop: all of them wake for each connection
and whichever runs first takes it (and Twisted accepts up to a hundred per
wake-up), so the split follows scheduling luck, not load; with SO_REUSEPORT
each worker has its own queue, and a drained worker (``server/drain.py``)
closes its socket and leaves the group, so new connections go to the
others at once.  The cost: connections already queued on a worker that is
killed are reset (the client reconnects); a graceful stop closes the
listener before the connections.

Every line a worker logs reaches the supervisor's log (the worker writes
``[system] text`` lines to its standard output; the supervisor logs each
with the worker's node name as its system), so twistd's log file, rotation
and daemon mode stay the supervisor's, and every line names its node.
"""
import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import FileLogObserver, Logger, formatEventAsClassicLogText

log = Logger()

#: The first restart comes after this many seconds; each worker that dies young doubles it, up to MAX_BACKOFF.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
#: A worker that ran at least this long before dying was not dying young: its next restart is quick again.
HEALTHY_AFTER = 60.0
#: Linux prctl option: deliver a signal to this process when its parent dies.
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSpec:
    """How to start worker ``index``: its node name and its twistd command line."""

    index: int
    node: str
    argv: Sequence[str]


def worker_node(node: str, index: int) -> str:
    """``<node>-<i>``: distinct per worker, and still saying which machine's supervisor it belongs to."""
    return f"{node}-{index}"


def worker_argv(node: str, twistd_args: Sequence[str], supervisor_pid: int) -> List[str]:
    """A worker's command line: this interpreter's twistd, in the foreground, logging plain lines to stdout.

    ``twistd_args`` are the plugin's options the worker needs (the config
    file, the ports the supervisor bound); ``--worker`` makes it a worker.
    """
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
            "--logger", f"{__name__}.worker_log_observer", "fmspy-gateway", *twistd_args,
            "--worker", node, "--supervisor-pid", str(supervisor_pid)]


def _plain_line(event) -> Optional[str]:
    """``[system] text``: the classic line without its time stamp (the supervisor's log adds its own)."""
    text = formatEventAsClassicLogText(event, formatTime=lambda _: "")
    return text.lstrip(" ") if text else None


def worker_log_observer():
    """twistd ``--logger`` of a worker: plain lines on stdout, read by the supervisor (``WorkerProcess``)."""
    return FileLogObserver(sys.stdout, _plain_line)


def die_with_supervisor(supervisor_pid: int) -> None:
    """Take signals from the supervisor only, and end with it, however it ends.

    The worker leaves the supervisor's process group, so that Ctrl+C in a
    terminal (or ``timeout``) signals the supervisor alone, which stops the
    workers in order, rather than every process at once.  Then the kernel
    is asked to send SIGTERM when the supervisor dies; checked once more
    afterwards: a supervisor that died before the request has already left
    this process to init, and the signal would never come.
    """
    os.setpgid(0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warn("worker: cannot ask to be stopped with the supervisor (prctl: {error})",
                 error=os.strerror(ctypes.get_errno()))
    if os.getppid() != supervisor_pid:
        os.kill(os.getpid(), signal.SIGTERM)


def _signal(transport, name: str) -> None:
    """Signal a worker that may have ended a moment ago (its end not yet delivered): nothing to do then."""
    try:
        transport.signalProcess(name)
    except ProcessExitedAlready:
        pass


def announce_ready(node: str) -> None:
    """Logged once the worker's reactor runs: from then on SIGTERM is a graceful stop, not the default death
    (twistd installs its signal handlers when the reactor starts, after the listeners)."""
    log.info("cluster: worker {node} ready", node=node)


class WorkerProcess(ProcessProtocol):
    """One running worker: relays its output lines to the log under its node name, tells the pool it ended."""

    def __init__(self, spec: WorkerSpec, ended: Callable[["WorkerProcess", object], None]):
        self.spec = spec
        self._ended = ended
        self._partial = {1: b"", 2: b""}
        self.pid = None
        #: Fires when the process has ended (what the pool's stop waits for).
        self.gone = Deferred()

    def childDataReceived(self, fd, data):
        if fd not in self._partial:
            return
        *lines, self._partial[fd] = (self._partial[fd] + data).split(b"\n")
        for line in lines:
            self._relay(line)

    def _relay(self, line: bytes):
        if line.strip():
            log.info("{line}", line=line.decode("utf-8", "replace").rstrip(), log_system=self.spec.node)

    def processEnded(self, reason):
        for rest in self._partial.values():
            self._relay(rest)
        self._ended(self, reason.value)
        self.gone.callback(None)


class WorkerPool(service.Service):
    """The supervisor's one service: keeps ``specs`` running, restarts the dead, stops them all at the end."""

    name = "workers"

    def __init__(self, specs: Sequence[WorkerSpec], sockets=(), reactor=None, env=None, pass_on_sighup=False,
                 stop_timeout: float = 60.0):
        if reactor is None:
            from twisted.internet import reactor
        self.specs = tuple(specs)
        #: The bound, not listening, sockets that reserve the shared ports (closed once the workers stopped).
        self.sockets = list(sockets)
        self.reactor = reactor
        self.env = dict(os.environ) if env is None else env
        #: index -> (WorkerProcess, its transport, when it started), for the running workers.
        self.alive = {}
        #: index -> the next restart's delay, and its pending DelayedCall.
        self.backoff = {}
        self.restarts = {}
        self.stopping = False
        #: Seconds to wait for the workers to stop (they close their clients first) before SIGKILL
        #: ([Cluster] workerStopTimeout).
        self.stop_timeout = stop_timeout
        #: Whether the workers handle SIGHUP (they reload [RTMPS] certificates); else it would end them.
        self.pass_on_sighup = pass_on_sighup
        self._previous_sighup = None

    def startService(self):
        super().startService()
        # SIGHUP re-reads the RTMPS certificates (server/tls.py): the workers hold them, so it is theirs.
        # Unhandled here, its default action would end the supervisor, and with it every worker.
        self._previous_sighup = signal.signal(signal.SIGHUP, self._on_sighup)
        log.info("cluster: starting {count} workers: {nodes}", count=len(self.specs),
                 nodes=", ".join(spec.node for spec in self.specs))
        for spec in self.specs:
            self._spawn(spec)

    def _spawn(self, spec: WorkerSpec):
        self.restarts.pop(spec.index, None)
        process = WorkerProcess(spec, self._worker_ended)
        transport = self.reactor.spawnProcess(process, spec.argv[0], list(spec.argv), env=self.env,
                                              childFDs={0: "w", 1: "r", 2: "r"})
        process.pid = transport.pid     # the transport forgets it once the process has ended
        self.alive[spec.index] = (process, transport, self.reactor.seconds())
        log.info("cluster: worker {node} started (pid {pid})", node=spec.node, pid=transport.pid)

    def _worker_ended(self, process: WorkerProcess, status):
        spec = process.spec
        _, _, started = self.alive.pop(spec.index)
        how = f"signal {status.signal}" if getattr(status, "signal", None) else f"status {status.exitCode}"
        if self.stopping:
            log.info("cluster: worker {node} stopped ({how})", node=spec.node, how=how)
            return
        lived = self.reactor.seconds() - started
        delay = self.backoff.get(spec.index, FIRST_BACKOFF)
        if lived >= HEALTHY_AFTER:
            delay = FIRST_BACKOFF
        self.backoff[spec.index] = min(delay * 2, MAX_BACKOFF)
        log.warn("cluster: worker {node} (pid {pid}) died ({how}) after {lived:.0f} s; restarting in {delay:g} s",
                 node=spec.node, pid=process.pid, how=how, lived=lived, delay=delay)
        self.restarts[spec.index] = self.reactor.callLater(delay, self._spawn, spec)

    def _on_sighup(self, signum, frame):
        # A signal handler runs between two bytecodes of whatever was running: do the work in the reactor.
        self.reactor.callFromThread(self._pass_on, "HUP")

    def _pass_on(self, name: str):
        if not self.pass_on_sighup:
            log.info("cluster: SIG{name} ignored: the workers have nothing to reload (no [RTMPS])", name=name)
            return
        log.info("cluster: SIG{name} passed on to {count} workers", name=name, count=len(self.alive))
        for _, transport, _ in list(self.alive.values()):
            _signal(transport, name)

    def stopService(self):
        super().stopService()
        self.stopping = True
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        for call in self.restarts.values():
            if call.active():
                call.cancel()
        self.restarts.clear()
        if not self.alive:
            self._release()
            return succeed(None)
        log.info("cluster: stopping {count} workers", count=len(self.alive))
        waits = []
        for process, transport, _ in list(self.alive.values()):
            _signal(transport, "TERM")
            waits.append(process.gone)
        overdue = self.reactor.callLater(self.stop_timeout, self._kill_overdue)
        done = DeferredList(waits)

        def stopped(_):
            if overdue.active():
                overdue.cancel()
            self._release()
        return done.addCallback(stopped)

    def _kill_overdue(self):
        for process, transport, _ in list(self.alive.values()):
            log.warn("cluster: worker {node} did not stop within {timeout:g} s ([Cluster] workerStopTimeout): "
                     "killing it", node=process.spec.node, timeout=self.stop_timeout)
            _signal(transport, "KILL")

    def _release(self):
        for sock in self.sockets:
            sock.close()
        self.sockets = []
