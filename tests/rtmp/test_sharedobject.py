"""Shared object messages (types 19 and 16): a table of (message, wire bytes) written by hand from
WIRE-FACTS.md section 1 driving writer and reader, every reader case through a real Connection (whole, byte
by byte, followed by the start of the next message), hypothesis round trips, and malformed bodies."""
import pytest
from hypothesis import given, settings, strategies as st

from fmspy_gateway.rtmp import amf
from fmspy_gateway.rtmp.budget import ValueBudget
from fmspy_gateway.rtmp.chunks import Message
from fmspy_gateway.rtmp.connection import Connection, Role, State
from fmspy_gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError
from fmspy_gateway.rtmp.events import CommandReceived, MessageRefused, SharedObjectReceived
from fmspy_gateway.rtmp.limits import Limits
from fmspy_gateway.rtmp.messages import MessageType
from fmspy_gateway.rtmp.sharedobject import (Change, Clear, Release, Remove, RequestChange, RequestRemove,
                                             SendMessage, SharedObjectMessage, Status, Success, UnknownEvent,
                                             Use, UseSuccess, decode_shared_object, encode_shared_object)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def so(*events, version=1, persistent=False, name="so"):
    return SharedObjectMessage(name, version, persistent, tuple(events))


#: name "so" (u16 length, no marker), version 1, transient (0), 4 reserved bytes.
HEAD = "0002 736f 00000001 00000000 00000000"
#: AMF0 number 1.0
ONE0 = "00 3ff0000000000000"

# (description, message, AMF0 body (type 19), AMF3 body (type 16, without its format byte; None: as AMF0)).
# Events: type u8, data length u32, data.  Keys are u16 strings; type 16 switches every value with 0x11.
CASES = [
    ("Use", so(Use()), HEAD + "01 00000000", None),
    ("Release", so(Release()), HEAD + "02 00000000", None),
    ("RequestChange of a number", so(RequestChange("x", 1)),
     HEAD + "03 0000000c 000178" + ONE0,
     HEAD + "03 00000006 000178 110401"),
    ("RequestChange of an object", so(RequestChange("p", {"a": 1})),
     HEAD + "03 00000013 000170 03 000161" + ONE0 + "000009",
     HEAD + "03 0000000c 000170 11 0a0b01 0361 0401 01"),
    ("Change with two pairs, null included", so(Change((("x", "hi"), ("y", None)))),
     HEAD + "04 0000000c 000178 0200026869 000179 05",
     HEAD + "04 0000000d 000178 1106056869 000179 1101"),
    ("Success: the key only", so(Success("x")), HEAD + "05 00000003 000178", None),
    ("SendMessage: the handler is a full AMF0 string", so(SendMessage("draw", (1, True))),
     HEAD + "06 00000012 020004 64726177" + ONE0 + "0101",
     HEAD + "06 0000000c 020004 64726177 110401 1103"),
    ("SendMessage without arguments", so(SendMessage("ping")), HEAD + "06 00000007 020004 70696e67", None),
    ("Status: code then level, u16 strings", so(Status("SharedObject.BadPersistence", "error")),
     HEAD + "07 00000024 001b" + b"SharedObject.BadPersistence".hex() + "0005 6572726f72", None),
    ("Clear", so(Clear()), HEAD + "08 00000000", None),
    ("Remove", so(Remove("x")), HEAD + "09 00000003 000178", None),
    ("RequestRemove", so(RequestRemove("x")), HEAD + "0a 00000003 000178", None),
    ("UseSuccess", so(UseSuccess()), HEAD + "0b 00000000", None),
    ("an unknown event type, kept as its bytes", so(UnknownEvent(14, b"ab")), HEAD + "0e 00000002 6162", None),
    ("the answer to a Use: persistent (2), version 7, UseSuccess, Clear, Change",
     so(UseSuccess(), Clear(), Change((("k", "v"),)), version=7, persistent=True),
     "0002 736f 00000007 00000002 00000000 0b 00000000 08 00000000 04 00000007 00016b 02000176",
     "0002 736f 00000007 00000002 00000000 0b 00000000 08 00000000 04 00000007 00016b 11060376"),
    ("a message without events, a UTF-8 name", so(name="é"), "0002 c3a9 00000001 00000000 00000000", None),
    ("an empty key", so(Remove("")), HEAD + "09 00000002 0000", None),
    # One set of AMF3 reference tables per message: the second "hi" is string reference 0.
    ("values share the message's reference tables", so(Change((("a", "hi"),)), Change((("b", "hi"),))),
     HEAD + "04 00000008 000161 0200026869 04 00000008 000162 0200026869",
     HEAD + "04 00000008 000161 1106056869 04 00000006 000162 110600"),
]

