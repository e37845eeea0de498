"""The echotest battery: every AMF0 and AMF3 type and edge value, sent to ``echo`` and compared.

Users run it against any server (ours, or a bridged backend) to see that each
type survives the round trip; the tests run the same battery.  Comparison is
exact: types as well as values, NaN as NaN, the sign of -0.0, the alias of a
typed object, shared references and cycles kept as such.
"""
import datetime
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Tuple

from twisted.internet.defer import inlineCallbacks

from ..app.echo import RED5_ECHO, ExternalizableClass, register_red5_echo_classes
from ..rtmp import amf

AMF0, AMF3 = 0, 3
BOTH = (AMF0, AMF3)


@dataclass(frozen=True)
class Case:
    #: The type the case exercises, as the table shows it.
    type_name: str
    #: A short description of the value.
    label: str
    #: Builds the value afresh for each run (cyclic values cannot be shared constants).
    make: Callable[[], Any]
    #: The encodings that can carry this value.
    encodings: Tuple[int, ...] = BOTH


def _cycle_list():
    value = ["head"]
    value.append(value)
    return value


def _cycle_object():
    value = amf.ASObject(name="node")
    value["self"] = value
    return value


def _shared_reference():
    shared = amf.ASObject(x=1)
    return [shared, shared, {"again": shared}]


def _typed(alias, **fields):
    value = amf.TypedObject(alias)
    value.update(fields)
    return value


UTC = datetime.timezone.utc

CASES: List[Case] = [
    Case("null", "null", lambda: None),
    Case("undefined", "undefined", lambda: amf.Undefined),
    Case("boolean", "true", lambda: True),
    Case("boolean", "false", lambda: False),
    Case("number", "0", lambda: 0),
    Case("number", "-1", lambda: -1),
    Case("number", "int29 max 2^28-1", lambda: 2 ** 28 - 1),
    Case("number", "int29 min -2^28", lambda: -2 ** 28),
    Case("number", "2^28 (double in AMF3)", lambda: 2 ** 28, (AMF0,)),
    Case("number", "2^28 as double", lambda: float(2 ** 28)),
    Case("number", "-2^28-1 as double", lambda: float(-2 ** 28 - 1)),
    Case("number", "2^53", lambda: 2 ** 53, (AMF0,)),
    Case("number", "2^53 as double", lambda: float(2 ** 53)),
    Case("number", "-2^53 as double", lambda: float(-2 ** 53)),
    Case("number", "1.5", lambda: 1.5),
    Case("number", "3.0 as double", lambda: 3.0, (AMF3,)),
    Case("number", "1e308", lambda: 1e308),
    Case("number", "5e-324 (denormal)", lambda: 5e-324),
    Case("number", "-0.0", lambda: -0.0),
    Case("number", "NaN", lambda: math.nan),
    Case("number", "Infinity", lambda: math.inf),
    Case("number", "-Infinity", lambda: -math.inf),
    Case("string", "empty", lambda: ""),
    Case("string", "ascii", lambda: "hello"),
    Case("string", "65535 bytes (short string max)", lambda: "s" * 65535),
    Case("string", "100000 bytes (long string)", lambda: "L" * 100000),
    Case("string", "BMP and non-BMP unicode", lambda: "caf\u00e9 \u2603 \u4e2d\u6587 \U0001F600 \U00010348"),
    Case("string", "NUL inside", lambda: "a\x00b"),
    Case("date", "with milliseconds", lambda: datetime.datetime(2009, 2, 13, 23, 31, 30, 123000)),
    Case("date", "epoch", lambda: datetime.datetime(1970, 1, 1)),
    Case("date", "before 1970 with ms", lambda: datetime.datetime(1969, 12, 31, 23, 59, 59, 500000)),
    Case("date", "1900-01-01T00:00:00.123", lambda: datetime.datetime(1900, 1, 1, 0, 0, 0, 123000)),
    Case("date", "with time zone +05:30", lambda: datetime.datetime(
        2020, 5, 17, 12, 0, 0, 250000, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30)))),
    Case("xml", "XMLDocument", lambda: amf.XML("<doc a='1'><b>text &amp; more</b></doc>", document=True)),
    Case("xml", "E4X XML", lambda: amf.XML("<x:e xmlns:x='urn:x'>  spaced  </x:e>", document=False), (AMF3,)),
    Case("array", "empty", lambda: []),
    Case("array", "mixed values", lambda: [1, "two", 3.5, None, True, [4]]),
    Case("array", "nested 50 deep", lambda: _nest(50)),
    Case("object", "anonymous", lambda: amf.ASObject(a=1, b="two", c=[3])),
    Case("object", "nested", lambda: amf.ASObject(outer=amf.ASObject(inner=amf.ASObject(leaf=None)))),
    Case("object", "empty-string key", lambda: amf.ASObject({"": 1, "a": 2}), (AMF3,)),
    Case("object", "typed (Red5 RemoteClass)", lambda: _typed(
        RED5_ECHO + "RemoteClass", attribute1="one", attribute2=2)),
    Case("object", "Red5 ExternalizableClass body", ExternalizableClass, (AMF3,)),
    Case("object", "typed, unregistered alias", lambda: _typed("com.example.Thing", id=7, tags=["a", "b"])),
    Case("ecma array", "string keys", lambda: amf.MixedArray(a=1, b="x")),
    Case("mixed array", "dense and string keys", lambda: amf.MixedArray({0: "zero", 1: "one", "k": "v"}), (AMF3,)),
    # AMF0 has no ByteArray: an AMF0 client gets only AMF0 values back (never the 0x11 switch to AMF3).
    Case("bytearray", "binary with NUL and 0xFF", lambda: amf.ByteArray(bytes(range(256))), (AMF3,)),
    Case("bytearray", "zlib-looking header", lambda: amf.ByteArray(b"\x78\x9c not compressed"), (AMF3,)),
    Case("vector", "Vector.<int>", lambda: amf.Vector([0, -1, 2 ** 31 - 1, -2 ** 31], kind="int"), (AMF3,)),
    Case("vector", "Vector.<uint>", lambda: amf.Vector([0, 1, 2 ** 32 - 1], kind="uint"), (AMF3,)),
    Case("vector", "Vector.<Number>", lambda: amf.Vector([1.5, -0.0, 1e308], kind="double", fixed=True), (AMF3,)),
    Case("vector", "Vector.<Object>", lambda: amf.Vector(
        [amf.ASObject(a=1), "s", None], kind="object", type_name="Object"), (AMF3,)),
    Case("dictionary", "object and string keys", lambda: _dictionary(), (AMF3,)),
    Case("reference", "one object three times", _shared_reference),
    Case("cycle", "array containing itself", _cycle_list),
    Case("cycle", "object containing itself", _cycle_object),
]


