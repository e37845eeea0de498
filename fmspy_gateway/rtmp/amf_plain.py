"""The fast path of the AMF layer: plain AMF0 bodies read and written without pyamf.

Why it exists: most command bodies on a busy server are a few plain AMF0
values (createStream, deleteStream, play, publish, their _result and
onStatus, echo of small objects, a bridged call's arguments and answer), and
for those building a pyamf Encoder/Decoder, its context and its stream per
message, then dispatching every value through the Python ``readElement`` /
``writeElement`` of amf.py, cost more than the values themselves (about 60%
of a createStream round trip).  So amf.py's codec first tries these two
functions, which understand only numbers, booleans, strings, null,
undefined, anonymous objects and strict arrays, with no references, no 0x11
switch and at most ``MAX_NESTING`` levels.  They never decide anything the
full path would decide differently: meeting anything else (another type, a
reference, a repeated container, a truncation, bad UTF-8, an int beyond a
double) they give up (``NotPlain``) and the full path handles the whole
body, with its errors.  tests/rtmp/test_amf.py compares the two on generated
values and bytes (mutated and cut), on each pyamf build and on this module
both compiled and as Python.

Why it is a module of its own, with ``amf_plain.pxd`` beside it: it is
plain Python, and the only code of the project that Cython compiles when
the package is installed (setup.py; an optional extension: without a C
compiler the Python runs).  The ``.pxd`` only declares C types for these
functions and their locals, so there is one source.  It was measured at
Python's floor (reading values inline in their containers gained nothing)
and at about 12% of a bridged call's and 16% of a createStream round trip's
profiled time (``bench/gateway.py --profile``, ``bench/connections.py
--profile createStream``); compiled it decodes 2.5 and encodes 2.3 times
faster.  ``COMPILED`` says which one runs.
"""
import math
import struct
import sys

from pyamf import ASObject, Undefined

__all__ = ["COMPILED", "MAX_NESTING", "NotPlain", "amf0_number", "plain_decode", "plain_encode"]

#: Whether this module is the compiled extension (its ``__file__`` is the ``.so``) or the Python source.
COMPILED = not __file__.endswith((".py", ".pyc"))

#: Deepest nesting of containers accepted on decode and produced on encode, here and on amf.py's full
#: path.  The same in both pyamf builds: pyamf's pure codec spends ~5 interpreter frames per level, so
#: much more would meet Python's recursion limit first (which is still caught, as "nested too deeply").
MAX_NESTING = 128

DOUBLE = struct.Struct(">d")
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
OBJECT_END = b"\x00\x00\x09"
_MAX_SAFE = 2 ** 53


def amf0_number(x):
    """pyamf's int-if-integral, minus its faults (1e308 -> huge int, -0.0 -> 0)."""
    if x.is_integer() and -_MAX_SAFE <= x <= _MAX_SAFE and (x or math.copysign(1.0, x) > 0):
        return int(x)
    return x


class NotPlain(Exception):
    """The body has something the fast path leaves to the full codec.

    Raised as the class, never as one shared instance: an instance raised again
    grows its ``__traceback__`` by every frame it passes, keeping their locals
    (whole message bodies) alive.
    """


def plain_decode(data, pos):
    """All the values of the AMF0 body ``data`` from ``pos`` on, or ``NotPlain``.

    ``data`` must be ``bytes`` (TypeError otherwise, in both builds): the compiled one reads it as such
    unchecked, and every truncation is found by reading past its end (IndexError below).
    """
    if type(data) is not bytes:
        raise TypeError(f"plain_decode reads bytes, not {type(data).__name__}")
    end = len(data)
    values = []
    try:
        while pos < end:
            value, pos = _read(data, pos, end, 0)
            values.append(value)
    except IndexError:   # a marker past the end: ``data`` is exactly the body
        raise NotPlain from None
    return values


