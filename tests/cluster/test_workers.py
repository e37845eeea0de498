"""``[Cluster] workers = 2`` end to end: twistd as users start it, a real redis-server, clients on the one port.

The supervisor's log is the witness: every worker line carries the worker's
node name (``[box-1]``, ``[box-2]``), and each connect is logged with the
client's address, so a test knows which worker took which client.  Waits
are on log lines and on process exits (a pidfd for processes that are not
the test's children), never on time.
"""
import os
import re
import signal
import sys
import tempfile
import shutil

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.trial.unittest import TestCase

from fmspy_gateway.server.client import connect_client

from ..tools.process import ToolProcess, run_cli
from .redis_server import redis_for

NODE = "box"
TOKEN = "w0rkers"
#: Connections tried before concluding that the kernel never spreads them (2 workers: all on one is 2 in 2**40).
MAX_CLIENTS = 40


class Heard:
    """A chat client's ``message`` handler: what the room said, and a wait for one line."""

    def __init__(self):
        self.lines = []
        self._waiting = {}

    def __call__(self, line):
        self.lines.append(line)
        for d in self._waiting.pop(line, []):
            d.callback(line)

    def wait(self, line) -> Deferred:
        if line in self.lines:
            return succeed(line)
        d = Deferred()
        self._waiting.setdefault(line, []).append(d)
        return d


class _Exit:
    """The reactor's reader of a pidfd: readable once the process has exited."""

    def __init__(self, fd, done):
        self.fd, self.done = fd, done

    def fileno(self):
        return self.fd

    def logPrefix(self):
        return "pidfd"

    def doRead(self):
        reactor.removeReader(self)
        os.close(self.fd)
        self.done.callback(None)

    def connectionLost(self, reason):
        pass


def process_gone(pid: int) -> Deferred:
    """Fires once process ``pid`` (any process, not only a child of ours) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return succeed(None)
    done = Deferred()
    reactor.addReader(_Exit(fd, done))
    return done


class WorkersTests(TestCase):
    timeout = 120

    def setUp(self):
        self.redis = redis_for(self)
        folder = tempfile.mkdtemp(prefix="fmspy-workers-")
        self.addCleanup(shutil.rmtree, folder, True)
        self.config = os.path.join(folder, "fmspy.cfg")
        with open(self.config, "w") as f:
            f.write(f"""