def _nest(depth):
    value = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def _dictionary():
    key = amf.ASObject(id=1)
    return amf.Dictionary([(key, "object key"), ("name", "string key"), (3, "number key")], weak_keys=False)


def same(sent: Any, received: Any, encoding: int = AMF3) -> bool:
    """Exact equality: types, NaN, -0.0, aliases, and the shape of references and cycles.

    AMF0 has a single number type (a double), so there an integral float and
    an int are the same value on the wire; AMF3 tells integers from doubles.
    """
    return _same(sent, received, {}, {}, encoding == AMF0)


def _same(a, b, seen_a, seen_b, numbers_are_doubles=False) -> bool:
    if numbers_are_doubles:
        if type(a) is int:
            a = float(a)
        if type(b) is int:
            b = float(b)
    # References: a value seen before must map to the very object it mapped to then.
    if isinstance(a, (list, dict, amf.Dictionary)):
        if id(a) in seen_a:
            return seen_a[id(a)] is b and seen_b.get(id(b)) is a
        seen_a[id(a)], seen_b[id(b)] = b, a
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float):
        if not isinstance(b, float):
            return False
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, int):
        return type(b) is int and a == b
    if isinstance(a, datetime.datetime):
        return isinstance(b, datetime.datetime) and _utc(a) == _utc(b)
    if isinstance(a, amf.XML):
        return isinstance(b, amf.XML) and a.document == b.document and str(a) == str(b)
    if isinstance(a, amf.Vector):
        return (isinstance(b, amf.Vector) and (a.kind, a.fixed, a.type_name) == (b.kind, b.fixed, b.type_name)
                and _same_items(a, b, seen_a, seen_b, numbers_are_doubles))
    if isinstance(a, amf.Dictionary):
        return (isinstance(b, amf.Dictionary) and a.weak_keys == b.weak_keys and len(a.pairs) == len(b.pairs)
                and all(_same(ka, kb, seen_a, seen_b, numbers_are_doubles) and _same(va, vb, seen_a, seen_b, numbers_are_doubles)
                        for (ka, va), (kb, vb) in zip(a.pairs, b.pairs)))
    if isinstance(a, list):
        return type(b) is list and _same_items(a, b, seen_a, seen_b, numbers_are_doubles)
    if isinstance(a, dict):
        if isinstance(a, amf.TypedObject) != isinstance(b, amf.TypedObject):
            return False
        if isinstance(a, amf.TypedObject) and a.alias != b.alias:
            return False
        if isinstance(a, amf.MixedArray) != isinstance(b, amf.MixedArray):
            return False
        return (isinstance(b, dict) and set(a) == set(b)
                and all(_same(a[k], b[k], seen_a, seen_b, numbers_are_doubles) for k in a))
    if isinstance(a, amf.ByteArray):
        return isinstance(b, amf.ByteArray) and bytes(a.getvalue()) == bytes(b.getvalue())
    if isinstance(a, (bytes, bytearray)):
        return isinstance(b, (bytes, bytearray)) and bytes(a) == bytes(b)
    if isinstance(a, str):
        return type(b) is str and a == b
    return a is b if a is None or a is amf.Undefined else a == b


