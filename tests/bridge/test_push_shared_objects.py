"""The push API's shared-object methods (so.get, so.set, so.delete, so.clear, so.send) over StubTreq.

Behind the push API is a real ``Application`` on a real ``LocalHub``; a
recording listener, registered with the hub's shared objects as a client's
would be, hears every update.  What the push API promises: each request is
validated (jsonschema) before the application is asked anything, values are
mapped through bridge/mapping.py for AMF0 (the narrower encoding: listeners of
both read the object), the slots of one request are one batch (one update,
one version, one message per listener), and the answer is the version made,
or a JSON-RPC error naming the status code a Flash client would get and why.
What a Flash client then sees is proved end to end in
tests/e2e/test_gateway_shared_objects.py.
"""
import datetime

from treq.testing import StubTreq

from fmspy_gateway.app.application import Application
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.shared_objects import DeleteSlot, SendToListeners, SetSlot, SharedObjectLimits
from fmspy_gateway.bridge.push import PushAPI, PushResource
from fmspy_gateway.rtmp import amf

from .test_push import TOKEN, PushTestCase


class Listener:
    """A listener as the hub's shared objects see one (a client's, ``app/shared_objects.py``): every update."""

    id = "0123456789abcdef"

    def __init__(self):
        self.updates = []

    def deliver(self, update):
        self.updates.append(update)


class SharedObjectPushTestCase(PushTestCase):
    def setUp(self):
        self.hub = LocalHub()
        self.shop = Application("shop", hub=self.hub)
        self.resource = PushResource(PushAPI({"shop": self.shop}), TOKEN, max_body=self.max_body)
        self.stub = StubTreq(self.resource)
        self.listener = Listener()
        self.successResultOf(self.hub.shared_objects.use("shop", "board", False, self.listener))

    def result(self, method, params):
        status, answer = self.post(self.request(method, params))
        self.assertEqual(status, 200)
        self.assertNotIn("error", answer)
        return answer["result"]

    def operations(self):
        """The operations of each update the listener heard, one tuple per update."""
        return [tuple(applied.operation for applied in update.applied) for update in self.listener.updates]


class GetTests(SharedObjectPushTestCase):
    def test_get_answers_the_version_and_the_slots_as_json(self):
        user = amf.TypedObject("com.example.User")
        user["id"] = 7
        board = self.shop.shared_object("board")
        with board.batch():
            board.set("x", 1.0)
            board.set("who", user)
            board.set("at", datetime.datetime(2009, 2, 13, 23, 31, 30, 123000))
            board.set("blob", amf.ByteArray(b"\x89PNG"))
        self.assertEqual(self.result("so.get", {"app": "shop", "name": "board"}), {
            "version": 1,
            "data": {"x": 1, "who": {"id": 7, "_explicitType": "com.example.User"},
                     "at": "2009-02-13T23:31:30.123Z", "blob": "iVBORw=="}})

    def test_a_slot_json_cannot_carry_is_an_error_naming_it(self):
        self.shop.shared_object("board").set("n", float("nan"))      # fine in AMF, null in JSON
        self.shop.shared_object("board").set("bad", amf.Dictionary([((1, 2), "tuple key")]))
        message = self.rpc_error(self.request("so.get", ["shop", "board"]), -32003)
        self.assertTrue(message.startswith("the shared object holds a value JSON cannot carry: "), message)
        self.assertIn("data.bad", message)

    def test_the_other_persistence_is_bad_persistence(self):
        error = self.post(self.request("so.get", ["shop", "board", True]))[1]["error"]
        self.assertEqual(error, {"code": -32003, "message": "SharedObject.BadPersistence: 'board' is not persistent",
                                 "data": {"code": "SharedObject.BadPersistence"}})

    def test_a_persistent_object_without_shared_object_dir_cannot_be_created(self):
        message = self.rpc_error(self.request("so.get", ["shop", "scores", True]), -32003)
        self.assertEqual(message, "SharedObject.ObjectCreationFailed: shop has no sharedObjectDir: persistent "
                                  "objects are refused")


