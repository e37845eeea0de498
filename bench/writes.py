"""Socket writes and Python function calls per delivered message: counts, not times.

What it measures
    Our server's glue (``RTMPServerProtocol``, built by ``RTMPServerFactory``
    as the real server builds it) on in-memory transports that count their
    writes, with every clock a ``task.Clock``: nothing here depends on how
    busy the machine is, so the figures can be taken on any machine and
    compared run for run.  The "reactor turn" is the transports' own Clock:
    ``advance(0)`` ends it, as Twisted's reactor runs its ``callLater(0)``
    calls after the reads of a turn.

      * live fan-out: one publisher, ``--players`` players of its stream;
        each publisher read carries one video and one audio message (as
        ffmpeg's packets often share a read) and each turn holds ``--reads``
        reads of it.  Reported: socket writes per delivered message (a
        message reaching one player) and Python function calls per
        delivered message (cProfile's call counts over the publishing
        reads and their turns);
      * calls: one client sends ``--calls`` echo calls in one read: writes
        per answer;
      * notifications: ``--calls`` ``notify_client`` from outside any read
        (what a hub broadcast or a late Deferred does), in one turn: writes
        per notification.

    ``--media-flush-interval SECONDS`` sets ``[RTMP] mediaFlushInterval``:
    the reads are then 40 ms apart on the transports' clock (a 25 fps
    stream), so that players are written once per interval.

    ``--write-per-flush`` puts back the previous glue (every flush writes at
    once) and ``--per-player`` turns the fan-out's fast path off (every
    message through ``Player.deliver`` and ``Connection.send_media`` for
    every player), so one run shows before and after.

Usage
    .venv/bin/python bench/writes.py [--players 100] [--reads 1] [--messages 200] [--calls 10]
                                     [--media-flush-interval SECONDS] [--write-per-flush] [--per-player]
                                     [--top 15]
"""
import argparse
import cProfile
import os
import pstats
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from twisted.internet.task import Clock  # noqa: E402

from fmspy_gateway.app.echo import EchoApplication  # noqa: E402
from fmspy_gateway.app.live import LiveStream  # noqa: E402
from fmspy_gateway.app.live_application import LiveApplication  # noqa: E402
from fmspy_gateway.app.notification import Notification  # noqa: E402
from fmspy_gateway.config import RTMPConfig  # noqa: E402
from fmspy_gateway.rtmp.connection import Connection, Role  # noqa: E402
from fmspy_gateway.rtmp.events import CommandReceived  # noqa: E402
from fmspy_gateway.rtmp.messages import MessageType  # noqa: E402
from fmspy_gateway.server.protocol import RTMPServerFactory, RTMPServerProtocol  # noqa: E402
from tests.server.test_protocol import CountingTransport  # noqa: E402
from _common import where  # noqa: E402

VIDEO_HEADER = b"\x17\x00\x00\x00\x00" + b"avcC-config"
AUDIO_HEADER = b"\xaf\x00\x12\x10"


class Peer:
    """One client: a core Connection on our side, the server's protocol on a ``CountingTransport`` on the other.

    ``CountingTransport`` is the one ``tests/server/test_protocol.py`` counts writes with.
    """

    def __init__(self, factory, turns):
        self.protocol = factory.buildProtocol(None)
        self.transport = CountingTransport(turns)
        self.protocol.makeConnection(self.transport)
        self.client = Connection(Role.CLIENT)
        self.events = []

    def pump(self):
        """Move bytes both ways until neither side has more; keeps the events the client saw."""
        while True:
            out = self.client.data_to_send()
            if out:
                self.protocol.dataReceived(out)
            back = self.transport.value()
            self.transport.clear()
            if back:
                self.events.extend(self.client.receive_data(back))
            if not out and not back:
                return

    def result(self, transaction_id):
        for event in self.events:
            if isinstance(event, CommandReceived) and event.transaction_id == transaction_id:
                return event
        raise RuntimeError(f"no answer to transaction {transaction_id}: {self.events[-3:]}")

    def connect(self, app):
        self.pump()
        self.client.send_command("connect", 1, {"app": app, "objectEncoding": 0})
        self.pump()
        if self.result(1).name != "_result":
            raise RuntimeError(f"connect to {app} refused")
        self.client.send_command("createStream", 2, None)
        self.pump()
        return int(self.result(2).arguments[0])


def set_glue(write_per_flush: bool, per_player: bool):
    if write_per_flush:
        RTMPServerProtocol.flush = lambda self: self._write_queued()
    if per_player:
        LiveStream._join_fast_path = lambda self, player, type_id, timestamp: None


def _harness(path: str, line: int, name: str) -> bool:
    """The counting transport's own functions (StringTransport's): not the server's work, not counted.

    The publisher's client (a few calls per tick, not per player) is
    counted: at 100 players it is under 0.1 calls per delivered message.
    """
    return (path.endswith(("bench/writes.py", "twisted/internet/testing.py", "twisted/internet/abstract.py"))
            or name in ("<method 'write' of '_io.BytesIO' objects>", "<method 'getvalue' of '_io.BytesIO' objects>"))


