"""cluster/workers.py's supervisor on a fake reactor (a Clock that records spawned processes), and tap.py's
worker configuration.  The real processes, ports and signals: tests/cluster/test_workers.py."""
import os
import signal
import socket

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway import tap
from fmspy_gateway.cluster.workers import MAX_BACKOFF, WorkerPool, WorkerSpec, worker_argv, worker_node
from fmspy_gateway.config import load_config
from tests.conftest import scratch_path


class FakeTransport:
    def __init__(self, pid):
        self.pid = pid
        self.signals = []

    def signalProcess(self, name):
        self.signals.append(name)


class ProcessReactor(Clock):
    """A Clock whose spawnProcess records (protocol, transport); ``end(i)`` ends the i-th process spawned."""

    def __init__(self):
        super().__init__()
        self.spawned = []

    def spawnProcess(self, protocol, executable, args, env=None, childFDs=None):
        transport = FakeTransport(1000 + len(self.spawned))
        protocol.makeConnection(transport)
        self.spawned.append((protocol, transport, args))
        return transport

    def callFromThread(self, f, *args):
        f(*args)

    def end(self, index, signal=9):
        protocol, transport, _ = self.spawned[index]
        reason = ProcessTerminated(signal=signal) if signal else ProcessDone(0)
        transport.pid = None          # as Twisted's: gone once the process ended
        protocol.processEnded(Failure(reason))


class WorkerPoolTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = ProcessReactor()
        self.specs = [WorkerSpec(i, worker_node("box", i), ["python", f"worker-{i}"]) for i in (1, 2)]
        self.sock = socket.socket()
        self.addCleanup(self.sock.close)
        self.pool = WorkerPool(self.specs, [self.sock], reactor=self.reactor, env={}, stop_timeout=45)
        self.pool.startService()
        self.addCleanup(self.pool.stopService)      # gives SIGHUP its handler back

    def test_starts_every_worker(self):
        self.assertEqual([args for _, _, args in self.reactor.spawned], [["python", "worker-1"],
                                                                          ["python", "worker-2"]])

    def test_a_dead_worker_is_restarted_with_a_backoff_that_grows_while_it_dies_young(self):
        with capturedLogs() as events:
            self.reactor.end(0)
        self.assertIn("box-1 (pid 1000) died (signal 9) after 0 s; restarting in 1 s", formatEvent(events[-1]))
        delays = []
        for _ in range(7):
            before = len(self.reactor.spawned)
            waited = 0.0
            while len(self.reactor.spawned) == before:
                self.reactor.advance(0.5)
                waited += 0.5
            delays.append(waited)
            self.reactor.end(len(self.reactor.spawned) - 1)
        self.assertEqual(delays, [1, 2, 4, 8, 16, 30, 30])
        self.assertEqual(MAX_BACKOFF, 30)

    def test_a_worker_that_lived_long_is_restarted_quickly_again(self):
        self.reactor.end(0)
        self.reactor.advance(1)         # restarted (pid 1002)
        self.reactor.end(2)
        self.reactor.advance(2)         # dying young: 2 s
        self.assertEqual(len(self.reactor.spawned), 4)
        self.reactor.advance(60)        # this one lived a minute
        self.reactor.end(3)
        self.reactor.advance(1)
        self.assertEqual(len(self.reactor.spawned), 5)

    def test_stop_signals_every_worker_waits_for_them_and_restarts_none(self):
        d = self.pool.stopService()
        self.assertEqual([t.signals for _, t, _ in self.reactor.spawned], [["TERM"], ["TERM"]])
        self.assertNoResult(d)
        self.reactor.end(0, signal=15)
        self.assertNoResult(d)
        self.reactor.end(1, signal=None)
        self.successResultOf(d)
        self.reactor.advance(MAX_BACKOFF * 2)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(self.sock.fileno(), -1, "the reserved ports are released once the workers are gone")

    def test_a_pending_restart_is_cancelled_by_the_stop(self):
        self.reactor.end(0)
        d = self.pool.stopService()
        self.reactor.end(1, signal=15)
        self.successResultOf(d)
        self.reactor.advance(MAX_BACKOFF)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_a_worker_that_does_not_stop_is_killed(self):
        d = self.pool.stopService()
        self.reactor.end(0, signal=15)
        with capturedLogs() as events:
            self.reactor.advance(44.9)
            self.assertEqual(self.reactor.spawned[1][1].signals, ["TERM"])
            self.reactor.advance(0.1)       # [Cluster] workerStopTimeout, 45 s here
        self.assertEqual(self.reactor.spawned[1][1].signals, ["TERM", "KILL"])
        self.assertIn("box-2 did not stop within 45 s ([Cluster] workerStopTimeout)", formatEvent(events[-1]))
        self.reactor.end(1)
        self.successResultOf(d)

    def test_sighup_is_passed_on_to_the_workers_which_hold_the_certificates(self):
        self.pool.pass_on_sighup = True
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual([t.signals for _, t, _ in self.reactor.spawned], [["HUP"], ["HUP"]])

    def test_without_rtmps_sighup_is_ignored_rather_than_ending_every_process(self):
        with capturedLogs() as events:
            os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual([t.signals for _, t, _ in self.reactor.spawned], [[], []])
        self.assertIn("ignored", formatEvent(events[-1]))

    def test_every_line_a_worker_writes_is_logged_under_its_node_name(self):
        protocol = self.reactor.spawned[1][0]
        with capturedLogs() as events:
            protocol.childDataReceived(1, b"[-] first li")
            protocol.childDataReceived(1, b"ne\n[x] second\n\n")
            protocol.childDataReceived(2, b"a traceback line\n")
        self.assertEqual([(e["log_system"], e["line"]) for e in events],
                         [("box-2", "[-] first line"), ("box-2", "[x] second"), ("box-2", "a traceback line")])


