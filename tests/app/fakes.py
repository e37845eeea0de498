"""The glue as a Session sees it (``app.session.Peer``): a real server Connection, no socket."""
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.rtmp.events import CommandReceived


class FakePeer:
    def __init__(self, address: str = "127.0.0.1:5555"):
        self.connection = Connection(Role.SERVER)
        self.address = address
        self.closed_because = None
        self.aborted_because = None

    def flush(self):
        pass

    def flush_media(self):
        pass

    def close(self, reason):
        self.closed_because = reason

    def abort(self, reason):
        self.aborted_because = reason


def exchange(client: Connection, session) -> list:
    """Move bytes between ``client`` and ``session``'s server connection until both are quiet.

    Returns the commands the client received, in order.
    """
    commands = []
    while True:
        out = client.data_to_send()
        for event in session.peer.connection.receive_data(out) if out else []:
            session.handle(event)
        back = session.peer.connection.data_to_send()
        if back:
            commands.extend(e for e in client.receive_data(back) if isinstance(e, CommandReceived))
        if not out and not back:
            return commands