TABLE = [(name, message, amf3, h(wire0 if not amf3 else "00" + (wire3 if wire3 is not None else wire0)))
         for name, message, wire0, wire3 in CASES for amf3 in (False, True)]
IDS = [f"{name} ({'AMF3' if amf3 else 'AMF0'})" for name, _, amf3, _ in TABLE]


@pytest.fixture(params=sorted(amf._CODECS))
def each_build(request, monkeypatch):
    """Run on each pyamf build present (compiled and pure), as the AMF tests do."""
    monkeypatch.setattr(amf, "_CODEC", amf._CODECS[request.param])


@pytest.mark.parametrize("name, message, amf3, wire", TABLE, ids=IDS)
def test_encode(name, message, amf3, wire, each_build):
    assert encode_shared_object(message, amf3).hex() == wire.hex()


@pytest.mark.parametrize("name, message, amf3, wire", TABLE, ids=IDS)
def test_decode(name, message, amf3, wire, each_build):
    assert decode_shared_object(wire, amf3) == message


# -- through a real Connection ----------------------------------------------------------------------

def pair(limits=Limits()):
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER, limits=limits)
    while client.state is not State.OPEN or server.state is not State.OPEN:
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
    return client, server


def so_message(body: bytes, amf3: bool) -> Message:
    return Message(MessageType.SHARED_OBJECT_AMF3 if amf3 else MessageType.SHARED_OBJECT_AMF0, 0, 0, body, 3)


@pytest.mark.parametrize("how", ["whole", "byte by byte", "followed by the next message's first bytes"])
@pytest.mark.parametrize("name, message, amf3, wire", TABLE, ids=IDS)
def test_every_case_through_a_connection(name, message, amf3, wire, how):
    client, server = pair()
    client.send_message(so_message(wire, amf3))
    data = client.data_to_send()
    if how == "whole":
        assert server.receive_data(data) == [SharedObjectReceived(0, message, amf3)]
    elif how == "byte by byte":
        events = []
        for i in range(len(data)):
            events += server.receive_data(data[i:i + 1])
        assert events == [SharedObjectReceived(0, message, amf3)]
    else:
        client.send_command("next", 0)
        following = client.data_to_send()
        assert server.receive_data(data + following[:5]) == [SharedObjectReceived(0, message, amf3)]
        assert server.receive_data(following[5:]) == [CommandReceived(0, "next", 0, None, (), False)]


@pytest.mark.parametrize("amf3", [False, True])
def test_send_shared_object_writes_the_type_for_the_encoding_on_chunk_stream_3(amf3):
    client, server = pair()
    message = so(RequestChange("x", [1, "a"]), SendMessage("draw", ({"x": 1.5},)))
    server.send_shared_object(message, amf3=amf3)
    data = server.data_to_send()
    assert data[0] == 0x03                       # format 0 header on chunk stream 3
    assert data[7] == (16 if amf3 else 19)       # the message type id
    assert data[8:12] == b"\0\0\0\0"             # message stream 0
    assert client.receive_data(data) == [SharedObjectReceived(0, message, amf3)]


