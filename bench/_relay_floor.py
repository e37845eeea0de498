"""The fan-out's floor for ``bench/streaming.py``: relays that do no RTMP work once the stream runs.

Why it exists: issue 14 asks for our fan-out at or under nginx-rtmp's CPU
per Gbit.  How much of that any Python server pays before doing RTMP work
is a measurement, so the benchmark runs, on the same load and in the same
round as ours and nginx-rtmp, a server that does the least a relay must: be
woken by the publisher's socket, read it, and send what it read to every
player, one ``socket.send`` each (as our server writes, ``direct_write.py``).
No chunk is parsed, no message built, no timer kept, nothing queued.

Two of them (``SERVE``):

* ``twisted``: a Twisted ``Protocol`` on the reactor our server runs on
  (``dataReceived`` -> a loop of sends), so that what Twisted's reactor
  costs per read is in it;
* ``python``: a plain ``select.epoll`` loop (no Twisted), so that what is
  left is Python's own wake-up, ``recv`` and ``send``.

Until a connection publishes or plays, its handshake and commands go through
our core ``Connection`` (server role), answering connect (with the Window
Ack Size, Set Peer Bandwidth and Set Chunk Size ours sends: ffmpeg publishes
in chunks of the size the server set, so the publisher's bytes and reads are
those ours gets), createStream, publish and play.  That happens before the
window opens and costs the window nothing.  After that the publisher's bytes
are relayed as they come, mid-chunk and all, so a player joining late gets a
stream it cannot parse: the load's players only count bytes once playing,
and the benchmark runs none that parse media against the floor
(``parses_media``).

A player joins the relay when it answers the PingRequest sent with its
``NetStream.Play.Start``: the load's player answers it once it has read that
write, and from then on only counts bytes, so no relayed byte can reach it
while it still parses (in the same read as its Play.Start, or before it: the
Twisted floor's setup answers wait in the transport's buffer for the next
turn, where relayed bytes are sent at once).  Until then its bytes go
through the core; after, they (its Acknowledgements) are read and dropped.

Where the floor bounds ours and where not: it sends once per publisher read,
where ours sends once per reactor turn that completed a message (the
benchmark prints both per delivered message), so with many players its sends
cost it more than ours cost us.  What it does measure is the fixed cost of
being woken and reading, which every player count pays, and the cost of a
relay that writes each player after every read.

A send that does not take every byte (the player's socket buffer is full)
is counted as ``short_sends`` and its rest dropped: the floor does not queue.
"""
import json
import os
import select
import socket

from _common import HOST, StdinLines, raise_open_files_limit, say
from fmspy_gateway.app.session import CHUNK_SIZE, WINDOW_ACK_SIZE
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.rtmp.errors import RemoteProtocolError
from fmspy_gateway.rtmp.events import CommandReceived, UserControlReceived
from fmspy_gateway.rtmp.messages import PeerBandwidthLimit, UserControl

READ_SIZE = 65536                # the Python floor's recv size: Twisted's too


class Setup:
    """One connection's handshake and commands through the core, until it publishes or plays.

    ``role`` is None while setting up, ``"publisher"`` once it published,
    ``"player"`` once it played and answered the ping sent with Play.Start.
    """

    def __init__(self):
        self.conn = Connection(Role.SERVER)
        self.role = None
        self._played = False

    def feed(self, data: bytes) -> bytes:
        """The bytes to send back for ``data`` (``RemoteProtocolError`` for a broken peer)."""
        for event in self.conn.receive_data(data):
            if isinstance(event, CommandReceived):
                self._answer(event)
            elif (self._played and isinstance(event, UserControlReceived)
                  and event.event_type == UserControl.PING_RESPONSE):
                self.role = "player"
        return self.conn.data_to_send()

    def _answer(self, command):
        conn, name = self.conn, command.name
        if name == "connect":
            conn.set_window_ack_size(WINDOW_ACK_SIZE)
            conn.set_peer_bandwidth(WINDOW_ACK_SIZE, PeerBandwidthLimit.DYNAMIC)
            conn.set_chunk_size(CHUNK_SIZE)
            conn.send_command("_result", command.transaction_id, {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31},
                              [{"level": "status", "code": "NetConnection.Connect.Success",
                                "description": "Connection succeeded.", "objectEncoding": 0}])
        elif name == "createStream":
            conn.send_command("_result", command.transaction_id, None, [1])
        elif name in ("publish", "play"):
            code = "NetStream.Publish.Start" if name == "publish" else "NetStream.Play.Start"
            conn.send_command("onStatus", 0, None, [{"level": "status", "code": code, "description": code}],
                              stream_id=command.stream_id)
            if name == "publish":
                self.role = "publisher"
            else:
                conn.send_user_control(UserControl.PING_REQUEST, 0)
                self._played = True


