"""The cluster: bridged calls with workers = 1 and 2, cross-node broadcast latency, and a relayed live stream.

What it measures
    Every server is the real thing, ``twistd -n fmspy-gateway`` started as
    users start it, with a ``[Cluster]`` section on a redis-server of the
    run's own (a temporary directory, a unix socket: ``tests/cluster/
    redis_server.py``).  With ``workers = 2`` twistd is the supervisor and
    the two workers are the nodes (``cluster/workers.py``); the run reads
    their pids and their own advertised ports from the supervisor's log.

    1. **Bridged calls, workers = 1 then 2.**  The backend and the load are
       bench/gateway.py's (``--serve backend``: a lean asyncio JSON-RPC echo;
       ``--load rtmp-raw``: N clients in a closed loop calling ``echo``
       through the one RTMP port), against ``[GatewayApplication:bench]``.
       For each: calls/s, and the CPU seconds of every process over the
       window (each worker, the supervisor, the backend, the load, redis) as
       a share of a core and per call.  Then the scaling ratio (calls/s with
       2 workers over 1) and the gateway CPU per call with 2 workers against
       1 (target: within 10%).  On a 2-core machine the backend and the load
       share the cores with the workers: the shares say who had them.
    2. **Broadcast latency, cross-node against same-node.**  workers = 2,
       the chat application: a sender on worker 1's own port, a receiver on
       the same worker and one on worker 2.  The sender says ``m<i>``; each
       receiver's ``message`` arrival is timed from the send (one process,
       one clock), one message at a time (``--messages``).  p50/p99 of each
       (target: cross-node p99 under 5 ms on loopback).
    3. **Relay.**  workers = 2, the live application: ffmpeg publishes a
       2 Mbit/s H.264/AAC FLV (bench/streaming.py's source and publisher) to
       worker 1; ``--players`` players (bench/streaming.py's epoll load),
       half on each worker's own port, the second half's stream pulled by
       worker 2 from worker 1.  Per node over the window: CPU seconds, Gbit
       delivered to its players, CPU seconds per Gbit; players below 90% of
       the source bitrate.

    Each phase also reads the machine's CPU (/proc/stat).  When other work
    (other processes, the kernel) took more than a quarter of a core, the
    phase says BUSY MACHINE and the run prints no verdict: run it again on a
    quiet machine.

Usage
    .venv/bin/python bench/cluster.py [--phases calls,broadcast,relay] [--clients 50] [--duration 10]
                                      [--warmup 2] [--messages 500] [--players 400]

Everything listens on 127.0.0.1.  The script stops by itself: every wait has
a timeout, and every child (twistd, redis, loads, ffmpeg) is stopped in a
``finally`` block; the workers stop with their supervisor.
"""
import argparse
import asyncio
import json
import os
import re
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gateway as gateway_bench  # noqa: E402
import streaming as streaming_bench  # noqa: E402
from _common import (HOST, Child, ProcessesWindow, raise_open_files_limit, say,  # noqa: E402
                     script_args, write_fmspy_config)

NODE = "bench"
START_TIMEOUT = 60.0         # seconds for a twistd (and its workers) to be serving
MESSAGE_TIMEOUT = 5.0        # seconds for one broadcast to reach both receivers
CALL_TARGET = 1.10           # 2 workers' gateway CPU per call within 10% of 1 worker's
LATENCY_TARGET_MS = 5.0      # cross-node broadcast p99 on loopback

CLUSTER = """\
[Cluster]
redis = {redis}
secret = bench-secret
node = {node}
workers = {workers}

"""
CHAT = """\
[ChatApplication]
enabled = yes
name = chat
"""
LIVE = streaming_bench.APPLICATIONS.format(app=streaming_bench.APP)


# ======================================================================================
# The servers: twistd, as users start it
# ======================================================================================

