"""The server's TCP transport: writes go to the socket at once when nothing is waiting (``write_at_once``).

Why: see fmspy_gateway/direct_write.py.  Since the kernel takes a write at
once, "paused" means the kernel's buffer is full.  ``queued_bytes`` tells the
glue how much is waiting, for its output budget.
"""
from twisted.internet import tcp

from ..direct_write import write_at_once


class DirectWriteServer(tcp.Server):
    write = write_at_once

    @property
    def queued_bytes(self) -> int:
        """Bytes written but not yet taken by the kernel.

        What a client that does not read costs us; the glue holds it to
        ``maxOutgoingBytes``.  Computed here, from the buffers this class
        shares with Twisted's FileDescriptor, so that nothing else needs to
        know how Twisted buffers.
        """
        return len(self.dataBuffer) - self.offset + self._tempDataLen


class DirectWritePort(tcp.Port):
    transport = DirectWriteServer


def listen_direct(reactor, port: int, factory, backlog: int = 50, interface: str = "") -> DirectWritePort:
    """Listen like ``reactor.listenTCP``, with transports that write directly."""
    listening = DirectWritePort(port, factory, backlog, interface, reactor)
    listening.startListening()
    return listening
