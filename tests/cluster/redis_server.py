"""A real redis-server of the test's own: in a temporary directory, on a unix socket (or a free loopback port).

Every cluster test starts its own server (never a shared one), with
persistence off (``--save ""``, ``--appendonly no``).  ``start()`` returns
once redis has said it is ready to accept connections on its standard output
(read by a thread, so there is no polling and no sleep); ``stop()`` ends it
and ``start()`` brings it back on the same address, which is what the
outage tests need; ``kill()`` is SIGKILL.  ``redis_for(test)`` gives a trial
``TestCase`` a started server that is stopped and removed at cleanup; the
``redis_server`` pytest fixture does the same for plain tests.

Without redis-server the test skips, but in CI (``CI`` set) it fails:
scripts/setup installs it.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

import pytest

from tests.conftest import require_tool

#: Generous: a loaded CI machine may take a while to start a process.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """One redis-server process; its address stays the same across ``stop()`` / ``start()``."""

    def __init__(self, *, tcp: bool = False, password: str = ""):
        self.executable = require_tool("redis-server")
        self.directory = tempfile.mkdtemp(prefix="fmspy-redis-")
        self.password = password
        self.socket_path = None if tcp else os.path.join(self.directory, "redis.sock")
        self.port = _free_loopback_port() if tcp else 0
        self.process = None
        #: Everything the server has printed, across restarts (for failure messages).
        self.output = []

    @property
    def url(self) -> str:
        """The [Cluster] redis URL of this server."""
        if self.socket_path is not None:
            return f"unix://{self.socket_path}"
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _argv(self):
        argv = [self.executable, "--dir", self.directory, "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--logfile", "", "--bind", "127.0.0.1", "--port", str(self.port)]
        if self.socket_path is not None:
            argv += ["--unixsocket", self.socket_path, "--unixsocketperm", "700"]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv

    def start(self) -> "RedisServer":
        """Start the server (again) and return once it accepts connections."""
        if self.running:
            raise RuntimeError("redis-server is already running")
        ready = threading.Event()
        self.process = subprocess.Popen(self._argv(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        threading.Thread(target=self._drain, args=(self.process, ready), daemon=True).start()
        if not ready.wait(START_TIMEOUT) or not self.running:
            self.kill()
            raise RuntimeError("redis-server did not start: " + " | ".join(self.output[-10:]))
        return self

    def _drain(self, process, ready):
        """Read the server's output for as long as it runs (a full pipe would stall it)."""
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.output.append(line)
            if "ready to accept connections" in line.lower():
                ready.set()
        ready.set()     # it ended: start() sees it is not running

    def command(self, *words) -> bytes:
        """One command in RESP over a socket of its own (blocking); the first line of the answer, e.g.
        ``b":1500"`` or ``b"+OK"``: enough for tests that poke at Redis beside the code under test (no AUTH)."""
        if self.socket_path is not None:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address = self.socket_path
        else:
            connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = ("127.0.0.1", self.port)
        encoded = [word if isinstance(word, bytes) else str(word).encode() for word in words]
        with connection:
            connection.settimeout(START_TIMEOUT)
            connection.connect(address)
            request = b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in encoded)
            connection.sendall(request)
            answer = b""
            while b"\r\n" not in answer:
                chunk = connection.recv(4096)
                if not chunk:
                    break
                answer += chunk
        return answer.split(b"\r\n", 1)[0]

    def stop(self):
        """End the server as an operator would (SIGTERM) and wait for it to be gone."""
        self._end(signal.SIGTERM)

    def kill(self):
        """End the server at once (SIGKILL), as a crash would."""
        self._end(signal.SIGKILL)

    def _end(self, signum):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.process = None
        if self.socket_path is not None and os.path.exists(self.socket_path):
            os.unlink(self.socket_path)     # a killed server leaves its socket file behind

    def remove(self):
        """Stop the server and delete its directory."""
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def redis_for(test, **options) -> RedisServer:
    """A started server for a trial ``TestCase``, stopped and removed at the test's cleanup."""
    server = RedisServer(**options)
    test.addCleanup(server.remove)
    return server.start()


@pytest.fixture
def redis_server():
    """A started server for a plain pytest test, removed afterwards."""
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.remove()
