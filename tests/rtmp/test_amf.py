"""Tests of fmspy_gateway.rtmp.amf, the AMF layer over pyamf.

Every test runs on each pyamf build present (the compiled ``cpyamf`` and the
pure-Python one), through ``amf._CODECS``; the public functions use the first.
The fast path's comparisons with the full path also run on each build of
``amf_plain`` present (compiled by Cython, and its Python source).
Tests named ``test_fault_*`` pin one py3amf fault each and show, where cheap,
that bare pyamf has it.
"""

import datetime
import gc
import importlib.util
import math
import os
import random
import struct
import subprocess
import sys
import tracemalloc
import zlib
from unittest import mock

import pyamf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmspy_gateway.rtmp import amf, amf_plain
from fmspy_gateway.rtmp.amf import (
    ASObject, ByteArray, Dictionary, MixedArray, TypedObject, Undefined, Vector, XML,
)
from fmspy_gateway.rtmp.budget import ValueBudget, ValueOverBudget
from fmspy_gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError

CODEC_NAMES = sorted(amf._CODECS)
HAS_COMPILED = "compiled" in amf._CODECS


def _python_source_of(module):
    """``module`` loaded again from its ``.py``, under another name: the Python beside a compiled build."""
    path = os.path.join(os.path.dirname(module.__file__), module.__name__.rsplit(".", 1)[1] + ".py")
    spec = importlib.util.spec_from_file_location(module.__name__ + "_as_python", path)
    source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source)
    return source


#: The builds of the fast path to compare with the full one: its Python source always, the extension if built.
PLAIN_BUILDS = {"python": amf_plain if not amf_plain.COMPILED else _python_source_of(amf_plain),
                **({"compiled": amf_plain} if amf_plain.COMPILED else {})}


def fast_path_of(build):
    """The AMF layer running on that build of the fast path (amf.py's names for it patched)."""
    module = PLAIN_BUILDS[build]
    return mock.patch.multiple(amf, plain_decode=module.plain_decode, plain_encode=module.plain_encode,
                               NotPlain=module.NotPlain)


@pytest.fixture(params=CODEC_NAMES)
def codec(request):
    return amf._CODECS[request.param]


# -- helpers -------------------------------------------------------------------

def h(text):
    return bytes.fromhex(text.replace(" ", ""))


def dbl(x):
    return struct.pack(">d", x).hex()


def u29(n):
    if n < 0x80:
        return bytes([n]).hex()
    if n < 0x4000:
        return bytes([n >> 7 | 0x80, n & 0x7F]).hex()
    if n < 0x200000:
        return bytes([n >> 14 | 0x80, n >> 7 & 0x7F | 0x80, n & 0x7F]).hex()
    return bytes([n >> 22 | 0x80, n >> 15 & 0x7F | 0x80, n >> 8 & 0x7F | 0x80, n & 0xFF]).hex()


def utf(text):
    """AMF0 short string body (u16 length + UTF-8) as hex."""
    raw = text.encode()
    return struct.pack(">H", len(raw)).hex() + raw.hex()


def typed(alias, sealed=None, dynamic=True, **members):
    obj = TypedObject(alias)
    obj.update(members)
    if sealed is not None:
        obj.sealed_members = tuple(sealed)
        obj.dynamic = dynamic
    return obj


def assert_same(got, want, path="value", seen=None):
    """Equal, and of the same type all the way down (floats bit for bit, NaN == NaN)."""
    seen = set() if seen is None else seen
    if (id(got), id(want)) in seen:
        return
    seen.add((id(got), id(want)))
    assert type(got) is type(want), f"{path}: {got!r} is a {type(got).__name__}, want {type(want).__name__}"
    if isinstance(want, float):
        assert struct.pack(">d", got) == struct.pack(">d", want) or (math.isnan(got) and math.isnan(want)), \
            f"{path}: {got!r} != {want!r}"
    elif isinstance(want, XML):
        assert (str(got), got.document) == (str(want), want.document), f"{path}: {got!r} != {want!r}"
    elif isinstance(want, ByteArray):
        assert got.getvalue() == want.getvalue(), f"{path}: {got.getvalue()!r} != {want.getvalue()!r}"
    elif isinstance(want, list):
        if isinstance(want, Vector):
            assert (got.kind, got.fixed, got.type_name) == (want.kind, want.fixed, want.type_name), path
        assert len(got) == len(want), f"{path}: {len(got)} items, want {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{path}[{i}]", seen)
    elif isinstance(want, dict):
        if isinstance(want, TypedObject):
            assert got.alias == want.alias, path
            for attr in ("sealed_members", "dynamic"):
                if hasattr(want, attr):
                    assert getattr(got, attr) == getattr(want, attr), f"{path}.{attr}"
        assert set(got) == set(want), f"{path}: keys {sorted(map(repr, got))} != {sorted(map(repr, want))}"
        for key in want:
            assert type(next(k for k in got if k == key)) is type(key), f"{path}: key {key!r}"
            assert_same(got[key], want[key], f"{path}[{key!r}]", seen)
    elif isinstance(want, Dictionary):
        assert got.weak_keys == want.weak_keys, path
        assert len(got.pairs) == len(want.pairs), path
        for i, ((gk, gv), (wk, wv)) in enumerate(zip(got.pairs, want.pairs)):
            assert_same(gk, wk, f"{path}.key{i}", seen)
            assert_same(gv, wv, f"{path}.value{i}", seen)
    elif isinstance(want, datetime.datetime):
        assert got == want and got.tzinfo is None, f"{path}: {got!r} != {want!r}"
    elif want is Undefined or want is None:
        assert got is want, path
    elif hasattr(want, "__dict__") and not isinstance(want, (str, int)):
        assert_same(vars(got), vars(want), path, seen)
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def roundtrip(codec, value, amf3):
    """``value`` sent as the third value of a message: AMF3 in an AMF3 message."""
    return codec.decode_values(codec.encode_values(["x", 0, value], amf3=amf3), amf3=amf3)[2]


# -- the public API ------------------------------------------------------------

def test_public_api_uses_the_compiled_codec_when_present():
    assert (amf.AMF0, amf.AMF3) == (0, 3)
    name = amf.codec_name()
    assert name == ("cpyamf (compiled)" if HAS_COMPILED else "pyamf (pure Python)")
    assert amf._CODECS["pure"].name == "pyamf (pure Python)"
    wire = amf.encode_values(["a", 1.5], amf3=False)
    assert wire == h("02" + utf("a") + "00" + dbl(1.5))
    assert amf.decode_values(wire, amf3=False) == ["a", 1.5]
    assert amf.decode_values(bytearray(wire), amf3=False) == ["a", 1.5]
    assert amf.decode_values(memoryview(wire), amf3=False) == ["a", 1.5]


# -- wire table: (values, bytes) drive both encode and decode ------------------

def _self_list():
    items = []
    items.append(items)
    return [items]


def _self_vector():
    vector = Vector([], "object")
    vector.append(vector)
    return ["x", 0, vector]


def _shared_object():
    obj = ASObject(a=1)
    return ["x", 0, [obj, obj]]


def _shared_amf0():
    obj = ASObject()
    return [obj, obj]


FOO = "0f" + b"com.Foo".hex()  # AMF3 inline string "com.Foo"

