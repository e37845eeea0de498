"""The AMF <-> JSON value mapping between Flash clients and JSON-RPC backends.

``amf_to_json`` turns what a client sent (the value model of
``fmspy_gateway.rtmp.amf``) into plain JSON-able Python, or raises
``MappingError`` with a one-line reason and the path of the offending value;
it never hangs or recurses without bound.  ``json_to_amf`` turns what a
backend returned or pushed back into AMF values, led by the route's result
schema where one is given (JSON carries no dates or bytes: the schema says
which strings are).

AMF (client) -> JSON (backend):

| AMF value                                 | JSON                                                    |
|-------------------------------------------|---------------------------------------------------------|
| null, undefined                           | null                                                    |
| Boolean                                   | true / false                                            |
| int                                       | integer                                                 |
| Number (double), integral, abs <= 2**53   | integer (1.0 -> 1, -0.0 -> 0)                           |
| other Number                              | float; NaN, Infinity, -Infinity -> null (JSON.stringify) |
| String                                    | string                                                  |
| XML, XMLDocument                          | its text                                                |
| Date                                      | "2009-02-13T23:31:30.123Z" (UTC, milliseconds truncated) |
| ByteArray (and Python bytes)              | base64 string (standard alphabet, padded)               |
| Array, Vector.<T> (and Python tuple)      | array                                                   |
| anonymous Object                          | object                                                  |
| ECMA / mixed Array                        | object; dense indexes become keys "0", "1", ...         |
| typed object (registered class or not)    | its fields plus "_explicitType": alias (AMFPHP)         |
| registered externalizable class           | MappingError naming the alias (fields are opaque)       |
| Dictionary                                | object if every key is a string or number, else MappingError |
| cycle; nesting deeper than 128 levels     | MappingError with the path                              |
| anything else                             | MappingError naming the type                            |

A value shared without a cycle is copied at each place.  Object keys must
be strings; number keys become JavaScript's ``String(n)`` ("1", "1.5"); any
other key, or two keys naming the same JSON key (1 and "1", or a field
called "_explicitType" in a typed object), is a MappingError.  A list or
dict subclass registered with pyamf (Flex's ``ArrayCollection``) maps as
the array or object it is, its alias dropped.

JSON (backend) -> AMF (client):

| JSON                                           | AMF value                                      |
|------------------------------------------------|------------------------------------------------|
| null, true / false, string                     | null, Boolean, String                          |
| integer / float                                | int / float, as parsed                         |
| integer beyond a double (abs > 1.8e308)        | MappingError (no AMF number holds it)          |
| array                                          | Array (list)                                   |
| object with a non-empty string "_explicitType" | typed object (``TypedObject(alias)``) of the other fields |
| ... whose alias is one of pyamf's own classes (RecordSet, flex.*) or an externalizable class | MappingError (that class has its own wire form); an application's other registered classes are typed objects |
| any other object                               | anonymous Object (``ASObject``)                |
| string, schema says format "date-time"         | Date (naive UTC); unparsable: stays a string   |
| string, schema says contentEncoding "base64"   | ByteArray; invalid base64: stays a string; for |
|                                                | an AMF0 client (``encoding=0``) always a string |
| object key "" (or over 64 KB), for AMF0        | MappingError (AMF0 reads "" as the object end) |
| deeper than 128 levels; not a JSON type        | MappingError                                   |

What comes out is what the client's encoding can write, so a backend result
becomes a ``_result`` or a clear ``_error``, never an encoder failure after
the fact.  Error messages quote values cut short (``brief``) and paths with
each key cut, so a message stays a line however large the value.

Date-times are RFC 3339 (the JSON Schema format): "T", "t" or a space
between date and time, any fraction (kept to the microsecond), "Z" or an
offset (with or without a colon); no offset at all is read as UTC (what
Python's ``isoformat`` writes for naive datetimes).  Base64 must be padded,
standard alphabet, no whitespace.

The schema is walked alongside the value through ``properties``,
``patternProperties``, ``additionalProperties`` (a schema, for keys the
other two miss), ``prefixItems`` / ``items`` (and draft 7's list ``items`` /
``additionalItems``), local ``$ref`` (JSON pointers such as ``#/$defs/x`` or
``#/definitions/x``; a ref cycle is followed once), ``allOf`` (all apply),
and ``anyOf`` / ``oneOf``: the one branch whose ``type`` (own or behind its
``$ref``) admits the value applies; when several branches admit it (a branch
without ``type`` admits anything) none does, so the value is left as plain
JSON rather than guessed at.
"""

