"""Helpers the benchmark scripts share: /proc readings, child processes with a line-based
control channel, the real server built the way ``twistd fmspy-gateway`` builds it (and the
fmspy.cfg it is built from), the pieces of a lean raw RTMP client, and cProfile for a server child with its
report.

Benchmarks import this as ``_common`` (``bench/`` is on ``sys.path`` when a script in it
runs).  Nothing here measures anything by itself.
"""
import asyncio
import json
import os
import resource
import sys
import time
from typing import List, Optional

HOST = "127.0.0.1"           # everything the benchmarks run listens here
CLK_TCK = os.sysconf("SC_CLK_TCK")
_CPUCLOCK_SCHED = 2          # the kernel's process CPU clock that counts every nanosecond run (posix-cpu-timers)
COMMAND_TIMEOUT = 120.0      # seconds for a child to answer a control command


# -- /proc ------------------------------------------------------------------------------

def _stat_fields(pid: int) -> list:
    """The fields of /proc/<pid>/stat after the command name: [0] is the state, [11] utime."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def read_cpu_seconds(pid: int) -> float:
    """The CPU time of the process (all its threads, those already gone too), in seconds, to the nanosecond.

    Read from the process's own CPU-time clock (what ``clock_getcpuclockid(3)``
    returns: the clock id glibc makes of the pid), not from /proc/<pid>/stat,
    whose utime + stime come in clock ticks (10 ms): a server at 2% of a core
    uses some 30 ticks in a 15 s window, so one tick either way at each end
    moved a ratio of two servers by up to 7%.  /proc's ticks remain the
    fallback where that clock cannot be read.
    """
    try:
        return time.clock_gettime(((~pid) << 3) | _CPUCLOCK_SCHED)
    except OSError:
        fields = _stat_fields(pid)
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def read_user_system(pid: int) -> tuple:
    """(utime, stime) of the process in seconds: Python's own work vs the kernel's (sockets, epoll)."""
    fields = _stat_fields(pid)
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def _status_field(pid: int, name: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split()[1]
    raise RuntimeError(f"no {name} in /proc/{pid}/status")


def read_rss_kb(pid: int) -> int:
    return int(_status_field(pid, "VmRSS"))


def tracer_of(pid: int) -> int:
    """The pid tracing the process (strace, gdb: ptrace), 0 if none.

    A tracer's cost lands on the traced process itself, where the machine's
    busy check cannot see it: strace on nginx-rtmp once made it measure 0.81
    CPU-s per Gbit instead of some 0.14.  ``perf record`` does not ptrace and is not seen.  The scripts
    ask as a window opens and as it closes: a tracer that came and went between is not seen either.
    """
    try:
        return int(_status_field(pid, "TracerPid"))
    except OSError:
        return 0


#: Other work above this many cores, on average over a measured phase, disturbs its figures: every
#: benchmark then says so on the phase's line and gives no verdict.
BUSY_CORES = 0.25


def read_system_cpu() -> tuple:
    """(busy, total) jiffies over all CPUs from /proc/stat; busy excludes idle and iowait."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    total = sum(values[:8])          # guest time is already counted in user/nice
    idle = values[3] + values[4]
    return total - idle, total


def cores_busy(before: tuple, after: tuple) -> float:
    """Cores the machine kept busy on average between two ``read_system_cpu()`` readings."""
    return (after[0] - before[0]) / max(after[1] - before[1], 1) * os.cpu_count()


class ProcessesWindow:
    """CPU seconds of named processes and of the machine between ``start()`` and ``stop()``.

    ``stop()`` says how many cores other work kept busy meanwhile (``others``) and whether that disturbed
    the figures (``busy``: over ``BUSY_CORES``).
    """

    def __init__(self, pids):
        self.pids = dict(pids)

    def _read(self):
        return time.monotonic(), {name: read_cpu_seconds(pid) for name, pid in self.pids.items()}, read_system_cpu()

    def start(self):
        self.before = self._read()

    def add(self, name, pid):
        """A process started after ``start()``: all of its CPU falls in the window."""
        self.pids[name] = pid
        self.before[1][name] = 0.0

    def stop(self) -> dict:
        (t0, cpu0, sys0), (t1, cpu1, sys1) = self.before, self._read()
        wall = t1 - t0
        cpu = {name: cpu1[name] - cpu0[name] for name in cpu0}
        machine = cores_busy(sys0, sys1)
        others = max(machine - sum(cpu.values()) / wall, 0)
        return {"wall": wall, "cpu": cpu, "machine": machine, "others": others, "busy": others > BUSY_CORES}


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
        """A command answered by several lines, the last one ``end`` (not returned).

        A one-line ``error ...`` answer (the command failed in the child) raises
        RuntimeError at once instead of waiting for an ``end`` that will not come.
        """
        lines = [await self.ask(command, timeout)]
        if lines[0].startswith("error "):
            raise RuntimeError(f"{self.name} child answered {command!r} with: {lines[0]}")
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


