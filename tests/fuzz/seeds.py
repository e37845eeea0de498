"""Seed inputs for the fuzz targets, built with our own encoders and client core.

A fuzzer that starts from real traffic (a valid C0+C1, a connect command, a
publish, a shared object...) reaches the deep code paths in seconds instead
of having to invent a valid chunk header by chance.  ``seeds(name)`` is the
list of inputs for ``targets.TARGETS[name]``, in that target's input format
(the connection and handshake targets take one control byte first).
"""
import datetime
import json

from fmspy_gateway.rtmp import amf
from fmspy_gateway.rtmp.chunks import ChunkWriter, Message
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.rtmp.handshake import ClientHandshake
from fmspy_gateway.rtmp.messages import MessageType, UserControl, aggregate, peer_bandwidth, u32, user_control
from fmspy_gateway.rtmp.sharedobject import RequestChange, SendMessage, SharedObjectMessage, Use, \
    encode_shared_object

__all__ = ["seeds", "amf_values", "reference_bomb"]


def _random(n):
    return bytes((i * 13 + 5) & 0xFF for i in range(n))


def _typed(alias, **fields):
    obj = amf.TypedObject(alias)
    obj.update(fields)
    return obj


def amf_values():
    """Values of every kind the codec knows, shared and cyclic ones included."""
    shared = amf.ASObject(name="shared", n=1)
    cyclic = amf.ASObject(tag="loop")
    cyclic["self"] = cyclic
    mixed = amf.MixedArray({0: "a", 1: "b", "name": "mixed"})
    dense = amf.MixedArray({0: 1.5, 1: 2.5})
    return [
        None, amf.Undefined, True, False, 0, 1, -1, 268435455, -268435456, 2 ** 40, 1.5, -0.0,
        float("nan"), float("inf"), 1e308, "", "hello", "h\u00e9llo \u2603 \U0001f600", "x" * 300,
        datetime.datetime(2009, 2, 13, 23, 31, 30, 123000), datetime.datetime(1969, 7, 20, 20, 17, 40, 500000),
        amf.XML("<a b='1'>text</a>", document=True), amf.XML("<e4x/>", document=False),
        amf.ByteArray(b"\x00\x01\x02\xff"), amf.ByteArray(b"\x78\x9c" + bytes(10)),
        [1, "two", None, [3.5, []]], [shared, shared, shared], cyclic,
        amf.ASObject(a=1, b="two", c=[1, 2], d={"nested": True}),
        {"": 0, "k": 1}, mixed, dense,
        _typed("com.example.User", id=1, name="ann"), [_typed("com.example.Point", x=i, y=-i) for i in range(3)],
        _typed("a.very.long.class.Alias" * 4, v=1),
        amf.Vector([1, -2, 3], kind="int"), amf.Vector([1, 2], kind="uint", fixed=True),
        amf.Vector([1.5, float("nan")], kind="double"), amf.Vector(["s", shared], kind="object", type_name="*"),
        amf.Dictionary([("k", 1), (2, "two"), (shared, [1])], weak_keys=True),
    ]


def reference_bomb(depth=22):
    """An AMF0-switched AMF3 value of ~7 bytes a level that expands to 2**depth nodes.

    A0 = [], Ai = [Ai-1, Ai-1]: each Ai is written inline with A(i-1) inline
    as its first item and a reference to it as its second.  Inline arrays
    take reference indexes in the order they start: A(depth) is 0, Ai is
    depth - i.
    """
    def level(i):
        if i == 0:
            return b"\x09\x01\x01"
        return b"\x09\x05\x01" + level(i - 1) + b"\x09" + amf._u29((depth - i + 1) << 1)
    return b"\x11" + level(depth)


def _string_bomb(count=2000):
    """One 1 KB string and ``count`` references to it, in one AMF3 array."""
    items = b"\x06" + amf._u29(1000 << 1 | 1) + b"s" * 1000 + (b"\x06\x00" * (count - 1))
    return b"\x11\x09" + amf._u29(count << 1 | 1) + b"\x01" + items


def _amf_payloads(amf3):
    payloads = []
    values = amf_values()
    for value in values:
        try:
            payloads.append(amf.encode_values(["call", 1, None, value], amf3=amf3))
        except Exception:   # noqa: BLE001 -- a value one encoding cannot carry ({"": 0} in AMF0) is no seed
            pass
    for chunk in range(0, len(values), 8):
        try:
            payloads.append(amf.encode_values(values[chunk:chunk + 8], amf3=amf3))
        except Exception:   # noqa: BLE001
            pass
    payloads.append(amf.encode_values(["connect", 1, _connect_object(amf3)], amf3=amf3))
    deep_list, deep_object = [], amf.ASObject()
    for _ in range(amf.MAX_NESTING - 2):
        deep_list, deep_object = [deep_list], amf.ASObject(k=deep_object)
    payloads.append(amf.encode_values([deep_list, deep_object], amf3=amf3))
    payloads.append(amf.encode_values([[_typed("com.example.Row", a=i, b=str(i)) for i in range(20)]], amf3=amf3))
    if amf3:
        payloads.append(b"\x00" + reference_bomb(6))
        payloads.append(b"\x00" + reference_bomb(22))
        payloads.append(b"\x00" + _string_bomb(50))
    else:
        payloads.append(reference_bomb(6))
        payloads.append(_string_bomb(50))
        payloads.append(amf.encode_values(["@setDataFrame", "onMetaData", amf.MixedArray(
            {"duration": 0, "width": 640.0, "height": 480.0, "videocodecid": 7, "encoder": "Lavf58"})], amf3=False))
    return payloads


