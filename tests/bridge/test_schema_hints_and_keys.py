"""Type mapping corners a result schema or a client's keys reach (README, type mapping; bridge/mapping.py).

- A result schema's "format": "date-time" and "contentEncoding": "base64" are found through any local
  JSON pointer ($ref into an array such as #/allOf/1 or #/prefixItems/0), and a pointer to nowhere, or a
  patternProperties regex Python cannot compile, only means "no hint": the value stays JSON text, and
  the call still gets its result.
- A Dictionary or ECMA array keyed by NaN or an infinity becomes the key JavaScript would write
  (String(NaN) is "NaN"), not a crash and not "nan".
"""
import datetime
import json
import math

import pytest

from fmspy_gateway.bridge.mapping import amf_to_json, json_to_amf
from fmspy_gateway.rtmp import amf
from fmspy_gateway.rtmp.amf import ByteArray, Dictionary

T = datetime.datetime(2009, 2, 13, 23, 31, 30, 123000)
WHEN = "2009-02-13T23:31:30.123Z"
DATE = {"type": "string", "format": "date-time"}
BLOB = {"type": "string", "contentEncoding": "base64"}


def _received(value):
    return amf.decode_values(amf.encode_values([value], amf3=True), amf3=True)[0]


def test_a_ref_into_all_of_finds_the_date_hint():
    schema = {"allOf": [{"type": "object"}, {"properties": {"at": DATE}}], "properties": {"again": {"$ref": "#/allOf/1"}}}
    assert _received(json_to_amf({"again": {"at": WHEN}}, schema))["again"]["at"] == T


def test_a_ref_into_prefix_items_finds_the_bytes_hint():
    schema = {"prefixItems": [BLOB, DATE], "properties": {"x": {"$ref": "#/prefixItems/0"}}}
    received = _received(json_to_amf({"x": "AP8="}, schema))["x"]
    assert type(received) is ByteArray and received.getvalue() == b"\x00\xff"


@pytest.mark.parametrize("ref", ["#/allOf/7", "#/allOf/x", "#/$defs/d/format/deeper", "#/$defs/d/type/0"])
def test_a_pointer_to_nowhere_is_no_hint(ref):
    schema = {"allOf": [DATE], "$defs": {"d": DATE}, "properties": {"at": {"$ref": ref}}}
    assert json_to_amf({"at": WHEN}, schema) == {"at": WHEN}


def test_a_pattern_python_cannot_compile_is_no_hint_and_other_patterns_still_apply():
    # \p{L} is ECMA 262 (and JSON Schema) syntax Python's re does not know.
    schema = {"patternProperties": {r"^\p{L}+$": DATE, "_at$": DATE}, "additionalProperties": BLOB}
    value = json_to_amf({"made_at": WHEN, "name": WHEN, "data": "AP8="}, schema)
    assert (value["made_at"], value["name"], value["data"].getvalue()) == (T, WHEN, b"\x00\xff")


@pytest.mark.parametrize("key, text", [(math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity"),
                                       (2.0, "2"), (-0.0, "0")])
def test_dictionary_keys_that_are_not_finite_become_what_javascript_writes(key, text):
    sent = amf.decode_values(amf.encode_values([Dictionary([(key, "v")])], amf3=True), amf3=True)[0]
    assert json.dumps(amf_to_json([sent]), allow_nan=False) == json.dumps([{text: "v"}])


def test_an_integer_key_from_a_python_caller_reaches_an_amf0_client_as_text():
    value = json_to_amf({1: "one"}, encoding=0)
    assert amf.decode_values(amf.encode_values([value], amf3=False), amf3=False)[0] == {"1": "one"}
