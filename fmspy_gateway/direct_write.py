"""Writing to a Twisted TCP transport's socket at once when nothing is waiting to be sent.

Twisted buffers every write until the next reactor turn: register the socket
for write events, wait for the reactor to poll it, send, unregister.  That
costs two ``epoll_ctl`` calls, a turn of the reactor and its Python path per
write.  For a server that fans one video frame out to hundreds of players the
bookkeeping cost more than the send itself (bench/streaming.py measured about
40% of the server's time); for the gateway's request to its backend it is a
turn of latency on every bridged call (bench/gateway.py, one client).

:func:`write_at_once` sends to the kernel when the transport's buffer is
empty; only what the kernel does not take is buffered, the usual way.
Buffered data, producers (``pauseProducing`` once the buffer passes
``bufferSize``) and closing behave as in Twisted.  The server's transport
(``server/transport.py``) and the gateway's backend connections
(``bridge/http11.py``) both write through it; it sits at the package's top
level, beside config.py, because both layers use it and neither may import
the other.
"""
from twisted.internet import tcp

__all__ = ["write_at_once"]


def write_at_once(transport, data: bytes) -> None:
    """``transport.write(data)`` for a Twisted TCP transport, but what the kernel takes now is sent now.

    A transport running Twisted's own ``startTLS`` (``TLS`` set) is
    written the usual way: its bytes must go through TLS first.
    """
    if (data and transport.connected and not transport.disconnecting and not transport._writeDisconnected
            and not transport.TLS and not transport._tempDataLen and transport.offset == len(transport.dataBuffer)):
        # socket.send itself, not writeSomeData: the fan-out calls this once per player per publisher read,
        # and Twisted's wrappers (untilConcludes, the slice, the error mapping) were a quarter of its cost.
        try:
            written = transport.socket.send(data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            written = None      # an error: left to the buffered path, whose writeSomeData reports it
        if written is not None:
            if written == len(data):
                return
            data = data[written:]
    tcp.Connection.write(transport, data)      # Twisted's own: buffered, or through its TLS
