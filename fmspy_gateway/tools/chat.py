"""``fmspy-gateway chat``: a terminal client for the chat application.

Lines typed on stdin are sent as ``say(line)``; every ``message(text)`` the
server pushes is printed as a line on stdout.  Standard input and output go
through Twisted's ``StandardIO``, so reading the terminal never blocks the
reactor.  EOF (Ctrl+D) or ``/quit`` leaves with status 0; a refused or
dropped connection prints one line to stderr and leaves with status 1.
"""
import sys

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.stdio import StandardIO
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from ..app.calls import CallFailed
from .failures import explain

QUIT = "/quit"


def describe(failure) -> str:
    """'Code: description' for a CallFailed, the error message otherwise."""
    reason = failure.value
    if isinstance(reason, CallFailed):
        return f"{reason.code}: {reason.description}" if reason.description else reason.code
    return failure.getErrorMessage()


@implementer(IHalfCloseableProtocol)
class ChatTerminal(LineReceiver):
    """The terminal side: stdin lines to ``say``, ``message`` calls to stdout.

    ``done`` fires with the exit status once the RTMP connection is closed
    and everything written to stdout has been flushed.
    """

    delimiter = b"\n"

    def __init__(self, err=None):
        self.err = err if err is not None else sys.stderr
        self.done = Deferred()
        self.client = None        # the RTMPClientProtocol once connected
        self.status = None        # exit status once decided
        self.quitting = False     # we asked for the close; it is then no error
        self.leave_status = 0
        self.pending = set()      # say() calls not answered yet
        self.stdio_gone = False
        self.output_gone = False

    # -- output ---------------------------------------------------------------------------

    def show(self, text) -> None:
        """The ``message`` handler: one line on stdout per message."""
        if not self.output_gone:
            self.transport.write(f"{text}\n".encode("utf-8", "replace"))

    def warn(self, line: str) -> None:
        self.err.write(line + "\n")
        self.err.flush()

    # -- the RTMP side ----------------------------------------------------------------------

    def attach(self, client) -> None:
        """Connected: from now on a close we did not ask for is an error."""
        self.client = client
        client.closed.addCallback(self._closed)

    def identified(self, _=None) -> None:
        """identify() was answered: start reading the terminal."""
        self.transport.resumeProducing()

    def leave(self, status: int = 0) -> None:
        """Close the connection (if any) and exit with ``status`` once it is closed."""
        if self.quitting:
            return
        self.quitting = True
        self.leave_status = status
        if self.client is None:
            self.finish(status)
            return
        # Lines already sent get their answer (and their echo) before we hang up.
        answered = DeferredList(list(self.pending), consumeErrors=True)
        answered.addCallback(lambda _: self.client.close())      # _closed finishes

    def _closed(self, reason) -> None:
        if self.quitting:
            self.finish(self.leave_status)
        else:
            self.warn(f"error: connection closed by the server ({reason})")
            self.finish(1)

    def finish(self, status: int) -> None:
        """Flush stdout, then fire ``done``; only the first status counts."""
        if self.status is not None:
            return
        self.status = status
        if self.stdio_gone or self.output_gone:
            self.done.callback(status)
        else:
            self.transport.loseConnection()     # connectionLost fires done once flushed

    # -- the terminal side (LineReceiver / IHalfCloseableProtocol) --------------------------

    def lineReceived(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if text.strip() == QUIT:
            self.leave()
        elif text and self.client is not None and not self.quitting:
            d = self.client.call("say", text)
            self.pending.add(d)
            d.addErrback(lambda failure: self.warn(f"error: {describe(failure)}"))
            d.addBoth(lambda _: self.pending.discard(d))

    def readConnectionLost(self) -> None:
        """EOF on stdin (Ctrl+D)."""
        self.leave()

    def writeConnectionLost(self) -> None:
        """Nobody reads stdout any more: nothing left to show, so leave."""
        self.output_gone = True
        self.leave()

    def connectionLost(self, reason=None) -> None:
        self.stdio_gone = True
        if self.status is None:
            self.leave()
        elif not self.done.called:
            self.done.callback(self.status)


def chat(url: str, name: str, reactor=None, stdio=StandardIO, err=None) -> Deferred:
    """Run the chat client on ``url`` as ``name``; fires with the exit status (0 or 1)."""
    from ..server.client import connect_client
    terminal = ChatTerminal(err)
    stdio(terminal, reactor=reactor)
    terminal.transport.pauseProducing()      # nothing is said before identify() is answered

    def refused(failure):
        terminal.warn(f"error: {explain(url, failure)}")
        terminal.finish(1)

    def not_identified(failure):
        terminal.warn(f"error: {describe(failure)}")
        terminal.leave(1)

    def connected(client):
        terminal.attach(client)
        client.call("identify", name).addCallbacks(terminal.identified, not_identified)

    d = maybeDeferred(connect_client, url, reactor=reactor, handlers={"message": terminal.show})
    d.addCallbacks(connected, refused)
    return terminal.done