def _read(data, pos, end, depth):
    marker = data[pos]
    pos += 1
    if marker == 0x02:
        if pos + 2 > end:
            raise NotPlain
        stop = pos + 2 + (data[pos] << 8 | data[pos + 1])
        if stop > end:
            raise NotPlain
        try:
            return data[pos + 2:stop].decode("utf-8"), stop
        except UnicodeDecodeError:
            raise NotPlain from None
    if marker == 0x00:
        if pos + 8 > end:
            raise NotPlain
        return amf0_number(DOUBLE.unpack_from(data, pos)[0]), pos + 8
    if marker == 0x05:
        return None, pos
    if marker == 0x01:
        if pos >= end or data[pos] > 1:
            raise NotPlain
        return data[pos] == 1, pos + 1
    if marker == 0x06:
        return Undefined, pos
    if depth >= MAX_NESTING:
        raise NotPlain
    if marker == 0x03:
        obj = ASObject()
        while True:
            if pos + 2 > end:
                raise NotPlain
            stop = pos + 2 + (data[pos] << 8 | data[pos + 1])
            if stop >= end:
                raise NotPlain
            if stop == pos + 2:
                if data[stop] != 0x09:
                    raise NotPlain
                return obj, stop + 1
            try:
                # Interned: the same few keys (app, tcUrl, flashVer...) come in every connect, and each
                # client's kept connect object would otherwise hold its own copies (600 B per idle
                # connection).  Interned strings go when their last holder does: no growth from odd keys.
                key = sys.intern(data[pos + 2:stop].decode("utf-8"))
            except UnicodeDecodeError:
                raise NotPlain from None
            if key in obj:
                raise NotPlain
            obj[key], pos = _read(data, stop, end, depth + 1)
    if marker == 0x0A:
        if pos + 4 > end:
            raise NotPlain
        count = U32.unpack_from(data, pos)[0]
        pos += 4
        if count > end - pos:
            raise NotPlain
        items = []
        for _ in range(count):
            item, pos = _read(data, pos, end, depth + 1)
            items.append(item)
        return items, pos
    raise NotPlain


def plain_encode(values):
    """The AMF0 body of ``values``, byte for byte what the full encoder writes, or ``NotPlain``."""
    out = bytearray()
    seen = set()
    for value in values:
        _write(value, out, seen, 0)
    return bytes(out)


def _write(value, out, seen, depth):
    # One bytearray appended to, byte by byte where a field is a byte: as Python it costs what building
    # and joining bytes objects did, and compiled each append is a C call, not a method call.
    value_type = type(value)
    if value_type is str:
        out.append(0x02)
        _write_utf8(value, out)
    elif value_type is int or value_type is float:
        try:
            raw = DOUBLE.pack(value)
        except (struct.error, OverflowError):
            raise NotPlain from None
        out.append(0x00)
        out += raw
    elif value is None:
        out.append(0x05)
    elif value_type is bool:
        out.append(0x01)
        out.append(1 if value else 0)
    elif value is Undefined:
        out.append(0x06)
    else:
        if depth >= MAX_NESTING or id(value) in seen:
            raise NotPlain   # too deep (the full path says so) or repeated (a reference)
        seen.add(id(value))
        if value_type is dict or value_type is ASObject:
            out.append(0x03)
            for key, item in value.items():
                if type(key) is not str or not key:
                    raise NotPlain
                _write_utf8(key, out)
                _write(item, out, seen, depth + 1)
            out += OBJECT_END
        elif value_type is list or value_type is tuple:
            out.append(0x0A)
            out += U32.pack(len(value))
            for item in value:
                _write(item, out, seen, depth + 1)
        else:
            raise NotPlain


def _write_utf8(text, out):
    """A string value's or a key's length (two bytes) and UTF-8; ``NotPlain`` past 64 KB or for a lone surrogate."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise NotPlain from None
    size = len(raw)
    if size > 0xFFFF:
        raise NotPlain
    out.append(size >> 8)
    out.append(size & 0xFF)
    out += raw