WIRE = [
    # AMF0 messages (types 20/18)
    ("amf0-empty", False, lambda: [], ""),
    ("amf0-null-undefined-bools", False, lambda: [None, Undefined, True, False], "05 06 0101 0100"),
    ("amf0-integral-number-is-int", False, lambda: [1, 0], "00" + dbl(1.0) + "00" + dbl(0.0)),
    ("amf0-float", False, lambda: [1.5], "00" + dbl(1.5)),
    ("amf0-negative-zero", False, lambda: [-0.0], "00 8000000000000000"),
    ("amf0-1e308-stays-float", False, lambda: [1e308], "00 7fe1ccf385ebc8a0"),
    ("amf0-2**53-edges", False, lambda: [2 ** 53, -2 ** 53, float(2 ** 53 + 2)],
     "00 4340000000000000 00 c340000000000000 00 4340000000000001"),
    ("amf0-nan-inf", False, lambda: [math.nan, math.inf, -math.inf],
     "00 7ff8000000000000 00 7ff0000000000000 00 fff0000000000000"),
    ("amf0-strings", False, lambda: ["connect", "", "é😀"],
     "02" + utf("connect") + "02 0000 02 0006 c3a9 f09f9880"),
    ("amf0-long-string", False, lambda: ["a" * 65536], "0c 00010000" + "61" * 65536),
    ("amf0-object", False, lambda: [ASObject(a=1, b="x")],
     "03" + utf("a") + "00" + dbl(1) + utf("b") + "02" + utf("x") + "000009"),
    ("amf0-strict-array", False, lambda: [[1, "a"]], "0a 00000002 00" + dbl(1) + "02" + utf("a")),
    ("amf0-ecma-array", False, lambda: [MixedArray({"a": 1, 0: "x"})],
     "08 00000002" + utf("a") + "00" + dbl(1) + utf("0") + "02" + utf("x") + "000009"),
    ("amf0-typed-object", False, lambda: [typed("com.Foo", x=1)],
     "10" + utf("com.Foo") + utf("x") + "00" + dbl(1) + "000009"),
    ("amf0-date", False, lambda: [datetime.datetime(1970, 1, 1, 0, 0, 1)], "0b" + dbl(1000.0) + "0000"),
    ("amf0-date-before-1970-with-ms", False, lambda: [datetime.datetime(1969, 12, 31, 23, 59, 59, 500000)],
     "0b" + dbl(-500.0) + "0000"),
    ("amf0-xml", False, lambda: [XML("<a  b='1'/>", document=True)], "0f 0000000b" + b"<a  b='1'/>".hex()),
    ("amf0-reference", False, _shared_amf0, "03 000009 07 0000"),
    ("amf0-cycle", False, _self_list, "0a 00000001 07 0000"),
    ("amf0-bytearray-switched-to-amf3", False, lambda: [ByteArray(b"\x00\xff")], "11 0c 05 00ff"),
    ("amf0-vector-switched-to-amf3", False, lambda: [Vector([1, -1], "int")], "11 0d 05 00 00000001 ffffffff"),
    ("amf0-switched-values-share-amf3-tables", False,
     lambda: [Vector(["s"], "object"), Vector(["s"], "object")],
     "11 10 03 00 01 06 03 73 11 10 03 00 01 06 00"),
    # AMF3 messages (types 17/15)
    ("amf3-empty", True, lambda: [], "00"),
    ("amf3-flash-call", True, lambda: ["_result", 1, None, ASObject(a=1)],
     "00 02" + utf("_result") + "00" + dbl(1) + "11 01 11 0a 0b 01 03 61 04 01 01"),
    ("amf3-flex-null-command-name", True, lambda: [None, 0, None], "00 05 00" + dbl(0) + "11 01"),
    ("amf3-int29-edges", True, lambda: ["x", 0, 5, -1, 2 ** 28 - 1, -2 ** 28],
     "00 02" + utf("x") + "00" + dbl(0) + "11 04 05 11 04 ffffffff 11 04 bfffffff 11 04 c0808000"),
    ("amf3-doubles", True, lambda: ["x", 0, 3.0, -0.0, 1e308],
     "00 02" + utf("x") + "00" + dbl(0) + "11 05" + dbl(3.0) + "11 05" + dbl(-0.0) + "11 05" + dbl(1e308)),
    ("amf3-string-table-shared-across-switches", True, lambda: ["x", 0, "abc", "abc", ""],
     "00 02" + utf("x") + "00" + dbl(0) + "11 06 07 616263 11 06 00 11 06 01"),
    ("amf3-undefined-bools-null", True, lambda: ["x", 0, Undefined, True, False, None],
     "00 02" + utf("x") + "00" + dbl(0) + "11 00 11 03 11 02 11 01"),
    ("amf3-array-cycle", True, lambda: ["x", 0] + _self_list(),
     "00 02" + utf("x") + "00" + dbl(0) + "11 09 03 01 09 00"),
    ("amf3-object-reference", True, _shared_object,
     "00 02" + utf("x") + "00" + dbl(0) + "11 09 05 01 0a 0b 01 03 61 04 01 01 0a 02"),
    ("amf3-empty-key-as-sealed-member", True, lambda: ["x", 0, ASObject({"": 1, "a": 2})],
     "00 02" + utf("x") + "00" + dbl(0) + "11 0a 1b 01 01 04 01 03 61 04 02 01"),
    ("amf3-typed-dynamic", True, lambda: ["x", 0, typed("com.Foo", (), True, x=1)],
     "00 02" + utf("x") + "00" + dbl(0) + "11 0a 0b" + FOO + "03 78 04 01 01"),
    ("amf3-typed-sealed", True, lambda: ["x", 0, typed("com.Foo", ("x",), False, x=1)],
     "00 02" + utf("x") + "00" + dbl(0) + "11 0a 13" + FOO + "03 78 04 01"),
    ("amf3-trait-reference", True, lambda: ["x", 0, [typed("com.Foo", x=1), typed("com.Foo", x=2)]],
     "00 02" + utf("x") + "00" + dbl(0) + "11 09 05 01 0a 0b" + FOO + "03 78 04 01 01 0a 01 02 04 02 01"),
    ("amf3-date", True, lambda: ["x", 0, datetime.datetime(1970, 1, 1, 0, 0, 1)],
     "00 02" + utf("x") + "00" + dbl(0) + "11 08 01" + dbl(1000.0)),
    ("amf3-xml-e4x-and-document", True, lambda: ["x", 0, XML("<a/>"), XML("<a/>", document=True)],
     "00 02" + utf("x") + "00" + dbl(0) + "11 0b 09 3c612f3e 11 07 09 3c612f3e"),
    ("amf3-bytearray", True, lambda: ["x", 0, ByteArray(b"\x00\xff")],
     "00 02" + utf("x") + "00" + dbl(0) + "11 0c 05 00ff"),
    ("amf3-mixed-array", True, lambda: ["x", 0, MixedArray({"a": 1, 0: "x"})],
     "00 02" + utf("x") + "00" + dbl(0) + "11 09 03 03 61 04 01 01 06 03 78"),
    ("amf3-vectors", True, lambda: [
        "x", 0, Vector([1, -1], "int"), Vector([1, 2 ** 32 - 1], "uint", fixed=True), Vector([1.5], "double"),
        Vector(["a", 1], "object"), Vector([None], "object", type_name="com.Foo")],
     "00 02" + utf("x") + "00" + dbl(0) + "11 0d 05 00 00000001 ffffffff 11 0e 05 01 00000001 ffffffff"
     "11 0f 03 00" + dbl(1.5) + "11 10 05 00 01 06 03 61 04 01 11 10 03 00" + FOO + "01"),
    ("amf3-vector-cycle", True, _self_vector, "00 02" + utf("x") + "00" + dbl(0) + "11 10 03 00 01 10 00"),
    ("amf3-dictionaries", True, lambda: [
        "x", 0, Dictionary([("k", 1)]), Dictionary([(ASObject(a=1), "v")], weak_keys=True)],
     "00 02" + utf("x") + "00" + dbl(0) + "11 11 03 00 06 03 6b 04 01"
     "11 11 03 01 0a 0b 01 03 61 04 01 01 06 03 76"),
]
WIRE_IDS = [row[0] for row in WIRE]


@pytest.mark.parametrize("name, amf3, values, wire", WIRE, ids=WIRE_IDS)
def test_encode_table(codec, name, amf3, values, wire):
    assert codec.encode_values(values(), amf3=amf3).hex() == h(wire).hex()


