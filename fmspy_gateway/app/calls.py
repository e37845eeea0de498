"""Calls awaiting an answer from the other side, by transaction id.

Both ends of RTMP call each other (``nc.call`` and server-to-client calls);
both keep this table.  Every entry ends exactly once: with the peer's
``_result`` / ``_error``, with a timeout, or with ``fail_all`` when the
connection goes (as AMP's ``failAllOutgoing``).  After ``fail_all`` the
table refuses new entries: a call made on a closed connection fails at once
with ``ConnectionClosed`` instead of waiting for its timeout.
"""
from typing import Any, Dict, Optional

from twisted.internet.defer import Deferred, fail

from .replies import NetConnectionCode


class CallFailed(Exception):
    """The peer answered ``_error``; ``info`` is its information object."""

    def __init__(self, description: str, code: str = NetConnectionCode.CALL_FAILED, info: Any = None):
        super().__init__(description)
        self.description = description
        self.code = code
        self.info = info

    @classmethod
    def from_info(cls, info: Any) -> "CallFailed":
        if isinstance(info, dict):
            return cls(str(info.get("description", "")), str(info.get("code", NetConnectionCode.CALL_FAILED)), info)
        return cls(str(info), info=info)


class CallTimedOut(CallFailed):
    """No answer came within the call's timeout."""


class ConnectionClosed(CallFailed):
    """The connection closed before the answer came."""


class PendingCalls:
    """Outstanding calls: allocate a transaction id, get a Deferred, settle it later.

    ``clock`` is anything with ``callLater`` (the reactor, or a ``task.Clock``
    in tests); without it, or with ``timeout`` None, calls wait forever.
    """

    def __init__(self, clock=None, timeout: Optional[float] = None, first_transaction_id: int = 2):
        self._clock = clock
        self._timeout = timeout
        self._next_id = first_transaction_id
        self._calls: Dict[int, tuple] = {}
        #: The reason given to ``fail_all``, once the connection is gone; None while it is open.
        self.closed: Optional[str] = None

    def __len__(self):
        return len(self._calls)

    def new(self, description: str, timeout: Optional[float] = None) -> tuple:
        """Allocate a transaction id for a call described by ``description`` (for error messages).

        After ``fail_all`` the Deferred has already failed with ``ConnectionClosed``
        and nothing is kept: the caller need not send the call.
        """
        transaction_id = self._next_id
        self._next_id += 1
        if self.closed is not None:
            return transaction_id, fail(ConnectionClosed(f"{description}: {self.closed}",
                                                         NetConnectionCode.CONNECT_CLOSED))
        deferred = Deferred(lambda d: self._calls.pop(transaction_id, None))
        timeout = self._timeout if timeout is None else timeout
        timer = None
        if self._clock is not None and timeout is not None:
            timer = self._clock.callLater(timeout, self._time_out, transaction_id, description, timeout)
        self._calls[transaction_id] = (deferred, timer)
        return transaction_id, deferred

    def _take(self, transaction_id) -> Optional[Deferred]:
        entry = self._calls.pop(transaction_id, None)
        if entry is None:
            return None
        deferred, timer = entry
        if timer is not None and timer.active():
            timer.cancel()
        return deferred

    def resolve(self, transaction_id, value: Any) -> bool:
        """Settle a call with the peer's result; False if no such call is waiting."""
        deferred = self._take(transaction_id)
        if deferred is None:
            return False
        deferred.callback(value)
        return True

    def reject(self, transaction_id, info: Any) -> bool:
        """Fail a call with the peer's ``_error`` information object."""
        deferred = self._take(transaction_id)
        if deferred is None:
            return False
        deferred.errback(CallFailed.from_info(info))
        return True

    def _time_out(self, transaction_id, description, timeout):
        deferred = self._take(transaction_id)
        if deferred is not None:
            deferred.errback(CallTimedOut(f"{description}: no answer within {timeout:g} s",
                                          NetConnectionCode.CALL_TIMEOUT))

    def fail_all(self, reason: str):
        """Fail every outstanding call (the connection is gone), and every call made from now on."""
        if self.closed is None:
            self.closed = reason
        for transaction_id in list(self._calls):
            deferred = self._take(transaction_id)
            deferred.errback(ConnectionClosed(reason, NetConnectionCode.CONNECT_CLOSED))
