"""RTMP, RTMPS and RTMPT side by side: echo calls per second and server CPU per call; live fan-out CPU per Gbit.

The server runs in its own process, built by ``tap.makeService`` from a
generated fmspy.cfg (RTMP, [RTMPS] with a certificate made here, [RTMPT] on
the [HTTP] site), so its CPU time is read from /proc alone.  The clients are
ours, in this process:

- **echo**: ``--clients`` connections per transport, each calling ``echo``
  back to back for ``--seconds``; prints calls/s and the server's CPU
  microseconds per call.
- **fan-out** (``--players N``): ffmpeg publishes a lavfi source at
  ``--bitrate`` over plain RTMP; N players play it over RTMP, then over
  RTMPS.  Players count the bytes they get without parsing them (no
  acknowledgements are needed: the server does not wait for them).  Prints
  the bytes delivered, Mbit/s and the server's CPU seconds per Gbit.

Each line also reads the machine's CPU: when other work (not the server,
this process or the publisher) kept more than a quarter of a core busy,
the line says BUSY MACHINE and its figures are not figures.

Usage: ``.venv/bin/python bench/tunnels.py [--seconds 5] [--clients 4] [--players 100]``.
Figures depend on the machine and its load; the benchmark asserts nothing.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from _common import ProcessesWindow  # noqa: E402

CONFIG = """
[RTMP]
port = 0
interface = 127.0.0.1
[HTTP]
enabled = yes
port = 0
interface = 127.0.0.1
examples-enabled = no
[RTMPS]
enabled = yes
port = 0
interface = 127.0.0.1
certificate = {certificate}
key = {key}
[RTMPT]
enabled = yes
[EchoApplication]
enabled = yes
name = echotest
[LiveApplication]
enabled = yes
name = live
[ChatApplication]
enabled = no
"""


def serve(config_path: str):
    """The child: the server as twistd builds it; prints its ports, then runs until stdin closes."""
    from twisted.internet import reactor, stdio
    from twisted.internet.protocol import Protocol

    from fmspy_gateway import tap

    options = tap.Options()
    options.parseOptions(["--config", config_path])
    top = tap.makeService(options, reactor=reactor)
    top.startService()
    ports = [top.getServiceNamed(name)._port.getHost().port for name in ("rtmp", "rtmps", "http")]
    print("PORTS", *ports, flush=True)

    class Stdin(Protocol):
        def connectionLost(self, reason):
            reactor.stop()
    stdio.StandardIO(Stdin())
    reactor.run()


# -- the parent ---------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each measurement (5)")
    parser.add_argument("--clients", type=int, default=4, help="echo connections per transport (4)")
    parser.add_argument("--payload", type=int, default=100, help="characters of the echoed string (100)")
    parser.add_argument("--players", type=int, default=0, help="fan-out players per transport (0: skip)")
    parser.add_argument("--bitrate", default="2M", help="publisher's video bitrate for the fan-out (2M)")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    from tests.e2e.certs import make_certificate

    work = tempfile.mkdtemp(prefix="fmspy-bench-tunnels-")
    try:
        certificate, key = make_certificate(work)
        config = os.path.join(work, "fmspy.cfg")
        with open(config, "w") as f:
            f.write(CONFIG.format(certificate=certificate, key=key))
        child = subprocess.Popen([sys.executable, __file__, "--serve", config], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=open(os.path.join(work, "server.log"), "w"),
                                 cwd=work)
        line = child.stdout.readline().decode().split()
        if not line or line[0] != "PORTS":
            sys.exit(f"server did not start; see {work}/server.log")
        ports = dict(zip(("rtmp", "rtmps", "http"), map(int, line[1:])))
        try:
            run(args, child.pid, ports, certificate)
        finally:
            child.stdin.close()
            child.wait(15)
    finally:
        shutil.rmtree(work, True)


def run(args, pid, ports, certificate):
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred

    def done(result):
        reactor.stop()
        return result
    d = ensureDeferred(measure_all(args, pid, ports, certificate))
    d.addErrback(lambda f: print(f.getTraceback(), file=sys.stderr))
    d.addBoth(done)
    reactor.run()


def urls(ports, path):
    return {"rtmp": f"rtmp://127.0.0.1:{ports['rtmp']}/{path}",
            "rtmps": f"rtmps://localhost:{ports['rtmps']}/{path}",
            "rtmpt": f"rtmpt://127.0.0.1:{ports['http']}/{path}"}


def trust(certificate):
    from twisted.internet.ssl import Certificate, optionsForClientTLS
    with open(certificate, "rb") as f:
        return optionsForClientTLS("localhost", trustRoot=Certificate.loadPEM(f.read()))


async def measure_all(args, pid, ports, certificate):
    from twisted.internet import reactor
    from twisted.internet.defer import gatherResults
    from twisted.internet.task import deferLater

    from fmspy_gateway.server.client import connect_client

    print(f"echo: {args.clients} connections per transport, {args.seconds:g} s each, "
          f"{args.payload}-character string")
    print(f"{'transport':<10}{'calls/s':>10}{'server CPU us/call':>20}{'server CPU %':>14}")
    for name, url in urls(ports, "echotest").items():
        clients = [await connect_client(url, reactor=reactor, tls=trust(certificate)) for _ in range(args.clients)]
        payload = "x" * args.payload
        for client in clients:                      # warm up
            await client.call("echo", payload)
        counts = [0] * len(clients)
        deadline = time.monotonic() + args.seconds

        async def loop(i, client):
            while time.monotonic() < deadline:
                await client.call("echo", payload)
                counts[i] += 1
        window = ProcessesWindow({"server": pid, "clients": os.getpid()})
        window.start()
        await gatherResults([ensure(loop(i, c)) for i, c in enumerate(clients)])
        measured = window.stop()
        cpu, wall = measured["cpu"]["server"], measured["wall"]
        calls = sum(counts)
        print(f"{name:<10}{calls / wall:>10.0f}{cpu / max(calls, 1) * 1e6:>20.0f}{cpu / wall * 100:>14.0f}"
              f"{busy_note(measured)}")
        for client in clients:
            await client.close()
        await deferLater(reactor, 0.5, lambda: None)

    if args.players:
        await fan_out(args, pid, ports, certificate)


def busy_note(measured) -> str:
    if measured["busy"]:
        return f"  (BUSY MACHINE: other work took {measured['others']:.2f} cores; not a figure)"
    return ""


def ensure(coroutine):
    from twisted.internet.defer import ensureDeferred
    return ensureDeferred(coroutine)


async def fan_out(args, pid, ports, certificate):
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    from fmspy_gateway.server.client import connect_client

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        print("fan-out: ffmpeg not installed, skipped")
        return
    seconds = args.seconds
    publish_seconds = 2 * (seconds + 6) + 10
    publisher = subprocess.Popen(
        [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
         "testsrc2=size=1280x720:rate=25", "-t", str(publish_seconds), "-c:v", "libx264", "-preset", "ultrafast",
         "-tune", "zerolatency", "-g", "50", "-b:v", args.bitrate, "-maxrate", args.bitrate, "-bufsize",
         args.bitrate, "-f", "flv", urls(ports, "live/bench")["rtmp"]], stdin=subprocess.DEVNULL)
    try:
        await deferLater(reactor, 3, lambda: None)
        print(f"\nfan-out: {args.players} players, publisher at {args.bitrate}bit/s video, {seconds:g} s")
        print(f"{'transport':<10}{'players':>8}{'Mbit/s out':>12}{'server CPU %':>14}{'CPU s per Gbit':>16}")
        for name in ("rtmp", "rtmps"):
            url = urls(ports, "live")[name]
            received = [0]
            players = []
            for _ in range(args.players):
                client = await connect_client(url, reactor=reactor, tls=trust(certificate))
                stream_id = await client.call("createStream")
                client.connection.send_command("play", 0, None, ["bench"], stream_id=stream_id)
                client.flush()
                players.append(client)

            def counting(client):
                def data_received(data):
                    received[0] += len(data)
                return data_received
            await deferLater(reactor, 2, lambda: None)
            for client in players:
                # From here on the bytes are counted, not parsed: the client costs little.
                client.dataReceived = counting(client)
            received[0] = 0
            window = ProcessesWindow({"server": pid, "players": os.getpid(), "publisher": publisher.pid})
            window.start()
            await deferLater(reactor, seconds, lambda: None)
            measured = window.stop()
            cpu, wall = measured["cpu"]["server"], measured["wall"]
            gbits = received[0] * 8 / 1e9
            print(f"{name:<10}{len(players):>8}{gbits * 1000 / wall:>12.0f}{cpu / wall * 100:>14.0f}"
                  f"{cpu / gbits if gbits else float('nan'):>16.1f}{busy_note(measured)}")
            for client in players:
                client.transport.abortConnection()
            await deferLater(reactor, 1, lambda: None)
    finally:
        publisher.kill()
        publisher.wait()


if __name__ == "__main__":
    main()