def _same_items(a, b, seen_a, seen_b, numbers_are_doubles) -> bool:
    return len(a) == len(b) and all(_same(x, y, seen_a, seen_b, numbers_are_doubles) for x, y in zip(a, b))


def _utc(value: datetime.datetime) -> datetime.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


@dataclass
class Outcome:
    case: Case
    encoding: int
    sent: Any
    received: Any = None
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and same(self.sent, self.received, self.encoding)


@inlineCallbacks
def run_battery(client, encoding: int, cases: List[Case] = CASES):
    """Call ``echo`` with every case the encoding can carry; returns a list of Outcomes."""
    outcomes = []
    for case in cases:
        if encoding not in case.encodings:
            continue
        outcome = Outcome(case, encoding, case.make())
        try:
            outcome.received = yield client.call("echo", outcome.sent)
        except Exception as e:   # a failed call is a failed case, reported in the table
            outcome.error = getattr(e, "description", None) or str(e) or type(e).__name__
        outcomes.append(outcome)
    return outcomes


def _short(value: Any, width: int = 38) -> str:
    try:
        text = f"ByteArray({bytes(value.getvalue())!r})" if isinstance(value, amf.ByteArray) else repr(value)
    except RecursionError:
        text = "<cyclic>"
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[:width - 3] + "..."


def format_table(outcomes: List[Outcome], elapsed: float) -> str:
    header = ("type", "encoding", "case", "sent", "received", "result")
    rows = [header]
    for o in outcomes:
        received = f"error: {o.error}" if o.error else _short(o.received)
        rows.append((o.case.type_name, f"AMF{o.encoding}", o.case.label, _short(o.sent), received,
                     "pass" if o.passed else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failed = sum(not o.passed for o in outcomes)
    lines.append("")
    lines.append(f"{len(outcomes) - failed} passed, {failed} failed in {elapsed:.2f} s")
    return "\n".join(lines)


@inlineCallbacks
def echotest(url: str, encodings=BOTH, reactor=None, out=print):
    """Run the battery against ``url`` in each encoding; returns True if everything passed."""
    from ..server.client import connect_client
    register_red5_echo_classes()
    started = time.monotonic()
    outcomes = []
    for encoding in encodings:
        client = yield connect_client(url, object_encoding=encoding, reactor=reactor)
        try:
            outcomes.extend((yield run_battery(client, encoding)))
        finally:
            yield client.close()
    out(format_table(outcomes, time.monotonic() - started))
    return all(o.passed for o in outcomes)
