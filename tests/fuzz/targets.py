"""Fuzz targets: one function per surface a peer (or a config file) controls, bytes in.

Each target takes the fuzzer's bytes, drives one piece of the server with
them and raises only when it finds something wrong: an exception the
surface must never let escape, a broken invariant (``AssertionError``), or
(noticed by libFuzzer's ``-timeout``) a hang.  Whatever a target catches is
what the code under test is documented to raise.  The functions are plain
Python: ``run.py`` hands them to atheris, ``test_findings.py`` calls them on
the minimal input of every past finding.

Targets and what they check:

``handshake``   ServerHandshake, then a server ``Connection`` in HANDSHAKING,
                fed the bytes whole and cut in pieces: only
                ``RemoteProtocolError`` escapes; S0+S1+S2 is 3073 bytes and
                comes out the same however the input is cut; a simple
                handshake's S2 echoes C1; ``leftover`` is what follows C2.
``connection``  a server ``Connection`` past a valid handshake fed arbitrary
                chunk bytes, whole and cut in pieces: only
                ``RemoteProtocolError`` (``LimitExceeded``) escapes, and the
                events do not depend on how the bytes were cut; decoded
                values are within the budget, refusals one short line;
                whatever the server answers parses as chunks.  The first
                byte picks the piece size and (bit 7) small limits.
``amf0``/``amf3`` ``amf.decode_values`` within a value budget: only
                ``RemoteProtocolError`` / ``ValueOverBudget`` escape; each
                value that fits is mapped to JSON (``MappingError`` allowed)
                within a size bound derived from the budget, cut by
                ``brief`` to a short text, re-encoded (``LocalProtocolError``
                allowed; AMF3 values also as AMF0, as a reply to an AMF0
                client) and decoded again to an equivalent value (``same``:
                the normalisations amf.py documents).
``json``        ``mapping.json_to_amf`` on any JSON text (``MappingError``
                allowed), with and without a schema; the result encoded as
                a ``_result`` in AMF0 and AMF3 (``LocalProtocolError``
                allowed), decoded, and mapped back to the same JSON.
``routes``      ``routes.load_routes`` on any routes.cfg text (the part
                before the first NUL) with a schema file ``fuzzed.json``
                (the part after it): only ``ConfigError`` escapes.
``session``     (beyond the brief) the whole server glue, RTMPServerFactory
                with the echo, chat and live applications on a Clock and a
                StringTransport, fed the ``connection`` target's input:
                nothing escapes, nothing is logged as an error.
"""
import atexit
import dataclasses
import datetime
import inspect
import json
import math
import os
import shutil
import tempfile

import pyamf.flex   # noqa: F401 -- pyamf loads it when a peer names a flex class: load it first, so that
                    # how an input behaves does not depend on the inputs before it
from fmspy_gateway.bridge import mapping
from fmspy_gateway.bridge.routes import GatewaySettings, load_routes
from fmspy_gateway.config import ConfigError
from fmspy_gateway.rtmp import amf
from fmspy_gateway.rtmp.budget import BRIEF, ValueBudget, ValueOverBudget, brief, measure
from fmspy_gateway.rtmp.chunks import ChunkReader
from fmspy_gateway.rtmp.connection import Connection, Role, State
from fmspy_gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError
from fmspy_gateway.rtmp.events import CommandReceived, DataReceived, Event, HandshakeCompleted, MessageRefused
from fmspy_gateway.rtmp.handshake import PACKET_SIZE, ServerHandshake
from fmspy_gateway.rtmp.limits import Limits

__all__ = ["TARGETS", "same"]


def _random(n):
    """Deterministic "random" bytes: a finding must replay."""
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


# -- comparing AMF values ------------------------------------------------------

class Mismatch(AssertionError):
    pass