def _connect_object(amf3):
    return amf.ASObject(app="live", flashVer="WIN 32,0,0,465", swfUrl="", tcUrl="rtmp://127.0.0.1/live",
                        fpad=False, capabilities=239, audioCodecs=3575, videoCodecs=252, videoFunction=1,
                        pageUrl="", objectEncoding=3 if amf3 else 0)


def _command(name, txn, obj, *args, amf3=False, stream_id=0):
    payload = amf.encode_values([name, txn, obj, *args], amf3=amf3)
    type_id = MessageType.COMMAND_AMF3 if amf3 else MessageType.COMMAND_AMF0
    return Message(type_id, stream_id, 0, payload, 5 if stream_id else 3)


def _session(amf3):
    """The messages of a publish and a play session, as ffmpeg and Flash send them."""
    control = 2
    so = encode_shared_object(SharedObjectMessage("room", 0, False, (
        Use(), RequestChange("k", {"x": 1, "tags": ["a", "a"]}), SendMessage("draw", (1, "line")))), amf3)
    audio = Message(MessageType.AUDIO, 1, 20, b"\xaf\x01" + _random(60), 6)
    video = Message(MessageType.VIDEO, 1, 20, b"\x17\x01\x00\x00\x00" + _random(300), 7)
    return [
        Message(MessageType.SET_CHUNK_SIZE, 0, 0, u32(4096), control),
        Message(MessageType.WINDOW_ACK_SIZE, 0, 0, u32(2500000), control),
        _command("connect", 1, _connect_object(amf3), amf3=amf3),
        Message(MessageType.SET_PEER_BANDWIDTH, 0, 0, peer_bandwidth(2500000, 2), control),
        Message(MessageType.USER_CONTROL, 0, 0, user_control(UserControl.PING_REQUEST, 77), control),
        Message(MessageType.USER_CONTROL, 0, 0, user_control(UserControl.SET_BUFFER_LENGTH, 1, 3000), control),
        _command("releaseStream", 2, None, "cam", amf3=amf3),
        _command("FCPublish", 3, None, "cam", amf3=amf3),
        _command("createStream", 4, None, amf3=amf3),
        _command("publish", 5, None, "cam", "live", amf3=amf3, stream_id=1),
        Message(MessageType.DATA_AMF3 if amf3 else MessageType.DATA_AMF0, 1, 0,
                amf.encode_values(["@setDataFrame", "onMetaData", {"width": 640, "height": 480}], amf3=amf3), 5),
        audio, video,
        Message(MessageType.AGGREGATE, 1, 40, aggregate([(8, 1, 40, b"\xaf\x01abc"), (9, 1, 41, b"\x27\x01xyz")]), 7),
        Message(MessageType.SHARED_OBJECT_AMF3 if amf3 else MessageType.SHARED_OBJECT_AMF0, 0, 0, so, 3),
        _command("play", 6, None, "cam", -2, -1, True, amf3=amf3, stream_id=1),
        Message(MessageType.ACKNOWLEDGEMENT, 0, 0, u32(5000), control),
        Message(7, 0, 0, b"unknown type", 3),
        Message(MessageType.VIDEO, 1, 0x1000000, _random(5000), 7),   # extended timestamp, many chunks
        Message(MessageType.ABORT, 0, 0, u32(7), control),
        _command("deleteStream", 7, None, 1, amf3=amf3),
    ]


def _chunked(messages, chunk_size=128):
    """The messages as a client would put them on the wire (its chunk size switching as announced)."""
    writer = ChunkWriter()
    writer.chunk_size = chunk_size
    out = []
    for message in messages:
        out.append(writer.write(message))
        if message.type_id == MessageType.SET_CHUNK_SIZE:
            writer.chunk_size = int.from_bytes(message.payload, "big")
    return b"".join(out)


def _connection_seeds():
    found = []
    for amf3 in (False, True):
        messages = _session(amf3)
        found.append(b"\x00" + _chunked(messages))
        found.append(b"\x05" + _chunked(messages))
        found.append(b"\x80" + _chunked(messages))
        for message in messages:
            if message.type_id == MessageType.SET_CHUNK_SIZE:
                continue
            found.append(b"\x00" + _chunked([message]))
            found.append(b"\x81" + _chunked([message]))
    bomb = Message(MessageType.COMMAND_AMF3, 0, 0, amf.encode_values(["call", 2, None], amf3=True)
                   + reference_bomb(22), 3)
    found.append(b"\x00" + _chunked([bomb]))
    found.append(b"\x80" + _chunked([bomb]))
    return found


