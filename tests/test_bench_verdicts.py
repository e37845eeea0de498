"""The benchmarks' verdicts: issue 14's fan-out target (bench/streaming.py) is met only if met in every quiet
round (a round that saw other work, or a traced process, is not one); bench/connections.py and bench/gateway.py
give no verdict on a disturbed phase, and connections.py's floor answers what its clients ask, once each."""
import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "streaming.py")


def load_bench(name: str):
    """bench/<name>.py as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(os.path.dirname(BENCH), f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def streaming():
    return load_bench("streaming")


def test_met_only_when_every_round_met(streaming):
    assert streaming.verdict([0.91, 0.99, 1.0]).endswith("MET in every round")
    assert streaming.verdict([1.02, 1.3]).endswith("MISSED in every round")


def test_a_mixed_run_is_not_met(streaming):
    said = streaming.verdict([0.86, 1.22, 0.95])
    assert "NOT MET: met in 2 of 3 rounds only" in said
    assert "0.86-1.22x over 3 quiet round(s), median 0.95x" in said


def test_no_quiet_round_gives_no_verdict(streaming):
    said = streaming.verdict([])
    assert said.startswith("no verdict") and "MET" not in said


def case(machine_busy=0.5, traced=()):
    """A round's figures as run_case keeps them: the server, load and publisher used 0.5 of a core."""
    return {"wall": 10.0, "cpu_server": 3.0, "cpu_load": 1.5, "cpu_publisher": 0.5,
            "machine_busy": machine_busy, "traced": list(traced)}


def test_a_round_is_disturbed_by_other_work_or_a_traced_process(streaming):
    assert streaming.disturbance(case(), case()) == ""
    assert streaming.disturbance(case(), case(machine_busy=0.9)) == "BUSY MACHINE"
    assert streaming.disturbance(case(traced=["server"]), case()) == "TRACED"


def test_tracer_of_names_the_ptrace_tracer(streaming):
    tracer_of = streaming.tracer_of         # bench/_common.py's
    # The child asks to be traced by its parent (PTRACE_TRACEME), then runs sleep: it stops at the exec,
    # traced by this process.  Not through preexec_fn, which is unsafe once threads exist.
    traceme = ("import ctypes, os; ctypes.CDLL(None).ptrace(0, 0, None, None); "
               "os.execvp('sleep', ['sleep', '30'])")
    untraced = subprocess.Popen(["sleep", "30"])
    traced = subprocess.Popen([sys.executable, "-c", traceme])
    try:
        assert tracer_of(untraced.pid) == 0
        for _ in range(500):                # until it has asked (it is traced from then on)
            tracer = tracer_of(traced.pid)
            if tracer:
                break
            time.sleep(0.01)
        if tracer == 0:
            pytest.skip("this machine refuses PTRACE_TRACEME (seccomp or Yama): nothing to observe")
        assert tracer == os.getpid()
    finally:
        untraced.kill()
        untraced.wait()
        # Popen would take the tracee's stop for its end (and not kill it): killed and reaped here.
        os.kill(traced.pid, signal.SIGKILL)
        while os.WIFSTOPPED(os.waitpid(traced.pid, 0)[1]):
            pass
        traced.returncode = -signal.SIGKILL


@pytest.fixture(scope="module")
def connections():
    return load_bench("connections")


def window(traced=False):
    """A phase of bench/connections.py as ``Window.close`` reports it: quiet, long enough."""
    return {"count": 1000, "cpu": 1.0, "per": 0.001, "wall": 2.0, "others": 0.0, "busy": False, "short": False,
            "traced": traced, "kb": 5.0}


def test_a_traced_server_phase_is_no_figure_and_gives_no_verdict(connections, capsys):
    assert connections.busy_note(window()) == ""
    assert "TRACED" in connections.busy_note(window(traced=True))
    quiet = {key: window() for key in ("createStream", "cycle", "idle")}
    connections.print_summary({"fmspy-gateway": quiet, "nginx-rtmp": quiet})
    assert "of 3 met" in capsys.readouterr().out
    traced = dict(quiet, cycle=window(traced=True))
    connections.print_summary({"fmspy-gateway": traced, "nginx-rtmp": quiet})
    said = capsys.readouterr().out
    assert "no verdict" in said and "met" not in said.split("no verdict")[1]


