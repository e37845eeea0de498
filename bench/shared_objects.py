"""Remote shared object fan-out: one writer changing a slot as fast as it can, N listeners; changes per
second, server CPU per delivered change, and the p99 delay from a change to every listener.  ``--room``:
the same shape for a chat room's broadcast.

What it measures
    The server runs in a child process built the way ``twistd fmspy-gateway``
    builds it (``tap.Options`` + ``makeService`` from a temporary fmspy.cfg:
    ``[LiveApplication] name = so``, whose default hooks let everyone read and
    write every shared object; RTMP on 127.0.0.1 port 0, HTTP off, long ping
    and keep-alive timers; ``maxSharedObjectListeners`` above the listener
    count), logging to a file.  Then:

      * N listeners (``--listeners``, 1,000), in load processes of at most
        ``--per-process`` (500) each, connect and ``Use`` the transient object
        ``bench``; each waits for its UseSuccess (the initial sync);
      * one writer, in a process of its own, Uses it too and then, for
        ``--duration`` seconds (10), sends RequestChange of slot ``slot`` to
        ``[sequence number, time.monotonic() at sending]``, one change per
        message, keeping ``--window`` (8) changes unacknowledged: a new one
        goes out whenever the server's Success for an earlier one comes back.
        That is as fast as the server applies them without a queue growing
        on either side, on one node.  Across nodes (``--cluster``) the writer's
        node acknowledges as soon as Redis applied a change, whether or not
        the other node's listeners keep up: ``--rate`` paces the writer there;
      * the load processes wait until every listener has the last change
        (at most 30 s) and report.

    From the values the listeners read: deliveries (one Change at one
    listener), changes missed, and for each change its delay to the *last*
    listener to get it (the monotonic clock is the machine's, the same in
    every process): p50/p99/max of those are the delay "from change to every
    listener".  The server's CPU (``_common.read_cpu_seconds``) over the window
    and the drain, per delivered change; the load processes' and the
    writer's CPU (so we know whether the load generator was the bottleneck);
    the machine's CPU use.  When other processes used more than a quarter
    of a core during the run the figures are disturbed: the benchmark says
    so and prints no verdict.

    nginx-rtmp has no shared objects (it implements no message type 16 or
    19), so there is nothing to compare with; the output says so.

The clients
    The handshake and ``connect`` bytes are encoded once (``_common``); the
    Use and every RequestChange are encoded with the core's own codec
    (``rtmp/sharedobject.py`` ``encode_shared_object``) and written with its
    ``ChunkWriter``; what comes back is reassembled by the core's
    ``ChunkReader``.  A listener reads a Change without decoding the AMF
    values: the sequence number and the time are the last 18 bytes of the
    message (two AMF0 numbers); a message of any other shape is decoded with
    ``decode_shared_object``.  Each client acknowledges bytes as the server's
    Window Ack Size asks.

Usage
    .venv/bin/python bench/shared_objects.py [--listeners 1000] [--duration 10] [--window 8]
                                             [--per-process 500] [--warmup 2] [--cluster] [--room]

``--room`` measures a room's broadcast the same way: the chat application
(``[ChatApplication]``), every listener a member of its default room, the
writer identified and saying ``"SEQ SENT"`` lines with ``say``; each line
reaches every member as ``message("<w>: SEQ SENT")`` (the writer too: the
speaker hears its own line, not counted as a delivery), and the writer's
window counts the ``_result`` of its ``say`` calls.  A listener reads the
two numbers from the end of the string without decoding the command.

``--cluster`` runs the same across two nodes: a redis-server of the run's
own (unix socket in the temporary directory, persistence off), two server
children with ``[Cluster] redis`` pointing at it, the writer on node a and
every listener on node b; the server CPU is both nodes' (each is printed,
and redis's).

Everything listens on 127.0.0.1.  The script stops by itself: every wait has a
timeout, and every child stops when its stdin closes.
"""
import argparse
import asyncio
import json
import os
import platform
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (BUSY_CORES, HOST, S0_S1_S2, Child, begin_file_logging, command_chunks,  # noqa: E402
                     connect_object, cores_busy, handshake_c0c1, raise_open_files_limit, read_cpu_seconds,
                     read_system_cpu, say, script_args, start_fmspy_service, twisted_control, write_fmspy_config)