def same(a, b, *, amf0=False):
    """Raise ``Mismatch`` unless ``b`` is ``a`` after an AMF round trip.

    Normalisations allowed (amf.py's docstring): numbers compare by value
    across int/float (an AMF0 number is an int when integral, an int beyond
    int29 comes back from AMF3 as a double), NaN equals NaN, the sign of a
    zero double is kept; a mixed array without named keys may come back a
    list, and mixed-array keys compare as strings (an ECMA key "5" is the
    index 5); with ``amf0`` (the message was AMF0, so switched AMF3 values
    were re-encoded as AMF0) an XML's document flag and a typed object's
    traits may be lost.  Shared and cyclic values compare once per pair.
    """
    _Same(amf0).eq(a, b, "$")


def _is_list(value):
    return isinstance(value, (list, tuple)) and not isinstance(value, amf.Vector)


class _Same:
    def __init__(self, amf0):
        self.amf0 = amf0
        self.assumed = set()

    def fail(self, path, a, b, why):
        raise Mismatch(f"at {path}: {why}: {_short(a)} != {_short(b)}")

    def eq(self, a, b, path):
        if a is b:
            return
        if isinstance(a, bool) or isinstance(b, bool):
            if type(a) is not type(b) or a != b:
                self.fail(path, a, b, "booleans differ")
            return
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if isinstance(a, float) and isinstance(b, float):
                if math.isnan(a) and math.isnan(b):
                    return
                if a == b and math.copysign(1, a) == math.copysign(1, b):
                    return
            elif a == b:
                return
            self.fail(path, a, b, "numbers differ")
        if a is None or b is None or a is amf.Undefined or b is amf.Undefined:
            self.fail(path, a, b, "null/undefined differ")
        if isinstance(a, amf.XML) or isinstance(b, amf.XML):
            if not (isinstance(a, amf.XML) and isinstance(b, amf.XML)) or str.__eq__(a, b) is not True:
                self.fail(path, a, b, "XML differs")
            if a.document != b.document and not (self.amf0 and b.document):
                self.fail(path, a, b, "XML kind differs")
            return
        if isinstance(a, str) or isinstance(b, str):
            if type(a) is not type(b) or a != b:
                self.fail(path, a, b, "strings differ")
            return
        if isinstance(a, datetime.date) or isinstance(b, datetime.date):
            if type(a) is not type(b) or a != b:
                self.fail(path, a, b, "dates differ")
            return
        if isinstance(a, amf.ByteArray) or isinstance(b, amf.ByteArray):
            if not (isinstance(a, amf.ByteArray) and isinstance(b, amf.ByteArray)) or a.getvalue() != b.getvalue():
                self.fail(path, a, b, "byte arrays differ")
            return
        key = (id(a), id(b))
        if key in self.assumed:
            return
        self.assumed.add(key)
        if isinstance(a, amf.Vector) or isinstance(b, amf.Vector):
            if not (isinstance(a, amf.Vector) and isinstance(b, amf.Vector)):
                self.fail(path, a, b, "vector against non-vector")
            if (a.kind, a.fixed, a.type_name) != (b.kind, b.fixed, b.type_name):
                self.fail(path, a, b, "vector kinds differ")
            return self.items(a, b, path)
        if isinstance(a, amf.Dictionary) or isinstance(b, amf.Dictionary):
            if not (isinstance(a, amf.Dictionary) and isinstance(b, amf.Dictionary)) or a.weak_keys != b.weak_keys:
                self.fail(path, a, b, "dictionaries differ")
            if len(a.pairs) != len(b.pairs):
                self.fail(path, a, b, "dictionary sizes differ")
            for index, ((ka, va), (kb, vb)) in enumerate(zip(a.pairs, b.pairs)):
                self.eq(ka, kb, f"{path}<key {index}>")
                self.eq(va, vb, f"{path}<value {index}>")
            return
        if isinstance(a, amf.MixedArray) and _is_list(b):
            if any(not isinstance(k, int) for k in a) or sorted(a) != list(range(len(a))):
                self.fail(path, a, b, "mixed array with named keys came back a list")
            return self.items([a[i] for i in range(len(a))], b, path)
        if _is_list(a) or _is_list(b):
            if not (_is_list(a) and _is_list(b)):
                self.fail(path, a, b, "array against non-array")
            return self.items(a, b, path)
        if isinstance(a, dict) and isinstance(b, dict):
            if isinstance(a, amf.TypedObject) or isinstance(b, amf.TypedObject):
                if not (isinstance(a, amf.TypedObject) and isinstance(b, amf.TypedObject)) or a.alias != b.alias:
                    self.fail(path, a, b, "class aliases differ")
                if not self.amf0 and hasattr(a, "sealed_members") and hasattr(b, "sealed_members"):
                    if (tuple(a.sealed_members), a.dynamic) != (tuple(b.sealed_members), b.dynamic):
                        self.fail(path, a, b, "traits differ")
            elif isinstance(a, amf.MixedArray) != isinstance(b, amf.MixedArray):
                self.fail(path, a, b, "mixed array against object")
            return self.members(a, b, path, mixed=isinstance(a, amf.MixedArray))
        if type(a) is not type(b) or a != b:
            self.fail(path, a, b, "values differ")

    def items(self, a, b, path):
        if len(a) != len(b):
            self.fail(path, a, b, f"lengths differ ({len(a)}, {len(b)})")
        for index, (x, y) in enumerate(zip(a, b)):
            self.eq(x, y, f"{path}[{index}]")

    def members(self, a, b, path, mixed):
        if a.keys() != b.keys():
            # A mixed array's key "5" may come back as the index 5 (and the other way round).
            left = {str(k): v for k, v in a.items()} if mixed else {}
            right = {str(k): v for k, v in b.items()} if mixed else {}
            if not mixed or len(left) != len(a) or len(right) != len(b) or left.keys() != right.keys():
                self.fail(path, a, b, f"keys differ: {_short(sorted(map(repr, a)))} != "
                                      f"{_short(sorted(map(repr, b)))}")
            a, b = left, right
        for k, v in a.items():
            self.eq(v, b[k], f"{path}.{k}")