class Cluster:
    """``twistd -n fmspy-gateway`` with [Cluster] workers = N, its log read line by line."""

    def __init__(self, work_dir, redis_url, workers, applications):
        self.workers = workers
        self.config = write_fmspy_config(work_dir, CLUSTER.format(redis=redis_url, node=NODE, workers=workers)
                                         + applications, slowPlayerTimeout=60)
        self.lines = []
        self.process = None
        self._changed = asyncio.Event()
        self._reader = None

    @property
    def nodes(self):
        return [f"{NODE}-{i}" for i in range(1, self.workers + 1)] if self.workers > 1 else [NODE]

    async def start(self):
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        self.process = await asyncio.create_subprocess_exec(
            twistd, "-n", "--pidfile=", "fmspy-gateway", "--config", self.config,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self._reader = asyncio.ensure_future(self._read())
        self.port = int((await self.wait_for(r"RTMP listening on [0-9.]+:(\d+)")).group(1))
        if self.workers == 1:
            self.pids = {NODE: self.process.pid}
            self.own_ports = {NODE: self.port}
            return
        self.pids, self.own_ports = {}, {}
        for node in self.nodes:
            await self.wait_for(rf"cluster: worker {node} ready")
            self.pids[node] = int((await self.wait_for(rf"cluster: worker {node} started \(pid (\d+)\)")).group(1))
            self.own_ports[node] = int((await self.wait_for(
                rf"\[{node}\] .*RTMP \(this worker's own, advertised\) listening on [0-9.]+:(\d+)")).group(1))
        self.pids["supervisor"] = self.process.pid

    async def _read(self):
        while True:
            line = await self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line.decode("utf-8", "replace").rstrip())
            self._changed.set()
        self._changed.set()

    async def wait_for(self, pattern, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                match = re.search(pattern, line)
                if match:
                    return match
            if self.process.returncode is not None or self._reader.done():
                raise RuntimeError(f"twistd ended before {pattern!r}: " + " | ".join(self.lines[-8:]))
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no {pattern!r} in twistd's log in time: " + " | ".join(self.lines[-8:]))
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def stop(self):
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 60)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            await self._reader


def print_cpu(window, per=None, unit="call"):
    for name, seconds in window["cpu"].items():
        extra = f", {seconds / per * 1000:.3f} ms per {unit}" if per else ""
        print(f"  CPU {name + ':':13} {seconds:6.2f} s = {seconds / window['wall'] * 100:4.0f}% of a core{extra}")
    print(f"  machine CPU:       {window['machine'] * 100:.0f}% of {os.cpu_count() * 100}% busy; other processes and"
          f" the kernel {window['others'] * 100:.0f}%"
          + ("  (BUSY MACHINE: figures disturbed by other work)" if window["busy"] else ""))


# ======================================================================================
# Phase 1: bridged calls, workers = 1 and 2
# ======================================================================================

async def calls_phase(args, work_dir, redis, workers):
    backend = cluster = load = None
    try:
        backend = await Child.start("backend", script_args(gateway_bench.__file__, "--serve", "backend"))
        routes = os.path.join(work_dir, "routes.cfg")
        with open(routes, "w") as f:
            f.write(gateway_bench.ROUTES_CFG.format(app=gateway_bench.APP))
        applications = gateway_bench.APPLICATIONS.format(
            app=gateway_bench.APP, host=HOST, backend_port=backend.info["port"], path=gateway_bench.BACKEND_PATH,
            routes=routes, max_concurrent=64)
        cluster = Cluster(work_dir, redis.url, workers, applications)
        await cluster.start()
        load = await Child.start("load", script_args(
            gateway_bench.__file__, "--load", "rtmp-raw", "--port", str(cluster.port), "--clients",
            str(args.clients), "--warmup", str(args.warmup), "--duration", str(args.duration)),
            ready_timeout=gateway_bench.CONNECT_TIMEOUT + 30)
        window = ProcessesWindow({**cluster.pids, "backend": backend.pid, "load": load.pid, "redis": redis.process.pid})
        if await load.read_line(timeout=args.warmup + 30) != "window-start":
            raise RuntimeError("the load did not start its window")
        window.start()
        if await load.read_line(timeout=args.duration + 30) != "window-end":
            raise RuntimeError("the load did not end its window")
        measured = window.stop()
        line = await load.read_line(timeout=gateway_bench.DRAIN_TIMEOUT + 10)
        result = json.loads(line.split(" ", 1)[1])
    finally:
        for child in (load, backend):
            if child is not None:
                await child.stop()
        if cluster is not None:
            await cluster.stop()
    calls = result["calls"]
    gateway_cpu = sum(measured["cpu"][node] for node in cluster.nodes) + measured["cpu"].get("supervisor", 0)
    print(f"\n== bridged calls, workers = {workers}: {args.clients} clients, {result['seconds']:g} s window")
    print(f"  calls completed:   {calls} ({calls / result['seconds']:,.0f} calls/s)")
    lat = result["latencies_ms"]
    if lat:
        print(f"  latency (client):  p50 {lat['p50']:.2f} ms  p99 {lat['p99']:.2f} ms  max {lat['max']:.2f} ms")
    print_cpu(measured, max(calls, 1))
    print(f"  gateway CPU:       {gateway_cpu / max(calls, 1) * 1000:.3f} ms per call over {len(cluster.nodes)}"
          f" node process(es)")
    if result["errors"]:
        print(f"  ERRORS (first {len(result['errors'])}): " + "; ".join(result["errors"]))
    return {"rate": calls / result["seconds"], "cpu_per_call": gateway_cpu / max(calls, 1),
            "busy": measured["busy"], "errors": bool(result["errors"])}