from fmspy_gateway.rtmp import amf  # noqa: E402
from fmspy_gateway.rtmp.chunks import ChunkReader, ChunkWriter, Message  # noqa: E402
from fmspy_gateway.rtmp.sharedobject import (Change, RequestChange, SharedObjectMessage, Status, Use,  # noqa: E402
                                             UseSuccess, decode_shared_object, encode_shared_object)

OBJECT = "bench"
SLOT = "slot"
CONNECT_TIMEOUT = 120.0      # seconds for every listener to have its initial sync
DRAIN_TIMEOUT = 30.0         # seconds for every listener to get the last change
SETUPS_IN_FLIGHT = 100       # clients handshaking/connecting at once, per process

APPLICATIONS = """\
[EchoApplication]
enabled = no

[ChatApplication]
enabled = {room}
name = chat

[LiveApplication]
enabled = yes
name = so
maxSharedObjectListeners = {listeners}
"""

#: The value of a Change as a listener reads it: AMF0 strict array [seq, t] ends with two numbers.
_TAIL = struct.Struct(">BdBd")
#: A shared object event's header: type, then the length of its body.
_EVENT = struct.Struct(">BI")


# ======================================================================================
# Our server child (``--serve``)
# ======================================================================================

def serve(config_path: str, log_path: str):
    raise_open_files_limit()
    from twisted.internet import reactor

    log_file = begin_file_logging(log_path)
    top, listening, factory, codec = start_fmspy_service(reactor, config_path)
    info = {"port": listening.getHost().port, "pid": os.getpid(), "python": platform.python_version(),
            "codec": codec, "reactor": type(reactor).__name__}
    twisted_control(reactor, "ready " + json.dumps(info),
                    {"count": lambda: [f"count {len(factory.connections)}"]}, top.stopService)
    reactor.run()
    log_file.close()


# ======================================================================================
# What is measured: a shared object's changes, or a room's broadcast
# ======================================================================================

class SharedObjectFanOut:
    """Listeners Use the object ``bench``; the writer sends RequestChange of ``slot``, acknowledged by Success."""

    app, type_id, unit = "so", 19, "change"
    #: Where a message's first event type is: after the name, version, persistence and reserved fields.
    offset = 2 + len(OBJECT.encode()) + 12

    def answered(self, client, message):
        """A message before the client is set up: the connect's answer, then the Use's."""
        if message.type_id == 20:
            if b"_error" in message.payload:
                client.ready(RuntimeError("connect answered with _error"))
            elif b"_result" in message.payload:
                client.send(19, encode_shared_object(SharedObjectMessage(OBJECT, 0, False, (Use(),)), amf3=False))
        elif message.type_id == 19:
            events = decode_shared_object(message.payload, amf3=False).events
            if any(isinstance(event, UseSuccess) for event in events):
                client.ready(None)
            else:
                status = [event.code for event in events if isinstance(event, Status)]
                client.ready(RuntimeError(f"Use answered {status or events}"))

    def read(self, payload):
        """(seq, sent at) of the writer's change, None for any other message (``read_change``)."""
        return read_change(payload, self.offset)

    def request(self, seq, sent):
        return 19, encode_shared_object(SharedObjectMessage(OBJECT, 0, False, (
            RequestChange(SLOT, [float(seq), sent]),)), amf3=False)

    def acknowledged(self, payload):
        """How many of the writer's changes a message confirms; None: a message the writer should not get."""
        return successes(payload, self.offset) or None