def _short(value, limit=200):
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


def _same_events(a, b):
    if len(a) != len(b):
        raise Mismatch(f"{len(a)} events against {len(b)}: {_short(a)} != {_short(b)}")
    for x, y in zip(a, b):
        if type(x) is not type(y):
            raise Mismatch(f"{type(x).__name__} against {type(y).__name__}")
        for f in dataclasses.fields(x):
            same(getattr(x, f.name), getattr(y, f.name))


# -- handshake -----------------------------------------------------------------

def _pieces(data, size):
    if size == 0:
        return [data]
    return [data[i:i + size] for i in range(0, len(data), size)]


def _shake(stream, size):
    """(outcome, S0+S1+S2, leftover, scheme) of a ServerHandshake fed ``stream`` in pieces of ``size``."""
    handshake = ServerHandshake(random_bytes=_random, epoch=1234)
    out = b""
    pieces = _pieces(stream, size)
    try:
        for index, piece in enumerate(pieces):
            handshake.receive_data(piece)
            out += handshake.data_to_send()
            if handshake.complete:
                # What follows goes to the chunk layer, not to the handshake.
                return ("complete",), out, handshake.leftover + b"".join(pieces[index + 1:]), handshake.digest_scheme
    except RemoteProtocolError as exc:
        return ("refused", exc.reason), out, b"", handshake.digest_scheme
    return ("incomplete",), out, b"", handshake.digest_scheme