import base64
import binascii
import datetime
import json
import math
import re
import sys
from typing import Any, Optional
from urllib.parse import unquote

import pyamf

from fmspy_gateway.rtmp import amf
from fmspy_gateway.rtmp.budget import ValueBudget, ValueOverBudget, brief, brief_name, measure

__all__ = ["MappingError", "amf_to_json", "json_to_amf", "EXPLICIT_TYPE", "MAX_NESTING"]

#: The member naming a typed object's class alias in JSON (AMFPHP's convention).
EXPLICIT_TYPE = "_explicitType"

#: Deepest container nesting mapped, either way: the AMF codec's own bound.
MAX_NESTING = amf.MAX_NESTING

_MAX_SAFE = 2 ** 53
#: Characters of one key shown in a path of an error message.
_STEP = 40
_UTC = datetime.timezone.utc
_BYTES = (amf.ByteArray, bytes, bytearray, memoryview)


class MappingError(Exception):
    """A value that has no faithful form on the other side; str() is one line with its path."""


# -- AMF -> JSON ---------------------------------------------------------------

def amf_to_json(value: Any, *, path: str = "params", budget: Optional[ValueBudget] = None) -> Any:
    """``value`` as plain JSON-able Python; ``path`` names it in error messages.

    Values from a client were measured where they entered (the protocol
    core's value budget), so they cannot expand past it here.  A caller with
    a value from elsewhere passes ``budget``: the value is measured first
    (shared subtrees counted as what they expand to, computed once) and
    refused with a MappingError rather than walked as an exponential tree.
    """
    _check_budget(value, budget, path)
    plain = _plain_to_json(value, set())
    return _ToJson(path).convert(value) if plain is _NOT_PLAIN else plain


# The fast paths, both ways.  Nearly every value a call carries is plain: str, int, float, bool, None,
# lists and anonymous objects keyed by str.  The full walkers (_ToJson, _ToAmf) keep a path for their
# messages and ask a dozen questions per node, which made the mapping about a fifth of the gateway's
# own CPU per bridged call.  These handle exactly the plain values, by exact type (a str subclass such as
# XML, a dict subclass such as MixedArray, a typed object, a date all take the full walk), and give up
# with _NOT_PLAIN at the first value that needs a question answered, or a message written: the full
# walker then maps the value from the start, so every rule and every error is the walker's own.
_NOT_PLAIN = object()
#: Scalars both fast paths pass through as they are.  The container loops test an item's type against
#: these before calling themselves: a call per scalar was a third of the walk.
_AS_IS_TO_JSON = frozenset({str, int, bool, type(None)})
_AS_IS_TO_AMF = frozenset({str, bool, float, type(None)})


def _plain_to_json(value, open_ids):
    kind = type(value)
    if kind in _AS_IS_TO_JSON:
        return value
    if kind is float:
        return _number(value)
    if kind is list or kind is amf.ASObject or kind is dict:
        if len(open_ids) >= MAX_NESTING or id(value) in open_ids:
            return _NOT_PLAIN               # a cycle, or too deep: the walker says which, and where
        open_ids.add(id(value))
        if kind is list:
            result = []
            for item in value:
                if type(item) not in _AS_IS_TO_JSON:
                    item = _plain_to_json(item, open_ids)
                    if item is _NOT_PLAIN:
                        return item
                result.append(item)
        else:
            result = {}
            for key, item in value.items():
                if type(key) is not str:
                    return _NOT_PLAIN
                if type(item) not in _AS_IS_TO_JSON:
                    item = _plain_to_json(item, open_ids)
                    if item is _NOT_PLAIN:
                        return item
                result[key] = item
        open_ids.discard(id(value))
        return result
    return _NOT_PLAIN


