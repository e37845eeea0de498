"""The fan-out's floor for ``bench/streaming.py``: relays that do no RTMP work once the stream runs.

Why it exists: issue 14 asks for our fan-out at or under nginx-rtmp's CPU
per Gbit.  Whether that can be had in Python at all is a measurement, not an
opinion, so the benchmark runs, on the same load and in the same run as ours
and nginx-rtmp, a server that does the least any Python server must do: be
woken by the publisher's socket, read it, and send what it read to every
player, one ``socket.send`` each (as our server writes, ``direct_write.py``).
No chunk is parsed, no message built, no timer kept, nothing queued.

Two of them:

* ``twisted``: a Twisted ``Protocol`` on the reactor our server runs on
  (``dataReceived`` -> a loop of sends), so that what Twisted's reactor
  costs per read is in it;
* ``python``: a plain ``select.epoll`` loop (no Twisted), so that what is
  left is Python's own wake-up, ``recv`` and ``send``.

Until a connection publishes or plays, its handshake and commands go through
our core ``Connection`` (server role), answering connect, createStream,
publish and play with the least a client waits for: that happens before the
window opens and costs the window nothing.  After that the publisher's bytes
are relayed as they come, mid-chunk and all, so a player joining late gets a
stream it cannot parse: the load's players only count bytes, and the
benchmark runs none that parse media against the floor (``parses_media``).
The players' own messages (their Acknowledgements) are read and dropped.
A player joins the relay ``JOIN_DELAY`` after its play was answered: relayed
bytes that reached it in the same read as its ``NetStream.Play.Start``
would be parsed with it, and fail.

Where the floor is not a bound, said so the figures are read right: it sends
once per publisher read (some 1.3 sends per delivered message on the
benchmark's source) where ours sends once per reactor turn that completed a
message (0.66), so at many players its sends cost it more than ours cost us.
At one player that is a few percent of it; what it measures there is the
fixed cost of being woken and reading, which every player count pays.

A send that does not take every byte (the player's socket buffer is full)
is counted as ``short_sends`` and its rest dropped: the floor does not queue.
"""
import collections
import json
import os
import select
import socket
import time

from _common import HOST, raise_open_files_limit, say

WINDOW_ACK_SIZE = 2_500_000      # as our server (app/session.py) and nginx-rtmp announce
JOIN_DELAY = 0.5                 # seconds from a player's Play.Start to its first relayed byte
READ_SIZE = 65536                # the Python floor's recv size: Twisted's too


class Setup:
    """One connection's handshake and commands through the core, until it publishes or plays."""

    def __init__(self):
        from fmspy_gateway.rtmp.connection import Connection, Role
        from fmspy_gateway.rtmp.events import CommandReceived

        self.conn = Connection(Role.SERVER)
        self._command = CommandReceived
        #: None while setting up; "publisher" or "player" once it publishes or plays.
        self.role = None

    def feed(self, data: bytes) -> bytes:
        """The bytes to send back for ``data``; ``role`` is set once the connection publishes or plays."""
        for event in self.conn.receive_data(data):
            if isinstance(event, self._command):
                self._answer(event)
        return self.conn.data_to_send()

    def _answer(self, command):
        conn, name = self.conn, command.name
        if name == "connect":
            conn.set_window_ack_size(WINDOW_ACK_SIZE)
            conn.send_command("_result", command.transaction_id, {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31},
                              [{"level": "status", "code": "NetConnection.Connect.Success",
                                "description": "Connection succeeded.", "objectEncoding": 0}])
        elif name == "createStream":
            conn.send_command("_result", command.transaction_id, None, [1])
        elif name in ("publish", "play"):
            code = "NetStream.Publish.Start" if name == "publish" else "NetStream.Play.Start"
            conn.send_command("onStatus", 0, None, [{"level": "status", "code": code, "description": code}],
                              stream_id=command.stream_id)
            self.role = "publisher" if name == "publish" else "player"


class Relay:
    """What both floors share: the players' sockets, the publisher, and the one loop of sends."""

    def __init__(self):
        self.players = []          # the players' sockets, once they play
        self.publishing = False
        self.short_sends = 0
        self.sends = 0

    def relay(self, data: bytes):
        """The floor's whole work per publisher read: one send of it to each player."""
        size = len(data)
        for sock in self.players:
            try:
                if sock.send(data) != size:
                    self.short_sends += 1
            except BlockingIOError:
                self.short_sends += 1
            except OSError:
                pass                # a player gone: its connection's close removes it
        self.sends += len(self.players)

    def stats(self) -> str:
        return "stats " + json.dumps({"publishing": self.publishing, "players": len(self.players),
                                      "sends": self.sends, "short_sends": self.short_sends})

    def ready(self, port: int, kind: str) -> str:
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
                self.transport.write(setup.feed(data))
                if setup.role == "publisher":
                    shared.publishing = True
                elif setup.role == "player":
                    reactor.callLater(JOIN_DELAY, self.join)
            # a player's own messages (its Acknowledgements) are dropped

        def join(self):
            if self.transport.connected:
                shared.players.append(self.sock)

        def connectionLost(self, reason):
            if self.sock in shared.players:
                shared.players.remove(self.sock)
            elif self.setup.role == "publisher":
                shared.publishing = False

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
    epoll = select.epoll()
    epoll.register(listener.fileno(), select.EPOLLIN)
    os.set_blocking(0, False)
    epoll.register(0, select.EPOLLIN)
    control = Control(shared)
    connections = {}               # fd -> (socket, Setup)
    publisher = None               # the publisher's socket, once it publishes
    joining = collections.deque()  # (when, socket) of players answered, not yet relayed to
    say(shared.ready(listener.getsockname()[1], "python"))
    while True:
        if joining:
            while joining and joining[0][0] <= time.monotonic():
                shared.players.append(joining.popleft()[1])
        for fd, _ in epoll.poll(0.1 if joining else -1):
            if publisher is not None and fd == publisher.fileno():
                try:
                    data = publisher.recv(READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    shared.relay(data)
                    continue
            elif fd == listener.fileno():
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
            sock, setup = connections[fd]
            try:
                data = sock.recv(READ_SIZE) if sock is not publisher else b""
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                epoll.unregister(fd)
                del connections[fd]
                if sock in shared.players:
                    shared.players.remove(sock)
                elif setup.role == "publisher":
                    shared.publishing, publisher = False, None
                sock.close()
            elif setup.role is None:
                sock.sendall(setup.feed(data))      # setup answers are small: a blocking send is fine
                if setup.role == "publisher":
                    shared.publishing, publisher = True, sock
                elif setup.role == "player":
                    joining.append((time.monotonic() + JOIN_DELAY, sock))
            # a player's own messages (its Acknowledgements) are dropped


class Control:
    """The parent's commands on stdin for the loop without Twisted: ``stats`` and ``quit``."""

    def __init__(self, shared: Relay):
        self.shared = shared
        self.pending = b""

    def read(self) -> bool:
        """False once the parent closed stdin or said ``quit``: the floor stops."""
        chunk = os.read(0, 4096)
        if not chunk:
            return False
        self.pending += chunk
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            command = line.strip().decode(errors="replace")
            if command == "quit":
                say("bye")
                return False
            say(self.shared.stats() if command == "stats" else f"error unknown command {command!r}")
        return True


def serve(kind: str):
    if kind == "twisted":
        serve_twisted()
    else:
        serve_python()
