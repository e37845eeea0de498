"""Tests of fmspy_gateway.bridge.mapping: the AMF <-> JSON value mapping.

AMF -> JSON cases compare ``json.dumps`` texts, so 1 and 1.0 or True and 1
differ, and ``allow_nan=False`` proves only real JSON comes out.  JSON -> AMF
cases compare ``tagged`` trees, so an ASObject is not a TypedObject and a
ByteArray is not a str.
"""

import datetime
import json

import pyamf
import pyamf.flex
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmspy_gateway.app.echo import RED5_ECHO, ExternalizableClass, register_red5_echo_classes
from fmspy_gateway.bridge.mapping import MAX_NESTING, MappingError, amf_to_json, json_to_amf
from fmspy_gateway.rtmp import amf
from fmspy_gateway.rtmp.amf import ASObject, ByteArray, Dictionary, MixedArray, TypedObject, Undefined, Vector, XML



def dumps(value):
    return json.dumps(value, allow_nan=False, sort_keys=True)


def typed(alias, /, **fields):  # positional-only: hypothesis may well generate a field called "alias"
    obj = TypedObject(alias)
    obj.update(fields)
    return obj


def nested(depth, leaf=0):
    """``depth`` lists, one inside the other."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def tagged(value):
    """``value`` as a tree that tells AMF types apart (== alone would not)."""
    if isinstance(value, TypedObject):
        return ("typed", value.alias, {key: tagged(item) for key, item in value.items()})
    if isinstance(value, dict):
        return (type(value).__name__, {key: tagged(item) for key, item in value.items()})
    if isinstance(value, list):
        return (type(value).__name__, [tagged(item) for item in value])
    if isinstance(value, ByteArray):
        return ("ByteArray", value.getvalue())
    return (type(value).__name__, value)


class Point:
    def __init__(self, x=0, y=0):
        self.x = x
        self.y = y


class Opaque:
    pass


@pytest.fixture
def point_alias():
    pyamf.register_class(Point, "test.mapping.Point")
    yield "test.mapping.Point"
    pyamf.unregister_class("test.mapping.Point")


# -- AMF -> JSON -----------------------------------------------------------------

def _shared_twice():
    shared = ASObject(k=[1])
    return [shared, shared]


def _sealed_point():
    point = typed("com.example.Pt", x=1, y=2)
    point.sealed_members, point.dynamic = ("x", "y"), False
    return point


AMF_TO_JSON = [
    ("null", None, None),
    ("undefined", Undefined, None),
    ("booleans-stay-booleans", [True, False, 1, 0], [True, False, 1, 0]),
    ("int", [0, -5, 2 ** 31, 2 ** 60], [0, -5, 2 ** 31, 2 ** 60]),
    ("integral-doubles-become-ints", [1.0, -3.0, 2.0 ** 53, -(2.0 ** 53)], [1, -3, 2 ** 53, -(2 ** 53)]),
    ("minus-zero-is-zero", -0.0, 0),
    ("integral-doubles-beyond-2**53-stay-floats", [2.0 ** 53 + 2, 1e308], [2.0 ** 53 + 2, 1e308]),
    ("fractions-stay-floats", [1.5, -0.1, 5e-324], [1.5, -0.1, 5e-324]),
    ("nan-and-infinities-are-null", [float("nan"), float("inf"), float("-inf")], [None, None, None]),
    ("strings", ["", "h\xe9llo \u2603 \U0001f600"], ["", "h\xe9llo \u2603 \U0001f600"]),
    ("xml-document", XML("<a b='1'>x</a>", document=True), "<a b='1'>x</a>"),
    ("xml-e4x", XML("<a/>"), "<a/>"),
    ("date-with-milliseconds", datetime.datetime(2009, 2, 13, 23, 31, 30, 123000), "2009-02-13T23:31:30.123Z"),
    ("date-milliseconds-truncated", datetime.datetime(2009, 2, 13, 23, 31, 30, 123999), "2009-02-13T23:31:30.123Z"),
    ("date-whole-second", datetime.datetime(2009, 2, 13, 23, 31, 30), "2009-02-13T23:31:30.000Z"),
    ("date-aware-to-utc",
     datetime.datetime(2009, 2, 14, 1, 31, 30, 500000, datetime.timezone(datetime.timedelta(hours=2))),
     "2009-02-13T23:31:30.500Z"),
    ("date-before-1970", datetime.datetime(1969, 7, 20, 20, 17, 40, 500000), "1969-07-20T20:17:40.500Z"),
    ("date-before-1900", datetime.datetime(1815, 6, 18, 11, 0, 0, 1000), "1815-06-18T11:00:00.001Z"),
    ("date-year-1", datetime.datetime(1, 1, 1), "0001-01-01T00:00:00.000Z"),
    ("plain-date-is-midnight", datetime.date(2020, 2, 29), "2020-02-29T00:00:00.000Z"),
    ("bytearray-base64-padded", ByteArray(b"\x00\xff\xfe"), "AP/+"),
    ("bytearray-padding", ByteArray(b"\xfb\xff"), "+/8="),
    ("empty-bytearray", ByteArray(b""), ""),
    ("bytes", [b"abcd", bytearray(b"\x01")], ["YWJjZA==", "AQ=="]),
    ("list", [1, "a", [None, [2.5]]], [1, "a", [None, [2.5]]]),
    ("tuple", (1, 2), [1, 2]),
    ("vector-int", Vector([1, -2], "int"), [1, -2]),
    ("vector-double", Vector([1.0, 0.5], "double", fixed=True), [1, 0.5]),
    ("vector-object", Vector([ASObject(a=1)], "object", type_name="com.A"), [{"a": 1}]),
    ("asobject", ASObject(a=1, b=ASObject(c=[True])), {"a": 1, "b": {"c": [True]}}),
    ("dict-with-number-keys", {1: "a", 2.0: "b", 0.5: "c", "d": 4}, {"1": "a", "2": "b", "0.5": "c", "d": 4}),
    ("empty-key", ASObject({"": 1}), {"": 1}),
    ("mixed-array", MixedArray({0: "a", 1: "b", "name": "x"}), {"0": "a", "1": "b", "name": "x"}),
    ("mixed-array-dense-only", MixedArray({0: "a", 1: "b"}), {"0": "a", "1": "b"}),
    ("typed-object", typed("com.example.User", name="Ann", tags=["x"]),
     {"_explicitType": "com.example.User", "name": "Ann", "tags": ["x"]}),
    ("typed-object-sealed-traits", _sealed_point(), {"_explicitType": "com.example.Pt", "x": 1, "y": 2}),
    ("typed-object-nested", [ASObject(user=typed("a.B", child=typed("a.C")))],
     [{"user": {"_explicitType": "a.B", "child": {"_explicitType": "a.C"}}}]),
    ("dictionary-string-and-number-keys", Dictionary([("a", 1), (2, "two"), (1.5, None)], weak_keys=True),
     {"a": 1, "2": "two", "1.5": None}),
    ("flex-array-collection-is-an-array", pyamf.flex.ArrayCollection([1, ASObject(k="v")]), [1, {"k": "v"}]),
    ("shared-value-copied-twice", _shared_twice(), [{"k": [1]}, {"k": [1]}]),
    ("deepest-nesting-allowed", nested(MAX_NESTING), nested(MAX_NESTING)),
]


@pytest.mark.parametrize("value, expected", [case[1:] for case in AMF_TO_JSON], ids=[case[0] for case in AMF_TO_JSON])
def test_amf_to_json(value, expected):
    assert dumps(amf_to_json(value)) == dumps(expected)


def test_amf_to_json_returns_plain_types():
    got = amf_to_json([XML("<a/>"), ASObject(a=1), MixedArray({0: 1}), typed("x.Y"), Vector([1], "int")])
    assert [type(item) for item in got] == [str, dict, dict, dict, list]


def test_registered_class_maps_to_its_fields_and_alias(point_alias):
    assert amf_to_json([Point(1, [Point(2.0, None)])]) == [
        {"_explicitType": point_alias, "x": 1, "y": [{"_explicitType": point_alias, "x": 2, "y": None}]}]


# -- AMF -> JSON errors ----------------------------------------------------------------

def _list_in_itself():
    value = []
    value.append(value)
    return [value]


def _dict_in_itself():
    value = ASObject(name="loop")
    value["self"] = value
    return [value]


def _cycle_through_typed_object():
    parent = typed("com.example.Node", name="root")
    parent["children"] = [typed("com.example.Node", parent=parent)]
    return [1, parent]


def _cycle_through_dictionary():
    value = Dictionary()
    value.pairs.append(("me", [value]))
    return [value]


def _cycle_through_registered_class():
    point = Point()
    point.x = point
    return [point]


AMF_ERRORS = [
    ("list-in-itself", _list_in_itself, "cannot send a cyclic structure to the backend (at params[0][0])"),
    ("dict-in-itself", _dict_in_itself, "cannot send a cyclic structure to the backend (at params[0].self)"),
    ("through-typed-object", _cycle_through_typed_object,
     "cannot send a cyclic structure to the backend (at params[1].children[0].parent)"),
    ("through-dictionary", _cycle_through_dictionary, "cyclic structure to the backend (at params[0].me[0])"),
    ("through-registered-class", _cycle_through_registered_class, "cyclic structure to the backend (at params[0].x)"),
    ("too-deep", lambda: nested(MAX_NESTING + 1), f"nested deeper than {MAX_NESTING} levels"),
    ("too-deep-in-objects", lambda: {"a": nested(MAX_NESTING)}, f"nested deeper than {MAX_NESTING} levels"),
    ("arbitrary-object", lambda: [1, {"odd key": object()}],
     'cannot send a builtins.object to the backend (at params[1]["odd key"])'),
    ("unregistered-class", lambda: {"p": Opaque()},
     "cannot send a tests.bridge.test_mapping.Opaque to the backend (at params.p)"),
    ("set", lambda: {1, 2}, "builtins.set"),
    ("complex", lambda: [1j], "builtins.complex"),
    ("externalizable", lambda: [ExternalizableClass()],
     f"cannot send a {RED5_ECHO}ExternalizableClass to the backend: it is externalizable"),
    ("dictionary-object-key", lambda: Dictionary([(ASObject(k=1), "v")]),
     "cannot send an object keyed by a ASObject (<ASObject of 1>) to the backend: JSON keys are strings (at params)"),
    ("dictionary-boolean-key", lambda: Dictionary([(True, "v")]), "keyed by a bool"),
    ("dictionary-null-key", lambda: Dictionary([(None, "v")]), "keyed by a NoneType"),
    ("dict-tuple-key", lambda: {(1, 2): "v"}, "keyed by a tuple"),
    ("number-key-clashes-with-string-key", lambda: MixedArray({1: "a", "1": "b"}), "two '1' keys"),
    ("dictionary-keys-clash", lambda: Dictionary([(1, "a"), (1.0, "b")]), "two '1' keys"),
    ("field-named-explicit-type", lambda: typed("a.B", _explicitType="c.D"), "two '_explicitType' keys"),
    ("date-out-of-range", lambda: datetime.datetime(1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
     "out of range"),
]


@pytest.mark.parametrize("factory, message", [case[1:] for case in AMF_ERRORS], ids=[case[0] for case in AMF_ERRORS])
def test_amf_to_json_errors(factory, message, point_alias):
    register_red5_echo_classes()
    with pytest.raises(MappingError) as info:
        amf_to_json(factory())
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_error_path_starts_at_the_given_name():
    with pytest.raises(MappingError, match=r"\(at result\.a\)$"):
        amf_to_json({"a": object()}, path="result")


def test_deep_error_path_is_abbreviated():
    with pytest.raises(MappingError) as info:
        amf_to_json(nested(1000))
    assert str(info.value).endswith("(at params[0][0][0][0]...[0][0][0][0])")


# -- JSON -> AMF -------------------------------------------------------------------------

JSON_TO_AMF = [
    ("scalars", [None, True, False, 0, -7, "s", 1.5], [None, True, False, 0, -7, "s", 1.5]),
    ("ints-stay-ints-floats-stay-floats", [1, 1.0, 2 ** 60], [1, 1.0, 2 ** 60]),
    ("object-is-asobject", {"a": {"b": []}}, ASObject(a=ASObject(b=[]))),
    ("explicit-type", {"_explicitType": "com.example.User", "name": "Ann"}, typed("com.example.User", name="Ann")),
    ("explicit-type-nested", {"users": [{"_explicitType": "a.U", "pet": {"_explicitType": "a.P", "n": 1}}]},
     ASObject(users=[typed("a.U", pet=typed("a.P", n=1))])),
    ("explicit-type-not-a-string-is-a-field", {"_explicitType": 3}, ASObject(_explicitType=3)),
    ("explicit-type-empty-is-a-field", {"_explicitType": ""}, ASObject(_explicitType="")),
    ("dates-and-base64-without-schema-stay-strings",
     ["2009-02-13T23:31:30Z", "AP8="], ["2009-02-13T23:31:30Z", "AP8="]),
]


@pytest.mark.parametrize("value, expected", [case[1:] for case in JSON_TO_AMF], ids=[case[0] for case in JSON_TO_AMF])
def test_json_to_amf_without_schema(value, expected):
    assert tagged(json_to_amf(value)) == tagged(expected)


DATE = {"type": "string", "format": "date-time"}
BLOB = {"type": "string", "contentEncoding": "base64"}
T = datetime.datetime(2009, 2, 13, 23, 31, 30, 123000)

EVENTS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "events": {"type": "array", "items": {"$ref": "#/$defs/Event"}},
        "blobs": {"type": "object", "properties": {"name": {"type": "string"}}, "additionalProperties": BLOB},
    },
    "$defs": {"Event": {"type": "object", "properties": {"created": DATE, "title": {"type": "string"}}}},
}
EVENTS_VALUE = {
    "events": [{"_explicitType": "com.example.Event", "created": "2009-02-13T23:31:30.123Z", "title": "AP8="},
               {"created": "2009-02-14T01:31:30.123+02:00", "title": "2009-02-13T23:31:30.123Z"}],
    "blobs": {"name": "AP8=", "icon": "AP8=", "bad": "AP8"},
}
EVENTS_AMF = ASObject(
    events=[typed("com.example.Event", created=T, title="AP8="),
            ASObject(created=T, title="2009-02-13T23:31:30.123Z")],
    blobs=ASObject(name="AP8=", icon=ByteArray(b"\x00\xff"), bad="AP8"),
)

TREE_SCHEMA = {
    "$ref": "#/$defs/node",
    "$defs": {"node": {"type": "object", "properties": {
        "at": DATE, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
}

SCHEMA_CASES = [
    ("date-time", DATE, "2009-02-13T23:31:30.123Z", T),
    ("date-time-offset", DATE, "2009-02-13T18:01:30.123-05:30", T),
    ("date-time-offset-without-colon", DATE, "2009-02-14T00:31:30.123+0100", T),
    ("date-time-lowercase-and-space", DATE, "2009-02-13 23:31:30.123z", T),
    ("date-time-without-offset-is-utc", DATE, "2009-02-13T23:31:30.123", T),
    ("date-time-long-fraction-truncated", DATE, "2009-02-13T23:31:30.123456789Z", T.replace(microsecond=123456)),
    ("date-time-no-fraction", DATE, "1969-07-20T20:17:40Z", datetime.datetime(1969, 7, 20, 20, 17, 40)),
    ("date-time-before-1900", DATE, "1815-06-18T11:00:00.001Z", datetime.datetime(1815, 6, 18, 11, 0, 0, 1000)),
    ("date-time-unparsable", DATE, "yesterday", "yesterday"),
    ("date-time-date-only", DATE, "2009-02-13", "2009-02-13"),
    ("date-time-month-13", DATE, "2009-13-01T00:00:00Z", "2009-13-01T00:00:00Z"),
    ("date-time-leap-second", DATE, "2016-12-31T23:59:60Z", "2016-12-31T23:59:60Z"),
    ("date-time-before-year-1", DATE, "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00+01:00"),
    ("date-time-on-a-number", DATE, 5, 5),
    ("base64", BLOB, "AP8=", ByteArray(b"\x00\xff")),
    ("base64-empty", BLOB, "", ByteArray(b"")),
    ("base64-unpadded-stays", BLOB, "AP8", "AP8"),
    ("base64-bad-alphabet-stays", BLOB, "not base64!", "not base64!"),
    ("base64-whitespace-stays", BLOB, "AP 8=", "AP 8="),
    ("base64-urlsafe-stays", BLOB, "AP-_", "AP-_"),
    ("base64-non-ascii-stays", BLOB, "\xe9\xe9\xe9\xe9", "\xe9\xe9\xe9\xe9"),
    ("nested-ref-additional-properties-explicit-type", EVENTS_SCHEMA, EVENTS_VALUE, EVENTS_AMF),
    ("root-ref", {"$ref": "#/$defs/d", "$defs": {"d": DATE}}, "2009-02-13T23:31:30.123Z", T),
    ("draft7-definitions-and-tuple-items",
     {"$schema": "http://json-schema.org/draft-07/schema#", "type": "array",
      "items": [{"$ref": "#/definitions/d"}, BLOB], "additionalItems": DATE, "definitions": {"d": DATE}},
     ["2009-02-13T23:31:30.123Z", "AP8=", "2009-02-13T23:31:30.123Z", "AP8="], [T, ByteArray(b"\x00\xff"), T, "AP8="]),
    ("prefix-items-then-items", {"prefixItems": [BLOB], "items": DATE},
     ["AP8=", "2009-02-13T23:31:30.123Z", "AP8="], [ByteArray(b"\x00\xff"), T, "AP8="]),
    ("items-on-an-object-ignored", {"items": DATE},
     {"a": "2009-02-13T23:31:30.123Z"}, ASObject(a="2009-02-13T23:31:30.123Z")),
    ("pattern-properties", {"patternProperties": {"_at$": DATE}, "additionalProperties": BLOB},
     {"made_at": "2009-02-13T23:31:30.123Z", "data": "AP8="}, ASObject(made_at=T, data=ByteArray(b"\x00\xff"))),
    ("additional-properties-false", {"properties": {"a": DATE}, "additionalProperties": False},
     {"a": "2009-02-13T23:31:30.123Z", "b": "AP8="}, ASObject(a=T, b="AP8=")),
    ("all-of",
     {"allOf": [{"$ref": "#/$defs/a"}, {"properties": {"b": BLOB}}], "$defs": {"a": {"properties": {"a": DATE}}}},
     {"a": "2009-02-13T23:31:30.123Z", "b": "AP8="}, ASObject(a=T, b=ByteArray(b"\x00\xff"))),
    ("any-of-nullable-ref", {"anyOf": [{"$ref": "#/$defs/d"}, {"type": "null"}], "$defs": {"d": DATE}},
     "2009-02-13T23:31:30.123Z", T),
    ("any-of-nullable-ref-null",
     {"anyOf": [{"$ref": "#/$defs/d"}, {"type": "null"}], "$defs": {"d": DATE}}, None, None),
    ("one-of-picks-by-type", {"oneOf": [{"type": "array", "items": BLOB}, DATE]}, ["AP8="], [ByteArray(b"\x00\xff")]),
    ("type-list", {"anyOf": [{"type": ["string", "null"], "format": "date-time"}, {"type": "integer"}]},
     "2009-02-13T23:31:30.123Z", T),
    ("ambiguous-branches-apply-none", {"oneOf": [DATE, {"type": "string"}]},
     "2009-02-13T23:31:30.123Z", "2009-02-13T23:31:30.123Z"),
    ("untyped-branch-is-ambiguous", {"anyOf": [DATE, {"minLength": 1}]},
     "2009-02-13T23:31:30.123Z", "2009-02-13T23:31:30.123Z"),
    ("ref-cycle-terminates",
     {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}, DATE]}}},
     "2009-02-13T23:31:30.123Z", T),
    ("ref-cycle-in-any-of-terminates", {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, DATE]}}, "$ref": "#/$defs/a"},
     "x", "x"),
    ("recursive-schema", TREE_SCHEMA,
     {"at": "2009-02-13T23:31:30.123Z",
      "children": [{"children": [{"at": "2009-02-13T23:31:30.123Z", "children": []}]}]},
     ASObject(at=T, children=[ASObject(children=[ASObject(at=T, children=[])])])),
    ("remote-and-dangling-refs-ignored", {"properties": {"a": {"$ref": "other.json#/$defs/d"},
                                                         "b": {"$ref": "#/$defs/missing"}}, "$defs": {"d": DATE}},
     {"a": "2009-02-13T23:31:30.123Z", "b": "AP8="}, ASObject(a="2009-02-13T23:31:30.123Z", b="AP8=")),
    ("boolean-subschemas", {"properties": {"a": True, "b": False}}, {"a": "x", "b": [1]}, ASObject(a="x", b=[1])),
    ("pointer-escapes", {"$ref": "#/$defs/a~1b~0c%20d", "$defs": {"a/b~c d": DATE}}, "2009-02-13T23:31:30.123Z", T),
]


@pytest.mark.parametrize("schema, value, expected", [case[1:] for case in SCHEMA_CASES],
                         ids=[case[0] for case in SCHEMA_CASES])
def test_json_to_amf_with_schema(schema, value, expected):
    before = json.dumps(schema, sort_keys=True)
    assert tagged(json_to_amf(value, schema)) == tagged(expected)
    assert json.dumps(schema, sort_keys=True) == before  # only read


def test_json_to_amf_deepest_nesting_allowed_and_one_more():
    assert json_to_amf(nested(MAX_NESTING)) == nested(MAX_NESTING)
    with pytest.raises(MappingError, match=f"nested deeper than {MAX_NESTING} levels to the client"):
        json_to_amf({"a": nested(MAX_NESTING)})


@pytest.mark.parametrize("value, name", [([1, (2, 3)], "builtins.tuple"), ({"a": {"b": object()}}, "builtins.object"),
                                         (datetime.datetime(2009, 1, 1), "datetime.datetime")])
def test_json_to_amf_refuses_what_is_not_json(value, name):
    with pytest.raises(MappingError, match=f"cannot send a {name} to the client: not a JSON value"):
        json_to_amf(value)


# -- round trips ------------------------------------------------------------------------

USER_SCHEMA = {"type": "object", "properties": {"created": DATE, "avatar": BLOB, "friends": {"items": {"$ref": "#"}}}}


def test_typed_object_round_trip_restores_alias_dates_and_bytes():
    original = typed("com.example.User", name="Ann", created=T, avatar=ByteArray(b"\x89PNG"),
                     friends=[typed("com.example.User", name="Bob", created=datetime.datetime(1900, 1, 1), friends=[])])
    wire_json = json.dumps(amf_to_json(original), allow_nan=False)
    back = json_to_amf(json.loads(wire_json), USER_SCHEMA)
    assert tagged(back) == tagged(original)
    decoded = amf.decode_values(amf.encode_values([back], amf3=True), amf3=True)[0]
    assert type(decoded) is TypedObject and decoded.alias == "com.example.User"
    assert decoded["friends"][0].alias == "com.example.User" and decoded["created"] == T


def test_registered_class_round_trip_reaches_the_client_as_that_class(point_alias):
    back = json_to_amf(json.loads(json.dumps(amf_to_json(Point(1, 2.5)))))
    assert tagged(back) == tagged(typed(point_alias, x=1, y=2.5))
    decoded = amf.decode_values(amf.encode_values([back], amf3=True), amf3=True)[0]
    assert type(decoded) is Point and (decoded.x, decoded.y) == (1, 2.5)


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
KEYS = TEXT | st.just("_explicitType")
JSON_LEAVES = (st.none() | st.booleans() | st.integers(-2 ** 53, 2 ** 53) | TEXT
               | st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()))
JSON_VALUES = st.recursive(
    JSON_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON_VALUES)
def test_property_json_round_trips_through_amf(value):
    assert dumps(amf_to_json(json_to_amf(value))) == dumps(value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON_VALUES)
def test_property_json_round_trips_through_the_amf3_wire(value):
    """What a backend returns reaches the client and comes back unchanged (ints beyond int29 travel as doubles)."""
    wire = amf.encode_values([json_to_amf(value)], amf3=True)
    assert dumps(amf_to_json(amf.decode_values(wire, amf3=True)[0])) == dumps(value)


AMF_LEAVES = (
    JSON_LEAVES | st.floats() | st.just(Undefined) | st.datetimes() | st.binary(max_size=8).map(ByteArray)
    | TEXT.map(XML) | st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), max_size=3).map(lambda items: Vector(items, "int")))
AMF_VALUES = st.recursive(AMF_LEAVES, lambda inner: (
    st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3).map(ASObject)
    | st.tuples(TEXT, st.dictionaries(TEXT, inner, max_size=3)).map(lambda t: typed("a." + t[0], **t[1]))
    | st.dictionaries(st.integers(0, 3) | TEXT, inner, max_size=3).map(MixedArray)
    | st.lists(st.tuples(st.integers(0, 3) | TEXT | st.builds(ASObject), inner), max_size=3).map(Dictionary)),
    max_leaves=15)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=AMF_VALUES)
def test_property_any_amf_value_maps_to_real_json_or_a_mapping_error(value):
    try:
        got = amf_to_json(value)
    except MappingError as exc:
        assert "\n" not in str(exc) and "(at params" in str(exc)
    else:
        assert json.loads(json.dumps(got, allow_nan=False)) == got


# -- what the client's encoding cannot carry (issue 8, items 7 and 12) -------------------

HUGE = int("9" * 400)


@pytest.mark.parametrize("encoding", [0, 3])
def test_an_integer_beyond_a_double_is_refused_naming_its_path(encoding):
    with pytest.raises(MappingError) as raised:
        json_to_amf({"user": {"id": HUGE}}, path="result", encoding=encoding)
    message = str(raised.value)
    assert message.startswith("cannot send the integer <int of 1329 bits> to the client")
    assert "AMF numbers are doubles" in message and message.endswith("(at result.user.id)")
    assert len(message) < 200
    # The largest that fits is sent (as a double), and the encoder takes it.
    big = int(1.7e308)
    wire = amf.encode_values([json_to_amf([big, -big], encoding=encoding)], amf3=encoding == 3)
    assert amf.decode_values(wire, amf3=encoding == 3)[0] == [float(big), float(-big)]


def test_an_empty_key_is_refused_for_amf0_and_carried_by_amf3():
    with pytest.raises(MappingError, match=r'empty key \(""\) to an AMF0 client: AMF0 reads it as the end '
                                           r'of the object \(at result\[0\]\)'):
        json_to_amf([{"": 1}], path="result", encoding=0)
    value = json_to_amf({"": 1, "b": 2}, encoding=3)
    assert amf.decode_values(amf.encode_values([value], amf3=True), amf3=True)[0] == {"": 1, "b": 2}


def test_names_amf0_cannot_write_are_refused():
    with pytest.raises(MappingError, match="longer than 65535 bytes"):
        json_to_amf({"k" * 70000: 1}, encoding=0)
    with pytest.raises(MappingError, match="class alias .* to an AMF0 client"):
        json_to_amf({"_explicitType": "a" * 70000}, encoding=0)
    assert json_to_amf({"k" * 70000: 1}, encoding=3) == {"k" * 70000: 1}


def test_a_schema_typed_byte_array_stays_base64_for_an_amf0_client():
    blob = {"type": "string", "contentEncoding": "base64"}
    assert tagged(json_to_amf("iVBORw==", blob, encoding=3)) == tagged(ByteArray(b"\x89PNG"))
    assert tagged(json_to_amf("iVBORw==", blob, encoding=0)) == ("str", "iVBORw==")
    # Dates are AMF0 values: they stay dates.
    date = {"type": "string", "format": "date-time"}
    assert json_to_amf("2009-02-13T23:31:30Z", date, encoding=0) == datetime.datetime(2009, 2, 13, 23, 31, 30)


JSON_ANY = st.recursive(
    JSON_LEAVES | st.integers() | st.sampled_from([HUGE, -HUGE, 2 ** 1023, 10 ** 308]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.just(""), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=JSON_ANY, encoding=st.sampled_from([0, 3]))
def test_property_any_json_value_is_encodable_for_the_client_or_a_mapping_error(value, encoding):
    """Issue 8, item 7: a backend result becomes a reply the client's encoding carries, or a clear error."""
    try:
        mapped = json_to_amf(value, path="result", encoding=encoding)
    except MappingError as exc:
        assert "\n" not in str(exc) and "(at result" in str(exc)
    else:
        amf.encode_values(["_result", 2, None, mapped], amf3=encoding == 3)


# -- bounded messages and walks (issue 8, item 1) -----------------------------------------

def test_error_messages_cut_what_the_peer_sent():
    key = "k" * 1_000_000
    with pytest.raises(MappingError) as raised:
        amf_to_json({key: [Dictionary([(ASObject({key: 1}), "v")])]})
    assert len(str(raised.value)) < 300
    with pytest.raises(MappingError) as raised:
        json_to_amf({key: [HUGE * 10 ** 100000]})
    assert len(str(raised.value)) < 300


def test_a_value_over_the_budget_is_refused_before_it_is_walked():
    from fmspy_gateway.rtmp.budget import ValueBudget
    shared = []
    for _ in range(60):            # 2**60 nodes as a tree, 61 lists in memory
        shared = [shared, shared]
    budget = ValueBudget(max_nodes=1000)
    with pytest.raises(MappingError, match=r"expands to more than 1000 nodes \(maxValueNodes\) \(at params\)"):
        amf_to_json(shared, budget=budget)
    with pytest.raises(MappingError, match=r"more than 1000 nodes .*\(at result\)"):
        json_to_amf(shared, path="result", budget=budget)
    assert amf_to_json([[1], [2]], budget=budget) == [[1], [2]]