def test_a_disturbed_floor_phase_gives_no_verdict(connections, capsys):
    quiet = {key: window() for key in ("createStream", "cycle", "idle")}
    floor = {key: window() for key in ("createStream", "cycle")}
    connections.print_summary({"fmspy-gateway": quiet, "nginx-rtmp": quiet, "floor": floor})
    said = capsys.readouterr().out
    assert "the reactor's floor 1000.0 us, 1.00x" in said and "of 3 met" in said
    floor["cycle"] = dict(window(), busy=True, others=0.5)
    connections.print_summary({"fmspy-gateway": quiet, "nginx-rtmp": quiet, "floor": floor})
    said = capsys.readouterr().out
    assert "no verdict" in said and "met" not in said.split("no verdict")[1]


def test_the_floor_answers_real_round_trips_and_connects(connections, tmp_path):
    """The floor's canned answers complete the benchmark's real clients: createStream round trips on the core's
    own client Connection, and connects on the bulk client, one answer to each request."""
    import argparse
    import asyncio

    args = argparse.Namespace(calls=40, call_clients=2, cycles=30, cycle_concurrency=5, profile=None)
    # Each round trip waits for its _result and each connect for its own: a floor that answered wrongly (a
    # message the client's core cannot parse, a _result missing) raises or leaves them waiting.
    result = asyncio.run(asyncio.wait_for(connections.measure_floor(args, str(tmp_path)), 60))
    # Two answers per connect (S0+S1+S2, the connect's _result): the warm-up's, the round trips' two clients',
    # the cycles'; one per createStream; and one more per round-trip client, whose last deleteStream comes alone
    # (the floor answers every read; the count of round trips is taken before it).
    connects = connections.WARM_UP_CLIENTS + 2 + 30
    assert result["answers"] == 2 * connects + 40 + 2


@pytest.fixture(scope="module")
def gateway():
    return load_bench("gateway")


def test_the_bridged_call_targets_are_judged_each(gateway):
    said = gateway.bridged_verdict(0.087, 0.190, 50, [], False)
    assert "0.087 ms (at most 0.100): MET" in said and "+0.190 ms (at most 0.200): MET" in said
    said = gateway.bridged_verdict(0.101, 0.212, 50, [], False)
    assert "(at most 0.100): MISSED" in said and "(at most 0.200): MISSED" in said


def test_a_run_that_cannot_show_the_bridged_call_targets_gives_no_verdict(gateway):
    for args in ((0.05, 0.1, 50, ["BUSY MACHINE in direct to the backend"], False),
                 (0.05, 0.1, 50, [], True),
                 (0.05, 0.1, 10, [], False),
                 (0.05, None, 50, [], False)):
        said = gateway.bridged_verdict(*args)
        assert "no verdict" in said and "MET" not in said


def test_a_gateway_phase_with_other_work_or_errors_is_disturbed(gateway):
    def phase(system_busy, errors=()):
        return {"system_busy": system_busy, "wall": 10.0, "cpu": {"gateway": 10.0, "client": 5.0},
                "result": {"errors": list(errors)}}

    assert gateway.disturbance(phase(1.6)) == ""             # 1.5 cores ours, 0.1 other work
    assert gateway.disturbance(phase(1.9)) == "BUSY MACHINE"
    assert gateway.disturbance(phase(1.5, ["call 3: _error"])) == "ERRORS"


@pytest.fixture(scope="module")
def flv_source(streaming, tmp_path_factory):
    """The benchmark's own source (2 Mbit/s H.264/AAC made by ffmpeg), 12 s of it, and its rates."""
    from tests.conftest import require_tool

    require_tool("ffmpeg")
    path = str(tmp_path_factory.mktemp("floor") / "src.flv")
    streaming.generate_source(path, 12)
    return path, streaming.source_stats(path)