@pytest.mark.parametrize("name, amf3, values, wire", WIRE, ids=WIRE_IDS)
def test_decode_table(codec, name, amf3, values, wire):
    assert_same(codec.decode_values(h(wire), amf3=amf3), values())


@pytest.mark.parametrize("name, amf3, values, wire", WIRE, ids=WIRE_IDS)
def test_echo_is_byte_exact(codec, name, amf3, values, wire):
    assert codec.encode_values(codec.decode_values(h(wire), amf3=amf3), amf3=amf3) == h(wire)


@pytest.mark.parametrize("name, amf3, values, wire", WIRE, ids=WIRE_IDS)
def test_every_truncation_fails_unless_at_a_value_boundary(codec, name, amf3, values, wire):
    wire = h(wire)
    expected = values()
    # The encoding of the first k values is a prefix of the whole: those decode.
    boundaries = {len(codec.encode_values(expected[:k], amf3=amf3)): k for k in range(len(expected) + 1)}
    cuts = range(len(wire)) if len(wire) < 400 else [*range(50), *random.Random(0).sample(range(len(wire)), 50)]
    for cut in cuts:
        if cut in boundaries:
            assert_same(codec.decode_values(wire[:cut], amf3=amf3), expected[:boundaries[cut]])
        else:
            with pytest.raises(RemoteProtocolError):
                codec.decode_values(wire[:cut], amf3=amf3)


def test_references_and_cycles_keep_identity(codec):
    shared = ASObject(a=1)
    circular = ASObject()
    circular["self"] = circular
    dictionary = Dictionary()
    dictionary.pairs.append((dictionary, dictionary))
    vector = Vector([1.5], "double")
    for amf3 in (False, True):
        values = ["x", 0, [shared, shared], circular, dictionary, [vector, vector]]
        got = codec.decode_values(codec.encode_values(values, amf3=amf3), amf3=amf3)
        assert got[2][0] is got[2][1]
        assert got[3]["self"] is got[3]
        assert got[4].pairs[0][0] is got[4] and got[4].pairs[0][1] is got[4]
        assert got[5][0] is got[5][1] and got[5][0] == vector


def test_switch_to_amf3_is_not_sticky(codec):
    # AMF3 string, then a plain AMF0 string, then an AMF3 string reference to the first.
    wire = h("00 11 06 03 61 02" + utf("b") + "11 06 00")
    assert codec.decode_values(wire, amf3=True) == ["a", "b", "a"]


# -- py3amf faults, one test each ---------------------------------------------

def test_fault_empty_key_amf3_object(codec):
    value = ASObject({"": 1, "a": 2})
    # Bare pyamf writes "" as a dynamic member name, i.e. the end marker: the
    # rest of the object spills into the stream and decoding fails.
    raw = pyamf.encode(value, encoding=pyamf.AMF3).getvalue()
    assert raw == h("0a 0b 01 01 04 01 03 61 04 02 01")
    with pytest.raises(Exception):
        list(pyamf.decode(raw, encoding=pyamf.AMF3))
    wire = codec.encode_values(["x", 0, value], amf3=True)
    assert wire.endswith(h("11 0a 1b 01 01 04 01 03 61 04 02 01"))  # "" is a sealed trait member
    assert_same(codec.decode_values(wire, amf3=True)[2], value)
    # pyamf's decoder was right all along: it reads our bytes.
    assert pyamf.decode(wire[wire.index(h("0a 1b")):], encoding=pyamf.AMF3).readElement() == {"": 1, "a": 2}
    assert_same(roundtrip(codec, typed("com.Foo", **{"": 1, "b": 2}), True), typed("com.Foo", **{"": 1, "b": 2}))


def test_fault_empty_key_amf0_is_refused(codec):
    for value in (ASObject({"": 1}), {"": 1, "a": 2}, MixedArray({"": 1}), typed("com.Foo", **{"": 1})):
        with pytest.raises(LocalProtocolError, match="empty property name"):
            codec.encode_values([value], amf3=False)
    with pytest.raises(LocalProtocolError):
        codec.encode_values(["x", 0, MixedArray({"": 1})], amf3=True)  # AMF3 arrays cannot either


def test_fault_typed_object_keeps_its_alias(codec):
    value = typed("com.Foo", x=1)
    assert b"com.Foo" not in pyamf.encode(value, encoding=pyamf.AMF3).getvalue()  # bare pyamf drops it
    assert b"com.Foo" not in pyamf.encode(value, encoding=pyamf.AMF0).getvalue()
    for amf3 in (False, True):
        got = roundtrip(codec, value, amf3)
        assert type(got) is TypedObject and got.alias == "com.Foo" and got == {"x": 1}


def test_fault_typed_object_keeps_its_sealed_traits(codec):
    # What Flash sends for a [RemoteClass] with two properties: a sealed, non-dynamic trait.
    wire = h("00 11 0a 23" + FOO + "03 61 03 62 04 01 06 03 78")
    got = codec.decode_values(wire, amf3=True)[0]
    assert (got.alias, got.sealed_members, got.dynamic, dict(got)) == ("com.Foo", ("a", "b"), False, {"a": 1, "b": "x"})
    assert codec.encode_values(["x", 0, got], amf3=True).endswith(wire[1:])
    got["extra"] = 1
    with pytest.raises(LocalProtocolError, match="not dynamic"):
        codec.encode_values(["x", 0, got], amf3=True)


def test_fault_bytes_encode_as_bytearray(codec):
    raw = pyamf.encode(b"\xff\x00", encoding=pyamf.AMF3).getvalue()
    assert raw[:1] == b"\x06"  # bare pyamf: a string marker with invalid UTF-8
    for value in (b"\xff\x00", bytearray(b"\xff\x00"), memoryview(b"\xff\x00")):
        assert codec.encode_values(["x", 0, value], amf3=True).endswith(h("11 0c 05 ff00"))
        assert codec.encode_values([value], amf3=False) == h("11 0c 05 ff00")
        for amf3 in (False, True):
            got = roundtrip(codec, value, amf3)
            assert type(got) is ByteArray and got.getvalue() == b"\xff\x00"


DATES = [
    (datetime.datetime(1969, 12, 31, 23, 59, 59, 500000), -500.0),
    (datetime.datetime(1900, 1, 1, 0, 0, 0, 123000), -2208988799877.0),
    (datetime.datetime(1970, 1, 1), 0.0),
    (datetime.datetime(2024, 2, 29, 12, 30, 45, 678000), 1709209845678.0),
]


@pytest.mark.parametrize("date, ms", DATES, ids=[d.isoformat() for d, _ in DATES])
def test_fault_dates_before_1970_with_milliseconds(codec, date, ms):
    if date.year < 1970 and date.microsecond:
        assert pyamf.encode(date, encoding=pyamf.AMF3).getvalue() != h("08 01" + dbl(ms))  # bare pyamf: 1 s off
    assert codec.encode_values([date], amf3=False) == h("0b" + dbl(ms) + "0000")
    assert codec.encode_values(["x", 0, date], amf3=True).endswith(h("11 08 01" + dbl(ms)))
    assert codec.decode_values(h("0b" + dbl(ms) + "0000"), amf3=False) == [date]
    assert codec.decode_values(h("00 11 08 01" + dbl(ms)), amf3=True) == [date]


