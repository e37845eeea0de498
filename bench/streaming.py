"""Live streaming fan-out: one publisher, N players; server CPU seconds per Gbit delivered, per-player
bitrate and server memory, against nginx-rtmp on the same load when it is installed.

What it measures
    A 2 Mbit/s H.264/AAC FLV is generated once per run with ffmpeg from lavfi
    (testsrc2 1280x720 25 fps, libx264 ``-pix_fmt yuv420p -b:v 1900k -maxrate
    2M -bufsize 2M -g 50``, AAC 128k stereo) in a temporary directory.  Then, for each player
    count (``--players``, 100 and 400) and each server (ours, then nginx-rtmp):

      * the server starts: ours as a child process built the way
        ``twistd fmspy-gateway`` builds it (``tap.Options`` + ``makeService``
        from a temporary fmspy.cfg: ``[LiveApplication] name = live``, RTMP on
        127.0.0.1 port 0, HTTP off, slowPlayerTimeout 60 s, long ping and
        keep-alive timers), logging to a file; nginx with Debian's
        ``libnginx-mod-rtmp`` from a temporary nginx.conf (daemon off,
        master_process off: one process does all the work, ``chunk_size
        4096`` as ours, ``application live { live on; }``);
      * the publisher: ``ffmpeg -re -stream_loop -1 -i src.flv -c copy -f flv
        rtmp://127.0.0.1:PORT/live/bench`` (the file outlasts the run; the loop
        only guards against a slow connect phase);
      * N players, in one or more load processes (``--client-procs``, default
        one per 250 players), connect, warm up (``--warmup``, 5 s), and are
        measured over a window (``--duration``, 20 s).

    Over the window: the server's CPU (its CPU clock, to the nanosecond:
    ``_common.read_cpu_seconds``), the load processes' and the publisher's
    CPU (so we know the load generator was not the bottleneck), the
    machine's CPU use; the bytes every player read from its socket.  Reported: Gbit delivered, server CPU seconds per Gbit, the
    per-player bitrate min/median/max against the source's media bitrate
    (players below 90% are flagged), the longest gap between two reads of any
    player, players disconnected; server RSS idle, with the publisher only,
    and at the end with every player connected.  With nginx: the ratio ours /
    nginx of CPU-s per Gbit and RSS.  The summary also gives the load
    processes' CPU and the whole machine's per Gbit, outside the verdict:
    on loopback a send's receiving side is kernel work too, counted in the
    reader's time or the sender's depending on timing, and the same
    players spend more reading nginx-rtmp, which sends each chunk on its
    own, than reading us (2.20-2.26 against 1.68-1.73 s in 15 s at 400
    players).

    The fan-out's floor (``_relay_floor.py``, unless ``--skip-floor``) runs on
    the same load in the same round: two relays that, once the stream runs, do
    nothing but read the publisher's socket and send each read to every
    player, one ``socket.send`` each, one on Twisted's reactor
    (``floor-twisted``) and one in a plain ``select.epoll`` loop
    (``floor-python``).  What they cost is what being woken, reading and
    sending cost in Python before any RTMP work: the summary gives each
    against nginx-rtmp and ours against each, with the floor's publisher
    reads a second and sends per delivered message over the window.  Their
    players parse nothing (the relayed bytes start mid-chunk), so no sample
    lines for them.

    ``--rounds N`` runs each player count N times with every server, their
    order reversed in even rounds (ours, nginx-rtmp, the floors in odd
    rounds; the floors, nginx-rtmp, ours in even ones), so that a machine
    drifting over the run favours none.  Each
    round's ratio is printed; the verdict is over the quiet rounds (a round
    that saw other work, or in which a server, load or publisher process was
    traced by strace or gdb when the window opened or closed, is left out): met only if met in every one, and
    said so when it was met in some of them only.  A ratio from one round is
    within the noise of the next (0.86-1.22x over one day's single runs at
    100 players), so comparisons close to 1 want several.

    Bytes are socket bytes (RTMP chunk headers included), counted for every
    player.  A few players per load process (``--samples``, 2) also parse
    everything with the core ``Connection``: their media payload bytes (the
    chunk overhead is socket bytes / payload bytes), their audio and video
    message counts against the source's rates (a dropped frame shows there),
    and how far their media timestamps advanced against wall time.

    ``--profile`` runs cProfile in our server during the window (nginx is then
    skipped) and prints the top functions by own and by cumulative time, in
    microseconds per delivered media message (a message sent to one player:
    messages published x players), and the socket sends per delivered
    message.  Profiling slows the
    server several-fold: figures of a profiled run are not the benchmark's.

The players
    One non-blocking socket each in a single epoll loop per load process (no
    asyncio: the per-read cost is one ``recv_into`` into a shared buffer and
    an addition).  The setup goes through our own core,
    ``fmspy_gateway.rtmp.connection.Connection(Role.CLIENT, digest=False)``:
    simple handshake (C1 version zero), ``connect`` to ``live``,
    ``createStream``, ``play("bench")``, SetBufferLength 3000 ms, as ffmpeg
    plays.  Once ``NetStream.Play.Start`` arrives a player only counts bytes,
    and sends an Acknowledgement whenever the server's Window Ack Size worth
    of bytes has arrived (what ffmpeg and librtmp do).

Usage
    .venv/bin/python bench/streaming.py [--players 100,400] [--duration 20] [--warmup 5] [--skip-nginx]
                                        [--rounds 1] [--client-procs N] [--samples 2] [--profile [--top 30]]
                                        [--skip-floor]
                                        [--media-flush-interval SECONDS [--merged-reads]]

``--media-flush-interval`` sets our ``[RTMP] mediaFlushInterval``: players
are then written once per interval instead of once per publisher read
(fewer, larger writes; up to that much more latency); ``--merged-reads``
adds ``mergedReads = yes``: the publisher is read once per interval too.  nginx-rtmp runs as
always, so the summary compares that setting with nginx-rtmp's one way.

Everything listens on 127.0.0.1.  The script stops by itself: every wait has a
timeout, the load processes and our server stop when their stdin closes,
ffmpeg and nginx are killed if this process dies (PR_SET_PDEATHSIG), and all
children are stopped in ``finally`` blocks.
"""
import argparse
import asyncio
import collections
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _nginx import Nginx, die_with_parent, find_nginx, stop_process  # noqa: E402
import _relay_floor  # noqa: E402
from _common import (BUSY_CORES, HOST, Child, StdinLines, begin_file_logging, cores_busy, package,  # noqa: E402
                     process_alive, raise_open_files_limit, read_cpu_seconds, read_rss_kb, read_system_cpu,
                     read_user_system, say, script_args, start_fmspy_service, tracer_of, twisted_control, where,
                     write_fmspy_config)

