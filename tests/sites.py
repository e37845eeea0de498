"""A twisted.web Site for tests that run real HTTP backends on loopback."""
from twisted.internet.defer import Deferred
from twisted.web.server import Site


class TrackingSite(Site):
    """Counts TCP connections, and lets cleanup wait until the server side of each has closed."""

    def __init__(self, resource):
        super().__init__(resource)
        self.timeOut = None
        self.connections = 0
        #: One Deferred per connection, fired when its server side has closed.
        self.closed = []

    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        self.connections += 1
        closed = Deferred()
        self.closed.append(closed)
        lost = protocol.connectionLost

        def connection_lost(reason):
            lost(reason)
            closed.callback(None)
        protocol.connectionLost = connection_lost
        return protocol