def test_aware_datetimes_are_sent_as_their_utc_instant(codec):
    aware = datetime.datetime(2020, 1, 1, 1, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    utc = datetime.datetime(2019, 12, 31, 23, 30)
    for amf3 in (False, True):
        assert_same(roundtrip(codec, aware, amf3), utc)
    assert_same(roundtrip(codec, datetime.date(2020, 5, 17), True), datetime.datetime(2020, 5, 17))


def test_fault_amf0_numbers(codec):
    big = list(pyamf.decode(h("00 7fe1ccf385ebc8a0 00 8000000000000000"), encoding=pyamf.AMF0))
    assert type(big[0]) is int and big[1] == 0 and math.copysign(1, big[1]) == 1  # bare pyamf
    got = codec.decode_values(h("00 7fe1ccf385ebc8a0 00 8000000000000000"), amf3=False)
    assert got[0] == 1e308 and type(got[0]) is float
    assert type(got[1]) is float and math.copysign(1, got[1]) == -1


def test_fault_xml_is_kept_verbatim(codec):
    text = '<r  z="1" a="2"><!-- c --><x/>\n  tail &amp; </r>'
    raw = pyamf.decode(h("0f" + struct.pack(">I", len(text)).hex() + text.encode().hex()),
                       encoding=pyamf.AMF0).readElement()
    assert not isinstance(raw, str)  # bare pyamf: an ElementTree element, text rewritten on output
    for amf3 in (False, True):
        for document in (False, True):
            got = roundtrip(codec, XML(text, document), amf3)
            assert type(got) is XML and str(got) == text
            assert got.document == (document or not amf3)  # AMF0 has one XML type: XMLDocument


def test_fault_bytearray_is_not_inflated(codec):
    body = zlib.compress(b"hello")
    wire = h("00 11 0c" + u29(len(body) << 1 | 1) + body.hex())
    assert pyamf.decode(wire[2:], encoding=pyamf.AMF3).readElement().getvalue() == b"hello"  # bare pyamf
    got = codec.decode_values(wire, amf3=True)[0]
    assert got.getvalue() == body
    assert codec.encode_values(["x", 0, got], amf3=True).endswith(wire[1:])


def test_fault_vectors_decode(codec):
    wire = h("0d 05 00 00000001 ffffffff")
    with pytest.raises(pyamf.DecodeError):
        pyamf.decode(wire, encoding=pyamf.AMF3).readElement()  # bare pyamf
    assert_same(codec.decode_values(h("00 11") + wire, amf3=True), [Vector([1, -1], "int")])


def test_fault_dictionary_decodes(codec):
    wire = h("11 03 00 06 03 6b 04 01")
    try:
        raw = pyamf.decode(wire, encoding=pyamf.AMF3).readElement()
    except pyamf.BaseError:
        raw = None
    assert not isinstance(raw, Dictionary)  # bare pyamf: an error or a (dict, flag) tuple
    assert_same(codec.decode_values(h("00 11") + wire, amf3=True), [Dictionary([("k", 1)])])


def test_fault_mixed_arrays(codec):
    with pytest.raises(KeyError):
        pyamf.encode(MixedArray({1: "a", 2: "b"}), encoding=pyamf.AMF3)  # bare pyamf
    shuffled = pyamf.decode(pyamf.encode(MixedArray({0: "a", 2: "b"}), encoding=pyamf.AMF3).getvalue(),
                            encoding=pyamf.AMF3).readElement()
    assert shuffled == ["a", "b"]  # bare pyamf moved key 2 to index 1
    # Only the run of int keys 0..n-1 is the dense part; any other key is named.
    for value, expected in ((MixedArray({1: "a", 2: "b"}), MixedArray({"1": "a", "2": "b"})),
                            (MixedArray({0: "a", 2: "b", "n": None}), MixedArray({0: "a", "2": "b", "n": None})),
                            (MixedArray({-1: 0}), MixedArray({"-1": 0}))):
        assert_same(roundtrip(codec, value, True), expected)
    # AMF0: keys that are not canonical indexes stay strings (bare pyamf: int("01") == 1)
    wire = h("08 00000003" + utf("01") + "02" + utf("a") + utf(" 1") + "05" + utf("2") + "05 000009")
    assert dict(pyamf.decode(wire, encoding=pyamf.AMF0).readElement()) == {1: None, 2: None}
    assert_same(codec.decode_values(wire, amf3=False), [MixedArray({"01": "a", " 1": None, 2: None})])


def test_fault_amf0_dates_are_not_referenceable(codec):
    # A date, then an object sent twice: per the AMF0 spec the reference 0 is the object.
    wire = h("0b" + dbl(0) + "0000 03 000009 07 0000")
    raw = list(pyamf.decode(wire, encoding=pyamf.AMF0))
    assert isinstance(raw[2], datetime.datetime)  # bare pyamf counted the date
    got = codec.decode_values(wire, amf3=False)
    assert got[2] is got[1] and type(got[1]) is ASObject
    date = datetime.datetime(2000, 1, 1)
    shared = ASObject()
    wire = h("0b" + dbl(946684800000.0) + "0000" + "03 000009 07 0000")
    assert codec.encode_values([date, shared, shared], amf3=False) == wire


def _absent_module():
    for module, cls in (("tabnanny", "NannyNag"), ("wave", "Wave_read"), ("netrc", "netrc"), ("mailbox", "Mailbox")):
        if module not in sys.modules:
            return module, cls
    pytest.skip("every candidate module is already imported")


def test_fault_peer_cannot_make_pyamf_import_modules(codec):
    module, cls = _absent_module()
    name = f"{module}.{cls}"
    amf3_wire = h("00 11 0a 0b" + u29(len(name) << 1 | 1) + name.encode().hex() + "01")
    amf0_wire = h("10" + utf(name) + "000009")
    cache = dict(pyamf.CLASS_CACHE)
    for wire, amf3 in ((amf3_wire, True), (amf0_wire, False)):
        got = codec.decode_values(wire, amf3=amf3)[0]
        assert type(got) is TypedObject and got.alias == name
    assert module not in sys.modules
    assert pyamf.CLASS_CACHE == cache
    # Bare pyamf imports the module and registers the class (in a child process, not to pollute this one).
    probe = (f"import pyamf, sys; v = pyamf.decode({amf3_wire[2:]!r}, encoding=3).readElement(); "
             f"print({module!r} in sys.modules, type(v).__name__)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", cls]


@pytest.mark.skipif(not HAS_COMPILED, reason="the crash is in the compiled decoder")
def test_fault_unknown_trait_reference_crashes_bare_cpyamf_not_us(codec):
    probe = ("import cpyamf.amf3 as a, cpyamf.util as u; "
             "a.Decoder(stream=u.BufferedByteStream(b'\\x0a\\x01')).readElement()")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode < 0  # killed by SIGSEGV
    with pytest.raises(RemoteProtocolError, match="unknown trait reference"):
        codec.decode_values(h("00 11 0a 01"), amf3=True)


def test_fault_unknown_references_are_errors_not_none(codec):
    assert pyamf.decode(h("09 02"), encoding=pyamf.AMF3).readElement() is None  # bare pyamf
    for wire in ("11 09 02", "11 0a 02", "11 06 02", "11 08 00", "11 0c 00", "11 07 00", "11 0d 00", "11 11 00",
                 "11 0a 0b 01 02 04 01 01",  # a member name that is an unknown string reference
                 "11 09 03 02 04 01 01"):    # an array key that is one
        with pytest.raises(RemoteProtocolError, match="unknown"):
            codec.decode_values(h("00" + wire), amf3=True)
    with pytest.raises(RemoteProtocolError):
        codec.decode_values(h("07 0000"), amf3=False)


def test_fault_non_string_keys_are_refused_not_written_from_memory(codec):
    # Bare cpyamf writes these AMF0 keys from whatever memory the key object occupies.
    for value in ({None: 1}, {(1, 2): 1}, {b"k": 1}, {1.5: 1}):
        with pytest.raises(LocalProtocolError, match="keys must be strings"):
            codec.encode_values([value], amf3=False)
    for value in ({None: 1}, {(1, 2): 1}):
        with pytest.raises(LocalProtocolError):
            codec.encode_values(["x", 0, value], amf3=True)
    assert codec.decode_values(codec.encode_values([{1: "a"}], amf3=False), amf3=False) == [{"1": "a"}]


def test_externalizable_unknown_class_is_a_clear_error(codec):
    wire = h("00 11 0a 07" + FOO + "04 01")
    with pytest.raises(RemoteProtocolError, match="externalizable class 'com.Foo' is not registered"):
        codec.decode_values(wire, amf3=True)


# -- round trips ----------------------------------------------------------------

class Spam:
    """A registered application class."""

    def __init__(self, a=None, b=None):
        self.a, self.b = a, b


@pytest.fixture
def spam_alias():
    pyamf.register_class(Spam, "test.fmspy.Spam")
    yield
    pyamf.unregister_class("test.fmspy.Spam")


def battery():
    """(id, value, expected in AMF0, expected in AMF3): ``...`` means the value itself."""
    shared = ASObject(x=1)
    nested = ASObject(a=1, nested=ASObject(b=[1, 2, ASObject(c=None)]), s="é")
    rows = [
        ("none", None, ..., ...),
        ("undefined", Undefined, ..., ...),
        ("bools", [True, False], ..., ...),
        ("int-0", 0, ..., ...),
        ("int29-max", 2 ** 28 - 1, ..., ...),
        ("int29-min", -2 ** 28, ..., ...),
        ("int29-max+1", 2 ** 28, ..., float(2 ** 28)),
        ("int29-min-1", -2 ** 28 - 1, ..., float(-2 ** 28 - 1)),
        ("2**53", 2 ** 53, ..., float(2 ** 53)),
        ("-2**53", -2 ** 53, ..., float(-2 ** 53)),
        ("float-2**53+2", float(2 ** 53 + 2), ..., ...),
        ("int-beyond-2**53-becomes-double", 2 ** 53 + 1, 2 ** 53, float(2 ** 53)),
        ("float-3.0", 3.0, 3, ...),
        ("float-half", 0.5, ..., ...),
        ("negative-zero", -0.0, ..., ...),
        ("1e308", 1e308, ..., ...),
        ("denormal", 5e-324, ..., ...),
        ("inf", math.inf, ..., ...),
        ("-inf", -math.inf, ..., ...),
        ("nan", math.nan, ..., ...),
        ("empty-string", "", ..., ...),
        ("100KB-string", "x" * 100_000, ..., ...),
        ("non-bmp", "a😀𝄞\u0000\uffff", ..., ...),
        ("date", datetime.datetime(2020, 5, 17, 12, 30, 45, 123000), ..., ...),
        ("date-1969", datetime.datetime(1969, 12, 31, 23, 59, 59, 500000), ..., ...),
        ("date-1900", datetime.datetime(1900, 1, 1, 0, 0, 0, 123000), ..., ...),
        ("date-microseconds", datetime.datetime(2020, 1, 1, 0, 0, 0, 123456), ..., ...),
        ("date-1969-microseconds", datetime.datetime(1969, 12, 31, 23, 59, 59, 999999), ..., ...),
        ("date-year-1", datetime.datetime(1, 1, 1), ..., ...),
        ("date-9999", datetime.datetime(9999, 12, 31, 23, 59, 59, 999000), ..., ...),
        ("xml-document", XML("<a>\n <b/></a>", document=True), ..., ...),
        ("xml-e4x", XML("<a>\n <b/></a>"), XML("<a>\n <b/></a>", document=True), ...),
        ("bytearray-empty", ByteArray(b""), ..., ...),
        ("bytearray-all-bytes", ByteArray(bytes(range(256))), ..., ...),
        ("anonymous-nested", nested, ..., ...),
        ("typed", typed("com.example.User", name="ann", age=7, tags=["a"]), ..., ...),
        ("typed-in-list", [typed("a.B", x=1), typed("a.B", x=2), typed("a.C")], ..., ...),
        ("mixed", MixedArray({"a": 1, 0: "x", 1: "y"}), ..., ...),
        ("list-of-everything", [None, 1, "s", [], ASObject(), Undefined], ..., ...),
        ("vector-int", Vector([0, 1, -1, 2 ** 31 - 1, -2 ** 31], "int"), ..., ...),
        ("vector-uint", Vector([0, 2 ** 32 - 1], "uint", fixed=True), ..., ...),
        ("vector-double", Vector([0.5, -0.0, math.inf, 1e308], "double"), ..., ...),
        ("vector-object", Vector([ASObject(a=1), "s", None], "object", type_name="com.Foo"), ..., ...),
        ("vector-empty", Vector([], "int", fixed=True), ..., ...),
        ("dictionary", Dictionary([(ASObject(k=1), "object key"), ("s", 2), (1, [1]), (None, None)]), ..., ...),
        ("references", [shared, shared, [shared]], ..., ...),
    ]
    return rows


BATTERY_IDS = [row[0] for row in battery()]


@pytest.mark.parametrize("amf3", [False, True], ids=["amf0", "amf3"])
@pytest.mark.parametrize("index", range(len(BATTERY_IDS)), ids=BATTERY_IDS)
def test_round_trip_battery(codec, amf3, index):
    _, value, in_amf0, in_amf3 = battery()[index]
    expected = in_amf3 if amf3 else in_amf0
    got = roundtrip(codec, value, amf3)
    assert_same(got, value if expected is ... else expected)
    if isinstance(value, list) and len(value) > 1 and value[0] is value[1]:
        assert got[0] is got[1] and got[2][0] is got[0]


def test_round_trip_registered_class(codec, spam_alias):
    for amf3 in (False, True):
        got = roundtrip(codec, Spam(a=1, b=[Spam(a="x")]), amf3)
        assert type(got) is Spam and got.a == 1 and type(got.b[0]) is Spam and got.b[0].a == "x"


def test_round_trip_registered_externalizable_flex_class(codec):
    import pyamf.flex

    collection = pyamf.flex.ArrayCollection([1, "a", ASObject(k=2)])
    for amf3 in (False, True):
        wire = codec.encode_values(["x", 0, collection, collection], amf3=amf3)
        assert b"flex.messaging.io.ArrayCollection" in wire and wire.endswith(h("11 0a 00"))  # AMF3, then a reference
        got = codec.decode_values(wire, amf3=amf3)
        assert type(got[2]) is pyamf.flex.ArrayCollection and got[3] is got[2]
        assert_same(list(got[2]), [1, "a", ASObject(k=2)])


def test_amf3_message_puts_only_name_and_transaction_id_in_amf0(codec):
    wire = codec.encode_values(["call", 7, "third", 4], amf3=True)
    assert wire == h("00 02" + utf("call") + "00" + dbl(7) + "11 06 0b 7468697264 11 04 04")
    wire = codec.encode_values([ASObject(), True], amf3=True)  # not a str/number/None: switched
    assert wire == h("00 11 0a 0b 01 01 11 03")


# -- property tests -------------------------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers(-2 ** 53, 2 ** 53) | st.floats() | st.text(max_size=30))


def json_like(keys):
    return st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
                        max_leaves=25)