class Relay:
    """What both floors share: the players' sockets, the one loop of sends, and the counts the parent asks for."""

    def __init__(self):
        self.players = []          # the players' sockets, once they joined
        self.publishing = False
        self.reads = 0             # the publisher's reads relayed
        self.sends = 0
        self.short_sends = 0

    def relay(self, data: bytes):
        """The floor's whole work per publisher read: one send of it to each player."""
        size = len(data)
        players = self.players
        for sock in players:
            try:
                if sock.send(data) != size:
                    self.short_sends += 1
            except BlockingIOError:
                self.short_sends += 1
            except OSError:
                pass                # a player gone: its connection's close removes it
        self.reads += 1
        self.sends += len(players)

    def leave(self, sock, setup: Setup):
        if setup.role == "player":
            self.players.remove(sock)
        elif setup.role == "publisher":
            self.publishing = False

    def stats(self) -> str:
        """The answer to the parent's ``stats``: the counts since the floor started (the parent takes differences)."""
        return "stats " + json.dumps({"publishing": self.publishing, "players": len(self.players),
                                      "reads": self.reads, "sends": self.sends, "short_sends": self.short_sends})

    def ready(self, port: int, kind: str) -> str:
        """The child's first line (``_common.Child``): where it listens."""
        return "ready " + json.dumps({"port": port, "pid": os.getpid(), "floor": kind})


def serve_twisted():
    """The floor on Twisted's reactor: a Protocol whose publisher's ``dataReceived`` loops over sends."""
    raise_open_files_limit()
    from twisted.internet import defer, reactor
    from twisted.internet.protocol import Factory, Protocol
    from _common import twisted_control

    shared = Relay()

    class FloorConnection(Protocol):
        def connectionMade(self):
            self.setup = Setup()
            self.sock = self.transport.socket     # the transport drops it before connectionLost

        def dataReceived(self, data):
            setup = self.setup
            if setup.role == "publisher":
                shared.relay(data)
            elif setup.role is None:
                try:
                    self.transport.write(setup.feed(data))
                except RemoteProtocolError:
                    self.transport.abortConnection()
                    return
                if setup.role == "publisher":
                    shared.publishing = True
                elif setup.role == "player":
                    shared.players.append(self.sock)
            # a player's own messages (its Acknowledgements) are dropped

        def connectionLost(self, reason):
            shared.leave(self.sock, self.setup)

    listening = reactor.listenTCP(0, Factory.forProtocol(FloorConnection), backlog=1024, interface=HOST)
    twisted_control(reactor, shared.ready(listening.getHost().port, "twisted"),
                    {"stats": lambda: [shared.stats()]}, lambda: defer.succeed(None))
    reactor.run()


def serve_python():
    """The floor without Twisted: one ``select.epoll`` loop, stdin for the parent's commands."""
    raise_open_files_limit()
    shared = Relay()
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(1024)
    listener.setblocking(False)
    listener_fd = listener.fileno()
    epoll = select.epoll()
    epoll.register(listener_fd, select.EPOLLIN)
    os.set_blocking(0, False)
    epoll.register(0, select.EPOLLIN)
    control = Control(shared)
    connections = {}               # fd -> (socket, Setup)
    publisher, publisher_fd = None, -1
    say(shared.ready(listener.getsockname()[1], "python"))
    while True:
        for fd, _ in epoll.poll():
            if fd == publisher_fd:
                try:
                    data = publisher.recv(READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    shared.relay(data)
                    continue
                sock, setup = publisher, connections[fd][1]
            elif fd == listener_fd:
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    continue
                sock.setblocking(False)
                connections[sock.fileno()] = (sock, Setup())
                epoll.register(sock.fileno(), select.EPOLLIN)
                continue
            elif fd == 0:
                if not control.read():
                    return
                continue
            else:
                sock, setup = connections[fd]
                try:
                    data = sock.recv(READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data and setup.role is None:
                    try:
                        # Non-blocking, but a few hundred bytes of answers: the kernel takes them whole.
                        sock.sendall(setup.feed(data))
                    except (RemoteProtocolError, OSError):
                        data = b""      # a broken peer: closed below, the floor goes on
                    else:
                        if setup.role == "publisher":
                            shared.publishing, publisher, publisher_fd = True, sock, fd
                        elif setup.role == "player":
                            shared.players.append(sock)
                if data:
                    continue            # a player's own messages (its Acknowledgements) are dropped
            epoll.unregister(fd)
            del connections[fd]
            shared.leave(sock, setup)
            if sock is publisher:
                publisher, publisher_fd = None, -1
            sock.close()


class Control:
    """The parent's commands on stdin for the loop without Twisted: ``stats`` and ``quit``."""

    def __init__(self, shared: Relay):
        self.shared = shared
        self.lines = StdinLines()

    def read(self) -> bool:
        """False once the parent closed stdin or said ``quit``: the floor stops."""
        lines = self.lines.read()
        if lines is None:
            return False
        for command in lines:
            if command == "quit":
                say("bye")
                return False
            say(self.shared.stats() if command == "stats" else f"error unknown command {command!r}")
        return True


#: The floors by name, as ``bench/streaming.py --serve-floor`` takes them.
SERVE = {"twisted": serve_twisted, "python": serve_python}
