"""AMF3 commands from outside our encoder: bytes built from the AMF3 specification, carried by librtmp.

Everywhere else AMF3 reaches the server from our own encoder, which could
share a mistake with our decoder.  Here each message body is written out
byte by byte from the grammar of Adobe's "AMF 3 Specification" (the
2006/2013 "amf-file-format-spec.pdf": section 1.3.1 U29, 3.8 String with
its reference table, 3.12 Object with traits and object references; and
the RTMP specification's type 17, whose body is a format byte 0 and AMF0
values, any of which may be the 0x11 AVM+ marker and one AMF3 value).  Flash
Player sends calls in exactly this shape: name and transaction id in AMF0,
the rest switched.  librtmp (Debian's python3-librtmp) sends them as they
are; the server tells what it decoded, in JSON, through a method of ours.

The point of the references: the string, object and traits tables are
shared by all the switched values of one message, so a reference in one
0x11 value may point into an earlier one.
"""
import json
import os
import struct

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.application import Application, remote
from fmspy_gateway.rtmp import amf

from ..conftest import require_system_librtmp
from .server import LoopbackServerMixin

HERE = os.path.dirname(os.path.abspath(__file__))


def amf0_string(text):
    return b"\x02" + struct.pack(">H", len(text)) + text.encode()


def amf0_number(value):
    return b"\x00" + struct.pack(">d", value)


def amf3_inline_string(text):
    """U29S-value: length << 1 | 1, then the UTF-8 (lengths below 64 fit one byte)."""
    raw = text.encode()
    assert len(raw) < 64
    return bytes([len(raw) << 1 | 1]) + raw


def call(method, txn, *switched):
    """A type-17 body: format 0, name and txn in AMF0, a null command object, then each value after 0x11."""
    return (b"\x00" + amf0_string(method) + amf0_number(txn) + b"\x05"
            + b"".join(b"\x11" + value for value in switched))


#: (what it shows, the switched AMF3 values, what the server must have decoded, pairs that are one object)
CASES = [
    ("string reference into an earlier switched value",
     [b"\x06" + amf3_inline_string("abc"),      # "abc": string table [abc]
      b"\x06\x00"],                              # U29S-ref 0 (0 << 1 | 0): "abc" again
     ["abc", "abc"], []),
    ("object reference and traits reference across switches",
     [b"\x0a\x0b\x01" + amf3_inline_string("a") + b"\x06" + amf3_inline_string("abc") + b"\x01",
      #   object, U29O-traits 0b1011 (inline, dynamic, 0 sealed), class "" (0x01, never a reference),
      #   dynamic member a = "abc", end of dynamic members (empty string)
      b"\x0a\x00",                               # U29O-ref 0: the same object
      b"\x0a\x01" + amf3_inline_string("b") + b"\x04\x05" + b"\x01",
      #   object, U29O-traits-ref 0 (0 << 2 | 0b01): the first object's traits; b = int 5
      b"\x06\x00"],                              # U29S-ref 0: "a" (the table is [a, abc]: the name came first)
     [{"a": "abc"}, {"a": "abc"}, {"b": 5}, "a"], [[0, 1]]),
    ("integers in every U29 length, a double, and true/false/null",
     [b"\x04\x7f", b"\x04\x81\x00", b"\x04\x81\x80\x00", b"\x04\x80\xc0\x80\x00", b"\x04\xff\xff\xff\xff",
      b"\x05" + struct.pack(">d", 0.5), b"\x03", b"\x02", b"\x01"],
     #  0x7f, 0x80 (2 bytes), 0x4000 (3 bytes), 0x200000 (4 bytes), -1 (29-bit two's complement)
     [127, 128, 16384, 2097152, -1, 0.5, True, False, None], []),
    ("a dense array whose elements refer to strings of the same message",
     [b"\x06" + amf3_inline_string("x"),
      b"\x09\x05\x01" + b"\x06\x00" + b"\x06" + amf3_inline_string("y")],
     #  U29A 2 << 1 | 1 (two dense elements), no associative part (0x01): ["x" (ref 0), "y"]
     ["x", ["x", "y"]], []),
]


class Probe(Application):
    @remote
    def shape(self, client, *values):
        """What arrived, as JSON text: plain values, and which of them are one and the same object."""
        same = [[i, j] for i in range(len(values)) for j in range(i + 1, len(values))
                if values[i] is values[j] and isinstance(values[i], (dict, list))]
        return json.dumps({"values": [_plain(v) for v in values], "same": same})


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class LibrtmpAMF3Tests(LoopbackServerMixin, TestCase):
    def applications(self):
        return {"probe": Probe("probe")}

    @inlineCallbacks
    def test_hand_built_amf3_calls_carried_by_librtmp_decode_as_the_specification_says(self):
        python = require_system_librtmp()
        bodies = [call("shape", 100 + number, *values) for number, (_, values, _, _) in enumerate(CASES)]
        out, err, code = yield getProcessOutputAndValue(
            python, [os.path.join(HERE, "librtmp_amf3.py"), self.url("probe"), *(b.hex() for b in bodies)],
            env=dict(os.environ), reactor=reactor)
        self.assertEqual(code, 0, err.decode(errors="replace"))
        answers = json.loads(out)
        self.assertEqual(len(answers), len(CASES))
        for number, ((what, _, expected, same), answer) in enumerate(zip(CASES, answers)):
            body = bytes.fromhex(answer["body"])
            # An AMF3 command is answered in AMF3 (type 17): format byte, then "_result", the txn, null, the value.
            self.assertEqual(answer["type"], 17, (what, amf.decode_values(body, amf3=answer["type"] == 17)))
            self.assertEqual(body[:1], b"\x00", what)
            name, txn, _, result = amf.decode_values(body, amf3=True)
            self.assertEqual((name, txn), ("_result", 100 + number), what)
            self.assertEqual(json.loads(result), {"values": expected, "same": same}, what)