def say(line: str):
    """A line to the parent on stdout, flushed at once (for children that are not Twisted)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class StdinLines:
    """The parent's command lines on stdin, for a child with its own poll loop rather than Twisted's
    (the load, the epoll relay): it calls :meth:`read` when stdin is readable."""

    def __init__(self):
        self._pending = b""

    def read(self) -> Optional[List[str]]:
        """The whole lines that came (decoded, stripped; a partial one waits), or None once stdin is closed."""
        chunk = os.read(0, 65536)
        if not chunk:
            return None
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        return [line.decode(errors="replace").strip() for line in lines]


# -- inside a Twisted child ------------------------------------------------------------------

FMSPY_CFG = """\
[RTMP]
port = 0
interface = {host}
backlog = 1024
pingInterval = 3600
keepAliveTimeout = 7200
{rtmp}
[HTTP]
enabled = no

"""


def write_fmspy_config(work_dir: str, sections: str, **rtmp) -> str:
    """Write ``work_dir``/fmspy.cfg for a benchmark server; returns its path.

    RTMP on HOST port 0, backlog 1024, pingInterval 3600 s and keepAliveTimeout
    7200 s (idle clients are never pinged or closed), HTTP off; ``rtmp`` adds
    options to [RTMP] and ``sections`` (config text) follows: the applications.
    """
    extra = "".join(f"{key} = {value}\n" for key, value in rtmp.items())
    path = os.path.join(work_dir, "fmspy.cfg")
    with open(path, "w") as f:
        f.write(FMSPY_CFG.format(host=HOST, rtmp=extra) + sections)
    return path


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


# -- a lean raw RTMP client (asyncio, bytes encoded once) ------------------------------------

S0_S1_S2 = 1 + 2 * 1536      # what the server sends back for the handshake


def handshake_c0c1() -> bytes:
    """C0 + C1 for the simple handshake: version 3, time 0, zero version field, random bytes."""
    return b"\x03" + bytes(8) + os.urandom(1528)


def connect_object(port: int, app: str) -> dict:
    """The command object of ``connect`` to ``app`` on HOST:``port``, as Flash Player sends it."""
    return {"app": app, "flashVer": "LNX 32,0,0,465", "swfUrl": "", "tcUrl": f"rtmp://{HOST}:{port}/{app}",
            "fpad": False, "capabilities": 239, "audioCodecs": 3575, "videoCodecs": 252,
            "videoFunction": 1, "pageUrl": "", "objectEncoding": 0}


def command_chunks(values) -> bytes:
    """An AMF0 command message (message stream 0) as chunks, encoded with the core's ``amf`` and ``ChunkWriter``."""
    from fmspy_gateway.rtmp import amf
    from fmspy_gateway.rtmp.chunks import ChunkWriter, Message
    from fmspy_gateway.rtmp.connection import COMMAND_CHUNK_STREAM
    from fmspy_gateway.rtmp.messages import MessageType

    payload = amf.encode_values(values, amf3=False)
    return ChunkWriter().write(Message(MessageType.COMMAND_AMF0, 0, 0, payload, COMMAND_CHUNK_STREAM))


# -- profiler and tracemalloc output ---------------------------------------------------------

