"""Errors of the RTMP protocol core.

A ``RemoteProtocolError`` means the peer sent something we cannot accept: the
glue flushes what it can and drops that connection, nothing else.  A
``LocalProtocolError`` means our own code misused the core (a bug here).
"""


class ProtocolError(Exception):
    """Base class of the core's errors."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; the connection must be closed.

    ``reason`` is one line for the log, naming what was wrong.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class LimitExceeded(RemoteProtocolError):
    """The peer crossed one of the configured limits (``limit`` names it)."""

    def __init__(self, limit: str, reason: str):
        super().__init__(reason)
        self.limit = limit


class LocalProtocolError(ProtocolError):
    """Our own code asked the core for something the protocol does not allow."""