APP = "live"
STREAM = "bench"
SOURCE_EXTRA = 20.0          # seconds of source beyond warm-up + window
PUBLISH_TIMEOUT = 30.0       # seconds for ffmpeg to be publishing
CONNECT_TIMEOUT = 90.0       # seconds for every player to reach NetStream.Play.Start
SETUPS_IN_FLIGHT = 50        # players handshaking/connecting at once, per load process
SETTLE = 1.0                 # seconds between publish and the first player (a GOP in the cache)
BELOW = 0.90                 # a player below this share of the source bitrate has fallen behind
PLAYERS_PER_PROCESS = 250
READ_SIZE = 256 * 1024
HANDSHAKE_BYTES = 1 + 1536 * 2   # S0 S1 S2

APPLICATIONS = """\
[EchoApplication]
enabled = no

[ChatApplication]
enabled = no

[LiveApplication]
enabled = yes
name = {app}
"""

# ======================================================================================
# The source
# ======================================================================================

def generate_source(path: str, seconds: float):
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
           "-t", f"{seconds:.0f}",
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
           "-b:v", "1900k", "-maxrate", "2M", "-bufsize", "2M", "-g", "50",
           "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "44100",
           "-f", "flv", path]
    subprocess.run(cmd, check=True, timeout=max(300.0, seconds * 10))


def source_stats(path: str) -> dict:
    """Media payload bytes, message counts and duration of the FLV (what a player should get per second)."""
    from fmspy_gateway.rtmp.flv import read_header, scan_tags

    count = {8: 0, 9: 0}
    size = {8: 0, 9: 0}
    first = last = None
    with open(path, "rb") as f:
        read_header(f)
        for tag in scan_tags(f):
            if tag.type_id in count:
                count[tag.type_id] += 1
                size[tag.type_id] += tag.size
                first = tag.timestamp if first is None else first
                last = tag.timestamp
    seconds = max((last - first) / 1000, 0.001)
    return {"seconds": seconds, "media_bytes": size[8] + size[9],
            "kbps": (size[8] + size[9]) * 8 / seconds / 1000,
            "video_kbps": size[9] * 8 / seconds / 1000, "audio_kbps": size[8] * 8 / seconds / 1000,
            "video_rate": count[9] / seconds, "audio_rate": count[8] / seconds,
            "messages_per_s": (count[8] + count[9]) / seconds}


# ======================================================================================
# Our server child (``--serve``)
# ======================================================================================

def serve(config_path: str, log_path: str):
    raise_open_files_limit()
    from twisted.internet import reactor

    log_file = begin_file_logging(log_path)
    top, listening, factory, codec = start_fmspy_service(reactor, config_path)
    application = top.getServiceNamed("applications").applications[APP]
    profiler = {}

    def stats():
        live = application.live.get(STREAM)
        return ["stats " + json.dumps({
            "connections": len(factory.connections),
            "publishing": live is not None and live.publisher is not None,
            "players": len(live.players) if live is not None else 0,
            "blocked": len(application.live.blocked)})]

    def profile(action, path=None):
        import cProfile
        if action == "start":
            profiler["p"] = cProfile.Profile()
            profiler["p"].enable()
        else:
            p = profiler.pop("p")
            p.disable()
            p.dump_stats(path)
        return ["ok"]

    import fmspy_gateway
    info = {"port": listening.getHost().port, "pid": os.getpid(), "python": platform.python_version(),
            "codec": codec, "reactor": type(reactor).__name__,
            "package": os.path.dirname(os.path.dirname(os.path.abspath(fmspy_gateway.__file__)))}
    twisted_control(reactor, "ready " + json.dumps(info), {"stats": stats, "profile": profile}, top.stopService)
    reactor.run()
    log_file.close()


# ======================================================================================
# The load child (``--load``): N players in one epoll loop
# ======================================================================================

class LoadPlayer:
    __slots__ = ("index", "sock", "fd", "conn", "state", "sampled", "bytes", "acked", "window", "stream_id",
                 "mark_bytes", "last_read", "max_gap", "error", "closed_at", "media")

    def __init__(self, index, sampled):
        self.index = index
        self.sock = None
        self.fd = -1
        self.conn = None
        self.state = "new"
        self.sampled = sampled
        self.bytes = 0           # every byte read from the socket, handshake included
        self.acked = 0
        self.window = 0          # the server's Window Ack Size
        self.stream_id = 0
        self.mark_bytes = 0
        self.last_read = 0.0
        self.max_gap = 0.0
        self.error = None
        self.closed_at = None
        # sampled players: [audio msgs, video msgs, payload bytes, first ts in window, last ts]
        self.media = [0, 0, 0, None, None]