def _handshake_seeds():
    found = []
    for digest in (True, False):
        for scheme in (0, 1):
            client = Connection(Role.CLIENT, random_bytes=_random, epoch=99, digest=digest)
            if scheme:
                c0c1 = ClientHandshake(random_bytes=_random, epoch=99, digest=digest, digest_scheme=1).data_to_send()
            else:
                c0c1 = client.data_to_send()
            c2 = _random(1536)
            connect = _chunked([_command("connect", 1, _connect_object(False))])
            found += [b"\x00" + c0c1, b"\x00" + c0c1 + c2, b"\x07" + c0c1 + c2 + connect, b"\x01" + c0c1[:100]]
    found += [b"\x00" + b"GET / HTTP/1.1\r\n", b"\x00\x16\x03\x01", b"\x00\x06" + bytes(1536)]
    return found


def _json_seeds():
    texts = [
        None, True, 0, -1, 2 ** 31, 2 ** 53 + 1, 10 ** 400, 1.5, -0.0, 1e308, "", "text", "\u2603",
        [], [1, [2, [3]]], {}, {"a": 1, "b": [True, None]}, {"": 1}, {"_explicitType": "com.example.User", "id": 1},
        {"_explicitType": "", "x": 1}, {"_explicitType": 5}, {"_explicitType": "RecordSet", "serverInfo": {}},
        "2009-02-13T23:31:30.123Z", ["AAEC/w==", "2009-02-13 23:31:30+01:00"],
        {"at": "2009-02-13T23:31:30Z", "data": "aGVsbG8=", "t_x": "1969-07-20T20:17:40.5Z", "b_y": "AA==",
         "list": [{"at": "2000-01-01T00:00:00Z"}], "other": {"at": "bad"}},
    ]
    found = [json.dumps(value).encode() for value in texts]
    found += [b"NaN", b"[Infinity, -Infinity]", b'"\\ud800"', b"[" * 200 + b"]" * 200, b'{"a": 1, "a": 2}']
    return found


def _routes_seeds():
    schema = json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "array",
                         "prefixItems": [{"$ref": "#/$defs/id"}], "$defs": {"id": {"type": "integer"}}}).encode()
    return [
        b"[app]\nadd = math.add\n",
        b"[app]\n; comment\nadd = math.add params=valid.json result=fuzzed.json timeout=2.5\n"
        b"* = *\n@connect = auth.connect context=yes endpoint=http://127.0.0.1:9000/rpc\n"
        b"@disconnect = auth.gone\n\x00" + schema,
        b"[other]\nx = y\n[app]\nsub = math.sub timeout=1s # trailing\n  continued\n",
        b"[app]\nbad = rpc.discover\n",
        b"[app]\nf = g params=fuzzed.json\n\x00" + b'{"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}',
        b"[app]\nf = g result=fuzzed.json\n\x00" + b'{"$schema": "http://json-schema.org/draft-07/schema#", '
        b'"items": [{"type": "string", "format": "date-time"}]}',
        b"\xef\xbb\xbf[app]\nf = g\n",
        b"[app]\nf = g params=fuzzed.json\n\x00" + b'{"$schema": "http://json-schema.org/draft-04/schema#", '
        b'"id": "#foo", "properties": {"a": {"$ref": "#foo"}}, "allOf": [{"$ref": "#/allOf/0"}]}',
        b"[app]\nf = g params=fuzzed.json\n\x00" + b'{"$schema": "http://json-schema.org/draft-03/schema#", '
        b'"extends": {"type": "array"}}',
        b"[app]\nf = g params=fuzzed.json\n\x00" + b'{"items": ' * 40 + b"{}" + b"}" * 40,
    ]


def _session_seeds():
    """A client's connect to each application, then calls and streams, as the connection target takes them."""
    found = []
    for amf3 in (False, True):
        for app in ("echotest", "chat", "live"):
            connect = amf.ASObject(_connect_object(amf3))
            connect["app"] = app
            connect["tcUrl"] = f"rtmp://127.0.0.1/{app}"
            messages = [_command("connect", 1, connect, amf3=amf3)]
            if app == "echotest":
                messages += [_command("echo", 2 + i, None, value, amf3=amf3)
                             for i, value in enumerate(amf_values()[:24])]
            elif app == "chat":
                messages += [_command("identify", 2, None, "ann", amf3=amf3),
                             _command("say", 3, None, "hello", amf3=amf3)]
            else:
                messages = _session(amf3)   # connects to live itself
            found.append(b"\x00" + _chunked(messages))
            found.append(b"\x83" + _chunked(messages))   # cut in 3-byte reads, small limits
    return found


def seeds(name):
    """The seed inputs of target ``name``."""
    if name == "handshake":
        return _handshake_seeds()
    if name == "connection":
        return _connection_seeds()
    if name == "amf0":
        return _amf_payloads(amf3=False)
    if name == "amf3":
        return [payload[1:] for payload in _amf_payloads(amf3=True)]   # the target adds the format byte
    if name == "json":
        return _json_seeds()
    if name == "routes":
        return _routes_seeds()
    if name == "session":
        return _session_seeds()
    raise KeyError(name)
