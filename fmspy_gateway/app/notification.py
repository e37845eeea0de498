"""A notification: ``method(*args)`` sent to a client wanting no answer (transaction id 0).

A room's broadcast sends one notification to every member, and members read
it in few forms: an AMF0 or an AMF3 command, with or without the AMF3 switch
(``Session._may_switch``).  A ``Notification`` is encoded once per form
however many clients hear it (``body``), where each member used to encode
its own; the hubs make one per broadcast (``Client.hear``).
"""
from typing import Any, Dict, Iterable, Tuple

from ..rtmp.amf import encode_values


class Notification:
    """``method(*args)`` for one client or a whole room; its command bodies, kept once made.

    The arguments are encoded when the first client is sent them: what a
    caller hands over must not change afterwards (a broadcast's members are
    all sent it within one loop, with no application code in between).
    """

    __slots__ = ("method", "args", "_bodies")

    def __init__(self, method: str, args: Iterable[Any] = ()):
        self.method = method
        self.args = tuple(args)
        self._bodies: Dict[Tuple[bool, bool], bytes] = {}

    def body(self, amf3: bool, switch: bool) -> bytes:
        """The command body (name, transaction id 0, null, the arguments) for a client reading this form.

        Raises ``LocalProtocolError`` as ``encode_values`` does; a failure is
        not kept, so each client that cannot be sent it logs its own line.
        """
        key = (amf3, switch)
        body = self._bodies.get(key)
        if body is None:
            body = self._bodies[key] = encode_values([self.method, 0, None, *self.args], amf3=amf3, switch=switch)
        return body

    def __repr__(self):
        return f"<Notification {self.method!r} with {len(self.args)} argument(s)>"