def short_path(path: str) -> str:
    """A source file's path as it reads best in a report: from the package (or the checkout) down."""
    if "/fmspy_gateway/" in path:
        return "fmspy_gateway/" + path.rsplit("/fmspy_gateway/", 1)[1]
    for marker in ("site-packages/", "/work/main/", "/lib/python3.11/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def where(path: str, line: int, name: str) -> str:
    """A pstats function key as ``file:line name`` (a built-in, whose path is ``~``, as its name)."""
    if path == "~":
        return name                   # a built-in: "<method 'send' of '_socket.socket' objects>"
    return f"{short_path(path)}:{line} {name}"


def package(path: str, name: str, depth: int, built_ins, other: str) -> str:
    """A bucket for a function's own time: the package of its code.

    Our code, Twisted's and treq's are split ``depth`` levels deep (2:
    ``fmspy_gateway.rtmp``, 3: ``fmspy_gateway.rtmp.connection``).  A built-in
    goes to ``"built-in: " + bucket`` for the first ``(word, bucket)`` of
    ``built_ins`` whose word is in its name, else to ``"built-in: " + other``.
    """
    if path == "~":
        for word, bucket in built_ins:
            if word in name:
                return "built-in: " + bucket
        return "built-in: " + other
    parts = short_path(path).removesuffix(".py").split("/")
    if parts[0] in ("fmspy_gateway", "twisted", "treq") and len(parts) > 2:
        return ".".join(parts[:depth])
    return parts[0]


class Profiler:
    """cProfile in a server child, driven by the parent.

    The commands are ``profile start``, ``profile stop`` and ``profile
    report COUNT TOP [FILE]``; the report divides every figure by COUNT, the
    units of work (one ``unit``, such as "bridged call", each) done while it
    ran.
    """

    def __init__(self, unit: str):
        self.unit = unit
        self.profile = None

    def command(self, action, calls="1", top="25", dump=None):
        import cProfile
        if action == "start":
            self.profile = cProfile.Profile()
            self.profile.enable()
            return ["ok"]
        if action == "stop":
            self.profile.disable()
            return ["ok"]
        if dump:
            self.profile.dump_stats(dump)
        lines = list(profile_report(self.profile, self.unit, max(int(calls), 1), int(top)))
        self.profile = None
        return lines + ["end"]


# Own time of built-ins: the bucket of the first word in the built-in's name.
BUILT_INS = (("socket", "socket I/O"), ("epoll", "epoll"), ("json", "json (C)"), ("amf", "cpyamf (C)"),
             ("builtins.", "builtins (isinstance, len...)"))


def profile_report(profile, unit, calls, top):
    import pstats

    stats = pstats.Stats(profile).stats       # (file, line, name) -> (cc, nc, tt, ct, callers)
    total = sum(tt for _, _, tt, _, _ in stats.values())
    yield (f"profiled {calls} {unit}s: {total:.2f} s of profiled time, "
           f"{total / calls * 1e6:.0f} us per {unit} (cProfile inflates this several-fold)")
    functions = sum(nc for (path, _, _), (_, nc, _, _, _) in stats.items() if path != "~")
    built_ins = sum(nc for (path, _, _), (_, nc, _, _, _) in stats.items() if path == "~")
    yield (f"calls per {unit}: {functions / calls:.0f} Python functions, {built_ins / calls:.0f} built-ins "
           f"(counts, not times: the same on a busy machine)")

    yield f"own time by package (us per {unit}, share):"
    by_package = {}
    for (path, _, name), (_, _, tt, _, _) in stats.items():
        key = package(path, name, 2, BUILT_INS, "methods of dict, list, bytes...")
        by_package[key] = by_package.get(key, 0.0) + tt
    for key, tt in sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)[:15]:
        yield f"  {tt / calls * 1e6:7.1f} us  {tt / total * 100:5.1f}%  {key}"

    yield f"top {top} functions by own time (us per {unit}, calls per {unit}):"
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)
    for (path, line, name), (_, nc, tt, ct, _) in rows[:top]:
        yield (f"  {tt / calls * 1e6:7.1f} us {nc / calls:6.2f}x  cum {ct / calls * 1e6:7.1f} us  "
               f"{where(path, line, name)}")

    yield f"top {top} functions by cumulative time (us per {unit}):"
    rows = sorted(stats.items(), key=lambda kv: kv[1][3], reverse=True)
    for (path, line, name), (_, nc, tt, ct, _) in rows[:top]:
        yield (f"  {ct / calls * 1e6:7.1f} us {nc / calls:6.2f}x  own {tt / calls * 1e6:6.1f} us  "
               f"{where(path, line, name)}")