def _plain_to_amf(value, amf0, depth):
    kind = type(value)
    if kind in _AS_IS_TO_AMF:
        return value
    if kind is int:
        return value if -_MAX_DOUBLE <= value <= _MAX_DOUBLE else _NOT_PLAIN
    if depth >= MAX_NESTING:
        return _NOT_PLAIN
    if kind is list:
        result = []
        for item in value:
            if type(item) not in _AS_IS_TO_AMF:
                item = _plain_to_amf(item, amf0, depth + 1)
                if item is _NOT_PLAIN:
                    return item
            result.append(item)
        return result
    if kind is dict:
        if EXPLICIT_TYPE in value:
            return _NOT_PLAIN
        result = amf.ASObject()
        for key, item in value.items():
            if type(key) is not str or (amf0 and (key == "" or len(key) * 3 > _MAX_AMF0_NAME)):
                return _NOT_PLAIN
            if type(item) not in _AS_IS_TO_AMF:
                item = _plain_to_amf(item, amf0, depth + 1)
                if item is _NOT_PLAIN:
                    return item
            result[key] = item
        return result
    return _NOT_PLAIN


def _check_budget(value, budget, path):
    if budget is None:
        return
    try:
        measure([value], budget)
    except ValueOverBudget as e:
        raise MappingError(f"cannot map a value that {e.reason.removeprefix('value ')} (at {path})") from None


def _number(x):
    """A double as JavaScript means it: integral ones stay integral, non-finite ones are null."""
    if not math.isfinite(x):
        return None
    return int(x) if x.is_integer() and -_MAX_SAFE <= x <= _MAX_SAFE else x