[RTMP]
port = 0
interface = 127.0.0.1
[HTTP]
enabled = yes
port = 0
interface = 127.0.0.1
push-token = {TOKEN}
[Cluster]
redis = {self.redis.url}
secret = workers-test
node = {NODE}
workers = 2
heartbeat = 1
[ChatApplication]
enabled = yes
name = chat
""")
        self.supervisor = ToolProcess()
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        self.transport = reactor.spawnProcess(
            self.supervisor, twistd, [twistd, "-n", "--pidfile=", "fmspy-gateway", "--config", self.config],
            env=dict(os.environ), path=folder)
        self.addCleanup(self.stop_supervisor)

    def stop_supervisor(self):
        if not self.supervisor.ended.called:
            self.transport.signalProcess("TERM")
        return self.supervisor.ended

    def lines(self, pattern):
        return [m for m in (re.search(pattern, line) for line in self.supervisor.out) if m]

    @inlineCallbacks
    def listening(self, node):
        """The port a worker listens on, once it says so."""
        yield self.supervisor.said(f"[{node}] [fmspy_gateway.tap#info] RTMP listening on")
        return int(self.lines(rf"\[{node}\] .*RTMP listening on 127\.0\.0\.1:(\d+)")[-1].group(1))

    def worker_pid(self, node):
        return int(self.lines(rf"cluster: worker {node} started \(pid (\d+)\)")[-1].group(1))

    @inlineCallbacks
    def both_listening(self):
        """The shared port, once both workers run (their reactors too: a SIGTERM is then a graceful stop)."""
        ports = []
        for i in (1, 2):
            ports.append((yield self.listening(f"{NODE}-{i}")))
            yield self.supervisor.said(f"cluster: worker {NODE}-{i} ready")
        self.assertEqual(ports[0], ports[1], "the workers share one port")
        return ports[0]

    @inlineCallbacks
    def connect(self, url, **kwargs):
        """A client and the node that took it (read from that node's connect line)."""
        client = yield connect_client(url, reactor=reactor, **kwargs)
        self.addCleanup(client.close)
        address = f"(127.0.0.1:{client.transport.getHost().port},"
        yield self.supervisor.said(address)
        (line,) = [line for line in self.supervisor.out if address in line and "connected to chat" in line]
        return client, re.search(r"\[(box-\d)\]", line).group(1)

    @inlineCallbacks
    def test_clients_on_the_one_port_land_on_both_workers_and_share_rooms(self):
        port = yield self.both_listening()
        url = f"rtmp://127.0.0.1:{port}/chat/lobby"
        clients = {}      # node -> (client, what it hears)
        for _ in range(MAX_CLIENTS):
            heard = Heard()
            client, node = yield self.connect(url, handlers={"message": heard})
            clients.setdefault(node, (client, heard))
            if len(clients) == 2:
                break
        self.assertEqual(sorted(clients), [f"{NODE}-1", f"{NODE}-2"], "every connection went to one worker")

        (speaker, _), (listener, heard) = clients[f"{NODE}-1"], clients[f"{NODE}-2"]
        yield listener.call("identify", "listener")
        yield speaker.call("identify", "speaker")
        yield speaker.call("say", "hello across workers")
        yield heard.wait("<speaker>: hello across workers")
        self.assertIn("<speaker> is entering chat...", heard.lines)

    @inlineCallbacks
    def test_a_drained_worker_leaves_the_shared_port_to_the_others(self):
        port = yield self.both_listening()
        http_port = int(self.lines(r"HTTP: 2 workers share 127\.0\.0\.1:(\d+)")[0].group(1))
        os.environ["FMSPY_PUSH_TOKEN"] = TOKEN
        try:
            tool = run_cli(self, "drain", f"http://127.0.0.1:{http_port}", "--grace", "600")
        finally:
            del os.environ["FMSPY_PUSH_TOKEN"]
        self.assertEqual((yield tool.ended), 0, tool.err)
        (drained,) = {m.group(1) for m in self.lines(r"\[(box-\d)\] .*drain: stopped accepting connections")}
        (other,) = {f"{NODE}-1", f"{NODE}-2"} - {drained}
        url = f"rtmp://127.0.0.1:{port}/chat/lobby"
        for _ in range(10):       # each would go to the drained worker half of the time, were it still listening
            _, node = yield self.connect(url)
            self.assertEqual(node, other)

    @inlineCallbacks
    def test_a_worker_killed_with_sigkill_is_restarted(self):
        port = yield self.both_listening()
        node = f"{NODE}-1"
        pid = self.worker_pid(node)
        os.kill(pid, signal.SIGKILL)
        yield self.supervisor.said(f"cluster: worker {node} (pid {pid}) died (signal 9)")
        self.assertIn("restarting in 1 s", self.lines(rf"worker {node} \(pid {pid}\) died.*")[0].group(0))
        yield self.supervisor.said(f"cluster: worker {node} started (pid ", times=2)
        self.assertNotEqual(self.worker_pid(node), pid)
        # The new worker listens on the same port again, the supervisor having kept it.
        yield self.supervisor.said(f"[{node}] [fmspy_gateway.tap#info] RTMP listening on", times=2)
        self.assertEqual((yield self.listening(node)), port)

    @inlineCallbacks
    def test_stopping_the_supervisor_stops_every_worker(self):
        yield self.both_listening()
        pids = [self.worker_pid(f"{NODE}-{i}") for i in (1, 2)]
        self.transport.signalProcess("TERM")
        yield self.supervisor.ended
        for pid in pids:
            yield process_gone(pid)
        log = "\n".join(self.supervisor.out)
        for i in (1, 2):
            self.assertTrue(self.lines(rf"cluster: worker {NODE}-{i} stopped"), log)
            self.assertTrue(self.lines(rf"\[{NODE}-{i}\] .*Server Shut Down"), log)

    @inlineCallbacks
    def test_a_supervisor_killed_with_sigkill_leaves_no_orphans(self):
        yield self.both_listening()
        pids = [self.worker_pid(f"{NODE}-{i}") for i in (1, 2)]
        self.transport.signalProcess("KILL")
        yield self.supervisor.ended
        for pid in pids:
            yield process_gone(pid)     # the kernel's parent-death signal stopped them
