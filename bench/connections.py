"""Connections: memory per idle client, CPU per connect and per round trip, against nginx-rtmp in the same run.

What it measures
    The server runs in a child process built the way ``twistd fmspy-gateway``
    builds it (``fmspy_gateway.tap.Options`` + ``makeService`` from a temporary
    fmspy.cfg: RTMP on 127.0.0.1 port 0, backlog 1024, HTTP off, echotest on,
    pingInterval/keepAliveTimeout long enough that idle clients are never
    pinged or closed), logging to a file as twistd does.  This process opens
    N clients in batches; each completes the simple handshake and an AMF0
    ``connect`` to ``echotest`` and then stays idle.  From /proc/<child>/status
    (VmRSS) and its CPU clock (``_common.read_cpu_seconds``) it reports:

      * server RSS before (after a warm-up of 50 connects, closed again, and a
        gc.collect) and after all N are connected and idle; the difference / N
        is the memory per connection (target: at most 16 KB, nginx-rtmp's figure);
      * server CPU seconds spent while the N connects ran, and per connect;
      * the wall time of the N connects;
      * that a fresh client can still connect and get ``echo`` answered;
      * server RSS once every client has closed again.

    Before the idle clients, on fresh connections: ``--calls`` createStream
    round trips (each followed by a deleteStream, so that ``maxStreams`` is
    never reached) and as many echo round trips of a small object, over
    ``--call-clients`` connections, each call waiting for its answer; then
    ``--cycles`` handshake + connect + close cycles, ``--cycle-concurrency``
    at a time.  Server CPU per call and per connect.

    nginx-rtmp (``bench/_nginx.py``: Debian's ``libnginx-mod-rtmp``, one
    process, ``application echotest { live on; }``) runs the same load in
    the same run, echo excepted (it has none), unless ``--skip-nginx``; the
    summary gives ours / nginx-rtmp for createStream, connect cycles and
    memory per idle connection.  Each phase also reads the machine's CPU:
    when other processes took more than a quarter of a core, a phase
    measured under 0.2 CPU-s, or the server was traced as it began or
    ended (strace, gdb: its /proc status names a tracer), the line says so and the summary gives no
    verdict.

    The reactor's floor (``_start_floor``, unless ``--skip-floor``) runs the
    round trips and cycles too, in a child of its own: a bare Twisted
    Protocol that answers them with canned bytes, one ``send()`` each, and
    does no RTMP work.  What it costs is what Twisted's reactor and the
    kernel cost before any work of ours; the summary gives it beside the
    ratio to nginx-rtmp.

    ``--baseline`` runs the same measurement against a bare Twisted echo
    Protocol server (accept, hold the connection): what holding a connection costs in Twisted alone.
    Baseline clients only connect and send nothing.

    ``--tracemalloc`` traces the server child's allocations and prints the top
    allocation sites (by size delta between the idle-before and idle-after
    states, grouped by source line) and the object types whose count grew.
    Tracing roughly doubles memory and slows everything: RSS and CPU figures
    of such a run are not the benchmark's figures.

    ``--profile createStream|echo|cycle`` runs cProfile in the server during
    that phase and prints, per round trip or per connect, the Python and
    built-in calls made (a count, the same on a busy machine) and where the
    time went.  cProfile inflates the CPU figures several-fold: those of a
    profiled run are not the benchmark's figures.

How the clients stay cheap
    One asyncio process, one small Protocol object per connection: C0+C1 is a
    fixed 1537-byte string (zero version field, so the server answers with the
    simple handshake), C2 echoes S1, and the connect command chunk is encoded
    once with the core's ``amf`` and ``ChunkWriter`` and reused; the connect is
    done when ``_result`` appears in the bytes that come back.  The health check
    at the end uses the real sans-I/O ``Connection`` instead, and checks the
    echoed value.

Usage
    .venv/bin/python bench/connections.py [--clients 10000] [--batch 500] [--baseline] [--tracemalloc]
                                          [--calls 20000] [--call-clients 4] [--cycles 2000]
                                          [--cycle-concurrency 10] [--skip-nginx] [--skip-floor]
                                          [--profile cycle [--top 25] [--profile-out FILE]]

The child is this same file run with ``--serve``; it takes commands on stdin
(count, gc, snapshot, report, profile, quit) and answers on stdout.  The script stops by
itself: every wait has a timeout, and the child stops when its stdin closes.
"""
import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _nginx import Nginx, find_nginx  # noqa: E402
from _common import (BUSY_CORES, HOST, S0_S1_S2, Child, Profiler, begin_file_logging, command_chunks,  # noqa: E402
                     connect_object, cores_busy, handshake_c0c1, raise_open_files_limit, read_cpu_seconds, read_rss_kb,
                     read_system_cpu, script_args, short_path, start_fmspy_service, tracer_of, twisted_control,
                     write_fmspy_config)