def test_an_unencodable_value_is_refused_before_anything_is_queued():
    client, server = pair()
    with pytest.raises(LocalProtocolError):
        server.send_shared_object(so(RequestChange("x", object())))
    with pytest.raises(LocalProtocolError):
        server.send_shared_object(so(Remove("k" * 70000)))
    with pytest.raises(LocalProtocolError):
        server.send_shared_object(so(version=2 ** 32))
    assert server.data_to_send() == b""


def test_an_amf0_only_peer_gets_no_switch():
    client, server = pair()
    board = so(RequestChange("x", b"\x01\x02"))
    server.send_shared_object(board)                    # a ByteArray needs AMF3: switched with 0x11 in type 19
    assert client.receive_data(server.data_to_send()) == [SharedObjectReceived(0, board, False)]
    with pytest.raises(LocalProtocolError, match="ByteArray"):
        server.send_shared_object(board, switch=False)
    assert server.data_to_send() == b""
    server.send_shared_object(so(RequestChange("x", [1, "a"])), switch=False)
    assert client.receive_data(server.data_to_send()) == [SharedObjectReceived(0, so(RequestChange("x", [1, "a"])),
                                                                               False)]


def test_a_type_16_message_tells_the_connection_that_the_peer_reads_amf3():
    client, server = pair()
    client.send_shared_object(so(Use()), amf3=True)
    server.receive_data(client.data_to_send())
    assert server.peer_sent_amf3


# -- the value budget ----------------------------------------------------------------------------------

def _exponential_tree(depth):
    tree = []
    for _ in range(depth):
        tree = [tree, tree]
    return tree


@pytest.mark.parametrize("amf3", [False, True])
def test_a_message_over_the_value_budget_is_refused_and_the_connection_stays_open(amf3):
    client, server = pair(Limits(value_budget=ValueBudget(max_nodes=1000)))
    # Each value within the budget, together over it: the whole message is measured.
    client.send_shared_object(so(RequestChange("a", _exponential_tree(8)), RequestChange("b", _exponential_tree(8)),
                                 name="board"), amf3=amf3)
    client.send_shared_object(so(RequestChange("a", 1)), amf3=amf3)
    refused, fine = server.receive_data(client.data_to_send())
    assert refused == MessageRefused(16 if amf3 else 19, 0, "", 0, "maxValueNodes",
                                     "shared object board: value expands to more than 1000 nodes (maxValueNodes)",
                                     amf3)
    assert server.state is State.OPEN
    assert fine == SharedObjectReceived(0, so(RequestChange("a", 1)), amf3)


# -- what a reader accepts beyond what we write ----------------------------------------------------------

LENIENT = [
    ("a RequestChange with two pairs is two events",
     HEAD + "03 00000018 000161" + ONE0 + "000162" + ONE0,
     so(RequestChange("a", 1), RequestChange("b", 1))),
    ("a Success with two keys is two events", HEAD + "05 00000006 000161 000162", so(Success("a"), Success("b"))),
    ("a Remove with two keys", HEAD + "09 00000006 000161 000162", so(Remove("a"), Remove("b"))),
    ("the body of an empty event is not read", HEAD + "01 00000002 abcd", so(Use())),
    ("a value switched to AMF3 in a type 19 message", HEAD + "03 00000006 000178 110401", so(RequestChange("x", 1))),
    ("a long-string handler", HEAD + "06 00000006 0c00000001 61", so(SendMessage("a"))),
    ("only 2 means persistent (Red5)", "0002 736f 00000001 00000010 00000000", so()),
    ("the reserved bytes are not read", "0002 736f 00000001 00000002 ffffffff", so(persistent=True)),
]


@pytest.mark.parametrize("wire, expected", [case[1:] for case in LENIENT], ids=[case[0] for case in LENIENT])
def test_lenient_reading(wire, expected):
    assert decode_shared_object(h(wire), False) == expected


# -- malformed bodies ---------------------------------------------------------------------------------