class WorkerArgvTests(SynchronousTestCase):
    def test_a_worker_is_twistd_in_the_foreground_logging_plain_lines(self):
        argv = worker_argv("box-1", ["--config", "/etc/f.cfg", "--rtmp-port", "1935"], 42)
        self.assertIn("-n", argv)
        self.assertEqual(argv[argv.index("--logger") + 1], "fmspy_gateway.cluster.workers.worker_log_observer")
        self.assertEqual(argv[argv.index("fmspy-gateway") + 1:], ["--config", "/etc/f.cfg", "--rtmp-port", "1935",
                                                                  "--worker", "box-1", "--supervisor-pid", "42"])


class AsWorkerTests(SynchronousTestCase):
    def config(self, text):
        path = scratch_path(self)
        with open(path, "w") as f:
            f.write(text)
        return load_config(path)

    def options(self, *args):
        options = tap.Options()
        options.parseOptions(list(args))
        return options

    def test_a_worker_takes_its_name_and_advertises_a_port_of_its_own(self):
        config = self.config("[RTMP]\ninterface = 127.0.0.1\n[Cluster]\nredis = unix:///r.sock\nsecret = s\n"
                             "workers = 2\nnode = box\n")
        worker, own = tap.as_worker(config, self.options("--worker", "box-2"))
        self.addCleanup(own.close)
        port = own.getsockname()[1]
        self.assertEqual((worker.cluster.node, worker.cluster.workers, worker.cluster.advertise),
                         ("box-2", 1, f"rtmp://127.0.0.1:{port}"))

    def test_the_advertised_host_comes_from_advertise_then_the_interface(self):
        self.assertEqual(tap.advertised_host("rtmp://media-a.example:1935", "0.0.0.0"), "media-a.example")
        self.assertEqual(tap.advertised_host("", "10.0.0.5"), "10.0.0.5")
        self.assertEqual(tap.advertised_host("", "::1"), "[::1]")
        self.assertEqual(tap.advertised_host("", ""), "127.0.0.1")

    def test_any_other_process_is_unchanged(self):
        config = self.config("[RTMP]\nport = 0\n")
        self.assertEqual(tap.as_worker(config, self.options()), (config, None))