class SetTests(SharedObjectPushTestCase):
    def test_several_slots_are_one_update_mapped_for_amf0_and_answered_with_its_version(self):
        self.shop.shared_object("board").set("gone", "soon")
        answer = self.result("so.set", {"app": "shop", "name": "board",
                                        "values": {"x": 1, "user": {"_explicitType": "com.example.User", "id": 7},
                                                   "gone": None}})
        self.assertEqual(answer, {"version": 2})
        set_x, set_user, delete = self.operations()[-1]
        self.assertEqual((set_x, delete), (SetSlot("x", 1), DeleteSlot("gone")))   # null deletes, as in Flash
        user = set_user.value
        self.assertEqual((type(user), user.alias, user["id"]), (amf.TypedObject, "com.example.User", 7))
        self.assertEqual(self.listener.updates[-1].version, 2)

    def test_a_value_amf0_cannot_carry_is_invalid_params_and_nothing_changes(self):
        message = self.rpc_error(self.request("so.set", ["shop", "board", {"ok": 1, "k": {"": 1}}]), -32602)
        self.assertIn('empty key ("") to an AMF0 client', message)
        self.assertIn("values.k", message)
        message = self.rpc_error(self.request("so.set", ["shop", "board", {"n": int("9" * 400)}]), -32602)
        self.assertIn("(at values.n)", message)
        self.assertEqual(self.listener.updates, [])

    def test_the_shape_of_the_params_is_checked_first(self):
        for params, expected in [
            (["shop", "board", {}], "Invalid params: values: must not be empty"),
            (["shop", "board", [1]], "Invalid params: values: must be of type object, not array"),
            (["shop", "", {"x": 1}], "Invalid params: name: must not be empty"),
            (["shop", "board", {"x": 1}, "yes"], "Invalid params: persistent: must be of type boolean, not string"),
            ({"app": "shop", "values": {"x": 1}}, "Invalid params: 'name' is required"),
        ]:
            self.assertEqual(self.rpc_error(self.request("so.set", params), -32602), expected)
        self.assertEqual(self.listener.updates, [])

    def test_an_unknown_application_is_not_found(self):
        self.assertEqual(self.rpc_error(self.request("so.set", ["nowhere", "board", {"x": 1}]), -32001),
                         "no application 'nowhere'")

    def test_a_change_over_a_limit_is_refused_naming_the_option(self):
        self.hub.shared_objects.configure("shop", SharedObjectLimits(max_bytes=100), None)
        error = self.post(self.request("so.set", ["shop", "board", {"big": "x" * 200}]))[1]["error"]
        self.assertEqual(error["code"], -32003)
        self.assertTrue(error["message"].startswith("SharedObject.NoWriteAccess: maxSharedObjectBytes (100) would "
                                                    "be passed by 'board'"), error)
        self.assertEqual(self.listener.updates, [])


class DeleteClearSendTests(SharedObjectPushTestCase):
    def test_delete_removes_the_keys_in_one_update(self):
        board = self.shop.shared_object("board")
        with board.batch():
            for key, value in (("a", 1), ("b", 2), ("c", 3)):
                board.set(key, value)
        self.assertEqual(self.result("so.delete", ["shop", "board", ["a", "b"]]), {"version": 2})
        self.assertEqual(self.operations()[-1], (DeleteSlot("a"), DeleteSlot("b")))
        self.assertEqual(self.result("so.get", ["shop", "board"]), {"version": 2, "data": {"c": 3}})
        self.assertEqual(self.rpc_error(self.request("so.delete", ["shop", "board", [1]]), -32602),
                         "Invalid params: keys.0: must be of type string, not integer")
        self.assertEqual(self.rpc_error(self.request("so.delete", ["shop", "board", []]), -32602),
                         "Invalid params: keys: must not be empty")

    def test_clear(self):
        self.shop.shared_object("board").set("a", 1)
        self.assertEqual(self.result("so.clear", {"app": "shop", "name": "board"}), {"version": 2})
        self.assertEqual(self.result("so.get", ["shop", "board"]), {"version": 2, "data": {}})

    def test_send_maps_its_args_for_amf0_and_changes_no_version(self):
        self.assertEqual(self.result("so.send", ["shop", "board", "onNews", [1, {"a": [2]}]]), {"version": 0})
        self.assertEqual(self.operations(), [(SendToListeners("onNews", (1, {"a": [2]})),)])
        self.assertIn('empty key ("") to an AMF0 client',
                      self.rpc_error(self.request("so.send", ["shop", "board", "onNews", [{"": 1}]]), -32602))
        self.assertEqual(self.rpc_error(self.request("so.send", ["shop", "board", ""]), -32602),
                         "Invalid params: handler: must not be empty")
        self.assertEqual(len(self.listener.updates), 1)