MALFORMED = [
    ("empty body", False, ""),
    ("truncated name length", False, "00"),
    ("truncated name", False, "0005 6162"),
    ("name is not UTF-8", False, "0002 fffe 00000001 00000000 00000000"),
    ("header truncated", False, "0002 736f 00000001 0000"),
    ("event header truncated", False, HEAD + "01 0000"),
    ("event length overruns the message", False, HEAD + "01 000000ff"),
    ("event length overruns the message by one", False, HEAD + "05 00000004 000178"),
    ("key overruns its event", False, HEAD + "05 00000002 0005 6162 63"),
    ("key is not UTF-8", False, HEAD + "09 00000003 0001 ff"),
    ("key event without a key", False, HEAD + "05 00000000"),
    ("RequestChange without a value", False, HEAD + "03 00000003 000178"),
    ("value overruns its event into the next", False, HEAD + "03 00000007 000178" + ONE0 + "01 00000000"),
    ("bad AMF value marker", False, HEAD + "03 00000004 000178 12"),
    ("truncated AMF value", False, HEAD + "03 00000006 000178 003ff0"),
    ("string value is not UTF-8", False, HEAD + "03 00000007 000178 020001 ff"),
    ("SendMessage handler is not a string", False, HEAD + "06 00000009" + ONE0),
    ("SendMessage without a handler", False, HEAD + "06 00000000"),
    ("Status without a level", False, HEAD + "07 00000003 000178"),
    ("Status with bytes after its level", False, HEAD + "07 00000007 000178 000179 00"),
    ("AMF3 message without its format byte", True, HEAD),
    ("AMF3 message with format byte 3", True, "03" + HEAD),
    ("empty AMF3 message", True, ""),
    ("a string reference to nothing (no tables carried over)", True, "00" + HEAD + "03 00000006 000178 110600"),
]


@pytest.mark.parametrize("amf3, wire", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_body_is_a_protocol_error(amf3, wire, each_build):
    with pytest.raises(RemoteProtocolError):
        decode_shared_object(h(wire), amf3)


@pytest.mark.parametrize("amf3, wire", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_body_closes_only_its_connection(amf3, wire):
    client, server = pair()
    bystander_client, bystander = pair()
    client.send_message(so_message(h(wire), amf3))
    with pytest.raises(RemoteProtocolError):
        server.receive_data(client.data_to_send())
    assert server.state is State.CLOSED
    bystander_client.send_shared_object(so(Use()))
    assert bystander.receive_data(bystander_client.data_to_send()) == [SharedObjectReceived(0, so(Use()), False)]


# -- round trips -------------------------------------------------------------------------------------------

texts = st.text(max_size=20)
keys = st.text(min_size=1, max_size=10)
scalars = (st.none() | st.booleans() | st.integers(-2 ** 53, 2 ** 53)
           | st.floats(allow_nan=False, allow_infinity=False) | texts)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=12)
events = st.one_of(
    st.builds(Use), st.builds(Release), st.builds(Clear), st.builds(UseSuccess),
    st.builds(RequestChange, texts, values),
    st.builds(Change, st.lists(st.tuples(texts, values), min_size=1, max_size=3).map(tuple)),
    st.builds(Success, texts), st.builds(Remove, texts), st.builds(RequestRemove, texts),
    st.builds(SendMessage, texts, st.lists(values, max_size=3).map(tuple)),
    st.builds(Status, texts, texts),
    st.builds(UnknownEvent, st.integers(12, 255), st.binary(max_size=10)),
)
messages = st.builds(SharedObjectMessage, texts, st.integers(0, 2 ** 32 - 1), st.booleans(),
                     st.lists(events, max_size=5).map(tuple))


@settings(max_examples=300, deadline=None)
@given(messages, st.booleans())
def test_round_trip(message, amf3):
    assert decode_shared_object(encode_shared_object(message, amf3), amf3) == message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60), st.booleans())
def test_any_bytes_decode_or_raise_a_protocol_error(data, amf3):
    try:
        decode_shared_object(data, amf3)
    except RemoteProtocolError:
        pass