def _iso_date(value):
    if not isinstance(value, datetime.datetime):
        value = datetime.datetime.combine(value, datetime.time())
    elif value.utcoffset() is not None:
        value = value.astimezone(_UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def _render(root, steps):
    """``params[0].user["first name"]``; very deep paths keep only both ends."""
    # Keys are peer-sent: each is cut (brief_name) before json.dumps, which keeps quotes and newlines
    # out of a message that must stay one line.
    parts = [f"[{step}]" if isinstance(step, int) else
             f".{step}" if step.isidentifier() and len(step) <= _STEP else f"[{json.dumps(brief_name(step, _STEP))}]"
             for step in steps]
    if len(parts) > 12:
        parts = parts[:4] + ["..."] + parts[-4:]
    return root + "".join(parts)


class _ToJson:
    """One conversion: the path walked so far (for messages) and the containers open on it (for cycles)."""

    def __init__(self, root):
        self.root = root
        self.steps = []
        self.open = set()

    def fail(self, message):
        return MappingError(f"{message} (at {_render(self.root, self.steps)})")

    def convert(self, value):
        if isinstance(value, str):
            return str.__str__(value)  # XML too: its text
        if value is None or value is amf.Undefined:
            return None
        if isinstance(value, bool):  # before int: bool is an int
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return _number(float(value))
        if isinstance(value, datetime.date):
            try:
                return _iso_date(value)
            except OverflowError:
                raise self.fail(f"cannot send the date {value!r} to the backend: out of range") from None
        if isinstance(value, _BYTES):
            raw = value.getvalue() if isinstance(value, amf.ByteArray) else bytes(value)
            return base64.b64encode(raw).decode("ascii")
        return self.container(value)

    def container(self, value):
        # Only the containers on the current path are open: a value shared by
        # two branches is no cycle and is simply copied twice.
        if id(value) in self.open:
            raise self.fail("cannot send a cyclic structure to the backend")
        if len(self.open) >= MAX_NESTING:
            raise self.fail(f"cannot send a value nested deeper than {MAX_NESTING} levels to the backend")
        self.open.add(id(value))
        result = self.members(value)
        self.open.discard(id(value))
        return result

    def members(self, value):
        if isinstance(value, (list, tuple)):  # Vector and ArrayCollection too
            return [self.child(index, item) for index, item in enumerate(value)]
        if isinstance(value, amf.TypedObject):
            return self.object(value.items(), value.alias)
        if isinstance(value, dict):  # ASObject, MixedArray
            return self.object(value.items())
        if isinstance(value, amf.Dictionary):
            return self.object(value.pairs)
        alias = pyamf.CLASS_CACHE.get(type(value))
        if alias is not None and alias.external:
            raise self.fail(f"cannot send a {brief_name(alias.alias or type(value).__name__)} to the backend: "
                            "it is externalizable, so its fields are opaque")
        if alias is not None:
            return self.object(alias.getEncodableAttributes(value).items(), alias.alias)
        kind = type(value)
        raise self.fail(f"cannot send a {kind.__module__}.{kind.__qualname__} to the backend")

    def object(self, items, alias=""):
        result = {EXPLICIT_TYPE: alias} if alias else {}
        for key, item in items:
            name = self.key(key)
            if name in result:
                raise self.fail(f"cannot send an object with two {brief(name)} keys to the backend")
            result[name] = self.child(name, item)
        return result

    def key(self, key):
        if isinstance(key, str):
            return str.__str__(key)
        if isinstance(key, (int, float)) and not isinstance(key, bool):
            number = _number(float(key)) if isinstance(key, float) else int(key)
            if number is None:  # String(NaN), String(Infinity)
                return "NaN" if math.isnan(key) else ("Infinity" if key > 0 else "-Infinity")
            return str(number)
        raise self.fail(f"cannot send an object keyed by a {type(key).__name__} ({brief(key)}) to the backend: "
                        "JSON keys are strings")

    def child(self, step, item):
        self.steps.append(step)
        result = self.convert(item)
        self.steps.pop()
        return result


# -- JSON -> AMF ---------------------------------------------------------------

def json_to_amf(value: Any, schema: Optional[dict] = None, *, path: str = "$", encoding: int = 3,
                budget: Optional[ValueBudget] = None) -> Any:
    """The AMF value for a JSON ``value``; ``schema`` (JSON Schema, trusted) marks dates and bytes.

    ``encoding`` is the client's object encoding (``Client.object_encoding``):
    for 0 (AMF0) a schema-typed ByteArray stays its base64 string, since AMF0
    has no ByteArray and the codec would switch to AMF3 (0x11), which AMF0-only
    clients cannot read; and what AMF0 cannot write ("" keys, which read as
    the end of an object; names and aliases over 65535 bytes) is a
    MappingError.  Either way an integer no AMF number (a double) can hold is
    a MappingError, not an encoder crash after the reply was promised.
    ``path`` names the value in messages; ``budget`` as for :func:`amf_to_json`.
    """
    _check_budget(value, budget, path)
    if schema is None:
        plain = _plain_to_amf(value, encoding == 0, 0)
        if plain is not _NOT_PLAIN:
            return plain
    return _ToAmf(schema, path, encoding).convert(value, [] if schema is None else [schema])


#: The largest integer a double holds without overflowing (every larger one raises in the AMF encoder).
_MAX_DOUBLE = int(sys.float_info.max)
#: AMF0 names and class aliases are strings with a 16-bit length.
_MAX_AMF0_NAME = 0xFFFF


_DATE_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:[Zz]|([+-])(\d\d):?(\d\d))?\Z", re.ASCII)


