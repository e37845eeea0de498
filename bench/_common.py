"""Helpers the benchmark scripts share: /proc readings, child processes with a line-based
control channel, and the real server built the way ``twistd fmspy-gateway`` builds it.

Benchmarks import this as ``_common`` (``bench/`` is on ``sys.path`` when a script in it
runs).  Nothing here measures anything by itself.
"""
import asyncio
import json
import os
import resource
import sys

CLK_TCK = os.sysconf("SC_CLK_TCK")
COMMAND_TIMEOUT = 120.0      # seconds for a child to answer a control command


# -- /proc ------------------------------------------------------------------------------

def read_cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def read_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/pid/status")


def read_system_cpu() -> tuple:
    """(busy, total) jiffies over all CPUs from /proc/stat; busy excludes idle and iowait."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    total = sum(values[:8])          # guest time is already counted in user/nice
    idle = values[3] + values[4]
    return total - idle, total


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


# -- a child process, seen from the (asyncio) parent --------------------------------------

class Child:
    """A child process that prints ``ready {json}`` first, then answers line commands on stdin.

    Every wait is bounded; :meth:`stop` asks it to quit, closes its stdin (which
    must stop it too) and kills it if it lingers.
    """

    def __init__(self, name, process):
        self.name = name
        self.process = process
        self.pid = process.pid
        self.info = {}

    @classmethod
    async def start(cls, name, args, ready_timeout=60.0):
        process = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.PIPE,
                                                       stdout=asyncio.subprocess.PIPE)
        child = cls(name, process)
        try:
            line = await child.read_line(timeout=ready_timeout)
            if not line.startswith("ready "):
                raise RuntimeError(f"{name} child did not start: {line!r}")
            child.info = json.loads(line.split(" ", 1)[1])
        except BaseException:
            await child.stop()
            raise
        return child

    async def read_line(self, timeout=COMMAND_TIMEOUT) -> str:
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name} child exited (see its stderr above)")
        return line.decode().rstrip("\n")

    async def send(self, command: str):
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    async def ask(self, command: str, timeout=COMMAND_TIMEOUT) -> str:
        await self.send(command)
        return await self.read_line(timeout)

    async def ask_lines(self, command: str, timeout=COMMAND_TIMEOUT) -> list:
        """A command answered by several lines, the last one ``end`` (not returned)."""
        lines = [await self.ask(command, timeout)]
        while lines[-1] != "end":
            lines.append(await self.read_line(timeout))
        return lines[:-1]

    async def stop(self, timeout=15.0):
        process = self.process
        if process.returncode is None:
            try:
                process.stdin.write(b"quit\n")
                await process.stdin.drain()
                process.stdin.close()
            except (ConnectionError, RuntimeError):
                pass
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()


def script_args(script: str, *args) -> list:
    """The command line that runs ``script`` again with ``args`` (for child processes)."""
    return [sys.executable, os.path.abspath(script), *args]


# -- inside a Twisted child ------------------------------------------------------------------

def begin_file_logging(log_path: str):
    """Log to a file, as twistd does.

    Without beginLoggingTo, Twisted keeps the first 65,536 log events in
    memory.  Returns the open file (close it after the reactor stopped).
    """
    from twisted.logger import globalLogBeginner, textFileLogObserver

    log_file = open(log_path, "a")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(log_file)], redirectStandardIO=False)
    return log_file


def start_fmspy_service(reactor, config_path: str):
    """The server as ``twistd fmspy-gateway --config FILE`` builds it, started.

    Returns (top service, RTMP listening port object, RTMP server factory, codec name).
    """
    from fmspy_gateway import tap
    from fmspy_gateway.rtmp import amf

    options = tap.Options()
    options.parseOptions(["--config", config_path])
    top = tap.makeService(options, reactor=reactor)
    top.startService()
    listening = top.getServiceNamed("rtmp")._port
    return top, listening, listening.factory, amf.codec_name()


def twisted_control(reactor, ready_line: str, commands: dict, stop):
    """A stdio LineReceiver for a Twisted child: says ``ready_line``, then dispatches commands.

    ``commands`` maps a command word to ``f(*args) -> list of lines`` (the
    lines are sent as they are; end multi-line answers with ``"end"``).
    ``quit`` and the end of stdin call ``stop()`` (returning a Deferred) and
    stop the reactor.
    """
    from twisted.internet import stdio
    from twisted.protocols.basic import LineReceiver

    class Control(LineReceiver):
        delimiter = b"\n"
        _stopping = False

        def connectionMade(self):
            self.say(ready_line)

        def say(self, line):
            self.sendLine(line.encode())

        def lineReceived(self, line):
            command, *args = line.decode().split()
            if command == "quit":
                self.say("bye")
                self.stop_all()
                return
            handler = commands.get(command)
            if handler is None:
                self.say(f"error unknown command {command!r}")
                return
            try:
                lines = handler(*args)
            except Exception as e:          # report, keep serving: the parent decides
                lines = [f"error {type(e).__name__}: {e}"]
            for text in lines:
                self.say(text)

        def connectionLost(self, reason):
            self.stop_all()

        def stop_all(self):
            if reactor.running and not self._stopping:
                self._stopping = True
                stop().addBoth(lambda _: reactor.stop())

    return stdio.StandardIO(Control(), reactor=reactor)