def handshake(data: bytes):
    if not data:
        return
    size, stream = data[0] % 64, data[1:]
    whole = _shake(stream, 0)
    cut = _shake(stream, size)
    assert whole == cut, f"handshake depends on how its input is cut: {_short(whole)} != {_short(cut)}"
    outcome, out, leftover, scheme = whole
    if len(stream) >= 1 + PACKET_SIZE and stream[0] == 3:
        assert len(out) == 1 + 2 * PACKET_SIZE and out[0] == 3, "S0+S1+S2 missing or mis-sized"
        c1, s2 = stream[1:1 + PACKET_SIZE], out[1 + PACKET_SIZE:]
        if scheme is None:
            assert s2 == c1, "simple handshake: S2 does not echo C1"
        else:
            assert scheme in (0, 1) and c1[4:8] != bytes(4)
    else:
        assert out == b"", "S0+S1+S2 sent before C1 was all here"
    if outcome == ("complete",):
        assert leftover == stream[1 + 2 * PACKET_SIZE:], "leftover is not what followed C2"
    else:
        assert len(stream) < 1 + 2 * PACKET_SIZE or outcome[0] == "refused"

    # The same bytes through a Connection, whose HANDSHAKING state hands the leftover to the chunk layer.
    connection = Connection(Role.SERVER, random_bytes=_random, epoch=1234)
    try:
        events = connection.receive_data(stream)
    except RemoteProtocolError:
        assert connection.state is State.CLOSED
        return
    _check_events(events)
    if outcome == ("complete",):
        assert connection.state is State.OPEN and isinstance(events[0], HandshakeCompleted)
    else:
        assert outcome == ("incomplete",) and connection.state is State.HANDSHAKING and events == []
    connection.data_to_send()


# -- the post-handshake connection -----------------------------------------------

#: C0 + C1 + C2 of a simple-handshake client.
_SIMPLE_HANDSHAKE = b"\x03" + bytes(8) + _random(PACKET_SIZE - 8) + bytes(PACKET_SIZE)

#: Bit 7 of the first byte: limits small enough for fuzzed inputs to reach.
SMALL_LIMITS = Limits(max_message_size=2048, max_chunk_size=4096, max_chunk_streams=8, max_buffered_bytes=4096,
                      value_budget=ValueBudget(max_nodes=500, max_bytes=4096))


def _check_events(events, budget=None):
    """Every event is an Event; decoded values are within the budget; refusals are short and one line."""
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, Event), f"not an event: {_short(event)}"
        if isinstance(event, MessageRefused):
            assert len(event.name) <= 120 and len(event.reason) <= 400 and "\n" not in event.reason, \
                f"refusal too long to log: {_short(event.reason)}"
            assert isinstance(event.transaction_id, (int, float)) and not isinstance(event.transaction_id, bool)
        elif budget is not None and isinstance(event, CommandReceived):
            measure([event.name, event.transaction_id, event.command_object, *event.arguments], budget)
        elif budget is not None and isinstance(event, DataReceived):
            measure(event.values, budget)


def _open_connection(limits):
    connection = Connection(Role.SERVER, limits=limits, random_bytes=_random)
    events = connection.receive_data(_SIMPLE_HANDSHAKE)
    assert connection.state is State.OPEN and events == [HandshakeCompleted(digest_scheme=None)]
    connection.data_to_send()
    return connection


def _feed(limits, stream, size):
    connection = _open_connection(limits)
    events = []
    replies = ChunkReader()   # what the server answers (acks, ping responses) must be chunks a client reads
    try:
        for piece in _pieces(stream, size):
            new = connection.receive_data(piece)
            _check_events(new, limits.value_budget)
            events += new
            out = connection.data_to_send()
            assert isinstance(out, bytes)
            try:
                replies.feed(out)
            except RemoteProtocolError as exc:
                raise AssertionError(f"the server's own replies do not parse: {exc.reason}") from None
    except RemoteProtocolError as exc:
        assert connection.state is State.CLOSED
        return type(exc), exc.reason
    assert connection.state is State.OPEN
    return events


def connection(data: bytes):
    if not data:
        return
    control, stream = data[0], data[1:]
    limits = SMALL_LIMITS if control & 0x80 else Limits()
    size = control & 0x7F
    whole = _feed(limits, stream, 0)
    if size:
        cut = _feed(limits, stream, size)
        if isinstance(whole, tuple) or isinstance(cut, tuple):
            # Both must refuse the stream.  Which error names it may differ: ChunkReader.feed parses
            # every chunk of one read before the Connection decodes any message (reported, not fixed).
            assert isinstance(whole, tuple) and isinstance(cut, tuple), \
                f"outcome depends on how the bytes are cut: {_short(whole)} != {_short(cut)}"
        else:
            _same_events(whole, cut)


