"""What travels between nodes over Redis pub/sub: an envelope, encoded as AMF0 values (never pickle).

An envelope is a header (a small dict: ``v``, ``kind``, ``id``, the fields of
its kind) followed by the AMF values it carries (a call's or broadcast's
arguments, a result, an error's information object).  AMF is what those
values are on the RTMP side, so whatever a client can send, another node can
receive: ``encode_values`` switches what AMF0 cannot say (ByteArray, Vector,
...) to AMF3, and decoding runs under a value budget.

A message from Redis is input like any other: one larger than
``max_envelope_bytes``, one that does not decode within the budget, or one
whose header is not what its kind needs is refused (``BadEnvelope``) and
dropped by the listener, which logs it (rate-limited).
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

from ..rtmp import amf
from ..rtmp.budget import ValueBudget, ValueOverBudget
from ..rtmp.errors import RemoteProtocolError

VERSION = 1

#: kind -> the header fields it must carry, with their types.
KINDS: Dict[str, Dict[str, tuple]] = {
    # a room event: delivered by every node to its members, each node answers "reached" to ``origin``
    "broadcast": {"origin": (str,), "method": (str,), "exclude": (str, type(None))},
    "reached": {"count": (int,)},
    # a call to a client on the receiving node; answered "result" or "failure"
    "call": {"origin": (str,), "client": (str,), "method": (str,), "timeout": (int, float, type(None))},
    "result": {},
    "failure": {"error": (str,), "code": (str,), "description": (str,)},
    # closing a client on the receiving node; answered "disconnected"
    "disconnect": {"origin": (str,), "client": (str,), "reason": (str,)},
    "disconnected": {"found": (bool,)},
    # a node's message to itself: everything it published before has been delivered
    "ping": {},
    # on the streams channel, to every node: ``node``'s client ``client`` now publishes application/name
    "announced": {"application": (str,), "name": (str,), "node": (str,), "client": (str,)},
}

#: The error names a "failure" may carry, each an exception class on the caller's side (redis_hub.py).
FAILURES = ("failed", "timeout", "closed", "not-found")


class BadEnvelope(Exception):
    """A message from Redis that is not an envelope this node accepts; ``str()`` says why."""


@dataclass(frozen=True)
class Envelope:
    kind: str
    #: Which request this is, or answers: "<node>/<counter>".
    id: str
    fields: Dict[str, Any] = field(default_factory=dict)
    values: Tuple[Any, ...] = ()

    def __getitem__(self, name):
        return self.fields[name]


def encode(envelope: Envelope) -> bytes:
    """The envelope's bytes; ``LocalProtocolError`` for a value AMF cannot carry."""
    header = {"v": VERSION, "kind": envelope.kind, "id": envelope.id, **envelope.fields}
    return amf.encode_values([header, *envelope.values], amf3=False)


def decode(payload: bytes, *, max_bytes: int, budget: ValueBudget) -> Envelope:
    """The envelope in ``payload``, or ``BadEnvelope``: too large, not AMF within ``budget``, a bad header."""
    if not isinstance(payload, bytes):
        raise BadEnvelope(f"a {type(payload).__name__} instead of bytes")
    if len(payload) > max_bytes:
        raise BadEnvelope(f"{len(payload)} bytes, over the limit of {max_bytes} ([Cluster] maxEnvelopeBytes)")
    try:
        values = amf.decode_values(payload, amf3=False, budget=budget)
    except ValueOverBudget as error:
        raise BadEnvelope(f"values over budget ({error.limit}): {error.reason}") from None
    except (RemoteProtocolError, ValueError, TypeError, KeyError, IndexError, OverflowError) as error:
        raise BadEnvelope(f"not AMF: {error}") from None
    if not values or not isinstance(values[0], dict):
        raise BadEnvelope("no header")
    header = dict(values[0])
    if header.get("v") != VERSION:
        raise BadEnvelope(f"version {header.get('v')!r}, not {VERSION}")
    kind, request_id = header.get("kind"), header.get("id")
    if kind not in KINDS or not isinstance(request_id, str):
        raise BadEnvelope(f"unknown kind {kind!r} or no id")
    fields = {}
    for name, types in KINDS[kind].items():
        value = header.get(name)
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise BadEnvelope(f"{kind} with a bad {name!r}")
        fields[name] = value
    if kind == "failure" and fields["error"] not in FAILURES:
        raise BadEnvelope(f"failure {fields['error']!r}")
    return Envelope(kind, request_id, fields, tuple(values[1:]))