class RoomFanOut:
    """Everyone in the chat's default room; the writer identifies as ``w`` and ``say``s, acknowledged by _result."""

    app, type_id, unit = "chat", 20, "message"
    _MESSAGE = amf.encode_values(["message"], amf3=False)
    _RESULT = amf.encode_values(["_result"], amf3=False)

    def answered(self, client, message):
        if message.type_id != 20:
            return
        values = amf.decode_values(message.payload, amf3=False)
        name, transaction_id = (values + [None, None])[:2]
        if name == "_error":
            client.ready(RuntimeError(f"{'connect' if transaction_id == 1 else 'identify'} answered with _error"))
        elif name == "_result" and transaction_id == 1 and client.writes:
            client.send(20, amf.encode_values(["identify", 2, None, "w"], amf3=False))
        elif name == "_result":
            client.ready(None)

    def read(self, payload):
        """(seq, sent at) from a ``message`` line of the writer's: the string's last two words."""
        said = payload.rfind(b">: ")
        if not payload.startswith(self._MESSAGE) or said < 0:
            return None                         # "<w> is entering chat...", or not a line at all
        words = payload[said + 3:].split()
        return (int(words[0]), float(words[1])) if len(words) == 2 else None

    def request(self, seq, sent):
        return 20, amf.encode_values(["say", seq + 10, None, f"{seq} {sent!r}"], amf3=False)

    def acknowledged(self, payload):
        if payload.startswith(self._RESULT):
            return 1
        return 0 if payload.startswith(self._MESSAGE) else None     # its own line, which the speaker hears too


MODES = {"so": SharedObjectFanOut, "room": RoomFanOut}


# ======================================================================================
# The clients (``--load`` and ``--write`` children)
# ======================================================================================

class Client(asyncio.Protocol):
    """One RTMP client that connects, is set up as ``mode`` says (a Use, an identify), then hands each message of
    the mode's type on.

    ``on_ready`` fires with None once set up (a listener's initial sync), or with an error.
    """

    def __init__(self, port: int, mode, writes: bool, on_message, on_ready):
        self.port = port
        self.mode = mode
        self.writes = writes
        self.on_message = on_message
        self.on_ready = on_ready
        self.reader = ChunkReader()
        self.writer = ChunkWriter()
        self.transport = None
        self.handshake = bytearray()
        self.received = 0        # every byte read, handshake included (what Acknowledgements count)
        self.acked = 0
        self.window = 0          # the server's Window Ack Size; 0: none asked for
        self.set_up = False

    def connection_made(self, transport):
        self.transport = transport
        transport.write(handshake_c0c1())

    def data_received(self, data):
        self.received += len(data)
        if self.handshake is not None:
            self.handshake += data
            if len(self.handshake) < S0_S1_S2:
                return
            data = bytes(self.handshake[S0_S1_S2:])
            # C2 (S1 echoed) and connect in one write, as real clients often do.
            self.transport.write(bytes(self.handshake[1:1537]) + command_chunks(
                ["connect", 1, connect_object(self.port, self.mode.app)]))
            self.handshake = None
        for message in self.reader.feed(data):
            self.message_received(message)
        if self.window and self.received - self.acked >= self.window:
            self.acked = self.received
            self.send(3, (self.received & 0xFFFFFFFF).to_bytes(4, "big"), 2)

    def message_received(self, message):
        if message.type_id == 5:
            self.window = int.from_bytes(message.payload[:4], "big")
        elif self.set_up:
            if message.type_id == self.mode.type_id:
                self.on_message(message.payload)
        else:
            self.mode.answered(self, message)

    def ready(self, error):
        self.set_up = error is None
        if self.on_ready is not None:
            on_ready, self.on_ready = self.on_ready, None
            on_ready(error)

    def send(self, type_id, payload, chunk_stream=3):
        self.transport.write(self.writer.write(Message(type_id, 0, 0, payload, chunk_stream)))

    def connection_lost(self, exc):
        self.ready(ConnectionError(f"closed before the initial sync: {exc}"))


