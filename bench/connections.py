"""Connection scale: N idle RTMP clients on one server; server memory per connection and CPU per connect.

What it measures
    The server runs in a child process built the way ``twistd fmspy-gateway``
    builds it (``fmspy_gateway.tap.Options`` + ``makeService`` from a temporary
    fmspy.cfg: RTMP on 127.0.0.1 port 0, backlog 1024, HTTP off, echotest on,
    pingInterval/keepAliveTimeout long enough that idle clients are never
    pinged or closed), logging to a file as twistd does.  This process opens
    N clients in batches; each completes the simple handshake and an AMF0
    ``connect`` to ``echotest`` and then stays idle.  From /proc/<child>/status
    (VmRSS) and /proc/<child>/stat (utime+stime) it reports:

      * server RSS before (after a warm-up of 50 connects, closed again, and a
        gc.collect) and after all N are connected and idle; the difference / N
        is the memory per connection (target: at most 16 KB, nginx-rtmp's figure);
      * server CPU seconds spent while the N connects ran, and per connect;
      * the wall time of the N connects;
      * that a fresh client can still connect and get ``echo`` answered;
      * server RSS once every client has closed again.

    ``--baseline`` runs the same measurement against a bare Twisted echo
    Protocol server (accept, hold the connection): the floor Twisted imposes.
    Baseline clients only connect and send nothing.

    ``--tracemalloc`` traces the server child's allocations and prints the top
    allocation sites (by size delta between the idle-before and idle-after
    states, grouped by source line) and the object types whose count grew.
    Tracing roughly doubles memory and slows everything: RSS and CPU figures
    of such a run are not the benchmark's figures.

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

The child is this same file run with ``--serve``; it takes commands on stdin
(count, gc, snapshot, report, quit) and answers on stdout.  The script stops by
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
from _common import (HOST, S0_S1_S2, Child, begin_file_logging, command_chunks,  # noqa: E402
                     connect_object, handshake_c0c1, raise_open_files_limit, read_cpu_seconds, read_rss_kb,
                     script_args, short_path, start_fmspy_service, twisted_control, write_fmspy_config)

APP = "echotest"
WARM_UP_CLIENTS = 50
BATCH_TIMEOUT = 60.0         # seconds for one batch of clients to connect
RSS_SAMPLES = 3

APPLICATIONS = """\
[EchoApplication]
enabled = yes
name = echotest
"""


# ======================================================================================
# The server child (``--serve rtmp|baseline``)
# ======================================================================================

def serve(mode: str, config_path: str, log_path: str, trace: bool, work_dir: str):
    if trace:
        import tracemalloc
        tracemalloc.start(8)
    raise_open_files_limit()

    from twisted.internet import reactor

    # As twistd does: without it, Twisted's first 65,536 log events would show up as memory.
    log_file = begin_file_logging(log_path)

    if mode == "rtmp":
        top, listening, factory, codec = start_fmspy_service(reactor, config_path)
        port, count, stop = listening.getHost().port, lambda: len(factory.connections), top.stopService
    else:
        port, count, stop, codec = _start_baseline(reactor)

    def snapshot(label):
        _snapshot(work_dir, label)
        return ["ok"]

    commands = {"count": lambda: [f"count {count()}"],
                "gc": lambda: [f"gc {gc.collect()}"],
                "snapshot": snapshot,
                "report": lambda sites, clients: [*_report(work_dir, int(sites), int(clients)), "end"]}
    info = "ready " + json.dumps({"port": port, "pid": os.getpid(), "python": platform.python_version(),
                                  "codec": codec, "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]})
    twisted_control(reactor, info, commands, stop)
    reactor.run()
    log_file.close()


def _start_baseline(reactor):
    from twisted.internet.defer import succeed
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

    def stop():
        listening.stopListening()
        return succeed(None)

    return listening.getHost().port, lambda: len(factory.live), stop, "-"


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
    async def launch(cls, mode, config_path, log_path, trace, work_dir):
        args = script_args(__file__, "--serve", mode, "--config", config_path, "--log", log_path,
                           "--work-dir", work_dir)
        if trace:
            args.append("--tracemalloc")
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


async def settled_rss_kb(child: Server, settle: float = 1.0) -> int:
    """The child's RSS after a gc.collect and ``settle`` seconds of quiet: median of a few readings."""
    await asyncio.sleep(settle)
    await child.ask("gc")
    samples = []
    for _ in range(RSS_SAMPLES):
        samples.append(read_rss_kb(child.pid))
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


