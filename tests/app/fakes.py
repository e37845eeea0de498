"""The glue as a Session sees it (``app.session.Peer``): a real server Connection, no socket."""
from fmspy_gateway.rtmp.connection import Connection, Role


class FakePeer:
    def __init__(self, address: str = "127.0.0.1:5555"):
        self.connection = Connection(Role.SERVER)
        self.address = address
        self.closed_because = None
        self.aborted_because = None

    def flush(self):
        pass

    def close(self, reason):
        self.closed_because = reason

    def abort(self, reason):
        self.aborted_because = reason