@pytest.mark.parametrize("kind", ["twisted", "python"])
def test_the_fan_out_floor_relays_a_real_publisher_to_real_players(streaming, flv_source, kind):
    """bench/streaming.py's floors (bench/_relay_floor.py) take ffmpeg's publish and the benchmark's players
    through the core, then relay the publisher's reads to every player: each player reads media bytes in the
    window and none fails (one that got relayed bytes while it still parsed would fail), and no send was
    short."""
    import argparse
    import asyncio

    source, stats = flv_source
    args = argparse.Namespace(client_procs=0, samples=2, warmup=1.0, duration=2.0)
    result = asyncio.run(asyncio.wait_for(streaming.run_case(
        streaming.Floor(kind), 4, args, source, stats["messages_per_s"]), 120))
    assert result["not_playing"] == [] and result["connect_failures"] == 0
    floor = result["server_stats"]
    assert floor["players"] == 4 and floor["short_sends"] == 0
    relayed = floor["reads"] - result["stats_before"]["reads"]
    assert relayed > 0 and floor["sends"] - result["stats_before"]["sends"] == 4 * relayed
    assert min(result["kbps"]) > 0, result["kbps"]
    assert result["samples"] == []                 # nothing can parse a relay that starts mid-chunk


@pytest.mark.parametrize("kind", ["twisted", "python"])
def test_a_player_joins_the_floor_once_it_answered_and_leaves_it_when_it_closes(streaming, kind):
    """A player is relayed to only after it answered the ping sent with its Play.Start (so that it no longer
    parses), and a player that closes leaves the relay (the floor would otherwise send to a dead socket)."""
    import asyncio
    import socket

    from fmspy_gateway.rtmp import events
    from fmspy_gateway.rtmp.connection import Connection, Role

    async def floor_players(floor):
        return (await floor.stats())["players"]

    async def play(port):
        app, loop = streaming.APP, asyncio.get_running_loop()
        sock = socket.create_connection((streaming.HOST, port))
        sock.setblocking(False)
        conn = Connection(Role.CLIENT, digest=False, epoch=0)
        await loop.sock_sendall(sock, conn.data_to_send())
        while True:
            data = await loop.sock_recv(sock, 65536)
            assert data, "the floor closed the player"
            for e in conn.receive_data(data):
                if isinstance(e, events.HandshakeCompleted):
                    conn.send_command("connect", 1, {"app": streaming.APP, "tcUrl": f"rtmp://127.0.0.1/{app}"})
                elif isinstance(e, events.CommandReceived) and e.name == "_result":
                    if e.transaction_id == 1:
                        conn.send_command("createStream", 2, None)
                    else:
                        conn.send_command("play", 0, None, [streaming.STREAM], stream_id=int(e.arguments[0]))
                elif isinstance(e, events.CommandReceived) and e.name == "onStatus":
                    assert e.arguments[0]["code"] == "NetStream.Play.Start"
                    return sock, conn
            await loop.sock_sendall(sock, conn.data_to_send())

    async def scenario():
        floor = streaming.Floor(kind)
        await floor.start()
        try:
            sock, conn = await play(floor.port)
            assert await floor_players(floor) == 0          # Play.Start read; the ping not answered yet
            await asyncio.get_running_loop().sock_sendall(sock, conn.data_to_send())   # the PingResponse
            for _ in range(200):
                if await floor_players(floor) == 1:
                    break
                await asyncio.sleep(0.05)
            assert await floor_players(floor) == 1
            sock.close()
            for _ in range(200):
                if await floor_players(floor) == 0:
                    break
                await asyncio.sleep(0.05)
            assert await floor_players(floor) == 0
        finally:
            await floor.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_floor_line_compares_it_with_both_and_flags_a_disturbed_round(streaming):
    def measured(server, per_gbit, **extra):
        return dict(case(**extra), server=server, cpu_per_gbit=per_gbit)

    floor = dict(measured("floor-twisted", 0.3), server_stats={"short_sends": 0})
    said = streaming.floor_line(floor, measured("fmspy-gateway", 0.45), measured("nginx-rtmp", 0.25))
    assert said == "floor-twisted 0.300 CPU-s per Gbit, 1.20x nginx-rtmp's, ours 1.50x it"
    busy = streaming.floor_line(floor, measured("fmspy-gateway", 0.45, machine_busy=0.9), None)
    assert busy.endswith("(BUSY MACHINE: not a figure)") and "nginx" not in busy