# -- the run ---------------------------------------------------------------------------------

async def run(args):
    nofile = raise_open_files_limit()
    if args.clients + 100 > nofile:
        raise SystemExit(f"--clients {args.clients} needs more open files than RLIMIT_NOFILE allows ({nofile})")
    mode = "baseline" if args.baseline else "rtmp"
    with tempfile.TemporaryDirectory(prefix="bench-connections-") as work_dir:
        config_path = write_fmspy_config(work_dir, APPLICATIONS, handshakeTimeout=30)
        log_path = os.path.join(work_dir, "server.log")
        child = await Server.launch(mode, config_path, log_path, args.tracemalloc, work_dir)
        transports = []
        try:
            await measure(args, mode, child, transports)
        finally:
            await close_all(transports)
            await child.stop()
            if args.keep_log:
                shutil.move(log_path, args.keep_log)


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

    warm, error = await open_clients(port, WARM_UP_CLIENTS, c0c1, connect)
    if error is not None:
        raise RuntimeError(f"warm-up failed: {error}")
    await close_all(warm)
    left = await child.wait_for_count(0)
    if left:
        raise RuntimeError(f"{left} warm-up connections still open on the server")

    rss_before = await settled_rss_kb(child)
    if args.tracemalloc:
        await child.ask("snapshot before")
    cpu_before = read_cpu_seconds(child.pid)
    client_cpu_before = time.process_time()
    started = time.perf_counter()
    transports.extend(await open_in_batches(port, args.clients, args.batch, c0c1, connect))
    wall = time.perf_counter() - started
    cpu = read_cpu_seconds(child.pid) - cpu_before
    client_cpu = time.process_time() - client_cpu_before
    n = len(transports)
    server_count = await child.wait_for_count(n, timeout=30)

    rss_after = await settled_rss_kb(child, args.settle)
    if args.tracemalloc:
        await child.ask("snapshot after")

    print(f"clients connected:      {n} of {args.clients} (server counts {server_count}), batches of {args.batch}")
    print(f"connect wall time:      {wall:.2f} s ({n / wall:.0f} connects/s)")
    print(f"server CPU for connects:{cpu:7.2f} s total, {cpu / max(n, 1) * 1000:.3f} ms per connect"
          f" (client process: {client_cpu:.2f} s)")
    print(f"server RSS before:      {rss_before / 1024:.1f} MiB")
    print(f"server RSS after:       {rss_after / 1024:.1f} MiB ({args.settle:g} s after the last connect)")
    print(f"memory per connection:  {(rss_after - rss_before) / max(n, 1):.1f} KB"
          f" (KiB of RSS; target 16 KB, nginx-rtmp 16 KB, node-media-server 191 KB)")

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
    print(f"server RSS all closed:  {await settled_rss_kb(child) / 1024:.1f} MiB ({left} connections left)")


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
    parser.add_argument("--top", type=int, default=15, help="allocation sites to list with --tracemalloc (15)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds to wait once all are connected before reading RSS (default 1)")
    parser.add_argument("--keep-log", metavar="FILE", help="keep the server's log here")
    # The server child (this file run again); not for direct use.
    parser.add_argument("--serve", choices=("rtmp", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.config, args.log, args.tracemalloc, args.work_dir)
        return
    if args.clients < 1 or args.batch < 1:
        parser.error("--clients and --batch must be positive")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