def fan_out(args) -> dict:
    clock, turns = Clock(), Clock()
    interval = args.media_flush_interval
    factory = RTMPServerFactory({"live": LiveApplication("live")}, RTMPConfig(media_flush_interval=interval),
                                reactor=clock)
    # Without an interval a turn ends at once; with one, reads come 40 ms apart, as a 25 fps stream's do.
    spacing = 0.04 if interval else 0
    publisher = Peer(factory, turns)
    stream = publisher.connect("live")
    publisher.client.set_chunk_size(4096)          # as ffmpeg and OBS do
    publisher.client.send_command("publish", 0, None, ["cam", "live"], stream_id=stream)
    publisher.pump()
    send = publisher.client.send_media
    send(MessageType.VIDEO, stream, 0, VIDEO_HEADER)
    send(MessageType.AUDIO, stream, 0, AUDIO_HEADER)
    send(MessageType.VIDEO, stream, 0, b"\x17\x01\x00\x00\x00" + b"K" * 20000)
    publisher.pump()
    players = []
    for _ in range(args.players):
        player = Peer(factory, turns)
        player_stream = player.connect("live")
        player.client.send_command("play", 0, None, ["cam"], stream_id=player_stream)
        player.pump()
        turns.advance(0)
        players.append(player)

    def tick(n, t):
        video = (b"\x17" if n % 50 == 0 else b"\x27") + b"\x01\x00\x00\x00" + bytes(8000 + n % 7)
        send(MessageType.VIDEO, stream, t, video)
        send(MessageType.AUDIO, stream, t + 3, b"\xaf\x01" + bytes(370))
        publisher.protocol.dataReceived(publisher.client.data_to_send())

    for n in range(20):                      # warm up: players in step before counting
        tick(n, 40 * (n + 1))
        turns.advance(spacing)
    turns.advance(interval)
    for player in players:          # what they got so far, read (each player's client keeps its chunk state)
        player.client.receive_data(player.transport.value())
        player.transport.clear()
    before = sum(p.transport.writes for p in players)
    profiler = cProfile.Profile()
    profiler.enable()
    sent = 0
    for n in range(20, 20 + args.messages // 2):
        tick(n, 40 * (n + 1))
        sent += 2
        if (n + 1) % args.reads == 0:
            turns.advance(spacing)
    turns.advance(interval)
    profiler.disable()
    writes = sum(p.transport.writes for p in players) - before
    check = players[-1]
    got = [e for e in check.client.receive_data(check.transport.value()) if type(e).__name__ == "MediaReceived"]
    if len(got) != sent:
        raise RuntimeError(f"a player received {len(got)} of {sent} messages")
    # A call counts when neither the function nor its caller is the harness's (the counting transport's).
    counted = {key: sum(by[1] for caller, by in callers.items() if not _harness(*caller))
               for key, (_, _, _, _, callers) in pstats.Stats(profiler).stats.items() if not _harness(*key)}
    calls = sum(counted.values())
    delivered = sent * len(players)
    top = sorted(counted.items(), key=lambda kv: -kv[1])[:args.top]
    return {"delivered": delivered, "writes": writes, "calls": calls,
            "top": [(nc / delivered, where(*key)) for key, nc in top]}


def calls_and_notifications(args) -> dict:
    clock, turns = Clock(), Clock()
    factory = RTMPServerFactory({"echotest": EchoApplication("echotest")}, RTMPConfig(), reactor=clock)
    peer = Peer(factory, turns)
    peer.connect("echotest")
    turns.advance(0)
    before = peer.transport.writes
    for n in range(args.calls):
        peer.client.send_command("echo", 10 + n, None, [n])
    peer.protocol.dataReceived(peer.client.data_to_send())
    turns.advance(0)
    answers = peer.transport.writes - before
    before = peer.transport.writes
    for n in range(args.calls):
        peer.protocol.session.notify_client(Notification("onNotice", [n]))
    turns.advance(0)
    return {"answers": answers, "notifications": peer.transport.writes - before}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--players", type=int, default=100, help="players of the live stream (100)")
    parser.add_argument("--reads", type=int, default=1, help="publisher reads per reactor turn (1)")
    parser.add_argument("--messages", type=int, default=200, help="media messages published and counted (200)")
    parser.add_argument("--calls", type=int, default=10, help="echo calls in one read, notifications in one turn")
    parser.add_argument("--top", type=int, default=0, help="list the functions called most (0: none)")
    parser.add_argument("--media-flush-interval", type=float, default=0.0, metavar="SECONDS",
                        help="[RTMP] mediaFlushInterval (0: written at the end of each turn)")
    parser.add_argument("--write-per-flush", action="store_true", help="the previous glue: every flush writes")
    parser.add_argument("--per-player", action="store_true", help="no fan-out fast path: per-player sends")
    args = parser.parse_args()
    if min(args.players, args.reads, args.messages, args.calls) < 1 or args.top < 0:
        parser.error("every count must be positive")
    if not 0 <= args.media_flush_interval <= 1:
        parser.error("--media-flush-interval is 0 to 1 seconds, as [RTMP] mediaFlushInterval")
    set_glue(args.write_per_flush, args.per_player)
    glue = "every flush writes (previous)" if args.write_per_flush else "one write per connection per turn"
    path = "per-player sends (no fast path)" if args.per_player else "fast path for players in step"
    flush = (f"mediaFlushInterval {args.media_flush_interval:g} s" if args.media_flush_interval
             else "mediaFlushInterval 0")
    print(f"glue: {glue}; fan-out: {path}; {flush}")
    f = fan_out(args)
    print(f"live fan-out, {args.players} players, {args.reads} publisher read(s) of video+audio per turn:"
          f" {f['writes'] / f['delivered']:.3f} socket writes and {f['calls'] / f['delivered']:.1f} Python calls"
          f" per delivered message ({f['delivered']} delivered)")
    for per, name in f["top"]:
        print(f"    {per:6.2f} calls per delivered message  {name}")
    c = calls_and_notifications(args)
    print(f"{args.calls} echo calls in one read: {c['answers']} write(s) for their answers;"
          f" {args.calls} notifications from outside a read in one turn: {c['notifications']} write(s)")


if __name__ == "__main__":
    main()
