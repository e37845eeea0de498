"""README, type mapping, JSON -> AMF: an object with "_explicitType" becomes a typed object of that alias
("the Flash client gets its registered class back"), unless the alias is a class whose wire form no JSON
object gives (pyamf's own RecordSet and flex.* classes, an externalizable class): then a clear error.

Decided here because two edits disagreed (issue 15): a fuzz finding refused every alias pyamf had
registered, which also refused an application's own plain classes, the README's promise.  A plain class
is read back from its fields (test 1); an externalizable one would be read as an opaque body the JSON
object never wrote (test 2), and pyamf's own classes have required fields or bodies of their own (test 3).
Each test decodes what the client would receive with our decoder, the one the client side uses.
"""
import json

import pyamf
import pytest

from fmspy_gateway.app.echo import RED5_ECHO, register_red5_echo_classes
from fmspy_gateway.bridge import mapping
from fmspy_gateway.bridge.mapping import MappingError, json_to_amf
from fmspy_gateway.rtmp import amf


class Cart:
    def __init__(self, items=None):
        self.items = items or []


@pytest.fixture
def cart_alias():
    pyamf.register_class(Cart, "com.example.Cart")
    yield "com.example.Cart"
    pyamf.unregister_class("com.example.Cart")


def _received(value, amf3):
    """What a client decodes from the reply carrying ``value``."""
    return amf.decode_values(amf.encode_values([value], amf3=amf3), amf3=amf3)[0]


@pytest.mark.parametrize("amf3", [False, True], ids=["amf0", "amf3"])
def test_an_applications_registered_class_arrives_as_that_class(cart_alias, amf3):
    value = json_to_amf(json.loads('{"_explicitType": "com.example.Cart", "items": ["apple"]}'),
                        encoding=3 if amf3 else 0)
    received = _received(value, amf3)
    assert type(received) is Cart and received.items == ["apple"]


def test_an_externalizable_class_is_a_clear_error_not_an_unreadable_body():
    register_red5_echo_classes()     # what the echo application registers: IExternalizable in Red5's test
    alias = RED5_ECHO + "ExternalizableClass"
    with pytest.raises(MappingError, match=r"cannot send an object typed '.*ExternalizableClass' to the client: "
                                           r"that class alias is registered with pyamf with a wire form of its own"):
        json_to_amf({"result": {"_explicitType": alias, "values": [True]}})


@pytest.mark.parametrize("alias", ["RecordSet", "flex.messaging.io.ArrayCollection",
                                   "flex.messaging.messages.AcknowledgeMessage"])
def test_pyamfs_own_classes_are_a_clear_error_naming_the_path(alias):
    with pytest.raises(MappingError, match=r"\(at result\.rows\)$"):
        json_to_amf({"rows": {"_explicitType": alias, "serverInfo": {}}}, path="result")


def test_without_the_refusal_pyamfs_classes_would_reach_the_client_unreadable(monkeypatch):
    """Why the refusal exists: the same object, let through, is a value the client cannot decode."""
    monkeypatch.setattr(mapping, "_has_own_wire_form", lambda alias: False)
    value = json_to_amf({"_explicitType": "flex.messaging.messages.AcknowledgeMessage"})
    with pytest.raises(Exception):
        _received(value, amf3=True)


def test_an_unregistered_alias_stays_a_typed_object_of_that_alias():
    received = _received(json_to_amf({"_explicitType": "com.example.Unknown", "id": 1}), amf3=True)
    assert (type(received), received.alias, received["id"]) == (amf.TypedObject, "com.example.Unknown", 1)