def _parse_date_time(text):
    """A naive UTC datetime, or None when ``text`` is no RFC 3339 date-time datetime can hold."""
    match = _DATE_TIME.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    try:
        value = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                                  int((fraction or "").ljust(6, "0")[:6]))
        if sign:
            offset = datetime.timedelta(hours=int(off_h), minutes=int(off_m))
            value = value - offset if sign == "+" else value + offset
    except (ValueError, OverflowError):  # month 13, a leap second, beyond year 1..9999
        return None
    return value


def _parse_base64(text):
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        return None


def _json_types(value):
    """The JSON types of a string, list or dict: ``convert`` returns scalars before it walks a schema."""
    if isinstance(value, str):
        return {"string"}
    return {"array"} if isinstance(value, list) else {"object"}


def _has_own_wire_form(alias):
    """Is ``alias`` one of pyamf's own classes (RecordSet, Flex's ArrayCollection, messages...) or externalizable?

    Such a class is read back as that class, with that class's rules
    (externalizable bodies, required fields), so a plain typed object with its
    name is a value neither our decoder nor a Flex client can read.  Looked up
    as the decoder does: registered aliases and pyamf's loaders, never an import.
    A class an application registered that is not externalizable is read back
    from its fields, so it goes out as a typed object: the README's "the
    client gets its registered class back".
    """
    registered = amf._registered_alias(alias)
    if isinstance(registered, amf._UnknownClassAlias):
        return False
    module = getattr(registered.klass, "__module__", "") or ""
    return bool(registered.external) or module == "pyamf" or module.startswith("pyamf.")


