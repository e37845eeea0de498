"""How big a decoded AMF value really is, and a short printable form of any value.

AMF references let a few bytes stand for a huge tree: with AMF3 object
references ``A0 = []``, ``Ai = [Ai-1, Ai-1]`` is about 160 bytes on the wire
for 2**22 nodes, and 50,000 two-byte string references to one 10 KB string
stand for 500 MB of text.  Decoding such a value is linear (references are
shared Python objects), but everything that walks it as a tree afterwards
(JSON mapping, ``repr``, f-strings, re-encoding for an AMF0 peer) pays the
expanded size.  So a value is measured once where it enters (the protocol
core, against ``ValueBudget``), and nothing downstream walks more than that.

``measure`` counts what a tree walk would meet: every value is one node, and
bytes are the characters of strings and keys, the bytes of byte arrays and 8
for any other scalar: roughly the size written out without references.
Shared subtrees are counted each time they occur, but computed once (memo by
identity), so measuring costs the distinct values, never the expansion, and
it stops as soon as the budget is crossed.  A cycle (only references make
them) is counted once, as a tree walk that notices cycles would.

``brief`` is what logs and status descriptions use for peer-sent values: a
repr cut to a few dozen characters, never walking more than that.
"""
import datetime
from dataclasses import dataclass
from typing import Any, Iterable

__all__ = ["ValueBudget", "ValueOverBudget", "ValueSize", "measure", "brief", "brief_name"]


@dataclass(frozen=True)
class ValueBudget:
    """The most one message's decoded values may expand to (``maxValueNodes``, ``maxValueBytes``)."""

    #: Values (scalars and containers) counted as a tree walk meets them.
    max_nodes: int = 100_000
    #: Characters and bytes of strings, keys and byte arrays, plus 8 for each other scalar.
    max_bytes: int = 8 * 1024 * 1024

    def __post_init__(self):
        if self.max_nodes < 1 or self.max_bytes < 1:
            raise ValueError("value budgets must be positive")


@dataclass(frozen=True)
class ValueSize:
    nodes: int
    bytes: int


class ValueOverBudget(Exception):
    """A value expands past its budget; ``limit`` names the option, ``str()`` says by how much."""

    def __init__(self, limit: str, reason: str):
        super().__init__(reason)
        self.limit = limit
        self.reason = reason
        #: Set by ``amf.decode_values``: the message's values, to be read (name, transaction id), not walked.
        self.values = ()


_SCALAR_BYTES = 8
_TEXT = (str, bytes, bytearray)
_SCALARS = (int, float, bool, type(None), datetime.date)


def measure(values: Iterable[Any], budget: ValueBudget) -> ValueSize:
    """The expanded size of ``values`` (one message's values); ``ValueOverBudget`` past ``budget``."""
    walker = _Walker(budget)
    nodes = size = 0
    try:
        for value in values:
            n, b = walker.size(value)
            nodes += n
            size += b
            walker.check(nodes, size)
    except RecursionError:
        raise ValueOverBudget("maxValueNodes", "value nested too deeply to measure") from None
    return ValueSize(nodes, size)


class _Walker:
    __slots__ = ("budget", "memo", "open")

    def __init__(self, budget: ValueBudget):
        self.budget = budget
        self.memo = {}      # id(container) -> (nodes, bytes) once computed
        self.open = set()   # ids of containers being computed: seeing one again is a cycle

    def check(self, nodes: int, size: int) -> None:
        budget = self.budget
        if nodes > budget.max_nodes:
            raise ValueOverBudget("maxValueNodes", f"value expands to more than {budget.max_nodes} nodes "
                                                   "(maxValueNodes)")
        if size > budget.max_bytes:
            raise ValueOverBudget("maxValueBytes", f"value expands to more than {budget.max_bytes} bytes "
                                                   "(maxValueBytes)")

    def size(self, value):
        if isinstance(value, _TEXT):
            return 1, len(value)
        if isinstance(value, _SCALARS):
            return 1, _SCALAR_BYTES
        key = id(value)
        known = self.memo.get(key)
        if known is not None:
            return known
        if key in self.open:
            return 1, _SCALAR_BYTES
        children = _children(value)
        if children is None:
            getvalue = getattr(value, "getvalue", None)  # ByteArray and other byte streams
            result = (1, len(getvalue()) if getvalue is not None else _SCALAR_BYTES)
            self.memo[key] = result
            return result
        self.open.add(key)
        # A typed object's class alias (a Vector's element type) is text too, written out (JSON
        # "_explicitType", repr) wherever the object occurs: 3-byte AMF0 references to one object
        # with a 64 KB alias would otherwise be free.
        nodes, size = 1, _label_bytes(value)
        for child in children:
            n, b = self.size(child)
            nodes += n
            size += b
            self.check(nodes, size)
        self.open.discard(key)
        self.memo[key] = (nodes, size)
        return nodes, size


def _children(value):
    """The values inside a container, keys included; None for a leaf."""
    if isinstance(value, dict):
        return _items(value)
    if isinstance(value, (list, tuple)):
        return value
    pairs = getattr(value, "pairs", None)   # amf.Dictionary
    if isinstance(pairs, list):
        return (item for pair in pairs for item in pair)
    return None


def _label_bytes(value) -> int:
    """The characters of a container's class alias or element type name (amf.TypedObject, amf.Vector)."""
    label = getattr(value, "alias", None) or getattr(value, "type_name", None)
    return len(label) if isinstance(label, str) else 0


def _items(mapping: dict):
    for key, item in mapping.items():
        yield key
        yield item


#: Characters of a peer's value shown in a log line or status description.
BRIEF = 60


def brief(value: Any, limit: int = BRIEF) -> str:
    """A short repr of any value, for logs: never longer than about ``limit``, never a walk of it."""
    if isinstance(value, str):
        text = repr(value[:limit])
        if len(value) <= limit and len(text) <= limit + 2:
            return text
        # Control characters repr as 4 to 10 characters each: the repr is cut too.
        return f"{text[:min(len(text) - 1, limit + 1)]}...{text[-1]} ({len(value)} characters)"
    if isinstance(value, int) and value.bit_length() > 4 * limit:
        # repr would be long, and past 4300 digits Python refuses to make it (ValueError).
        return f"<int of {value.bit_length()} bits>"
    if isinstance(value, (int, float, bool, type(None))):
        text = repr(value)
        return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} digits)"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    try:
        count = len(value)
    except TypeError:
        return f"<{type(value).__name__}>"
    return f"<{type(value).__name__} of {count}>"


def brief_name(value: Any, limit: int = BRIEF) -> str:
    """A peer-sent name (stream, method, room) cut for a log or a status text, without quotes."""
    if not isinstance(value, str):
        return brief(value, limit)
    cut, shown = len(value) > limit, value[:limit]
    if not shown.isprintable():
        # A newline or other control character would forge a log line or break a status text: escaped.
        escaped = shown.encode("unicode_escape").decode("ascii")
        cut, shown = cut or len(escaped) > limit, escaped[:limit]
    return f"{shown}... ({len(value)} characters)" if cut else shown