class Load:
    """The players of one load process and the epoll loop that runs them."""

    def __init__(self, port, count, first_index, samples, lifetime):
        from fmspy_gateway.rtmp import events
        from fmspy_gateway.rtmp.chunks import Message
        from fmspy_gateway.rtmp.connection import CONTROL_CHUNK_STREAM, Connection, Role
        from fmspy_gateway.rtmp.messages import MessageType, UserControl, u32

        self.ev = events
        self.Connection, self.Role, self.Message = Connection, Role, Message
        self.MessageType, self.UserControl, self.u32 = MessageType, UserControl, u32
        self.control_csid = CONTROL_CHUNK_STREAM
        self.port = port
        self.players = [LoadPlayer(first_index + i, i < samples) for i in range(count)]
        self.by_fd = {}
        self.epoll = select.epoll()
        self.buffer = bytearray(READ_SIZE)
        self.view = memoryview(self.buffer)
        self.deadline = time.monotonic() + lifetime
        self.measuring = False
        self.mark_at = 0.0
        self.connecting = None     # (started, queue of players still to start) while connecting
        self.in_flight = 0
        self.stdin = StdinLines()
        self.running = True

    # -- setup of one player -------------------------------------------------------------

    def start_player(self, p: LoadPlayer):
        try:
            sock = socket.create_connection((HOST, self.port), timeout=10)
        except OSError as e:
            self.fail(p, f"connect: {e}")
            return
        sock.setblocking(False)
        p.sock, p.fd = sock, sock.fileno()
        p.conn = self.Connection(self.Role.CLIENT, digest=False, epoch=0)
        p.state = "handshake"
        self.by_fd[p.fd] = p
        self.epoll.register(p.fd, select.EPOLLIN)
        self.send(p, p.conn.data_to_send())

    def send(self, p: LoadPlayer, data: bytes):
        if data and p.sock is not None:
            try:
                p.sock.sendall(data)
            except OSError as e:       # BlockingIOError included: our few bytes never fill a socket buffer
                self.fail(p, f"send: {e}")

    def fail(self, p: LoadPlayer, why: str):
        if p.state == "closed":
            return
        if p.state != "playing":
            self.setup_over()
        if p.error is None:
            p.error = why
        p.closed_at = time.monotonic()
        p.state = "closed"
        if p.sock is not None:
            try:
                self.epoll.unregister(p.fd)
            except (OSError, ValueError):
                pass
            self.by_fd.pop(p.fd, None)
            p.sock.close()
            p.sock = None

    def on_setup_data(self, p: LoadPlayer, data: bytes):
        """Handshake, connect, createStream and play through the core Connection."""
        ev = self.ev
        events = p.conn.receive_data(data)
        for e in events:
            if isinstance(e, ev.HandshakeCompleted):
                p.state = "connect"
                p.conn.send_command("connect", 1, {
                    "app": APP, "flashVer": "LNX 9,0,124,2", "tcUrl": f"rtmp://{HOST}:{self.port}/{APP}",
                    "fpad": False, "capabilities": 15, "audioCodecs": 4071, "videoCodecs": 252,
                    "videoFunction": 1})
            elif isinstance(e, ev.WindowAcknowledgementSizeChanged):
                p.window = e.size
            elif isinstance(e, ev.CommandReceived):
                self.on_command(p, e)
            elif isinstance(e, ev.MediaReceived) and p.sampled:
                self.on_media(p, e)
        self.send(p, p.conn.data_to_send())

    def on_command(self, p: LoadPlayer, e):
        info = e.arguments[0] if e.arguments and isinstance(e.arguments[0], dict) else {}
        if e.name == "_result" and e.transaction_id == 1:
            p.state = "createStream"
            p.conn.send_command("createStream", 2, None)
        elif e.name == "_result" and e.transaction_id == 2:
            p.stream_id = int(e.arguments[0])
            p.state = "play"
            p.conn.send_command("play", 0, None, [STREAM, -2], stream_id=p.stream_id)
            p.conn.send_user_control(self.UserControl.SET_BUFFER_LENGTH, p.stream_id, 3000)
        elif e.name == "_error":
            self.fail(p, f"{p.state}: _error {info.get('code')}")
        elif e.name == "onStatus":
            if info.get("code") == "NetStream.Play.Start" and p.state == "play":
                p.state = "playing"
                self.setup_over()
            elif info.get("level") == "error":
                self.fail(p, f"{p.state}: {info.get('code')}")

    def on_media(self, p: LoadPlayer, e):
        if not self.measuring:
            return
        m = p.media
        m[0 if e.type_id == 8 else 1] += 1
        m[2] += len(e.payload)
        if m[3] is None:
            m[3] = e.timestamp
        m[4] = e.timestamp

    def ack(self, p: LoadPlayer):
        p.acked = p.bytes
        message = self.Message(self.MessageType.ACKNOWLEDGEMENT, 0, 0, self.u32(p.bytes - HANDSHAKE_BYTES),
                               self.control_csid)
        p.conn.send_message(message)
        self.send(p, p.conn.data_to_send())

    # -- connecting all of them --------------------------------------------------------------

    def begin_connecting(self):
        self.connecting = (time.monotonic(), collections.deque(self.players))
        self.in_flight = 0
        self.pump()

    def pump(self):
        """Keep SETUPS_IN_FLIGHT players in setup; report once none is left to start or in setup."""
        if self.connecting is None:
            return
        started, queue = self.connecting
        while queue and self.in_flight < SETUPS_IN_FLIGHT:
            self.in_flight += 1
            self.start_player(queue.popleft())
        if not queue and self.in_flight == 0:
            self.connecting = None
            failed = [[p.index, p.error] for p in self.players if p.state != "playing"]
            say("connected " + json.dumps({"ok": len(self.players) - len(failed), "failed": failed[:20],
                                           "failures": len(failed), "seconds": time.monotonic() - started}))

    def setup_over(self):
        """One player left setup (playing, or failed during it)."""
        if self.connecting is not None:
            self.in_flight -= 1

    def connect_timed_out(self):
        for p in self.connecting[1]:
            p.error = f"not started within {CONNECT_TIMEOUT:g} s"
        self.connecting[1].clear()
        for p in self.players:
            if p.state not in ("new", "playing", "closed"):
                self.fail(p, f"not playing after {CONNECT_TIMEOUT:g} s (state {p.state})")
        self.pump()

    # -- commands from the parent -----------------------------------------------------------------

    def on_stdin(self):
        lines = self.stdin.read()
        if lines is None:
            self.running = False
            return
        for line in lines:
            self.command(line)

    def command(self, line):
        if line == "connect":
            self.begin_connecting()
        elif line == "mark":
            now = time.monotonic()
            for p in self.players:
                p.mark_bytes, p.last_read, p.max_gap = p.bytes, now, 0.0
                p.media = [0, 0, 0, None, None]
            self.measuring, self.mark_at = True, now
            say("marked")
        elif line == "report":
            say("report " + json.dumps(self.report()))
        elif line == "quit":
            say("bye")
            self.running = False
        else:
            say(f"error unknown command {line!r}")

    def report(self):
        now = time.monotonic()
        self.measuring = False
        seconds = now - self.mark_at
        players, samples = [], []
        for p in self.players:
            end = p.closed_at if p.closed_at is not None and p.closed_at > self.mark_at else now
            gap = max(p.max_gap, end - p.last_read) if p.state == "playing" else seconds
            players.append([p.index, p.bytes - p.mark_bytes, round(gap, 4), p.state, p.error])
            if p.sampled:
                a, v, payload, ts0, ts1 = p.media
                advance = (ts1 - ts0) & 0xFFFFFFFF if ts0 is not None else 0
                samples.append({"index": p.index, "audio": a, "video": v, "payload": payload,
                                "socket": p.bytes - p.mark_bytes, "advance_ms": advance})
        return {"seconds": seconds, "players": players, "samples": samples}

    # -- the loop -------------------------------------------------------------------------------------

    def run(self):
        epoll, by_fd, view = self.epoll, self.by_fd, self.view
        os.set_blocking(0, False)
        epoll.register(0, select.EPOLLIN)
        say("ready " + json.dumps({"pid": os.getpid(), "players": len(self.players)}))
        monotonic = time.monotonic
        while self.running:
            now = monotonic()
            if now > self.deadline:
                say("error lifetime over")
                break
            if self.connecting is not None and now - self.connecting[0] > CONNECT_TIMEOUT:
                self.connect_timed_out()
            events = epoll.poll(0.2)
            now = monotonic()
            measuring = self.measuring
            for fd, _ in events:
                if fd == 0:
                    self.on_stdin()
                    continue
                p = by_fd.get(fd)
                if p is None:
                    continue
                try:
                    n = p.sock.recv_into(view)
                except BlockingIOError:
                    continue
                except OSError as e:
                    self.fail(p, f"recv: {e}")
                    self.pump()
                    continue
                if n == 0:
                    self.fail(p, "closed by the server")
                    self.pump()
                    continue
                p.bytes += n
                if measuring:
                    gap = now - p.last_read
                    if gap > p.max_gap:
                        p.max_gap = gap
                    p.last_read = now
                if p.state == "playing" and not p.sampled:
                    if p.window and p.bytes - p.acked >= p.window:
                        self.ack(p)
                    continue
                try:
                    self.on_setup_data(p, bytes(view[:n]))
                except Exception as e:          # a protocol error: this player only
                    self.fail(p, f"{p.state}: {type(e).__name__}: {e}")
                if self.connecting is not None:
                    self.pump()
        for p in self.players:
            if p.sock is not None:
                p.sock.close()


