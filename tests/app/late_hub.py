"""A hub whose answers come only when the test says: a remote hub (Redis, another node) in slow motion.

``LateHub`` keeps a ``LocalHub`` inside and queues every method call; a
call is carried out (on the inner hub) and its Deferred fired only when the
test calls ``answer()``, oldest first, or ``fail_next()``, which fails it
without carrying it out (a hub that lost its connection).  So a test sees
what its code does while an answer is on its way: the window a remote hub
opens and ``LocalHub`` (every answer already fired) never does.
"""
from collections import deque

from twisted.internet.defer import Deferred

from fmspy_gateway.app.hub import Hub, LocalHub


class HubUnavailable(Exception):
    """What ``fail_next`` fails an answer with: the hub could not be reached."""


class LateHub(Hub):
    def __init__(self, node: str = "late-node"):
        self.inner = LocalHub(node)
        self.node = node
        self.kind = self.inner.kind
        #: Shared objects have an interface of their own (app/shared_objects.py), answered by the inner hub's.
        self.shared_objects = self.inner.shared_objects
        #: (method name, arguments, the Deferred handed out), oldest first.
        self.waiting = deque()

    def _later(self, name, *args, **kwargs) -> Deferred:
        answer = Deferred()
        self.waiting.append((name, args, kwargs, answer))
        return answer

    def pending(self):
        """The names of the methods waiting for their answer, oldest first."""
        return [name for name, _, _, _ in self.waiting]

    def answer(self, count: int = 1) -> None:
        """Carry out the ``count`` oldest calls on the inner hub and fire their Deferreds with its answers."""
        for _ in range(count):
            name, args, kwargs, answer = self.waiting.popleft()
            getattr(self.inner, name)(*args, **kwargs).chainDeferred(answer)

    def answer_all(self) -> None:
        """Answer until nothing waits, including calls made by what the answers ran."""
        while self.waiting:
            self.answer()

    def fail_next(self, error: Exception = None) -> None:
        """Fail the oldest call without carrying it out."""
        _, _, _, answer = self.waiting.popleft()
        answer.errback(error if error is not None else HubUnavailable("the hub did not answer"))

    def join(self, client, room):
        return self._later("join", client, room)

    def leave(self, client, room):
        return self._later("leave", client, room)

    def members(self, room):
        return self._later("members", room)

    def broadcast(self, room, method, args=(), exclude=None):
        return self._later("broadcast", room, method, args, exclude=exclude)

    def rooms(self, application):
        return self._later("rooms", application)

    def locate(self, client_id):
        return self._later("locate", client_id)

    def clients(self, application, room=None):
        return self._later("clients", application, room)

    def call(self, client_id, method, args=(), timeout=None):
        return self._later("call", client_id, method, args, timeout=timeout)

    def disconnect(self, client_id, reason="disconnected"):
        return self._later("disconnect", client_id, reason)

    def announce(self, application, name, client_id):
        return self._later("announce", application, name, client_id)

    def withdraw(self, application, name, client_id):
        return self._later("withdraw", application, name, client_id)

    def find(self, application, name):
        return self._later("find", application, name)
