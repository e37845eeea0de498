"""echotest's Red5 classes on the wire: ExternalizableClass's body, byte by byte, as Flash writes it.

The README promises that FMSPy's (Red5's) echotest client passes, which
needs ``ExternalizableClass`` read and written field by field.  The expected
bytes here are written out from the Red5 echo sample's ActionScript class
(``org.red5.samples.echo.ExternalizableClass.writeExternal``: writeBoolean
true, false; writeByte 0, -1, 1, 127, -127; writeDouble 1.0; writeFloat 2.0;
writeInt 0, -1, 1; writeMultiByte of "\\xe4\\xf6\\xfc\\xc4\\xd6\\xdc\\xdf" in
iso-8859-1 then utf-8; writeObject [1, "one", 1.0]; writeShort 0, -1, 1;
writeUnsignedInt 0, 1; writeUTF and writeUTFBytes of "Hello world!") and
the AMF 3 specification (3.12: an externalizable object is 0x0A, U29O-traits
0b0111, the class name, then whatever writeExternal wrote), not from our
encoder.
"""
import struct

from fmspy_gateway.app.echo import RED5_ECHO, RED5_EXTERNAL_VALUES, EchoApplication, ExternalizableClass
from fmspy_gateway.rtmp import amf

ALIAS = RED5_ECHO + "ExternalizableClass"
TEXT = "\xe4\xf6\xfc\xc4\xd6\xdc\xdf"


def external_body(one_point_zero: bytes) -> bytes:
    """What writeExternal writes; ``one_point_zero``: how the array's 1.0 is written (see below)."""
    return b"".join([
        b"\x01", b"\x00",                                  # writeBoolean(true), writeBoolean(false)
        b"\x00", b"\xff", b"\x01", b"\x7f", b"\x81",       # writeByte 0, -1, 1, 127, -127
        struct.pack(">d", 1.0), struct.pack(">f", 2.0),    # writeDouble(1.0), writeFloat(2.0)
        struct.pack(">iii", 0, -1, 1),                     # writeInt 0, -1, 1
        TEXT.encode("iso-8859-1"), TEXT.encode("utf-8"),  # writeMultiByte: 7 bytes, then 14
        # writeObject([1, "one", 1.0]): AMF3 array, 3 dense elements (U29A 3 << 1 | 1), no associative part
        b"\x09\x07\x01", b"\x04\x01", b"\x06\x07one", one_point_zero,
        struct.pack(">hhh", 0, -1, 1),                     # writeShort 0, -1, 1
        struct.pack(">II", 0, 1),                          # writeUnsignedInt 0, 1
        struct.pack(">H", 12) + b"Hello world!",           # writeUTF
        b"Hello world!",                                   # writeUTFBytes
    ])


def external_object(body: bytes) -> bytes:
    name = ALIAS.encode()
    assert len(name) < 64
    return b"\x0a\x07" + bytes([len(name) << 1 | 1]) + name + body


def amf3_command(name, txn, value_bytes):
    """A type-17 body: format 0, then AMF0 name, txn, null and the value switched to AMF3 (0x11)."""
    return (b"\x00\x02" + struct.pack(">H", len(name)) + name.encode() + b"\x00" + struct.pack(">d", txn)
            + b"\x05\x11" + value_bytes)


def test_the_flash_client_body_decodes_to_the_values_red5_writes():
    EchoApplication("echotest")        # registers the alias
    # Flash writes the array's 1.0 as the int 1 (an AVM2 int atom): U29 integer.
    wire = amf3_command("echo", 5, external_object(external_body(b"\x04\x01")))
    name, txn, command_object, value = amf.decode_values(wire, amf3=True)
    assert (name, txn, command_object) == ("echo", 5, None)
    assert isinstance(value, ExternalizableClass)
    assert value.values == list(RED5_EXTERNAL_VALUES)


def test_what_echo_sends_back_is_that_body_again():
    app = EchoApplication("echotest")
    echoed = app.echo(None, ExternalizableClass())
    wire = amf.encode_values(["_result", 5, None, echoed], amf3=True)
    # Python's 1.0 is a float: written as an AMF3 double, which readObject returns as the same Number.
    value = b"\x11" + external_object(external_body(b"\x05" + struct.pack(">d", 1.0)))
    assert wire.endswith(value)
    assert amf.decode_values(wire[:-len(value)], amf3=True) == ["_result", 5, None]