class _ToAmf:
    """One conversion: the root schema (for ``$ref``), the path walked (for messages and the depth bound)
    and the client's encoding (what AMF0 cannot carry)."""

    def __init__(self, root, path="$", encoding=3):
        self.root = root
        self.path = path
        self.amf0 = encoding == 0
        self.steps = []

    def fail(self, message):
        return MappingError(f"{message} (at {_render(self.path, self.steps)})")

    def convert(self, value, schemas):
        if value is None or isinstance(value, (bool, float)):
            return value
        if isinstance(value, int):
            if -_MAX_DOUBLE <= value <= _MAX_DOUBLE:
                return value
            raise self.fail(f"cannot send the integer {brief(value)} to the client: "
                            "AMF numbers are doubles, and this one is beyond their range")
        if schemas:
            schemas = self.applicable(schemas, value)
        if isinstance(value, str):
            return self.string(value, schemas) if schemas else value
        if isinstance(value, (list, dict)) and len(self.steps) >= MAX_NESTING:
            raise self.fail(f"cannot send a value nested deeper than {MAX_NESTING} levels to the client")
        if isinstance(value, list):
            return [self.child(index, item, self.item_schemas(schemas, index)) for index, item in enumerate(value)]
        if isinstance(value, dict):
            alias = value.get(EXPLICIT_TYPE)
            typed = isinstance(alias, str) and alias != ""
            if typed and self.amf0 and len(alias.encode("utf-8", "surrogatepass")) > _MAX_AMF0_NAME:
                raise self.fail(f"cannot send the class alias {brief(alias)} to an AMF0 client: "
                                f"longer than {_MAX_AMF0_NAME} bytes")
            if typed and _has_own_wire_form(alias):
                raise self.fail(f"cannot send an object typed {brief(alias)} to the client: that class alias is "
                                "registered with pyamf with a wire form of its own, which no JSON object has")
            result = amf.TypedObject(alias) if typed else amf.ASObject()
            for key, item in value.items():
                if not (typed and key == EXPLICIT_TYPE):
                    if self.amf0:
                        self.check_amf0_key(key)
                    result[key] = self.child(key, item, self.property_schemas(schemas, key))
            return result
        kind = type(value)
        raise self.fail(f"cannot send a {kind.__module__}.{kind.__qualname__} to the client: not a JSON value")

    def check_amf0_key(self, key):
        if not isinstance(key, str):   # not from JSON; the encoder writes int keys as text
            return
        if key == "":
            raise self.fail('cannot send an object with an empty key ("") to an AMF0 client: '
                            "AMF0 reads it as the end of the object")
        if len(key) * 3 > _MAX_AMF0_NAME and len(key.encode("utf-8", "surrogatepass")) > _MAX_AMF0_NAME:
            raise self.fail(f"cannot send the key {brief(key)} to an AMF0 client: longer than "
                            f"{_MAX_AMF0_NAME} bytes")

    def child(self, step, item, schemas):
        self.steps.append(step)
        result = self.convert(item, schemas)
        self.steps.pop()
        return result

    def string(self, text, schemas):
        if any(schema.get("format") == "date-time" for schema in schemas):
            parsed = _parse_date_time(text)
            if parsed is not None:
                return parsed
        # AMF0 has no ByteArray: for an AMF0 client the base64 text is the value.
        if not self.amf0 and any(schema.get("contentEncoding") == "base64" for schema in schemas):
            raw = _parse_base64(text)
            if raw is not None:
                return amf.ByteArray(raw)
        return text

    # -- walking the schema --

    def applicable(self, schemas, value):
        """Every subschema that applies to ``value`` here: through $ref, allOf and the fitting anyOf/oneOf branch."""
        found, seen = [], set()
        pending = list(reversed(schemas))
        while pending:
            schema = pending.pop()
            if not isinstance(schema, dict) or id(schema) in seen:  # each once: ref cycles end here
                continue
            seen.add(id(schema))
            found.append(schema)
            nested = [self.resolve(schema.get("$ref"))]
            nested += schema.get("allOf") if isinstance(schema.get("allOf"), list) else []
            for keyword in ("anyOf", "oneOf"):
                if isinstance(schema.get(keyword), list):
                    nested.append(self.branch(schema[keyword], value))
            pending.extend(reversed(nested))
        return found

    def branch(self, branches, value):
        """The one branch admitting ``value``'s JSON type, or None when none or several do."""
        types = _json_types(value)
        fitting = [schema for schema in branches if self.admits(schema, types)]
        return fitting[0] if len(fitting) == 1 else None

    def admits(self, schema, types):
        seen = set()
        while isinstance(schema, dict) and id(schema) not in seen:
            declared = schema.get("type")
            if isinstance(declared, str):
                return declared in types
            if isinstance(declared, list):
                return not types.isdisjoint(declared)
            seen.add(id(schema))
            schema = self.resolve(schema.get("$ref")) if "$ref" in schema else True
        return schema is not False

    def resolve(self, ref):
        """The schema a local JSON pointer ("#/$defs/x") names, or None."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None
        node = self.root
        for part in unquote(ref[1:]).split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    @staticmethod
    def property_schemas(schemas, key):
        found = []
        for schema in schemas:
            matched = False
            properties = schema.get("properties")
            if isinstance(properties, dict) and key in properties:
                found.append(properties[key])
                matched = True
            patterns = schema.get("patternProperties")
            for pattern, sub in (patterns.items() if isinstance(patterns, dict) else ()):
                try:
                    hit = re.search(pattern, str(key))
                except re.error:  # ECMA 262 syntax Python does not share: no hint
                    hit = None
                if hit:
                    found.append(sub)
                    matched = True
            extra = schema.get("additionalProperties")
            if not matched and isinstance(extra, dict):
                found.append(extra)
        return found

    @staticmethod
    def item_schemas(schemas, index):
        found = []
        for schema in schemas:
            prefix, items = schema.get("prefixItems"), schema.get("items")
            if isinstance(items, list):  # draft 7 tuple form
                prefix, items = items, schema.get("additionalItems")
            if isinstance(prefix, list) and index < len(prefix):
                found.append(prefix[index])
            elif isinstance(items, dict):
                found.append(items)
        return found