APP = "echotest"
# The measured round-trip and cycle phases, and what one unit of each is.
PHASES = {"createStream": "createStream round trip", "echo": "echo round trip", "cycle": "connect + close cycle"}
WARM_UP_CLIENTS = 50
BATCH_TIMEOUT = 60.0         # seconds for one batch of clients to connect
RSS_SAMPLES = 3
MIN_CPU = 0.2                # server CPU-s a phase must measure: a shorter one is mostly its start and end

APPLICATIONS = """\
[EchoApplication]
enabled = yes
name = echotest
"""


# ======================================================================================
# The server child (``--serve rtmp|baseline``)
# ======================================================================================

def serve(mode: str, config_path: str, log_path: str, trace: bool, work_dir: str, profiled: str):
    if trace:
        import tracemalloc
        tracemalloc.start(8)
    raise_open_files_limit()

    from twisted.internet import reactor

    # As twistd does: without it, Twisted's first 65,536 log events would show up as memory.
    log_file = begin_file_logging(log_path)

    more = {}
    if mode == "rtmp":
        top, listening, factory, codec = start_fmspy_service(reactor, config_path)
        port, count, stop = listening.getHost().port, lambda: len(factory.connections), top.stopService
    elif mode == "floor":
        port, count, stop, codec, answers = _start_floor(reactor)
        more["answers"] = lambda: [f"answers {answers()}"]
    else:
        port, count, stop, codec = _start_baseline(reactor)

    def snapshot(label):
        _snapshot(work_dir, label)
        return ["ok"]

    commands = {"count": lambda: [f"count {count()}"],
                "gc": lambda: [f"gc {gc.collect()}"],
                "snapshot": snapshot,
                "report": lambda sites, clients: [*_report(work_dir, int(sites), int(clients)), "end"],
                "profile": Profiler(PHASES.get(profiled, "unit")).command, **more}
    info = "ready " + json.dumps({"port": port, "pid": os.getpid(), "python": platform.python_version(),
                                  "codec": codec, "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]})
    twisted_control(reactor, info, commands, stop)
    reactor.run()
    log_file.close()


def _start_baseline(reactor):
    from twisted.internet.protocol import Factory, Protocol

    class Holder(Protocol):
        """Twisted's echo protocol, plus a set of the live ones so the parent can count them."""

        def connectionMade(self):
            self.factory.live.add(self)

        def dataReceived(self, data):
            self.transport.write(data)

        def connectionLost(self, reason):
            self.factory.live.discard(self)

    factory = Factory.forProtocol(Holder)
    factory.live = set()
    listening = reactor.listenTCP(0, factory, backlog=1024, interface=HOST)

    return listening.getHost().port, lambda: len(factory.live), listening.stopListening, "-"


def _start_floor(reactor):
    """The reactor's floor: a bare Twisted Protocol that answers the round trips and connects with canned bytes.

    Nothing is parsed or built per message: S0+S1 and the client's own C1
    as S2 once the 1537 bytes of C0+C1 are in, a canned connect ``_result``
    once C2 and the connect command are, and then the same canned
    ``_result`` of a createStream for every read (a round trip's client
    sends its request in one write and waits for the answer, so each read
    is one request).  Each answer is one ``socket.send``, as our server
    writes (``direct_write.py``).  What this costs per call and per connect
    is what Twisted's reactor and the kernel cost before any RTMP work:
    nothing built on this reactor can go under it.  Returns what
    ``_start_baseline`` does and, last, a count of the answers sent.
    """
    from twisted.internet.protocol import Factory, Protocol

    s0s1 = b"\x03" + bytes(8) + os.urandom(1528)
    connect_result = command_chunks(["_result", 1, {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31},
                                     {"level": "status", "code": "NetConnection.Connect.Success",
                                      "description": "Connection succeeded.", "objectEncoding": 0}])
    stream_result = command_chunks(["_result", 2, None, 1])

    class CannedAnswers(Protocol):
        def answer(self, data: bytes):
            self.factory.answers += 1
            self.transport.socket.send(data)

        def connectionMade(self):
            self.factory.live.add(self)
            self.handshake = bytearray()
            self.connect_left = None      # bytes of C2 + connect still to come, once the handshake is answered

        def dataReceived(self, data):
            if self.connect_left is None:
                self.handshake += data
                if len(self.handshake) >= 1537:
                    self.connect_left = 1536 + self.factory.connect_length - (len(self.handshake) - 1537)
                    self.answer(s0s1 + bytes(self.handshake[1:1537]))
                    self.handshake = None
            elif self.connect_left > 0:
                self.connect_left -= len(data)
                if self.connect_left <= 0:
                    self.answer(connect_result)
            else:
                self.answer(stream_result)

        def connectionLost(self, reason):
            self.factory.live.discard(self)

    factory = Factory.forProtocol(CannedAnswers)
    factory.live, factory.answers = set(), 0
    listening = reactor.listenTCP(0, factory, backlog=1024, interface=HOST)
    port = listening.getHost().port
    factory.connect_length = len(connect_chunk(port))

    return port, lambda: len(factory.live), listening.stopListening, "-", lambda: factory.answers


def _snapshot(work_dir, label):
    """Dump a tracemalloc snapshot and the counts of GC-tracked objects by type, to files."""
    import collections
    import pickle
    import tracemalloc

    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    snapshot.dump(os.path.join(work_dir, f"{label}.snapshot"))
    del snapshot
    types = collections.Counter(_type_name(o) for o in gc.get_objects())
    with open(os.path.join(work_dir, f"{label}.types"), "wb") as f:
        pickle.dump(types, f)


def _type_name(obj):
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _report(work_dir, top, clients):
    """The allocation sites and object types that grew most between the 'before' and 'after' snapshots."""
    import linecache
    import pickle
    import tracemalloc

    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>"),
              tracemalloc.Filter(False, "<unknown>")]
    before = tracemalloc.Snapshot.load(os.path.join(work_dir, "before.snapshot")).filter_traces(ignore)
    after = tracemalloc.Snapshot.load(os.path.join(work_dir, "after.snapshot")).filter_traces(ignore)
    n = max(clients, 1)

    by_line = sorted(after.compare_to(before, "lineno"), key=lambda s: s.size_diff, reverse=True)
    total = sum(s.size_diff for s in by_line)
    yield f"traced memory grew by {total / 1024:.0f} KiB = {total / n:.0f} B per connection"
    yield f"top {top} allocation sites by size delta (per connection; 'blocks' = allocations):"
    for stat in by_line[:top]:
        frame = stat.traceback[0]
        source = linecache.getline(frame.filename, frame.lineno).strip()
        yield (f"  {stat.size_diff / n:7.0f} B  {stat.count_diff / n:5.2f} blocks  "
               f"{short_path(frame.filename)}:{frame.lineno}  {source[:70]}")

    yield "call paths of the top 5 (allocation site first, then its callers):"
    by_trace = sorted(after.compare_to(before, "traceback"), key=lambda s: s.size_diff, reverse=True)
    for stat in by_trace[:5]:
        yield f"  {stat.size_diff / n:7.0f} B  {stat.count_diff / n:5.2f} blocks"
        for frame in list(stat.traceback)[-5:][::-1]:
            yield f"      {short_path(frame.filename)}:{frame.lineno}"

    with open(os.path.join(work_dir, "before.types"), "rb") as f:
        types_before = pickle.load(f)
    with open(os.path.join(work_dir, "after.types"), "rb") as f:
        types_after = pickle.load(f)
    grown = sorted(((types_after[k] - types_before.get(k, 0), k) for k in types_after), reverse=True)
    yield "GC-tracked objects whose count grew most (per connection; str/bytes/int are not GC-tracked):"
    for delta, name in grown[:top]:
        if delta <= 0:
            break
        yield f"  {delta / n:6.2f}  {name}"


# ======================================================================================
# The parent: clients and measurements
# ======================================================================================

class Server(Child):
    """The server child (``--serve``) and the live connection count it reports."""

    @classmethod
    async def launch(cls, mode, config_path, log_path, trace, work_dir, profiled):
        args = script_args(__file__, "--serve", mode, "--config", config_path, "--log", log_path,
                           "--work-dir", work_dir)
        if trace:
            args.append("--tracemalloc")
        if profiled:
            args.extend(("--profile", profiled))
        return await cls.start("server", args)

    async def count(self) -> int:
        return int((await self.ask("count")).split()[1])

    async def wait_for_count(self, expected: int, timeout: float = 60.0) -> int:
        """Poll the server's live connection count until it is ``expected`` (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            n = await self.count()
            if n == expected or time.monotonic() > deadline:
                return n
            await asyncio.sleep(0.1)


async def settled_rss_kb(pid: int, child: Server = None, settle: float = 1.0) -> int:
    """RSS of ``pid`` after ``settle`` seconds of quiet (and a gc.collect in our ``child``): median of a few."""
    await asyncio.sleep(settle)
    if child is not None:
        await child.ask("gc")
    samples = []
    for _ in range(RSS_SAMPLES):
        samples.append(read_rss_kb(pid))
        await asyncio.sleep(0.5)
    return int(statistics.median(samples))


# -- the bulk client --------------------------------------------------------------------

def connect_chunk(port: int) -> bytes:
    """The connect command (AMF0, transaction 1) as chunks, encoded once with the core and reused."""
    return command_chunks(["connect", 1, connect_object(port, APP)])


class IdleClient(asyncio.Protocol):
    """One client: handshake and connect (or, for the baseline, nothing), then idle."""

    __slots__ = ("c0c1", "connect", "done", "transport", "buffer")

    def __init__(self, c0c1, connect, done):
        self.c0c1 = c0c1          # None for the baseline: TCP connect only
        self.connect = connect
        self.done = done
        self.transport = None
        self.buffer = bytearray()

    def connection_made(self, transport):
        self.transport = transport
        if self.c0c1 is None:
            self.done.set_result(None)
        else:
            transport.write(self.c0c1)

    def data_received(self, data):
        if self.done.done():
            return
        had_handshake = len(self.buffer) >= S0_S1_S2
        self.buffer += data
        if not had_handshake and len(self.buffer) >= S0_S1_S2:
            # C2 (S1 echoed) and connect in one write, as real clients often do.
            self.transport.write(bytes(self.buffer[1:1537]) + self.connect)
        if b"_result" in self.buffer[S0_S1_S2:]:
            self.buffer = None
            self.done.set_result(None)
        elif b"_error" in self.buffer[S0_S1_S2:]:
            self.done.set_exception(RuntimeError("connect answered with _error"))

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"closed before connect completed: {exc}"))


async def open_clients(port, count, c0c1, connect):
    """Open ``count`` clients at once; returns (transports of those that connected, first error)."""
    loop = asyncio.get_running_loop()

    async def one():
        done = loop.create_future()
        transport, _ = await loop.create_connection(lambda: IdleClient(c0c1, connect, done), HOST, port)
        try:
            await done
        except BaseException:
            transport.abort()
            raise
        return transport

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    finished, pending = await asyncio.wait(tasks, timeout=BATCH_TIMEOUT)
    for task in pending:
        task.cancel()
    transports, error = [], None
    for task in tasks:
        if task in finished and task.exception() is None:
            transports.append(task.result())
        elif error is None:
            error = task.exception() if task in finished else TimeoutError(f"no connect within {BATCH_TIMEOUT} s")
    if pending:
        await asyncio.wait(pending, timeout=5)
    return transports, error


async def open_in_batches(port, total, batch, c0c1, connect):
    transports = []
    while len(transports) < total:
        opened, error = await open_clients(port, min(batch, total - len(transports)), c0c1, connect)
        transports.extend(opened)
        if error is not None:
            print(f"  stopping at {len(transports)} clients: {type(error).__name__}: {error}")
            break
    return transports


async def close_all(transports):
    for transport in transports:
        transport.close()
    await asyncio.sleep(0)


# -- the health check ----------------------------------------------------------------------

async def echo_check(port, timeout=15.0) -> float:
    """A fresh client, on the real sans-I/O core: connect, call echo; returns the round trip in ms."""
    from fmspy_gateway.rtmp.connection import Connection, Role
    from fmspy_gateway.rtmp.events import CommandReceived, HandshakeCompleted

    token = f"still-alive-{os.getpid()}-{time.time()}"
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    connection = Connection(Role.CLIENT, digest=False)
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    try:
        writer.write(connection.data_to_send())
        while True:
            data = await asyncio.wait_for(reader.read(65536), max(deadline - time.monotonic(), 0.001))
            if not data:
                raise RuntimeError("server closed the connection")
            for event in connection.receive_data(data):
                if isinstance(event, HandshakeCompleted):
                    connection.send_command("connect", 1, connect_object(port, APP))
                elif isinstance(event, CommandReceived) and event.transaction_id == 1:
                    if event.name != "_result":
                        raise RuntimeError(f"connect answered {event.name}: {event.arguments}")
                    connection.send_command("echo", 2, None, [token])
                elif isinstance(event, CommandReceived) and event.transaction_id == 2:
                    if event.name != "_result" or event.arguments != (token,):
                        raise RuntimeError(f"echo answered {event.name} {event.arguments!r}")
                    return (time.perf_counter() - started) * 1000
            writer.write(connection.data_to_send())
    finally:
        writer.close()


# -- round trips and connect cycles, against either server ---------------------------------

class RoundTrips(asyncio.Protocol):
    """One client on the real sans-I/O core: connect, then createStream + deleteStream (or echo) ``count`` times.

    Each createStream waits for its ``_result`` before the next is sent: a
    round trip.  deleteStream (no answer) keeps the server's stream table
    from filling up (``maxStreams``).
    """

    def __init__(self, port, kind, count, done):
        from fmspy_gateway.rtmp.connection import Connection, Role
        from fmspy_gateway.rtmp import events

        self.events = events
        self.connection = Connection(Role.CLIENT, digest=False)
        self.port, self.kind, self.left, self.done = port, kind, count, done
        self.transport = None
        self.started = None          # (cpu mark) set by the caller once every client is connected
        self.connected = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.connection.data_to_send())

    def next_call(self):
        if self.kind == "createStream":
            self.connection.send_command("createStream", 2, None)
        else:
            self.connection.send_command("echo", 2, None, [{"a small": "value", "n": 1.5}])

    def data_received(self, data):
        ev = self.events
        try:
            for event in self.connection.receive_data(data):
                if isinstance(event, ev.HandshakeCompleted):
                    self.connection.send_command("connect", 1, connect_object(self.port, APP))
                elif isinstance(event, ev.CommandReceived) and event.name == "_result":
                    if event.transaction_id == 1:
                        self.connected.set_result(None)
                    elif self.left > 0:
                        if self.kind == "createStream":
                            self.connection.send_command("deleteStream", 0, None, [event.arguments[0]])
                        self.left -= 1
                        if self.left:
                            self.next_call()
                        elif not self.done.done():
                            self.done.set_result(None)
                elif isinstance(event, ev.CommandReceived) and event.name == "_error":
                    raise RuntimeError(f"{self.kind}: _error {event.arguments!r}")
        except Exception as e:             # a protocol error or a refusal: the run fails, saying why
            for future in (self.connected, self.done):
                if not future.done():
                    future.set_exception(e)
            return
        self.transport.write(self.connection.data_to_send())

    def connection_lost(self, exc):
        for future in (self.connected, self.done):
            if not future.done():
                future.set_exception(ConnectionError(f"server closed the connection: {exc}"))


async def round_trips(port, pid, kind, calls, clients) -> dict:
    """``calls`` round trips of ``kind`` over ``clients`` connections; server CPU per call."""
    loop = asyncio.get_running_loop()
    protocols = []
    for _ in range(clients):
        done = loop.create_future()
        _, protocol = await loop.create_connection(lambda: RoundTrips(port, kind, calls // clients, done), HOST, port)
        protocols.append(protocol)
    try:
        await asyncio.wait_for(asyncio.gather(*(p.connected for p in protocols)), BATCH_TIMEOUT)
        window = Window(pid)
        for protocol in protocols:
            protocol.next_call()
            protocol.transport.write(protocol.connection.data_to_send())
        await asyncio.wait_for(asyncio.gather(*(p.done for p in protocols)), BATCH_TIMEOUT * 5)
        return window.close(calls // clients * clients)
    finally:
        for protocol in protocols:
            protocol.transport.close()


async def connect_cycles(port, pid, cycles, concurrency, c0c1, connect) -> dict:
    """``cycles`` handshake + connect + close, ``concurrency`` at a time; server CPU per connect."""
    window = Window(pid)
    done = 0
    while done < cycles:
        opened, error = await open_clients(port, min(concurrency, cycles - done), c0c1, connect)
        await close_all(opened)
        if error is not None:
            raise RuntimeError(f"connect cycle failed: {error}")
        done += len(opened)
    await asyncio.sleep(0.2)          # the server handles the last closes
    return window.close(cycles)


class Window:
    """Server CPU, this process's CPU and the machine's over one measured phase."""

    def __init__(self, pid):
        self.pid = pid
        self.cpu = read_cpu_seconds(pid)
        self.own = time.process_time()
        self.system = read_system_cpu()
        self.at = time.perf_counter()
        self.traced = tracer_of(pid)

    def close(self, count) -> dict:
        cpu = read_cpu_seconds(self.pid) - self.cpu
        own = time.process_time() - self.own
        machine = cores_busy(self.system, read_system_cpu())
        wall = time.perf_counter() - self.at
        others = max(machine - (cpu + own) / wall, 0.0)
        return {"count": count, "cpu": cpu, "per": cpu / max(count, 1), "wall": wall, "others": others,
                "busy": others > BUSY_CORES, "short": cpu < MIN_CPU,
                "traced": bool(self.traced or tracer_of(self.pid))}


# -- the run ---------------------------------------------------------------------------------

async def run(args):
    nofile = raise_open_files_limit()
    if args.clients + 100 > nofile:
        raise SystemExit(f"--clients {args.clients} needs more open files than RLIMIT_NOFILE allows ({nofile})")
    mode = "baseline" if args.baseline else "rtmp"
    nginx = {"skip": "--baseline"} if args.baseline else (
        {"skip": "--skip-nginx"} if args.skip_nginx else ({"skip": "--tracemalloc (our server only)"}
                                                          if args.tracemalloc else find_nginx((APP,))))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-connections-") as work_dir:
        config_path = write_fmspy_config(work_dir, APPLICATIONS, handshakeTimeout=30)
        log_path = os.path.join(work_dir, "server.log")
        child = await Server.launch(mode, config_path, log_path, args.tracemalloc, work_dir, args.profile)
        transports = []
        try:
            results["fmspy-gateway"] = await measure(args, mode, child, transports)
        finally:
            await close_all(transports)
            await child.stop()
            if args.keep_log:
                shutil.move(log_path, args.keep_log)
        if mode == "rtmp" and not args.skip_floor and not args.tracemalloc:
            results["floor"] = await measure_floor(args, work_dir)
        if nginx.get("skip"):
            print(f"\nnginx-rtmp: skipped ({nginx['skip']})")
        else:
            server = Nginx(work_dir, nginx, (APP,))
            await server.start()
            try:
                print(f"\nserver: nginx-rtmp ({nginx['version']}, {nginx['module']}) on {HOST}:{server.port},"
                      f" pid {server.pid}, one process")
                results["nginx-rtmp"] = await measure_peer(args, server)
            finally:
                await close_all(transports)
                await server.stop()
    if mode == "rtmp":
        print_summary(results)


async def measure(args, mode, child, transports):
    port = int(child.info["port"])
    rtmp = mode == "rtmp"
    c0c1 = handshake_c0c1() if rtmp else None
    connect = connect_chunk(port) if rtmp else None

    print(f"server: {'fmspy-gateway (tap.makeService), echotest' if rtmp else 'bare Twisted echo Protocol'}"
          f" on {HOST}:{port}, pid {child.pid}")
    print(f"python {child.info['python']} ({platform.python_implementation()}), pyamf codec {child.info['codec']},"
          f" RLIMIT_NOFILE server {child.info['nofile']} / client {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")
    if args.tracemalloc:
        print("tracemalloc ON in the server: RSS and CPU below are inflated, see the allocation report")

    await warm_up(port, c0c1, connect, child, "the server")

    result = {}
    if rtmp and not args.tracemalloc:
        result.update(await measure_calls(args, port, child.pid, c0c1, connect, echo=True, child=child))

    rss_before = await settled_rss_kb(child.pid, child)
    if args.tracemalloc:
        await child.ask("snapshot before")
    window = Window(child.pid)
    client_cpu_before = time.process_time()
    started = time.perf_counter()
    transports.extend(await open_in_batches(port, args.clients, args.batch, c0c1, connect))
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu_before
    n = len(transports)
    connects = window.close(n)
    cpu = connects["cpu"]
    server_count = await child.wait_for_count(n, timeout=30)

    rss_after = await settled_rss_kb(child.pid, child, args.settle)
    if args.tracemalloc:
        await child.ask("snapshot after")

    print(f"clients connected:      {n} of {args.clients} (server counts {server_count}), batches of {args.batch}")
    print(f"connect wall time:      {wall:.2f} s ({n / wall:.0f} connects/s)")
    print(f"server CPU for connects:{cpu:7.2f} s total, {cpu / max(n, 1) * 1000:.3f} ms per connect"
          f" (client process: {client_cpu:.2f} s){busy_note(connects)}")
    print(f"server RSS before:      {rss_before / 1024:.1f} MiB")
    print(f"server RSS after:       {rss_after / 1024:.1f} MiB ({args.settle:g} s after the last connect)")
    print(f"memory per connection:  {(rss_after - rss_before) / max(n, 1):.1f} KB"
          f" (KiB of RSS; target 16 KB, nginx-rtmp 16 KB, node-media-server 191 KB)")
    result["idle"] = {"kb": (rss_after - rss_before) / max(n, 1), "clients": n, "busy": connects["busy"],
                      "others": connects["others"]}

    if rtmp:
        print(f"health check:           fresh client connect + echo OK in {await echo_check(port):.1f} ms")
    else:
        print(f"health check:           fresh TCP connection accepted: {await tcp_check(port)}")

    if args.tracemalloc:
        for line in await child.ask_lines(f"report {args.top} {n}"):
            print(line)

    await close_all(transports)
    transports.clear()
    left = await child.wait_for_count(0)
    print(f"server RSS all closed:  {await settled_rss_kb(child.pid, child) / 1024:.1f} MiB ({left} connections left)")
    return result


async def measure_calls(args, port, pid, c0c1, connect, echo, child=None) -> dict:
    """createStream (and echo) round trips and connect + close cycles: server CPU per call and per connect.

    With ``child`` (our server) and ``--profile``, the phase it names runs
    under the child's cProfile, whose report is printed after the figures.
    """
    phases = {"createStream": lambda: round_trips(port, pid, "createStream", args.calls, args.call_clients),
              "echo": lambda: round_trips(port, pid, "echo", args.calls, args.call_clients),
              "cycle": lambda: connect_cycles(port, pid, args.cycles, args.cycle_concurrency, c0c1, connect)}
    if not echo:
        del phases["echo"]
    result, report = {}, []
    for key, phase in phases.items():
        profiled = child is not None and args.profile == key
        if profiled:
            await child.ask("profile start")
        result[key] = await phase()
        if profiled:
            await child.ask("profile stop")
            dump = [os.path.abspath(args.profile_out)] if args.profile_out else []
            report = await child.ask_lines(" ".join(["profile", "report", str(result[key]["count"]),
                                                     str(args.top), *dump]))
    for key, r in result.items():
        what = PHASES[key] + (" (small value)" if key == "echo" else "")
        print(f"{what + ':':<33}{r['count']} in {r['wall']:.2f} s, server CPU {r['per'] * 1e6:.1f} us each"
              f"{busy_note(r)}")
    if report:
        print(f"\n== server profile (cProfile, {PHASES[args.profile]} phase; its CPU figure above is inflated)")
        for line in report:
            print(line)
    return result


async def warm_up(port, c0c1, connect, child, what: str):
    """``WARM_UP_CLIENTS`` connects, closed again; ``child`` (a server that counts its connections) must have
    none left."""
    warm, error = await open_clients(port, WARM_UP_CLIENTS, c0c1, connect)
    if error is not None:
        raise RuntimeError(f"warm-up against {what} failed: {error}")
    await close_all(warm)
    left = await child.wait_for_count(0)
    if left:
        raise RuntimeError(f"{left} warm-up connections still open on {what}")


async def measure_floor(args, work_dir) -> dict:
    """The round trips and connect cycles against the reactor's floor (``_start_floor``), in its own child.

    The result also holds ``answers``: how many canned answers the floor sent in all, warm-up included.
    """
    child = await Server.launch("floor", "", os.path.join(work_dir, "floor.log"), False, work_dir, None)
    try:
        port = int(child.info["port"])
        print(f"\nserver: the reactor's floor (bare Twisted Protocol, canned answers) on {HOST}:{port},"
              f" pid {child.pid}")
        c0c1, connect = handshake_c0c1(), connect_chunk(port)
        await warm_up(port, c0c1, connect, child, "the floor")
        result = await measure_calls(args, port, child.pid, c0c1, connect, echo=False)
        result["answers"] = int((await child.ask("answers")).split()[1])
        return result
    finally:
        await child.stop()


async def measure_peer(args, server):
    """The same load against a peer server we cannot ask anything: calls and cycles, then idle clients."""
    c0c1, connect = handshake_c0c1(), connect_chunk(server.port)
    warm, error = await open_clients(server.port, WARM_UP_CLIENTS, c0c1, connect)
    if error is not None:
        raise RuntimeError(f"warm-up against nginx-rtmp failed: {error}")
    await close_all(warm)
    result = await measure_calls(args, server.port, server.pid, c0c1, connect, echo=False)
    rss_before = await settled_rss_kb(server.pid)
    window = Window(server.pid)
    transports = await open_in_batches(server.port, args.clients, args.batch, c0c1, connect)
    n = len(transports)
    connects = window.close(n)
    rss_after = await settled_rss_kb(server.pid, settle=args.settle)
    await close_all(transports)
    print(f"clients connected:      {n} of {args.clients}, server CPU {connects['per'] * 1000:.3f} ms per connect"
          f"{busy_note(connects)}")
    print(f"memory per connection:  {(rss_after - rss_before) / max(n, 1):.1f} KB (RSS {rss_before / 1024:.1f} ->"
          f" {rss_after / 1024:.1f} MiB)")
    result["idle"] = {"kb": (rss_after - rss_before) / max(n, 1), "clients": n, "busy": connects["busy"],
                      "others": connects["others"]}
    return result


def busy_note(window) -> str:
    if window["busy"]:
        return f"  (BUSY MACHINE: other work took {window['others']:.2f} cores; not a figure)"
    if window.get("traced"):
        return "  (TRACED: the server was traced (strace, gdb) as the phase began or ended; not a figure)"
    if window.get("short"):
        return f"  (under {MIN_CPU:g} CPU-s measured: too short a phase to be a figure; raise the count)"
    return ""


def print_summary(results):
    ours, theirs, floor = results.get("fmspy-gateway"), results.get("nginx-rtmp"), results.get("floor")
    print("\n== summary: ours against nginx-rtmp, each taken in this run")
    if not theirs:
        print("  no nginx-rtmp figures in this run: no comparison")
        for label, key in (("createStream round trip", "createStream"), ("connect + close cycle", "cycle")):
            if floor and key in floor:
                print(f"  {label}: ours {ours[key]['per'] * 1e6:.1f} us, the reactor's floor"
                      f" {floor[key]['per'] * 1e6:.1f} us{busy_note(floor[key]) or busy_note(ours[key])}")
        return
    rows = (("createStream round trip, server CPU per call", "createStream", "per", 1e6, "us"),
            ("connect + close cycle, server CPU per connect", "cycle", "per", 1e6, "us"),
            ("memory per idle connection", "idle", "kb", 1, "KB"))
    busy = False
    for label, key, field, scale, unit in rows:
        a, b = ours[key], theirs[key]
        windows = [a, b]
        line = (f"  {label:<48} ours {a[field] * scale:8.1f} {unit}  nginx-rtmp {b[field] * scale:8.1f} {unit}"
                f"  ratio {a[field] / b[field] if b[field] else float('inf'):.2f}x")
        if floor and key in floor:
            windows.append(floor[key])
            f = floor[key][field]
            line += f"  (the reactor's floor {f * scale:.1f} {unit}, {f / b[field] if b[field] else float('inf'):.2f}x)"
        busy = busy or any(w["busy"] or w.get("short") or w.get("traced") for w in windows)
        print(line)
    if busy:
        print("  BUSY MACHINE, a traced server or too short a phase (see above): no verdict; run again on a quiet"
              " machine")
    else:
        met = [ours[k][f] <= theirs[k][f] for _, k, f, _, _ in rows]
        print(f"  issue 14's targets (at most nginx-rtmp's figure): {sum(met)} of {len(met)} met")
        if floor:
            print("  the reactor's floor: a bare Twisted server answering with canned bytes, one send each (no RTMP"
                  " work); what is over it is ours")


async def tcp_check(port) -> bool:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
    writer.write(b"ping")
    echoed = await asyncio.wait_for(reader.readexactly(4), 10)
    writer.close()
    return echoed == b"ping"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=10000, help="idle clients to hold open (default 10000)")
    parser.add_argument("--batch", type=int, default=500, help="clients opened at once (default 500)")
    parser.add_argument("--baseline", action="store_true", help="measure a bare Twisted echo server instead")
    parser.add_argument("--tracemalloc", action="store_true", help="report the server's top allocation sites")
    parser.add_argument("--top", type=int, default=15,
                        help="allocation sites to list with --tracemalloc, functions with --profile (15)")
    parser.add_argument("--profile", choices=tuple(PHASES), help="cProfile the server during this phase")
    parser.add_argument("--profile-out", metavar="FILE", help="with --profile: also dump the pstats file here")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds to wait once all are connected before reading RSS (default 1)")
    parser.add_argument("--keep-log", metavar="FILE", help="keep the server's log here")
    parser.add_argument("--skip-nginx", action="store_true", help="do not run nginx-rtmp even when installed")
    parser.add_argument("--skip-floor", action="store_true",
                        help="do not measure the reactor's floor (a bare Twisted server with canned answers)")
    parser.add_argument("--calls", type=int, default=20000, help="createStream and echo round trips (20000)")
    parser.add_argument("--call-clients", type=int, default=4, help="connections the round trips share (4)")
    parser.add_argument("--cycles", type=int, default=2000, help="connect + close cycles (2000)")
    parser.add_argument("--cycle-concurrency", type=int, default=10, help="cycles in flight at once (10)")
    # The server child (this file run again); not for direct use.
    parser.add_argument("--serve", choices=("rtmp", "floor", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.config, args.log, args.tracemalloc, args.work_dir, args.profile)
        return
    if min(args.clients, args.batch, args.calls, args.call_clients, args.cycles, args.cycle_concurrency) < 1:
        parser.error("--clients, --batch, --calls, --call-clients, --cycles and --cycle-concurrency must be positive")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
