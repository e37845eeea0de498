"""A shared whiteboard in the terminal: a remote shared object that every copy of this script sees change.

    .venv/bin/python examples/whiteboard/whiteboard.py --name alice
    .venv/bin/python examples/whiteboard/whiteboard.py --name bob

Type ``draw X Y C`` (put character C at column X, row Y), ``erase X Y``,
``clear``, ``say TEXT`` or ``quit``.  The board is the shared object
"whiteboard": one slot per drawn cell, named "X,Y".  ``say`` goes out as a
shared object message (``so.send``), which every listener gets, the sender
included.  Built on our RTMP client (``fmspy_gateway.server.client``).
"""
import argparse
import sys

from twisted.internet import reactor
from twisted.internet.stdio import StandardIO
from twisted.protocols.basic import LineReceiver

from fmspy_gateway.server.client import connect_client

WIDTH, HEIGHT = 32, 8


def render(data) -> str:
    rows = [[" "] * WIDTH for _ in range(HEIGHT)]
    for key, char in data.items():
        x, _, y = key.partition(",")
        if x.isdigit() and y.isdigit() and int(x) < WIDTH and int(y) < HEIGHT and isinstance(char, str):
            rows[int(y)][int(x)] = char[:1] or " "
    border = "+" + "-" * WIDTH + "+"
    return "\n".join([border, *("|" + "".join(row) + "|" for row in rows), border])


class Board(LineReceiver):
    delimiter = b"\n"

    def __init__(self, board, name):
        self.board, self.name = board, name

    def show(self, text):
        self.transport.write(text.encode("utf-8", "replace") + b"\n")

    def lineReceived(self, line):
        command, *args = line.decode("utf-8", "replace").split(maxsplit=3)[:4] or [""]
        if command == "draw" and len(args) == 3 and args[0].isdigit() and args[1].isdigit():
            self.board.set_property(f"{args[0]},{args[1]}", args[2][:1])
        elif command == "erase" and len(args) == 2:
            self.board.delete(f"{args[0]},{args[1]}")
        elif command == "clear":
            for key in list(self.board.data):
                self.board.delete(key)
        elif command == "say" and args:
            self.board.send("said", self.name, line.decode("utf-8", "replace").split(maxsplit=1)[1])
        elif command == "quit":
            self.transport.loseConnection()
        else:
            self.show("draw X Y C | erase X Y | clear | say TEXT | quit")

    def connectionLost(self, reason):
        if reactor.running:
            reactor.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="rtmp://127.0.0.1/chat/lobby")
    parser.add_argument("--name", default="someone")
    options = parser.parse_args(argv)

    def connected(client):
        board = client.shared_object("whiteboard")
        terminal = Board(board, options.name)
        StandardIO(terminal)
        board.on_sync = lambda changes: terminal.show(
            render(board.data) + f"\nversion {board.version}: " + ", ".join(f"{code} {key or ''}".strip()
                                                                             for code, key in changes))
        board.on_message = lambda handler, args: (handler == "said" and len(args) == 2
                                                  and terminal.show(f"<{args[0]}> {args[1]}"))
        board.on_status = lambda code, level: terminal.show(f"{level}: {code}")
        client.closed.addCallback(lambda reason: reactor.running and reactor.stop())
        return board.connect()

    def failed(failure):
        print(f"whiteboard: {failure.getErrorMessage()}", file=sys.stderr)
        reactor.stop()

    connect_client(options.url, reactor=reactor).addCallback(connected).addErrback(failed)
    reactor.run()


if __name__ == "__main__":
    main()
