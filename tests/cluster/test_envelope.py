"""Envelopes (cluster/envelope.py): AMF values round trip; anything else from Redis is refused, saying why."""
import pytest

from fmspy_gateway.cluster.envelope import BadEnvelope, Envelope, decode, encode
from fmspy_gateway.cluster.layout import Layout, escape
from fmspy_gateway.rtmp import amf
from fmspy_gateway.rtmp.budget import ValueBudget

BUDGET = ValueBudget()


def test_an_envelope_round_trips_with_its_values():
    envelope = Envelope("call", "node-a/7", {"origin": "node-a", "client": "c1", "method": "ask", "timeout": 2.5},
                        ("why", {"deep": [1, None, True]}, amf.Vector([1.5], kind="double")))
    assert decode(encode(envelope), max_bytes=1 << 20, budget=BUDGET) == envelope


@pytest.mark.parametrize("payload, reason", [
    (b"\x03" * 2000, "over the limit of 1000"),
    (b"\xff\xfe", "not AMF"),
    (amf.encode_values(["not a header"], amf3=False), "no header"),
    (amf.encode_values([{"v": 2, "kind": "ping", "id": "x"}], amf3=False), "version 2"),
    (amf.encode_values([{"v": 1, "kind": "exec", "id": "x"}], amf3=False), "unknown kind 'exec'"),
    (amf.encode_values([{"v": 1, "kind": "reached", "id": "x", "count": "3"}], amf3=False), "bad 'count'"),
    (amf.encode_values([{"v": 1, "kind": "reached", "id": "x", "count": True}], amf3=False), "bad 'count'"),
    (amf.encode_values([{"v": 1, "kind": "failure", "id": "x", "error": "boom", "code": "c", "description": "d"}],
                       amf3=False), "failure 'boom'"),
])
def test_what_is_not_an_envelope_is_refused_saying_why(payload, reason):
    with pytest.raises(BadEnvelope, match=reason):
        decode(payload, max_bytes=1000, budget=BUDGET)


def test_values_over_the_budget_are_refused():
    payload = encode(Envelope("result", "x/1", {}, (list(range(100)),)))
    with pytest.raises(BadEnvelope, match="over budget"):
        decode(payload, max_bytes=1 << 20, budget=ValueBudget(max_nodes=10))


def test_a_name_cannot_stand_for_another_key():
    layout = Layout()
    assert layout.room("a:b", "c") != layout.room("a", "b:c")
    assert layout.room("a%3Ab", "c") != layout.room("a:b", "c")
    assert escape("50%:x") == "50%25%3Ax"