# ======================================================================================
# Phase 2: broadcast latency (the load is this script again, ``--load broadcast``)
# ======================================================================================

def run_broadcast_load(sender_port, same_port, cross_port, messages):
    """Sender and same-node receiver on ``sender_port``/``same_port``, the other receiver on ``cross_port``."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, inlineCallbacks

    from fmspy_gateway.server.client import connect_client

    waiting = {}      # (receiver, line) -> Deferred fired with the arrival time

    def receiver(who):
        def message(line):
            d = waiting.pop((who, line), None)
            if d is not None:
                d.callback(time.perf_counter())
        return message

    @inlineCallbacks
    def main():
        url = f"rtmp://{HOST}:{{}}/chat/bench"
        sender = yield connect_client(url.format(sender_port), reactor=reactor)
        receivers = {"same": (yield connect_client(url.format(same_port), reactor=reactor,
                                                   handlers={"message": receiver("same")})),
                     "cross": (yield connect_client(url.format(cross_port), reactor=reactor,
                                                    handlers={"message": receiver("cross")}))}
        for name, client in (("sender", sender), *receivers.items()):
            yield client.call("identify", name)
        say("ready {}")
        latencies = {who: [] for who in receivers}
        for i in range(messages):
            line = f"<sender>: m{i}"
            arrivals = {}
            for who in receivers:
                arrivals[who] = waiting[(who, line)] = Deferred()
                arrivals[who].addTimeout(MESSAGE_TIMEOUT, reactor)
            sent = time.perf_counter()
            sender.notify("say", f"m{i}")
            for who, arrival in arrivals.items():
                latencies[who].append(((yield arrival) - sent) * 1000)
        say("result " + json.dumps({who: gateway_bench.summarize(values) for who, values in latencies.items()}))

    def failed(failure):
        say(f"error {failure.getErrorMessage() or failure.type.__name__} (a receiver on another node heard"
            " nothing: is the hub shared?)")

    def run():
        main().addErrback(failed).addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()


async def broadcast_phase(args, work_dir, redis):
    cluster = load = None
    try:
        cluster = Cluster(work_dir, redis.url, 2, CHAT)
        await cluster.start()
        first, second = (cluster.own_ports[node] for node in cluster.nodes)
        window = ProcessesWindow({**cluster.pids, "redis": redis.process.pid})
        window.start()
        load = await Child.start("broadcast load", script_args(
            __file__, "--load", "broadcast", "--ports", f"{first},{first},{second}", "--messages",
            str(args.messages)), ready_timeout=START_TIMEOUT)
        window.add("load", load.pid)
        line = await load.read_line(timeout=args.messages * MESSAGE_TIMEOUT + 30)
        measured = window.stop()
    finally:
        if load is not None:
            await load.stop()
        if cluster is not None:
            await cluster.stop()
    print(f"\n== room broadcast latency, workers = 2: {args.messages} messages, one at a time")
    if not line.startswith("result "):
        print(f"  FAILED: {line}")
        return {"failed": True, "busy": measured["busy"]}
    result = json.loads(line.split(" ", 1)[1])
    for who, title in (("same", "same node"), ("cross", "cross node")):
        r = result[who]
        print(f"  {title + ':':18} p50 {r['p50']:.2f} ms  p90 {r['p90']:.2f} ms  p99 {r['p99']:.2f} ms"
              f"  max {r['max']:.2f} ms")
    print_cpu(measured, args.messages, "message")
    return {"failed": False, "busy": measured["busy"], "cross_p99": result["cross"]["p99"],
            "same_p99": result["same"]["p99"]}


# ======================================================================================
# Phase 3: a live stream relayed to the second node
# ======================================================================================

async def relay_phase(args, work_dir, redis):
    source = os.path.join(work_dir, "source.flv")
    streaming_bench.generate_source(source, args.warmup + args.duration + streaming_bench.SOURCE_EXTRA)
    rates = streaming_bench.source_stats(source)
    cluster = publisher = None
    loads = {}
    try:
        cluster = Cluster(work_dir, redis.url, 2, LIVE)
        await cluster.start()
        origin, edge = cluster.nodes
        publisher = streaming_bench.Publisher(source, cluster.own_ports[origin])
        await publisher.start()
        await asyncio.sleep(streaming_bench.SETTLE)
        lifetime = streaming_bench.CONNECT_TIMEOUT + args.warmup + args.duration + 120
        half = args.players // 2
        for first, (node, count) in zip((0, half), ((origin, half), (edge, args.players - half))):
            loads[node] = await Child.start(f"players on {node}", script_args(
                streaming_bench.__file__, "--load", "--port", str(cluster.own_ports[node]), "--count", str(count),
                "--first", str(first), "--samples", "0", "--lifetime", f"{lifetime:.0f}"))
        for load in loads.values():
            await load.send("connect")
        for node, load in loads.items():
            connected = json.loads((await load.read_line(streaming_bench.CONNECT_TIMEOUT + 30)).split(" ", 1)[1])
            if connected["failures"]:
                raise RuntimeError(f"{connected['failures']} players on {node} did not start playing:"
                                   f" {connected['failed'][:3]}")
        await asyncio.sleep(args.warmup)
        window = ProcessesWindow({**cluster.pids, "publisher": publisher.process.pid, "redis": redis.process.pid,
                                  **{f"load {node}": load.pid for node, load in loads.items()}})
        window.start()
        for load in loads.values():
            if await load.ask("mark") != "marked":
                raise RuntimeError("a load process did not mark the window")
        await asyncio.sleep(args.duration)
        reports = {node: json.loads((await load.ask("report")).split(" ", 1)[1]) for node, load in loads.items()}
        measured = window.stop()
    finally:
        for load in loads.values():
            await load.stop(timeout=10)
        if publisher is not None:
            await publisher.stop()
        if cluster is not None:
            await cluster.stop()
    print(f"\n== relay, workers = 2: ffmpeg publishes to {origin}; {args.players} players, half on each node;"
          f" source {rates['kbps']:.0f} kbit/s; {args.duration:g} s window")
    per_node = {}
    for node, report in reports.items():
        gbit = sum(row[1] for row in report["players"]) * 8 / 1e9
        kbps = sorted(row[1] * 8 / report["seconds"] / 1000 for row in report["players"])
        behind = sum(1 for k in kbps if k < streaming_bench.BELOW * rates["kbps"])
        cpu = measured["cpu"][node]
        per_node[node] = cpu / gbit if gbit else float("inf")
        print(f"  {node}: {len(kbps)} players, {gbit:.2f} Gbit delivered, CPU {cpu:.2f} s ="
              f" {cpu / measured['wall'] * 100:.0f}% of a core, {per_node[node]:.2f} CPU-s per Gbit;"
              f" {behind} players below {streaming_bench.BELOW * 100:.0f}% of the source bitrate")
    print_cpu(measured)
    return {"busy": measured["busy"], "cpu_per_gbit": per_node}


# ======================================================================================
# The run
# ======================================================================================

async def run(args):
    from tests.cluster.redis_server import RedisServer

    raise_open_files_limit()
    phases = args.phases.split(",")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as work_dir:
        redis = RedisServer()
        try:
            redis.start()
            print(f"redis-server {redis.url} (pid {redis.process.pid}); {os.cpu_count()} CPUs;"
                  f" python {sys.version.split()[0]}")
            if "calls" in phases:
                results["calls"] = [await calls_phase(args, work_dir, redis, workers) for workers in (1, 2)]
            if "broadcast" in phases:
                results["broadcast"] = await broadcast_phase(args, work_dir, redis)
            if "relay" in phases:
                results["relay"] = await relay_phase(args, work_dir, redis)
        finally:
            redis.remove()
    print_verdict(results)


def print_verdict(results):
    print("\n== summary")
    busy = any(r["busy"] for r in results.get("calls", [])) or any(
        results[k]["busy"] for k in ("broadcast", "relay") if k in results)
    if "calls" in results:
        one, two = results["calls"]
        ratio, cpu = two["rate"] / max(one["rate"], 1e-9), two["cpu_per_call"] / max(one["cpu_per_call"], 1e-9)
        print(f"bridged calls/s:        {one['rate']:,.0f} with 1 worker, {two['rate']:,.0f} with 2:"
              f" scaling {ratio:.2f}x")
        print(f"gateway CPU per call:   {one['cpu_per_call'] * 1000:.3f} ms with 1, {two['cpu_per_call'] * 1000:.3f} ms"
              f" with 2 ({cpu:.2f}x; target within {(CALL_TARGET - 1) * 100:.0f}%)")
    if "broadcast" in results and not results["broadcast"]["failed"]:
        b = results["broadcast"]
        print(f"broadcast p99:          {b['same_p99']:.2f} ms same node, {b['cross_p99']:.2f} ms cross node"
              f" (target under {LATENCY_TARGET_MS:g} ms)")
    if "relay" in results:
        print("relay CPU-s per Gbit:   " + ", ".join(f"{node} {value:.2f}"
                                                    for node, value in results["relay"]["cpu_per_gbit"].items()))
    if busy:
        print("BUSY MACHINE: other work ran during at least one phase; no verdict (run again on a quiet machine)")
        return
    verdicts = []
    if "calls" in results:
        verdicts.append(("CPU per call within 10%", results["calls"][1]["cpu_per_call"]
                         <= CALL_TARGET * results["calls"][0]["cpu_per_call"] and not any(
                             r["errors"] for r in results["calls"])))
    if "broadcast" in results:
        b = results["broadcast"]
        verdicts.append((f"cross-node p99 under {LATENCY_TARGET_MS:g} ms",
                         not b["failed"] and b["cross_p99"] < LATENCY_TARGET_MS))
    for what, ok in verdicts:
        print(f"verdict: {what}: {'yes' if ok else 'NO'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--phases", default="calls,broadcast,relay", help="which phases (default all three)")
    parser.add_argument("--clients", type=int, default=50, help="calls phase: concurrent clients (default 50)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per phase (default 2)")
    parser.add_argument("--messages", type=int, default=500, help="broadcast phase: messages (default 500)")
    parser.add_argument("--players", type=int, default=400, help="relay phase: players, half per node (default 400)")
    # The broadcast load (this file run again); not for direct use.
    parser.add_argument("--load", choices=("broadcast",), help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load == "broadcast":
        run_broadcast_load(*(int(p) for p in args.ports.split(",")), args.messages)
        return
    unknown = set(args.phases.split(",")) - {"calls", "broadcast", "relay"}
    if unknown or args.clients < 1 or args.duration <= 0 or args.warmup < 0 or args.messages < 1 or args.players < 2:
        parser.error("--phases is a list of calls, broadcast, relay; the counts and durations must be positive")
    try:
        asyncio.run(run(args))
    except (RuntimeError, asyncio.TimeoutError) as e:
        raise SystemExit(f"bench/cluster.py: {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