def run_load(port, count, first_index, samples, lifetime):
    raise_open_files_limit()
    Load(port, count, first_index, samples, lifetime).run()


# ======================================================================================
# The servers, seen from the parent
# ======================================================================================

class ChildServer:
    """A server run as a child of this script (``--serve``, ``--serve-floor``): its port, its stats, its stop."""

    name = ""
    parses_media = True          # its players can parse what they get: the sample players run

    def __init__(self):
        self.child = None
        self.port = self.pid = None

    async def launch(self, args) -> dict:
        self.child = await Child.start(self.name, args)
        self.port, self.pid = int(self.child.info["port"]), self.child.pid
        return self.child.info

    async def stats(self):
        line = await self.child.ask("stats")
        return json.loads(line.split(" ", 1)[1])

    async def stop(self):
        if self.child is not None:
            await self.child.stop()


class Ours(ChildServer):
    name = "fmspy-gateway"

    def __init__(self, work_dir, profile, media_flush_interval=0.0, merged_reads=False):
        super().__init__()
        self.work_dir = work_dir
        self.profile = profile
        self.media_flush_interval = media_flush_interval
        self.merged_reads = merged_reads

    async def start(self):
        extra = {"mediaFlushInterval": self.media_flush_interval} if self.media_flush_interval else {}
        if self.merged_reads:
            extra["mergedReads"] = "yes"
        config = write_fmspy_config(self.work_dir, APPLICATIONS.format(app=APP), slowPlayerTimeout=60, **extra)
        log = os.path.join(self.work_dir, "fmspy.log")
        return await self.launch(script_args(__file__, "--serve", "--config", config, "--log", log))


class Floor(ChildServer):
    """One of the fan-out's floors (``_relay_floor.py``): ``twisted`` or ``python``."""

    parses_media = False         # relayed bytes start mid-chunk: no sample players

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.name = f"floor-{kind}"

    async def start(self):
        return await self.launch(script_args(__file__, "--serve-floor", self.kind))


FLOORS = tuple(_relay_floor.SERVE)


# ======================================================================================
# The parent: one case = one server, one player count
# ======================================================================================

class Publisher:
    def __init__(self, source, port):
        self.source, self.port = source, port
        self.process = None
        self.tail = collections.deque(maxlen=20)
        self._drain = None

    async def start(self):
        url = f"rtmp://{HOST}:{self.port}/{APP}/{STREAM}"
        self.process = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-re", "-stream_loop", "-1",
            "-i", self.source, "-c", "copy", "-f", "flv", url,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=die_with_parent)
        deadline = time.monotonic() + PUBLISH_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("publisher: no 'Output #0' from ffmpeg in time: " + " | ".join(self.tail))
            try:
                line = await asyncio.wait_for(self.process.stderr.readline(), left)
            except asyncio.TimeoutError:
                continue
            if not line:
                await self.process.wait()
                raise RuntimeError(f"publisher ffmpeg exited ({self.process.returncode}): " + " | ".join(self.tail))
            text = line.decode(errors="replace").rstrip()
            self.tail.append(text)
            if text.startswith("Output #0"):
                break
        self._drain = asyncio.ensure_future(self._drain_stderr())

    async def _drain_stderr(self):
        while True:
            line = await self.process.stderr.readline()
            if not line:
                return
            self.tail.append(line.decode(errors="replace").rstrip())

    @property
    def running(self):
        return self.process is not None and self.process.returncode is None

    async def stop(self):
        await stop_process(self.process, signal.SIGTERM, 5.0)
        if self._drain is not None:
            self._drain.cancel()


