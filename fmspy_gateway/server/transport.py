"""A TCP transport that writes to the socket at once when nothing is waiting to be sent.

Twisted buffers every write until the next reactor turn: register the socket
for write events, wait, send, unregister.  For a server that fans one video
frame out to hundreds of players that bookkeeping costs more than the send
itself (bench/streaming.py measured about 40% of the server's time).  Here a
write goes straight to the kernel when the transport's buffer is empty; only
what the kernel does not take is buffered, the usual way.  Buffered data,
producers (pauseProducing when the buffer passes ``bufferSize``) and closing
behave as in Twisted, so "paused" now means the kernel's buffer is full.
``queued_bytes`` tells the glue how much is waiting, for its output budget.
"""
from twisted.internet import tcp


class DirectWriteServer(tcp.Server):
    def write(self, data: bytes) -> None:
        if (data and self.connected and not self.disconnecting and not self._writeDisconnected
                and not self._tempDataLen and self.offset == len(self.dataBuffer)):
            # socket.send itself, not writeSomeData: this runs once per player per publisher read, and
            # Twisted's wrappers (untilConcludes, the slice, the error mapping) were a quarter of its cost.
            try:
                written = self.socket.send(data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError:
                written = None      # an error: left to the buffered path, whose writeSomeData reports it
            if written is not None:
                if written == len(data):
                    return
                data = data[written:]
        super().write(data)

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