# -- AMF decoders ------------------------------------------------------------------

#: The budget AMF targets decode with: small, so that over-budget values are common and fast.
AMF_BUDGET = ValueBudget(max_nodes=2000, max_bytes=64 * 1024)


def json_bound(size):
    """Most JSON text ``amf_to_json`` may write for values of measured ``size``.

    A string of n characters is at most 6n escaped; a scalar (8 measured
    bytes) at most ~26 characters (a double's repr, a date); each node
    adds at most its separators and quotes.
    """
    return 6 * size.bytes + 40 * size.nodes + 16


#: amf_to_json's own budget check, where this version of mapping.py has one: a value within the
#: decoder's budget must be within the mapping's.
_MAPPING_BUDGET = {"budget": AMF_BUDGET} if "budget" in inspect.signature(mapping.amf_to_json).parameters else {}


def _amf(data, amf3):
    try:
        values = amf.decode_values(data, amf3=amf3, budget=AMF_BUDGET)
    except (RemoteProtocolError, ValueOverBudget):
        return
    assert isinstance(values, list)
    size = measure(values, AMF_BUDGET)   # decode_values said it fits: it must
    written = 0
    for index, value in enumerate(values):
        try:
            mapped = mapping.amf_to_json(value, path=f"params[{index}]", **_MAPPING_BUDGET)
        except mapping.MappingError as exc:
            assert "\n" not in str(exc)
            continue
        text = json.dumps(mapped, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        written += len(text)
        assert written <= json_bound(size), f"mapping wrote {written} characters for {size}"
    for value in values:
        assert len(brief(value)) <= 2 * BRIEF + 40, f"brief() too long: {_short(brief(value))}"
    # Re-encoded as they came, and (as echo or the gateway answer an AMF0 client) AMF3 values as AMF0.
    for amf3_out in ((True, False) if amf3 else (False,)):
        try:
            encoded = amf.encode_values(values, amf3=amf3_out)
        except LocalProtocolError:
            continue
        try:
            again = amf.decode_values(encoded, amf3=amf3_out, budget=AMF_BUDGET)
        except ValueOverBudget as exc:
            raise AssertionError(f"re-encoded values no longer fit their budget: {exc}") from None
        except RemoteProtocolError as exc:
            raise AssertionError(f"our own encoding does not decode: {exc.reason}: {encoded[:200].hex()}") from None
        same(values, again, amf0=not amf3_out)


def amf0(data: bytes):
    _amf(data, amf3=False)


def amf3(data: bytes):
    # The body of a type 15/17 message starts with the format byte 0: give it
    # for free so that mutations are spent on the values.
    _amf(b"\x00" + data, amf3=True)


# -- JSON -> AMF ---------------------------------------------------------------------

#: A result schema that reaches every kind of subschema json_to_amf walks.
RESULT_SCHEMA = {
    "$defs": {"when": {"type": "string", "format": "date-time"},
              "blob": {"type": "string", "contentEncoding": "base64"}},
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "array", "prefixItems": [{"$ref": "#/$defs/blob"}], "items": {"$ref": "#/$defs/when"}},
        {"type": "object",
         "properties": {"at": {"$ref": "#/$defs/when"}, "data": {"$ref": "#/$defs/blob"},
                        "list": {"type": "array", "items": {"$ref": "#"}}},
         "patternProperties": {"^t_": {"$ref": "#/$defs/when"}, "^b_": {"$ref": "#/$defs/blob"}},
         "additionalProperties": {"$ref": "#"}},
    ],
}