def normalize(value, amf3):
    """What the value model says comes back."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if amf3 and not -2 ** 28 <= value < 2 ** 28:
            return float(value)
        return value
    if isinstance(value, float):
        negative_zero = value == 0 and math.copysign(1, value) < 0
        if not amf3 and value.is_integer() and abs(value) <= 2 ** 53 and not negative_zero:
            return int(value)
        return value
    if isinstance(value, list):
        return [normalize(item, amf3) for item in value]
    return ASObject({key: normalize(item, amf3) for key, item in value.items()})


@pytest.mark.parametrize("name", CODEC_NAMES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_like(st.text(max_size=8)))
def test_property_round_trip_amf3(name, value):
    codec = amf._CODECS[name]
    assert_same(roundtrip(codec, value, True), normalize(value, True))


@pytest.mark.parametrize("name", CODEC_NAMES)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_like(st.text(min_size=1, max_size=8)))
def test_property_round_trip_amf0(name, value):
    codec = amf._CODECS[name]
    assert_same(roundtrip(codec, value, False), normalize(value, False))


NAMES = st.text("abcxyz_", min_size=1, max_size=6)
RICH_LEAVES = (
    SCALARS | st.just(Undefined)
    | st.datetimes().map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
    | st.text(max_size=20).map(lambda text: XML(text, document=True))
    | st.binary(max_size=20).map(ByteArray)
    | st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), max_size=4).map(lambda items: Vector(items, "int"))
    | st.lists(st.integers(0, 2 ** 32 - 1), max_size=4).map(lambda items: Vector(items, "uint", fixed=True))
    | st.lists(st.floats(), max_size=4).map(lambda items: Vector(items, "double"))
)


def rich(inner):
    return (st.lists(inner, max_size=4)
            | st.dictionaries(NAMES, inner, max_size=4).map(ASObject)
            | st.tuples(NAMES, st.dictionaries(NAMES, inner, max_size=3)).map(lambda t: typed("a." + t[0], **t[1]))
            | st.tuples(st.lists(inner, max_size=3), st.dictionaries(NAMES, inner, max_size=3)).map(
                lambda t: MixedArray({**dict(enumerate(t[0])), **t[1]}))
            | st.tuples(NAMES, st.lists(inner, max_size=3)).map(lambda t: Vector(t[1], "object", type_name=t[0]))
            | st.lists(st.tuples(inner, inner), max_size=3).map(Dictionary))


def normalize_rich(value, amf3):
    if isinstance(value, (Vector, Dictionary)):
        amf3 = True  # switched to AMF3 in an AMF0 message
    if isinstance(value, Vector):  # int/uint/double items are 32-bit ints and doubles on the wire: kept as they are
        items = [normalize_rich(v, amf3) for v in value] if value.kind == "object" else value
        return Vector(items, value.kind, value.fixed, value.type_name)
    if isinstance(value, Dictionary):
        return Dictionary([(normalize_rich(k, amf3), normalize_rich(v, amf3)) for k, v in value.pairs], value.weak_keys)
    if type(value) is MixedArray and amf3 and all(k in range(len(value)) for k in value):
        return [normalize_rich(value[i], amf3) for i in range(len(value))]  # no named keys: an AMF3 array
    if isinstance(value, dict) and type(value) is not ASObject:
        copy = type(value)(value.alias) if isinstance(value, TypedObject) else type(value)()
        copy.update((k, normalize_rich(v, amf3)) for k, v in value.items())
        return copy
    if isinstance(value, (XML, ByteArray, datetime.datetime)) or value is Undefined:
        return value
    return normalize(value, amf3) if not isinstance(value, (list, dict)) else (
        [normalize_rich(v, amf3) for v in value] if isinstance(value, list)
        else ASObject({k: normalize_rich(v, amf3) for k, v in value.items()}))


@pytest.mark.parametrize("amf3", [False, True], ids=["amf0", "amf3"])
@pytest.mark.parametrize("name", CODEC_NAMES)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.recursive(RICH_LEAVES, rich, max_leaves=15))
def test_property_round_trip_rich_values(name, amf3, value):
    codec = amf._CODECS[name]
    assert_same(roundtrip(codec, value, amf3), normalize_rich(value, amf3))


@pytest.mark.parametrize("name", CODEC_NAMES)
@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=64), amf3=st.booleans())
def test_property_garbage_is_a_remote_error_or_values(name, payload, amf3):
    try:
        values = amf._CODECS[name].decode_values(payload, amf3=amf3)
    except RemoteProtocolError as exc:
        assert exc.reason and "\n" not in exc.reason
    else:
        assert isinstance(values, list)


def _fuzz_seeds():
    shared = ASObject(x=1)
    values = ["call", 1, None, {"a": 1, "b": [1, 2.5, "x", shared, shared], "": 0}, typed("com.Foo", k="v"),
              XML("<a/>"), datetime.datetime(1969, 12, 31, 23, 59, 59, 500000), b"\x00\xff",
              Vector([1, 2], "int"), Vector(["a", shared], "object"), Dictionary([(ASObject(k=1), "v")], True),
              MixedArray({0: "a", 1: "b", "x": "y"})]
    codec = amf._CODECS["pure"]
    amf0_values = values[:3] + [{"a": 1, "b": [1, "x", shared, shared]}] + values[4:]
    return [(codec.encode_values(values, amf3=True), True), (codec.encode_values(amf0_values, amf3=False), False)]


FUZZ_SEEDS = _fuzz_seeds()


@pytest.mark.parametrize("name", CODEC_NAMES)
@settings(max_examples=400, deadline=None)
@given(seed=st.sampled_from(FUZZ_SEEDS), edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255),
                                                                    st.sampled_from("set insert delete")),
                                                         min_size=1, max_size=4))
def test_property_mutated_messages_are_a_remote_error_or_values(name, seed, edits):
    payload, amf3 = seed
    payload = bytearray(payload)
    for pos, byte, op in edits:
        pos %= len(payload)
        if op == "set":
            payload[pos] = byte
        elif op == "insert":
            payload.insert(pos, byte)
        else:
            del payload[pos]
    try:
        amf._CODECS[name].decode_values(bytes(payload), amf3=amf3)
    except RemoteProtocolError as exc:
        assert exc.reason and "\n" not in exc.reason


# -- malformed input ------------------------------------------------------------

MALFORMED = [
    ("amf0-garbage-marker", False, "ff", "marker 0xff"),
    ("amf0-movieclip", False, "04", "marker 0x04"),
    ("amf0-object-end-as-value", False, "09", "marker 0x09"),
    ("amf0-recordset", False, "0e", "marker 0x0e"),
    ("amf0-marker-0x12", False, "12", "marker 0x12"),
    ("amf3-marker-0x12", True, "00 11 12", "marker 0x12"),
    ("amf3-no-format-byte", True, "", "format byte"),
    ("amf3-bad-format-byte", True, "01 05", "format byte"),
    ("amf0-bad-utf8", False, "02 0001 ff", "UTF-8"),
    ("amf0-bad-utf8-key", False, "03 0001 ff 05 000009", "UTF-8"),
    ("amf0-bad-utf8-xml", False, "0f 00000001 ff", "UTF-8"),
    ("amf3-bad-utf8", True, "00 11 06 03 ff", "UTF-8"),
    ("amf3-bad-utf8-xml", True, "00 11 0b 03 ff", "UTF-8"),
    ("amf0-nan-date", False, "0b 7ff8000000000000 0000", "date"),
    ("amf0-huge-date", False, "0b" + dbl(1e300) + "0000", "date"),
    ("amf3-inf-date", True, "00 11 08 01 7ff0000000000000", "date"),
    ("vector-bad-fixed-flag", True, "00 11 0d 01 02", "fixed flag"),
    ("dictionary-bad-weak-flag", True, "00 11 11 01 05", "weak-keys flag"),
    ("amf0-reference-unknown", False, "07 0005", "reference"),
    ("amf3-object-trait-unknown", True, "00 11 0a 05", "trait"),
]


@pytest.mark.parametrize("name, amf3, wire, reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed(codec, name, amf3, wire, reason):
    with pytest.raises(RemoteProtocolError, match=reason) as info:
        codec.decode_values(h(wire), amf3=amf3)
    assert "\n" not in info.value.reason


BIG = (1 << 28) - 1  # the largest count a U29 length can claim

HOSTILE = [
    ("vector-int", "00 11 0d" + u29(BIG << 1 | 1) + "00" + "00" * 16),
    ("vector-uint", "00 11 0e" + u29(BIG << 1 | 1) + "00" + "00" * 16),
    ("vector-double", "00 11 0f" + u29(BIG << 1 | 1) + "00" + "00" * 16),
    ("vector-object", "00 11 10" + u29(BIG << 1 | 1) + "00 01" + "01" * 16),
    ("dictionary", "00 11 11" + u29(BIG << 1 | 1) + "00" + "01" * 16),
    ("bytearray", "00 11 0c" + u29(BIG << 1 | 1) + "00" * 16),
    ("amf3-string", "00 11 06" + u29(BIG << 1 | 1) + "61" * 16),
    ("amf3-xml", "00 11 0b" + u29(BIG << 1 | 1) + "61" * 16),
    ("amf3-dense-array", "00 11 09" + u29(BIG << 1 | 1) + "01" + "01" * 16),
    ("amf3-trait-members", "00 11 0a" + u29(((1 << 24) - 1) << 4 | 0x0B) + "01" + "01" * 16),
    ("amf0-strict-array", "0a ffffffff" + "05" * 16),
    ("amf0-long-string", "0c ffffffff" + "61" * 16),
    ("amf0-xml", "0f ffffffff" + "61" * 16),
    ("amf0-string", "02 ffff" + "61" * 16),
]


@pytest.mark.parametrize("name, wire", HOSTILE, ids=[x[0] for x in HOSTILE])
def test_hostile_length_claims_fail_without_allocating(codec, name, wire):
    payload = h(wire)
    assert len(payload) < 40
    tracemalloc.start()
    try:
        with pytest.raises(RemoteProtocolError):
            codec.decode_values(payload, amf3=not name.startswith("amf0"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{name}: {peak} bytes allocated for a {len(payload)}-byte message"


def test_ecma_array_count_is_only_a_hint(codec):
    assert_same(codec.decode_values(h("08 ffffffff 000009"), amf3=False), [MixedArray()])


DEEP = 100_000

DEEP_NESTING = [
    ("amf0-arrays", False, "0a 00000001" * DEEP + "05"),
    ("amf0-objects", False, ("03" + utf("a")) * DEEP + "05"),
    ("amf0-ecma", False, ("08 00000001" + utf("a")) * DEEP + "05"),
    ("amf0-typed", False, ("10" + utf("T") + utf("a")) * DEEP + "05"),
    ("amf3-arrays", True, "00 11" + "09 03 01" * DEEP + "01"),
    ("amf3-objects", True, "00 11 0a 0b 01 03 61" + "0a 01 00" * DEEP + "01"),
    ("amf3-vectors", True, "00 11" + "10 03 00 01" * DEEP + "01"),
    ("amf3-dictionaries", True, "00 11" + "11 03 00 01" * DEEP + "01"),
    # 200 AMF0 levels, then 100 AMF3 ones: the depth carries across the switch.
    ("amf0-then-amf3", False, "0a 00000001" * 200 + "11" + "09 03 01" * 100 + "01"),
]


@pytest.mark.parametrize("name, amf3, wire", DEEP_NESTING, ids=[d[0] for d in DEEP_NESTING])
def test_deep_nesting_is_refused(codec, name, amf3, wire):
    with pytest.raises(RemoteProtocolError, match="nested"):
        codec.decode_values(h(wire), amf3=amf3)


def _nest(depth):
    value = None
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("amf3", [False, True], ids=["amf0", "amf3"])
def test_nesting_limit_is_the_same_both_ways(codec, amf3):
    limit = amf.MAX_NESTING
    ok = codec.encode_values([_nest(limit)], amf3=amf3)
    assert_same(codec.decode_values(ok, amf3=amf3), [_nest(limit)])
    with pytest.raises(LocalProtocolError, match="nested"):
        codec.encode_values([_nest(limit + 1)], amf3=amf3)
    too_deep = ok.replace(b"\x05", b"\x0a\x00\x00\x00\x01\x05") if not amf3 else ok[:-1] + h("09 03 01 01")
    with pytest.raises(RemoteProtocolError, match="nested"):
        codec.decode_values(too_deep, amf3=amf3)


# -- unencodable values ---------------------------------------------------------

class Unregistered:
    pass


UNENCODABLE = [
    ("object", object()),
    ("unregistered-class-instance", Unregistered()),
    ("function", len),
    ("lambda", lambda: 0),
    ("class", int),
    ("module", sys),
    ("time", datetime.time(12, 0)),
    ("complex", 1j),
    ("exception", ValueError("secret stack detail")),
    ("int-beyond-double", 10 ** 400),
    ("lone-surrogate", "\ud800"),
    ("vector-int-out-of-range", Vector([2 ** 31], "int")),
    ("vector-uint-negative", Vector([-1], "uint")),
    ("vector-int-of-str", Vector(["a"], "int")),
    ("nested-unencodable", {"a": [1, {"b": object()}]}),
]


@pytest.mark.parametrize("amf3", [False, True], ids=["amf0", "amf3"])
@pytest.mark.parametrize("name, value", UNENCODABLE, ids=[u[0] for u in UNENCODABLE])
def test_unencodable_values(codec, name, value, amf3):
    with pytest.raises(LocalProtocolError) as info:
        codec.encode_values(["x", 0, value], amf3=amf3)
    assert "\n" not in str(info.value)


def test_amf0_name_longer_than_64k_is_refused(codec):
    with pytest.raises(LocalProtocolError, match="longer than 65535"):
        codec.encode_values([{"k" * 70000: 1}], amf3=False)


def test_subclasses_of_plain_types_encode_as_those_types(codec):
    import enum
    import collections

    class Color(enum.IntEnum):
        RED = 1

    class Name(str, enum.Enum):
        ANN = "ann"

    for amf3 in (False, True):
        got = roundtrip(codec, [Color.RED, Name.ANN, collections.OrderedDict(a=1), (1, 2)], amf3)
        assert_same(got, [1, "ann", ASObject(a=1), [1, 2]])


# -- AMF0 only, for clients that connected with objectEncoding 0 (issue 8, item 12) --------------

AMF3_ONLY = [
    ("bytes", b"\x00\xff", "ByteArray"),
    ("bytearray", bytearray(b"ab"), "ByteArray"),
    ("ByteArray", ByteArray(b"ab"), "ByteArray"),
    ("nested-ByteArray", {"a": [1, {"b": ByteArray(b"q")}]}, "ByteArray"),
    ("Vector", Vector([1, -1], "int"), "Vector of int"),
    ("Dictionary", Dictionary([(1, 2)]), "Dictionary"),
]


@pytest.mark.parametrize("name, value, type_name", AMF3_ONLY, ids=[a[0] for a in AMF3_ONLY])
def test_amf0_without_switch_refuses_what_needs_amf3(codec, name, value, type_name):
    # The default switches (the Flash Player reads 0x11 anywhere) ...
    assert b"\x11" in codec.encode_values(["x", 0, value], amf3=False)
    # ... an AMF0-only peer gets an error naming the type instead, never a 0x11 it cannot read.
    with pytest.raises(LocalProtocolError, match=f"a {type_name} cannot be sent to an AMF0 client"):
        codec.encode_values(["x", 0, value], amf3=False, switch=False)


def test_amf0_without_switch_refuses_externalizable_classes(codec):
    from fmspy_gateway.app.echo import ExternalizableClass, register_red5_echo_classes
    register_red5_echo_classes()
    assert b"\x11" in codec.encode_values([ExternalizableClass()], amf3=False)
    with pytest.raises(LocalProtocolError, match="ExternalizableClass .* cannot be sent to an AMF0 client"):
        codec.encode_values([ExternalizableClass()], amf3=False, switch=False)


def test_amf0_without_switch_writes_plain_amf0_unchanged(codec):
    values = ["_result", 2, None, {"a": [1, "two", None, True]}, datetime.datetime(2020, 1, 1), XML("<a/>")]
    assert codec.encode_values(values, amf3=False, switch=False) == codec.encode_values(values, amf3=False)


def test_switch_is_ignored_by_amf3_messages(codec):
    values = ["_result", 2, None, ByteArray(b"ab")]
    assert codec.encode_values(values, amf3=True, switch=False) == codec.encode_values(values, amf3=True)


def test_unencodable_key_is_named_briefly(codec):
    with pytest.raises(LocalProtocolError) as info:
        codec.encode_values([{("k" * 100000,): 1}], amf3=False)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("amf3", [False, True], ids=["amf0", "amf3"])
def test_an_integer_beyond_a_double_is_refused_by_its_size(codec, amf3):
    with pytest.raises(LocalProtocolError) as info:
        codec.encode_values(["x", 0, None, [10 ** 400]], amf3=amf3)
    assert "1329 bits" in str(info.value) or "too large" in str(info.value)
    assert len(str(info.value)) < 200


# -- the fast path for plain AMF0 bodies ------------------------------------------
# ``_Codec.encode_values`` / ``decode_message`` try ``amf_plain.plain_encode`` / ``plain_decode`` first and hand
# everything else to pyamf (``_encode_full`` / ``_decode_full``): the two must never differ, in bytes,
# values, value types or errors.

PLAIN_SCALARS = (st.none() | st.booleans() | st.just(Undefined) | st.integers(-2 ** 60, 2 ** 60)
                 | st.sampled_from([10 ** 400, -0.0, 2 ** 53 + 1, "\ud800", "x" * 70_000, ""])
                 | st.floats() | st.text(max_size=12))
PLAIN_KEYS = st.text(max_size=6) | st.sampled_from([0, "0", "\udc00"])


def plain_values(inner):
    return (st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
            | st.dictionaries(PLAIN_KEYS, inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=3).map(ASObject))


def outcome(call):
    try:
        return "ok", call()
    except Exception as exc:
        return "error", type(exc), str(exc)


def typed_tree(value, path=()):
    """repr plus the exact type of every node: 1 and 1.0, list and tuple, dict and ASObject differ.

    A container met again inside itself (a reference can make a body's values a cycle) is named by how
    many levels up it opened, so two cyclic results compare instead of recursing without end.
    """
    if isinstance(value, (list, tuple, dict)):
        if any(value is outer for outer in path):
            return "cycle", [value is outer for outer in path].index(True) - len(path)
        inner = path + (value,)
        if isinstance(value, dict):
            return type(value), [(typed_tree(key, inner), typed_tree(item, inner)) for key, item in value.items()]
        return type(value), [typed_tree(item, inner) for item in value]
    return type(value), repr(value)


@pytest.mark.parametrize("build", sorted(PLAIN_BUILDS))
@pytest.mark.parametrize("name", CODEC_NAMES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.recursive(PLAIN_SCALARS, plain_values, max_leaves=12), min_size=1, max_size=4),
       repeat=st.booleans())
def test_fast_path_encodes_exactly_as_pyamf(build, name, values, repeat):
    codec = amf._CODECS[name]
    if repeat:
        values.append(values[0])   # a repeated container is a reference: the full path's
    with fast_path_of(build):
        assert outcome(lambda: codec.encode_values(values, amf3=False)) == \
            outcome(lambda: codec._encode_full(values, amf3=False))


@pytest.mark.parametrize("build", sorted(PLAIN_BUILDS))
@pytest.mark.parametrize("name", CODEC_NAMES)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.recursive(PLAIN_SCALARS, plain_values, max_leaves=12), min_size=1, max_size=4),
       edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
       cut=st.integers(0, 10_000), amf3=st.booleans())
def test_fast_path_decodes_exactly_as_pyamf(build, name, values, edits, cut, amf3):
    codec = amf._CODECS[name]
    kind, *wire = outcome(lambda: codec._encode_full(values, amf3=False))
    if kind != "ok":
        return
    payload = bytearray(wire[0])
    for pos, byte in edits:
        payload[pos % len(payload)] = byte
    if cut % 3 == 0:
        del payload[cut % len(payload):]
    payload = (b"\x00" if amf3 else b"") + bytes(payload)
    with fast_path_of(build):
        fast = outcome(lambda: codec.decode_message(payload, amf3=amf3))
    full = outcome(lambda: codec._decode_full(payload, amf3=amf3))
    if fast[0] == "ok" and full[0] == "ok":
        assert typed_tree(fast[1]) == typed_tree(full[1])
    else:
        assert fast == full


@pytest.mark.parametrize("build", sorted(PLAIN_BUILDS))
def test_fast_path_lengths_with_their_high_bit_set(build, codec):
    # Length fields whose bytes are 0x80 or more (a compiled build must read them unsigned), which the
    # generated values above rarely reach: strings, keys and arrays across each byte boundary.
    values = ["x" * n for n in (127, 128, 255, 256, 0x7FFF, 0x8000, 0xFFFF)] + [
        {"k" * 200: 1, "é" * 100: ["y" * 300] * 2}, list(range(300)), [None] * 0x8000]
    with fast_path_of(build):
        wire = codec.encode_values(values, amf3=False)
        assert wire == codec._encode_full(values, amf3=False)
        assert codec.decode_message(wire, amf3=False) == (values, False)
        assert PLAIN_BUILDS[build].plain_decode(wire, 0) == values


@pytest.mark.parametrize("build", sorted(PLAIN_BUILDS))
@pytest.mark.parametrize("data", [None, bytearray(b"\x05"), memoryview(b"\x05"), "\x05"])
def test_fast_path_reads_only_bytes(build, data):
    # The compiled build reads ``data`` as bytes without a check of its own: anything else (None too) is
    # refused before, the same way in both builds.
    with pytest.raises(TypeError, match="plain_decode reads bytes"):
        PLAIN_BUILDS[build].plain_decode(data, 0)


def test_the_python_build_of_the_fast_path_is_compared_and_says_so():
    assert PLAIN_BUILDS["python"].COMPILED is False
    assert PLAIN_BUILDS["python"].__file__.endswith("amf_plain.py")
    if "compiled" in PLAIN_BUILDS:
        assert PLAIN_BUILDS["compiled"].__file__.endswith((".so", ".pyd"))


def test_plain_bodies_never_reach_pyamf(codec, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the full codec was used for a plain body")
    monkeypatch.setattr(codec, "_decode_full", refuse)
    monkeypatch.setattr(codec, "_encode_full", refuse)
    values = ["createStream", 2, None, {"a": [1, 2.5, True, "é"], "b": Undefined}]
    body = codec.encode_values(values, amf3=False)
    assert codec.decode_message(body, amf3=False) == (values, False)
    assert codec.decode_message(b"\x00" + body, amf3=True) == (values, True)


def test_bodies_with_references_or_switches_take_the_full_path(codec, monkeypatch):
    full = []
    decode_full = codec._decode_full
    monkeypatch.setattr(codec, "_decode_full", lambda *a, **k: full.append(1) or decode_full(*a, **k))
    shared = ASObject(x=1)
    with_reference = codec.encode_values(["call", 1, None, [shared, shared]], amf3=False)
    with_switch = codec.encode_values(["call", 1, None, b"\x01"], amf3=False)
    values, used_amf3 = codec.decode_message(with_reference, amf3=False)
    assert values[3][0] is values[3][1] and not used_amf3
    assert codec.decode_message(with_switch, amf3=False) == (["call", 1, None, ByteArray(b"\x01")], True)
    assert len(full) == 2


def test_fast_path_keeps_the_value_budget(codec):
    body = codec.encode_values(["call", 1, None, [None] * 200], amf3=False)
    assert codec.decode_message(body, amf3=False, budget=ValueBudget(max_nodes=300))[0][3] == [None] * 200
    with pytest.raises(ValueOverBudget) as raised:
        codec.decode_message(body, amf3=False, budget=ValueBudget(max_nodes=100))
    assert raised.value.limit == "maxValueNodes" and raised.value.values[:2] == ["call", 1]


def test_falling_back_to_the_full_path_keeps_nothing_alive(codec):
    # A giving-up fast path once re-raised one shared exception instance, whose traceback grew by every
    # frame it passed, with their locals: each long string's encoded bytes stayed in memory.
    values = ["say", 0, None, "t" * 70_000]
    body = codec.encode_values(values, amf3=False)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(40):
            codec.encode_values(values, amf3=False)
            codec.decode_message(body, amf3=False)
        gc.collect()    # the pure build's encoders are cycles: garbage, not kept
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth < 500_000, f"{growth} bytes kept by 40 fallbacks"