def snapshot(pids: dict) -> dict:
    cpu = {}
    for name, pid in pids.items():
        try:
            cpu[name] = read_cpu_seconds(pid)
        except OSError:
            cpu[name] = float("nan")
    return {"at": time.monotonic(), "cpu": cpu, "system": read_system_cpu(),
            "server_split": read_user_system(pids["server"]),
            "traced": {name for name, pid in pids.items() if tracer_of(pid)}}


async def run_case(server, players, args, source, source_rate, profile_path=None) -> dict:
    result = {"server": server.name, "players": players}
    loads, publisher = [], None
    try:
        await server.start()
        result["rss_idle_kb"] = read_rss_kb(server.pid)
        publisher = Publisher(source, server.port)
        await publisher.start()
        await asyncio.sleep(SETTLE)
        stats = await server.stats()
        if stats is not None and not stats["publishing"]:
            raise RuntimeError(f"{server.name} does not see the publisher: {stats}")
        result["rss_publisher_kb"] = read_rss_kb(server.pid)

        procs = args.client_procs or max(1, -(-players // PLAYERS_PER_PROCESS))
        shares = [players // procs + (1 if i < players % procs else 0) for i in range(procs)]
        samples = args.samples if getattr(server, "parses_media", True) else 0
        first = 0
        lifetime = CONNECT_TIMEOUT + args.warmup + args.duration + 120
        for i, share in enumerate(shares):
            loads.append(await Child.start(f"load {i}", script_args(
                __file__, "--load", "--port", str(server.port), "--count", str(share), "--first", str(first),
                "--samples", str(min(samples, share)), "--lifetime", f"{lifetime:.0f}")))
            first += share
        for load in loads:
            await load.send("connect")
        connected = [json.loads((await load.read_line(CONNECT_TIMEOUT + 30)).split(" ", 1)[1]) for load in loads]
        result["connect_seconds"] = max(c["seconds"] for c in connected)
        result["connect_failures"] = sum(c["failures"] for c in connected)
        result["connect_failed"] = [f for c in connected for f in c["failed"]][:5]
        await asyncio.sleep(args.warmup)

        pids = {"server": server.pid, "publisher": publisher.process.pid}
        pids.update({f"load{i}": load.pid for i, load in enumerate(loads)})
        result["stats_before"] = await server.stats()      # before the profile: not part of the window's work
        if profile_path:
            await server.child.ask("profile start")
        before = snapshot(pids)
        for load in loads:
            if await load.ask("mark") != "marked":
                raise RuntimeError("a load process did not mark the window")
        await asyncio.sleep(args.duration)
        reports = []
        for load in loads:
            line = await load.ask("report")
            if not line.startswith("report "):
                raise RuntimeError(f"load process answered {line!r}")
            reports.append(json.loads(line.split(" ", 1)[1]))
        if not process_alive(server.pid):
            raise RuntimeError(f"{server.name} exited during the window")
        after = snapshot(pids)
        if profile_path:
            await server.child.ask(f"profile stop {profile_path}")
        result["rss_end_kb"] = read_rss_kb(server.pid)
        result["server_stats"] = await server.stats()
        result["publisher_alive"] = publisher.running
        result["publisher_tail"] = list(publisher.tail)[-3:]
    finally:
        for load in loads:
            await load.stop(timeout=10)
        if publisher is not None:
            await publisher.stop()
        await server.stop()

    wall = after["at"] - before["at"]
    cpu = {name: after["cpu"][name] - before["cpu"][name] for name in pids}
    per_player = [row for r in reports for row in r["players"]]
    result.update({
        "wall": wall,
        "window": statistics.mean(r["seconds"] for r in reports),
        "cpu_server": cpu["server"], "cpu_publisher": cpu["publisher"],
        "cpu_server_user": after["server_split"][0] - before["server_split"][0],
        "cpu_server_system": after["server_split"][1] - before["server_split"][1],
        "cpu_load": sum(v for k, v in cpu.items() if k.startswith("load")), "load_procs": len(loads),
        "machine_busy": cores_busy(before["system"], after["system"]),
        "traced": sorted(before["traced"] | after["traced"]),
        "bytes": sum(row[1] for row in per_player),
        "kbps": sorted(row[1] * 8 / r["seconds"] / 1000 for r in reports for row in r["players"]),
        "max_gap": max(row[2] for row in per_player),
        "not_playing": [row for row in per_player if row[3] != "playing"],
        "samples": [dict(s, seconds=r["seconds"]) for r in reports for s in r["samples"]],
    })
    result["gbit"] = result["bytes"] * 8 / 1e9
    result["messages"] = round(players * source_rate * result["window"])
    result["cpu_per_gbit"] = result["cpu_server"] / result["gbit"] if result["gbit"] else float("inf")
    return result


# ======================================================================================
# Printing
# ======================================================================================

def print_case(r, source):
    kbps, src = r["kbps"], source["kbps"]
    round_label = f", round {r['round']} of {ARGS.rounds}" if ARGS.rounds > 1 else ""
    print(f"\n== {r['server']}, {r['players']} players{round_label}: window {r['window']:.1f} s"
          f" (all connected in {r['connect_seconds']:.1f} s, then {ARGS.warmup:g} s warm-up)")
    if r["connect_failures"]:
        print(f"  CONNECT FAILURES: {r['connect_failures']} (first: {r['connect_failed']})")
    print(f"  delivered:           {r['gbit']:.3f} Gbit = {r['gbit'] / r['window'] * 1000:.0f} Mbit/s"
          f" (socket bytes, chunk headers included)")
    print(f"  server CPU:          {r['cpu_server']:.2f} s = {r['cpu_server'] / r['wall'] * 100:.0f}% of a core"
          f" -> {r['cpu_per_gbit']:.3f} CPU-s per Gbit")
    print(f"                       user {r['cpu_server_user']:.2f} s + system {r['cpu_server_system']:.2f} s;"
          f" {r['cpu_server'] / max(r['messages'], 1) * 1e6:.1f} us per delivered media message"
          f" (~{r['messages']:,} = players x source messages/s x window)")
    low = [k for k in kbps if k < BELOW * src]
    print(f"  per-player kbit/s:   min {kbps[0]:.0f}  median {statistics.median(kbps):.0f}  max {kbps[-1]:.0f}"
          f"  (source media {src:.0f}; min = {kbps[0] / src * 100:.0f}%, median ="
          f" {statistics.median(kbps) / src * 100:.0f}%)")
    print(f"  fallen behind:       {len(low)} players below {BELOW * 100:.0f}% of the source bitrate;"
          f" longest gap between two reads of one player {r['max_gap'] * 1000:.0f} ms")
    if r["not_playing"]:
        print(f"  DISCONNECTED/FAILED: {len(r['not_playing'])} (first: {r['not_playing'][:3]})")
    per_player = (r["rss_end_kb"] - r["rss_publisher_kb"]) / max(r["players"], 1)
    print(f"  server RSS:          {r['rss_idle_kb'] / 1024:.1f} MB idle, {r['rss_publisher_kb'] / 1024:.1f} MB"
          f" with the publisher, {r['rss_end_kb'] / 1024:.1f} MB at the end ({per_player:.0f} KB per player)")
    print(f"  other CPU:           load processes {r['cpu_load']:.2f} s ({r['cpu_load'] / r['wall'] * 100:.0f}%"
          f" of a core over {r['load_procs']} process(es)), publisher {r['cpu_publisher']:.2f} s")
    others = other_work(r)
    print(f"  machine CPU:         {r['machine_busy'] * 100:.0f}% of {os.cpu_count() * 100}% busy;"
          f" other processes and the kernel {others * 100:.0f}%"
          + ("  (BUSY MACHINE: figures disturbed by other work)" if others > BUSY_CORES else ""))
    if r["traced"]:
        print(f"  TRACED:              {', '.join(r['traced'])} (strace, gdb: ptrace) as the window opened or closed;"
              f" figures disturbed")
    for s in r["samples"]:
        secs = s["seconds"]
        overhead = (s["socket"] / s["payload"] - 1) * 100 if s["payload"] else float("nan")
        print(f"  sample player {s['index']:>3}:   media {s['payload'] * 8 / secs / 1000:.0f} kbit/s"
              f" (+{overhead:.1f}% chunk overhead on the socket), video {s['video'] / secs:.2f}/s"
              f" (source {source['video_rate']:.2f}), audio {s['audio'] / secs:.2f}/s"
              f" (source {source['audio_rate']:.2f}), timestamps advanced {s['advance_ms'] / 1000 / secs:.3f}x"
              f" wall time")
    if r.get("server_stats"):
        print(f"  server says:         {r['server_stats']}")
    if not r["publisher_alive"]:
        print(f"  PUBLISHER DIED during the run: {r['publisher_tail']}")


def machine_per_gbit(r) -> float:
    """The whole machine's CPU seconds (every process and the kernel) per Gbit delivered in case ``r``."""
    return r["machine_busy"] * r["wall"] / r["gbit"] if r["gbit"] else float("inf")


def other_work(r) -> float:
    """Cores other processes (and the kernel for them) kept busy during the window of case ``r``."""
    ours = (r["cpu_server"] + r["cpu_load"] + r["cpu_publisher"]) / r["wall"]
    return max(r["machine_busy"] - ours, 0)


def disturbance(*cases) -> str:
    """Why a round's figures are not figures ("" if they are): other work on the machine, or a traced process."""
    if max(other_work(r) for r in cases) > BUSY_CORES:
        return "BUSY MACHINE"
    if any(r["traced"] for r in cases):
        return "TRACED"
    return ""


def flush_setting(interval: float) -> str:
    if not interval:
        return "mediaFlushInterval 0 (players written at the end of each reactor turn, the default)"
    reads = " and mergedReads" if ARGS.merged_reads else ""
    return f"mediaFlushInterval {interval:g} s{reads} (players written once per {interval * 1000:g} ms)"


def print_summary(results, nginx_setup, source, media_flush_interval=0.0):
    print("\n== summary (CPU-s per Gbit delivered; lower is better)")
    # "load" and "machine": the load processes' CPU, and the whole machine's (server, load, publisher and
    # the kernel), per Gbit. Not part of the verdict, but beside it because on loopback the receiving side
    # of a send is kernel work too, and whose time it is counted in depends on the timing: a packet that
    # finds its reader inside recv() waits for it and is processed in the reader's time, otherwise in the
    # sender's. nginx-rtmp sends each chunk on its own, and the same players reading from it spend more.
    print(f"  {'players':>7}  {'round':>5}  {'server':<14} {'CPU-s/Gbit':>10} {'CPU %':>6} {'Mbit/s out':>10}"
          f" {'min/med kbit/s':>15} {'<90%':>5} {'RSS MB':>7} {'load CPU-s/Gbit':>15} {'machine CPU-s/Gbit':>18}")
    for r in results:
        print(f"  {r['players']:>7}  {r['round']:>5}  {r['server']:<14} {r['cpu_per_gbit']:>10.3f}"
              f" {r['cpu_server'] / r['wall'] * 100:>5.0f}% {r['gbit'] / r['window'] * 1000:>10.0f}"
              f" {r['kbps'][0]:>7.0f}/{statistics.median(r['kbps']):<7.0f}"
              f" {sum(1 for k in r['kbps'] if k < BELOW * source['kbps']):>5} {r['rss_end_kb'] / 1024:>7.1f}"
              f" {r['cpu_load'] / r['gbit'] if r['gbit'] else float('inf'):>15.3f}"
              f" {machine_per_gbit(r):>18.3f}")
    setting = flush_setting(media_flush_interval).split(' (')[0]
    for players in sorted({r["players"] for r in results}):
        print(f"  {players} players, ours with {setting}:")
        ratios = []
        for round_number in sorted({r["round"] for r in results if r["players"] == players}):
            case = {r["server"]: r for r in results if (r["players"], r["round"]) == (players, round_number)}
            ours, theirs = case.get(Ours.name), case.get(Nginx.name)
            if ours and theirs:
                ratio = ours["cpu_per_gbit"] / theirs["cpu_per_gbit"]
                disturbed = disturbance(ours, theirs)
                if not disturbed:
                    ratios.append(ratio)
                print(f"    round {round_number}: ours / nginx-rtmp = {ratio:.2f}x CPU per Gbit,"
                      f" {ours['rss_end_kb'] / theirs['rss_end_kb']:.1f}x RSS"
                      f" (whole machine: {machine_per_gbit(ours) / machine_per_gbit(theirs):.2f}x, not the target)"
                      + (f"  ({disturbed}: left out of the verdict)" if disturbed else ""))
            for floor in (case.get(f"floor-{kind}") for kind in FLOORS):
                if floor:
                    print(f"    round {round_number}: {floor_line(floor, ours, theirs)}")
        print(f"    {verdict(ratios)}")
    if nginx_setup.get("skip"):
        print(f"  nginx-rtmp comparison skipped: {nginx_setup['skip']}")
    print("  the issue's figures on a load of this shape: nginx-rtmp 0.10 (0.16 at 100 players),"
          " node-media-server 0.14 (0.27), rtmplite3 0.95 at 100 players")


def floor_line(floor, ours, theirs) -> str:
    """A floor's CPU per Gbit against nginx-rtmp's and ours against it, in one round."""
    parts = [f"{floor['server']} {floor['cpu_per_gbit']:.3f} CPU-s per Gbit"]
    start, end = floor.get("stats_before"), floor.get("server_stats")
    if start and end:
        parts[0] += (f" ({(end['reads'] - start['reads']) / floor['window']:.0f} publisher reads/s,"
                     f" {(end['sends'] - start['sends']) / max(floor['messages'], 1):.2f} sends per delivered message)")
    if theirs:
        parts.append(f"{floor['cpu_per_gbit'] / theirs['cpu_per_gbit']:.2f}x nginx-rtmp's")
    if ours:
        parts.append(f"ours {ours['cpu_per_gbit'] / floor['cpu_per_gbit']:.2f}x it")
    disturbed = disturbance(*(r for r in (floor, ours, theirs) if r))
    short = (end or {}).get("short_sends")
    return (", ".join(parts) + (f"; {short} short sends (their rest dropped)" if short else "")
            + (f"  ({disturbed}: not a figure)" if disturbed else ""))


def verdict(ratios) -> str:
    """Issue 14's target over the quiet rounds: met only if met in every one of them."""
    if not ratios:
        return ("no verdict: no round with both servers on a quiet machine, with no process traced; run again on a "
                "quiet one")
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}x over {len(ratios)} quiet round(s), median {statistics.median(ratios):.2f}x"
    met = sum(1 for ratio in ratios if ratio <= 1)
    if met == len(ratios):
        return f"{spread}; target (issue 14: at most nginx-rtmp's): MET in every round"
    if met == 0:
        return f"{spread}; target (issue 14: at most nginx-rtmp's): MISSED in every round"
    return f"{spread}; target (issue 14: at most nginx-rtmp's): NOT MET: met in {met} of {len(ratios)} rounds only"


# Own time of built-ins: the bucket of the first word in the built-in's name.
BUILT_INS = (("socket", "socket I/O"), ("epoll", "epoll"), ("amf", "cpyamf (C)"))


def print_profile(path, players, top):
    import pstats

    stats = pstats.Stats(path).stats          # (file, line, name) -> (cc, nc, tt, ct, callers)
    sends = sum(nc for (f, _, name), (_, nc, _, _, _) in stats.items()
                if name == "send_media" and f.endswith("rtmp/connection.py"))
    publishes = sum(nc for (f, _, name), (_, nc, _, _, _) in stats.items()
                    if name == "publish" and f.endswith("app/live.py"))
    # Most messages take the fast path (app/live.py LiveStream.publish), which calls no send_media: a message
    # published reached every player (the run reports any that fell behind).
    n = max(publishes * players, 1)
    # cProfile clocks wall time: epoll.poll's own time is mostly the reactor waiting, not CPU.
    idle = sum(tt for (f, _, name), (_, _, tt, _, _) in stats.items() if f == "~" and "poll" in name
               and "epoll" in name)
    total = sum(tt for _, _, tt, _, _ in stats.values()) - idle
    print(f"\n== profile of fmspy-gateway at {players} players (cProfile over the window; inflated several-fold)")
    writes = sum(nc for (f, _, name), (_, nc, _, _, _) in stats.items() if f == "~" and name.startswith(
        ("<method 'send' of '_socket.socket", "<method 'sendmsg' of '_socket.socket")))
    print(f"  {publishes} media messages published (LiveStream.publish) x {players} players = {n} delivered,"
          f" {sends} of them by the per-player path (Connection.send_media); {writes} socket sends ="
          f" {writes / n:.2f} per delivered message")
    print(f"  {total:.2f} s profiled outside epoll.poll = {total / n * 1e6:.1f} us per delivered message;"
          f" {idle:.2f} s in epoll.poll (mostly waiting; left out of the shares below)")
    print("  own time by package (us per delivered message, share):")
    by_package = collections.Counter()
    for (f, _, name), (_, _, tt, _, _) in stats.items():
        if not (f == "~" and "poll" in name and "epoll" in name):
            by_package[package(f, name, 3, BUILT_INS, "other (bytes, dict, list, isinstance...)")] += tt
    for key, tt in by_package.most_common(15):
        print(f"    {tt / n * 1e6:7.2f} us {tt / total * 100:5.1f}%  {key}")
    print(f"  top {top} by own time (us per delivered message, calls per delivered message, cumulative):")
    for (f, line, name), (_, nc, tt, ct, _) in sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]:
        print(f"    {tt / n * 1e6:7.2f} us {nc / n:6.2f}x  cum {ct / n * 1e6:7.2f} us  {where(f, line, name)}")
    print(f"  top {top} by cumulative time:")
    for (f, line, name), (_, nc, tt, ct, _) in sorted(stats.items(), key=lambda kv: -kv[1][3])[:top]:
        print(f"    {ct / n * 1e6:7.2f} us {nc / n:6.2f}x  own {tt / n * 1e6:6.2f} us  {where(f, line, name)}")


# ======================================================================================

async def run(args):
    raise_open_files_limit()
    player_counts = [int(p) for p in args.players.split(",") if p.strip()]
    nginx = {"skip": "--skip-nginx"} if args.skip_nginx else (
        {"skip": "--profile (our server only)"} if args.profile else find_nginx((APP,)))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as work_dir:
        source = os.path.join(work_dir, "src.flv")
        seconds = args.warmup + args.duration + SOURCE_EXTRA
        started = time.monotonic()
        generate_source(source, seconds)
        src = source_stats(source)
        ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
        print(f"source: {seconds:.0f} s testsrc2 1280x720 25 fps H.264 + AAC FLV, made in"
              f" {time.monotonic() - started:.1f} s: media {src['kbps']:.0f} kbit/s (video {src['video_kbps']:.0f},"
              f" audio {src['audio_kbps']:.0f}), {src['video_rate']:.2f} video + {src['audio_rate']:.2f} audio"
              f" messages/s; {ffmpeg_version}")
        print(f"machine: {os.cpu_count()} CPUs, python {platform.python_version()}; warm-up {args.warmup:g} s,"
              f" window {args.duration:g} s; players count socket bytes, {args.samples} per load process also"
              f" parse media")
        if nginx.get("skip"):
            print(f"nginx-rtmp: skipped ({nginx['skip']})")
        else:
            print(f"nginx-rtmp: {nginx['binary']} ({nginx['version']}, {nginx['module']}), one process"
                  f" (master_process off), chunk_size 4096")
        if args.profile:
            print("cProfile ON in our server during the window: its CPU figures are NOT the benchmark's")
        first = True
        for players, round_number in [(p, n) for p in player_counts for n in range(1, args.rounds + 1)]:
            servers = [Ours(work_dir, args.profile, args.media_flush_interval, args.merged_reads)]
            if not nginx.get("skip"):
                servers.append(Nginx(work_dir, nginx, (APP,)))
            if not (args.skip_floor or args.profile):
                servers.extend(Floor(kind) for kind in FLOORS)
            if round_number % 2 == 0:
                servers.reverse()       # each server as early on average: a drifting machine favours none
            for server in servers:
                profile_path = (os.path.join(work_dir, f"profile-{players}.pstats")
                                if args.profile and isinstance(server, Ours) else None)
                r = await run_case(server, players, args, source, src["messages_per_s"], profile_path)
                r["round"] = round_number
                if first and isinstance(server, Ours):
                    info = server.child.info
                    print(f"fmspy-gateway: pyamf codec {info['codec']}, reactor {info['reactor']},"
                          f" code from {info['package']}, {flush_setting(args.media_flush_interval)}")
                    first = False
                print_case(r, src)
                results.append(r)
                if profile_path:
                    print_profile(profile_path, players, args.top)
                    if args.profile_out:
                        shutil.copy(profile_path, args.profile_out)
        print_summary(results, nginx, src, args.media_flush_interval)


ARGS = None


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--players", default="100,400", help="player counts, comma-separated (default 100,400)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per case (default 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after all players connected (default 5)")
    parser.add_argument("--skip-nginx", action="store_true", help="do not run nginx-rtmp even when installed")
    parser.add_argument("--skip-floor", action="store_true",
                        help="do not run the fan-out's floor (two bare relays: Twisted's reactor, a plain epoll loop)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="cases per player count and server, alternating which server goes first (default 1)")
    parser.add_argument("--media-flush-interval", type=float, default=0.0, metavar="SECONDS",
                        help="our [RTMP] mediaFlushInterval (default 0: written at the end of each turn)")
    parser.add_argument("--merged-reads", action="store_true",
                        help="our [RTMP] mergedReads = yes (needs --media-flush-interval)")
    parser.add_argument("--client-procs", type=int, default=0,
                        help=f"load processes (default: one per {PLAYERS_PER_PROCESS} players)")
    parser.add_argument("--samples", type=int, default=2,
                        help="players per load process that also parse the media (default 2)")
    parser.add_argument("--profile", action="store_true", help="cProfile our server in the window (skips nginx)")
    parser.add_argument("--top", type=int, default=30, help="functions listed with --profile (default 30)")
    parser.add_argument("--profile-out", metavar="FILE", help="with --profile: keep the pstats file here")
    # The children (this file run again); not for direct use.
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", choices=FLOORS, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=600, help=argparse.SUPPRESS)
    args = ARGS = parser.parse_args()
    if args.serve:
        serve(args.config, args.log)
    elif args.serve_floor:
        _relay_floor.SERVE[args.serve_floor]()
    elif args.load:
        run_load(args.port, args.count, args.first, args.samples, args.lifetime)
    else:
        if args.duration <= 0 or args.warmup < 0 or args.rounds < 1 or not shutil.which("ffmpeg"):
            parser.error("--duration must be positive, --warmup not negative, --rounds at least 1,"
                         " and ffmpeg must be installed")
        if args.merged_reads and not args.media_flush_interval:
            parser.error("--merged-reads needs --media-flush-interval")
        try:
            asyncio.run(run(args))
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            print(f"streaming bench failed: {e}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