def _json_normal(value, wire=True):
    """What a JSON value maps back to: an integral double is an integer, a non-finite one null.

    With ``wire``, after a trip to the client and back: every number travels
    as a double (or an int29, exactly), so an integer beyond 2**53 comes back
    as the nearest double.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not wire:
        return value
    if isinstance(value, (int, float)):
        number = float(value)
        if not math.isfinite(number):
            return None
        return int(number) if number.is_integer() and abs(number) <= 2 ** 53 else number
    if isinstance(value, list):
        return [_json_normal(item, wire) for item in value]
    return {key: _json_normal(item, wire) for key, item in value.items()}


def json_target(data: bytes):
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):   # what rpc._decode refuses
        return
    for schema in (None, RESULT_SCHEMA):
        for amf3_ in (True, False):
            try:
                converted = mapping.json_to_amf(value, schema, encoding=3 if amf3_ else 0)
            except mapping.MappingError as exc:
                assert "\n" not in str(exc)
                continue
            try:
                local = mapping.amf_to_json(converted, path="result")
            except mapping.MappingError as exc:
                raise AssertionError(f"a value made from JSON does not map back to JSON: {exc}") from None
            if schema is None:
                assert _json_equal(local, _json_normal(value, wire=False)), \
                    f"JSON -> AMF -> JSON changed it: {_short(local)}"
            try:
                encoded = amf.encode_values(["_result", 1, None, converted], amf3=amf3_)
            except LocalProtocolError:
                continue
            try:
                decoded = amf.decode_values(encoded, amf3=amf3_)
            except RemoteProtocolError as exc:
                raise AssertionError(f"our own encoding does not decode: {exc.reason}") from None
            assert len(decoded) == 4 and decoded[:3] == ["_result", 1, None]
            if not amf3_:
                assert not _amf3_only(decoded[3]), "a value only AMF3 can carry, made for an AMF0 client"
            try:
                back = mapping.amf_to_json(decoded[3], path="result")
            except mapping.MappingError as exc:
                raise AssertionError(f"the client's copy does not map back to JSON: {exc}") from None
            assert _json_equal(back, _json_normal(local)), \
                f"AMF{3 if amf3_ else 0} round trip changed {_short(local)} into {_short(back)}"


def _amf3_only(value):
    """Does ``value`` (a tree, as JSON makes) hold a ByteArray, Vector or Dictionary (AMF3-switched in AMF0)?"""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, (amf.ByteArray, amf.Vector, amf.Dictionary)):
            return True
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _json_equal(a, b):
    """Equality of plain JSON values, bool distinct from int, NaN equal to NaN."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    return type(a) is type(b) and a == b if not isinstance(a, (int, float)) else (
        isinstance(b, (int, float)) and a == b)


# -- routes.cfg --------------------------------------------------------------------------

_ROUTES_DIR = None


def _routes_dir():
    global _ROUTES_DIR
    if _ROUTES_DIR is None or not os.path.isdir(_ROUTES_DIR):   # (a /tmp cleaner may have removed it)
        _ROUTES_DIR = tempfile.mkdtemp(prefix="fmspy-fuzz-routes-")
        atexit.register(shutil.rmtree, _ROUTES_DIR, True)
        with open(os.path.join(_ROUTES_DIR, "valid.json"), "w") as stream:
            json.dump({"type": "array", "items": [{"type": "integer"}]}, stream)
    return _ROUTES_DIR


def routes(data: bytes):
    directory = _routes_dir()
    text, _, schema = data.partition(b"\0")
    path = os.path.join(directory, "routes.cfg")
    with open(path, "wb") as stream:
        stream.write(text)
    with open(os.path.join(directory, "fuzzed.json"), "wb") as stream:
        stream.write(schema)
    settings = GatewaySettings(application="GatewayApplication:app", source=os.path.join(directory, "fmspy.cfg"),
                               routes_section="app", routes_file=path, endpoint="http://127.0.0.1:8080/rpc")
    try:
        loaded = load_routes(settings)
    except ConfigError as exc:
        assert "\n" not in str(exc), "a config error of more than one line"
        return
    for name, route in loaded.methods.items():
        assert loaded.route(name) is route
    for name, route in loaded.hooks.items():
        assert loaded.hook(name) is route


# -- the whole server glue: protocol, session, applications ------------------------------------------------