async def open_clients(port, mode, count, on_message, writes=False):
    """``count`` clients, ``SETUPS_IN_FLIGHT`` at a time; returns ({index: client ready}, the errors).

    ``on_message(index, payload)`` receives each message of the mode's type once the client is set up.
    """
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(SETUPS_IN_FLIGHT)

    async def one(index):
        async with gate:
            done = loop.create_future()
            ready = lambda error: done.done() or done.set_result(error)  # noqa: E731
            transport, client = await loop.create_connection(
                lambda: Client(port, mode, writes, lambda payload: on_message(index, payload), ready), HOST, port)
            error = await asyncio.wait_for(done, CONNECT_TIMEOUT)
            if error is not None:
                transport.abort()
                raise error
            return client

    results = await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    clients = {i: r for i, r in enumerate(results) if isinstance(r, Client)}
    errors = [f"{type(r).__name__}: {r}" for r in results if not isinstance(r, Client)]
    return clients, errors


async def stdin_lines():
    """The control channel of an asyncio child: an async iterator over stdin's lines (ends at EOF)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        yield line.decode().split()


def read_change(payload: bytes, offset: int):
    """(seq, sent at) of a Change message from the writer, None for any other message.

    The fast path reads the two numbers at the end; a message of another shape is decoded in full.
    """
    if len(payload) > offset and payload[offset] == 4:
        zero, seq, zero2, sent = _TAIL.unpack_from(payload, len(payload) - _TAIL.size)
        if zero == 0 and zero2 == 0:
            return int(seq), sent
    for event in decode_shared_object(payload, amf3=False).events:
        if isinstance(event, Change):
            for key, value in event.pairs:
                if key == SLOT:
                    return int(value[0]), float(value[1])
    return None


def successes(payload: bytes, offset: int) -> int:
    """The Success events in a message, walked by their headers (type u8, length u32) without decoding values.

    A writer whose request crossed another change hears its value again (a Change) before the Success.
    """
    count, end = 0, len(payload)
    while offset + 5 <= end:
        event_type, length = _EVENT.unpack_from(payload, offset)
        count += event_type == 5
        offset += 5 + length
    return count


async def run_load(port: int, count: int, mode):
    """``--load``: ``count`` listeners; commands ``connect`` and ``report LAST FILE``."""
    last_seen = [0] * count
    worst = {}                                    # seq -> delay to the last of our listeners to get it
    counted = {"deliveries": 0, "other": 0}

    def on_message(index, payload):
        now = time.monotonic()
        change = mode.read(payload)
        if change is None:
            counted["other"] += 1
            return
        seq, sent = change
        counted["deliveries"] += 1
        last_seen[index] = max(last_seen[index], seq)
        delay = now - sent
        if delay > worst.get(seq, -1.0):
            worst[seq] = delay

    clients = {}
    say("ready " + json.dumps({"pid": os.getpid()}))
    async for command in stdin_lines():
        if command[0] == "connect":
            started = time.monotonic()
            opened, errors = await open_clients(port, mode, count, on_message)
            clients.update(opened)
            say("connected " + json.dumps({"seconds": time.monotonic() - started, "ready": len(opened),
                                           "failures": len(errors), "failed": errors[:3]}))
        elif command[0] == "report":
            wanted, deadline = int(command[1]), time.monotonic() + DRAIN_TIMEOUT
            seen = [last_seen[i] for i in clients]
            while seen and min(seen) < wanted and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                seen = [last_seen[i] for i in clients]
            # Too long for a control line (a delay per change): the report goes through a file.
            with open(command[2], "w") as f:
                json.dump({"deliveries": counted["deliveries"], "other": counted["other"],
                           "listeners": len(clients), "behind": sum(1 for s in seen if s < wanted),
                           "worst": worst}, f)
            say("reported")
        elif command[0] == "quit":
            break
    for client in clients.values():
        client.transport.abort()


async def run_writer(port: int, window: int, rate: float, mode):
    """``--write``: one writer; commands ``connect`` and ``go SECONDS``.

    With ``rate`` it also keeps to that many changes a second: across nodes the
    writer's node acknowledges at once while another node's listeners may not
    keep up, so an unpaced writer measures how far behind they fall, not the delay.
    """
    state = {"sent": 0, "acked": 0, "started": 0.0, "until": 0.0, "other": []}
    finished = asyncio.Event()
    client = None

    def send_more():
        now = time.monotonic()
        while (state["sent"] - state["acked"] < window and now < state["until"]
               and (not rate or state["sent"] < rate * (now - state["started"]) + 1)):
            state["sent"] += 1
            client.send(*mode.request(state["sent"], time.monotonic()))
        if rate and now < state["until"]:
            asyncio.get_running_loop().call_later(1 / rate, send_more)     # the next change's turn
        if state["sent"] == state["acked"] and now >= state["until"]:
            finished.set()

    def on_message(_, payload):
        applied = mode.acknowledged(payload)        # one per change (line) of ours applied (said)
        if applied:
            state["acked"] += applied
            send_more()
        elif applied is None and len(state["other"]) < 3:
            state["other"].append(repr(payload[:80]))

    say("ready " + json.dumps({"pid": os.getpid()}))
    async for command in stdin_lines():
        if command[0] == "connect":
            opened, errors = await open_clients(port, mode, 1, on_message, writes=True)
            client = opened.get(0)
            say("connected " + json.dumps({"ready": len(opened), "failures": len(errors), "failed": errors}))
        elif command[0] == "go":
            started = state["started"] = time.monotonic()
            state["until"] = started + float(command[1])
            finished.clear()
            send_more()
            try:
                await asyncio.wait_for(finished.wait(), float(command[1]) + DRAIN_TIMEOUT)
            except asyncio.TimeoutError:
                pass
            say("wrote " + json.dumps({"sent": state["sent"], "acked": state["acked"],
                                       "seconds": time.monotonic() - started, "other": state["other"]}))
        elif command[0] == "quit":
            break
    if client is not None:
        client.transport.abort()


# ======================================================================================
# The parent
# ======================================================================================

def snapshot(pids: dict) -> dict:
    return {"at": time.monotonic(), "cpu": {name: read_cpu_seconds(pid) for name, pid in pids.items()},
            "system": read_system_cpu()}


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


class Redis:
    """``--cluster``: a redis-server of the run's own, on a unix socket in the work directory, persistence off."""

    def __init__(self, process, socket_path):
        self.process, self.pid, self.url = process, process.pid, f"unix://{socket_path}"

    @classmethod
    async def start(cls, work_dir):
        path = os.path.join(work_dir, "redis.sock")
        process = await asyncio.create_subprocess_exec(
            "redis-server", "--port", "0", "--unixsocket", path, "--save", "", "--appendonly", "no",
            "--dir", work_dir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        redis = cls(process, path)
        try:
            line = b""
            while b"ready to accept connections" not in line:
                line = await asyncio.wait_for(process.stdout.readline(), 30)
                if not line:
                    raise RuntimeError("redis-server exited at start")
        except BaseException:
            await redis.stop()
            raise
        return redis

    async def stop(self, timeout=10):
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()


async def start_server(work_dir, node, args, redis):
    """A server child; with ``redis``, node ``node`` of the cluster on it."""
    folder = os.path.join(work_dir, node)
    os.makedirs(folder)
    sections = APPLICATIONS.format(room="yes" if args.room else "no", listeners=args.listeners + 10)
    if redis is not None:
        sections += f"\n[Cluster]\nredis = {redis.url}\nnode = {node}\nsecret = bench\n"
    config = write_fmspy_config(folder, sections)
    return await Child.start(f"server {node}", script_args(__file__, "--serve", "--config", config, "--log",
                                                           os.path.join(folder, "server.log")))


async def run(args):
    raise_open_files_limit()
    procs = max(1, -(-args.listeners // args.per_process))
    shares = [args.listeners // procs + (1 if i < args.listeners % procs else 0) for i in range(procs)]
    children, redis = [], None
    room = ["--room"] if args.room else []
    with tempfile.TemporaryDirectory(prefix="bench-shared-objects-") as work_dir:
        try:
            if args.cluster:
                redis = await Redis.start(work_dir)
            servers = [await start_server(work_dir, "a", args, redis)]
            children.extend(servers)
            if args.cluster:        # the writer on node a, every listener on node b
                servers.append(await start_server(work_dir, "b", args, redis))
                children.append(servers[-1])
            port, listen_port = str(servers[0].info["port"]), str(servers[-1].info["port"])
            loads = []
            for i, share in enumerate(shares):
                loads.append(await Child.start(f"load {i}", script_args(__file__, "--load", "--port", listen_port,
                                                                        "--count", str(share), *room)))
                children.append(loads[-1])
            writer = await Child.start("writer", script_args(__file__, "--write", "--port", port,
                                                             "--window", str(args.window),
                                                             "--rate", str(args.rate), *room))
            children.append(writer)

            for load in loads:
                await load.send("connect")
            connected = [json.loads((await load.read_line(CONNECT_TIMEOUT + 30)).split(" ", 1)[1])
                         for load in loads]
            wrote = json.loads((await writer.ask("connect", CONNECT_TIMEOUT)).split(" ", 1)[1])
            if wrote["failures"]:
                raise RuntimeError(f"the writer could not {'identify' if args.room else 'Use the object'}:"
                                   f" {wrote['failed']}")
            await asyncio.sleep(args.warmup)

            pids = {"writer": writer.pid, **{f"server {node}": c.pid for node, c in zip("ab", servers)},
                    **{f"load{i}": c.pid for i, c in enumerate(loads)}, **({"redis": redis.pid} if redis else {})}
            before = snapshot(pids)
            wrote = json.loads((await writer.ask(f"go {args.duration}", args.duration + DRAIN_TIMEOUT + 30))
                               .split(" ", 1)[1])
            reports = []
            for i, load in enumerate(loads):
                path = os.path.join(work_dir, f"report-{i}.json")
                if await load.ask(f"report {wrote['sent']} {path}", DRAIN_TIMEOUT + 30) != "reported":
                    raise RuntimeError(f"load process {i} did not report")
                with open(path) as f:
                    reports.append(json.load(f))
            after = snapshot(pids)
        finally:
            for child in reversed(children):
                await child.stop(timeout=10)
            if redis is not None:
                await redis.stop()

    report(args, servers[0].info, connected, wrote, reports, before, after)


def report(args, info, connected, wrote, reports, before, after):
    wall = after["at"] - before["at"]
    cpu = {name: after["cpu"][name] - before["cpu"][name] for name in before["cpu"]}
    loads_cpu = sum(v for name, v in cpu.items() if name.startswith("load"))
    server_cpu = sum(v for name, v in cpu.items() if name.startswith("server"))
    machine = cores_busy(before["system"], after["system"])
    others = max(machine - sum(cpu.values()) / wall, 0)
    listeners = sum(r["listeners"] for r in reports)
    deliveries = sum(r["deliveries"] for r in reports)
    worst = {}
    for r in reports:
        for seq, delay in r["worst"].items():
            worst[seq] = max(worst.get(seq, 0.0), delay)
    delays = list(worst.values())
    expected = wrote["acked"] * listeners
    rate = wrote["acked"] / wrote["seconds"]
    u = "message" if args.room else "change"       # what the writer sends and every listener gets

    print(f"fmspy-gateway: python {info['python']}, pyamf codec {info['codec']}, reactor {info['reactor']};"
          f" machine: {os.cpu_count()} CPUs")
    if args.cluster:
        print("cluster:             two nodes on one redis-server (unix socket); the writer on node a, every"
              " listener on node b")
    joined = "were in the room" if args.room else "had their initial sync"
    print(f"listeners:           {listeners} of {args.listeners} {joined}"
          f" (slowest load process {max(c['seconds'] for c in connected):.1f} s)"
          + "".join(f"; FAILED {c['failures']} (first: {c['failed']})" for c in connected if c["failures"]))
    print(f"writer:              {wrote['acked']} {u}s {'said' if args.room else 'applied'} of {wrote['sent']} sent in"
          f" {wrote['seconds']:.1f} s, window {args.window}{f', paced at {args.rate:g}/s' if args.rate else ''}"
          f" -> {rate:.0f} {u}s/s")
    heard = "messages" if args.room else "Changes"
    print(f"delivered:           {deliveries} {heard} to listeners of {expected} expected"
          f" ({expected - deliveries} missing; {sum(r['behind'] for r in reports)} listeners without the last"
          f" {u} after the drain)"
          + (f"; NO {u} crossed from node a to node b" if args.cluster and not deliveries else ""))
    per_delivery = f"{server_cpu / deliveries * 1e6:.1f} us" if deliveries else "n/a (nothing delivered)"
    print(f"server CPU:          {server_cpu:.2f} s over {wall:.1f} s = {server_cpu / wall * 100:.0f}% of a"
          f" core -> {per_delivery} per delivered {u},"
          f" {server_cpu / max(wrote['acked'], 1) * 1e3:.2f} ms per {u} to {listeners} listeners"
          + (f" (node a {cpu['server a']:.2f} s, node b {cpu['server b']:.2f} s, redis {cpu['redis']:.2f} s)"
             if args.cluster else ""))
    print(f"delay to every listener: p50 {percentile(delays, 0.5) * 1000:.1f} ms, p99"
          f" {percentile(delays, 0.99) * 1000:.1f} ms, max {max(delays, default=float('nan')) * 1000:.1f} ms"
          f" (per {u}: sent by the writer -> read by the last listener; {len(delays)} {u}s)")
    print(f"other CPU:           load processes {loads_cpu:.2f} s ({loads_cpu / wall * 100:.0f}% of a core over"
          f" {len(reports)} process(es)), writer {cpu['writer']:.2f} s")
    print(f"machine CPU:         {machine * 100:.0f}% of {os.cpu_count() * 100}% busy; other processes and the"
          f" kernel {others * 100:.0f}%")
    print("nginx-rtmp:          no comparison: nginx-rtmp has " + ("no rooms and no calls to a server application"
          if args.room else "no shared objects (message types 16 and 19)"))
    if others > BUSY_CORES:
        print(f"BUSY MACHINE: other work used {others:.2f} cores during the run; these figures are disturbed"
              " and no verdict is given")
    elif wrote["other"] or expected != deliveries:
        print(f"verdict: FAILED: {expected - deliveries} deliveries missing"
              + (f"; the writer got other messages: {wrote['other']}" if wrote["other"] else ""))
    else:
        print(f"verdict: every listener got every {u}: {rate:.0f} {u}s/s to {listeners} listeners,"
              f" {per_delivery} server CPU per delivered {u},"
              f" p99 {percentile(delays, 0.99) * 1000:.1f} ms to every listener")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listeners", type=int, default=1000, help="listeners (default 1000)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds the writer writes (default 10)")
    parser.add_argument("--window", type=int, default=8, help="changes the writer keeps unacknowledged (default 8)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="changes per second the writer keeps to (default 0: as fast as they are acknowledged)")
    parser.add_argument("--per-process", type=int, default=500, help="listeners per load process (default 500)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds between the syncs and the writing")
    parser.add_argument("--cluster", action="store_true",
                        help="two nodes on a redis-server of the run's own: writer on one, listeners on the other")
    parser.add_argument("--room", action="store_true",
                        help="a chat room's broadcast (the writer says lines) instead of a shared object's changes")
    # The children (this file run again); not for direct use.
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.config, args.log)
    elif args.load:
        asyncio.run(run_load(args.port, args.count, MODES["room" if args.room else "so"]()))
    elif args.write:
        asyncio.run(run_writer(args.port, args.window, args.rate, MODES["room" if args.room else "so"]()))
    else:
        if args.listeners < 1 or args.duration <= 0 or args.window < 1 or args.per_process < 1 or args.rate < 0:
            parser.error("--listeners, --duration, --window and --per-process must be positive, --rate not negative")
        try:
            asyncio.run(run(args))
        except (RuntimeError, OSError, asyncio.TimeoutError) as e:
            print(f"shared objects bench failed: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