class _Logged:
    """Errors the server logged while one input ran: a traceback or an error line is a finding."""

    def __init__(self):
        import logging
        from twisted.logger import globalLogPublisher
        self.found = []

        class Handler(logging.Handler):
            def emit(handler, record):
                if record.levelno >= logging.ERROR or record.exc_info:
                    self.found.append(f"{record.name}: {record.getMessage()[:500]}"
                                      + (" (with a traceback)" if record.exc_info else ""))

        logging.getLogger().addHandler(Handler(level=logging.DEBUG))
        globalLogPublisher.addObserver(self._twisted)

    def _twisted(self, event):
        from twisted.logger import LogLevel, formatEvent
        failure = event.get("log_failure")
        if failure is not None or event.get("log_level") in (LogLevel.error, LogLevel.critical):
            text = formatEvent(event)[:500]
            if failure is not None:
                text += f": {failure.getErrorMessage()[:300]}\n{failure.getTraceback()[-1500:]}"
            self.found.append(text)


_LOGGED = None
_SERVER = None


def _server():
    """What the session target needs of Twisted, the applications and the glue, imported on first use
    (``run.py`` calls this inside atheris's instrumentation for that target only: it costs start-up time)."""
    global _SERVER
    if _SERVER is None:
        from twisted.internet.error import ConnectionDone
        from twisted.internet.task import Clock
        from twisted.internet.testing import StringTransport
        from twisted.python.failure import Failure

        from fmspy_gateway.app.chat import ChatApplication
        from fmspy_gateway.app.echo import EchoApplication
        from fmspy_gateway.app.live_application import LiveApplication
        from fmspy_gateway.config import RTMPConfig
        from fmspy_gateway.server.protocol import RTMPServerFactory
        _SERVER = dataclasses.make_dataclass("Server", ["ConnectionDone", "Clock", "StringTransport", "Failure",
                                                        "ChatApplication", "EchoApplication", "LiveApplication",
                                                        "RTMPConfig", "RTMPServerFactory"])(
            ConnectionDone, Clock, StringTransport, Failure, ChatApplication, EchoApplication, LiveApplication,
            RTMPConfig, RTMPServerFactory)
    return _SERVER


def session(data: bytes):
    """A full server (RTMPServerFactory with echo, chat and live applications on a Clock) fed chunk bytes.

    Same input format as ``connection``.  Nothing may escape ``dataReceived``
    or a timer, and nothing may be logged as an error or with a traceback.
    """
    global _LOGGED
    if _LOGGED is None:
        _LOGGED = _Logged()
    if not data:
        return
    x = _server()
    control, stream = data[0], data[1:]
    size = control & 0x7F
    clock = x.Clock()
    applications = {"echotest": x.EchoApplication("echotest"), "chat": x.ChatApplication("chat"),
                    "live": x.LiveApplication("live")}
    config = x.RTMPConfig(limits=SMALL_LIMITS) if control & 0x80 else x.RTMPConfig()
    factory = x.RTMPServerFactory(applications, config, reactor=clock)
    protocol = factory.buildProtocol(None)
    transport = x.StringTransport()
    protocol.makeConnection(transport)
    del _LOGGED.found[:]
    protocol.dataReceived(_SIMPLE_HANDSHAKE)
    for piece in _pieces(stream, size):
        if transport.disconnecting:
            break
        protocol.dataReceived(piece)
        clock.advance(0.01)
    for _ in range(3):
        clock.advance(1)
    if not transport.disconnecting:
        transport.loseConnection()
    protocol.connectionLost(x.Failure(x.ConnectionDone()))
    clock.advance(60)
    found = list(_LOGGED.found)
    assert not found, "the server logged an error: " + " | ".join(found)[:3000]


#: name -> what to import inside atheris's instrumentation before that target runs.
SETUP = {"session": _server}

#: name -> target function.
TARGETS = {
    "handshake": handshake,
    "connection": connection,
    "amf0": amf0,
    "amf3": amf3,
    "json": json_target,
    "routes": routes,
    "session": session,
}
