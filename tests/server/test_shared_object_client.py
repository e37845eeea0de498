"""Our client's remote shared objects (server.shared_object_client) on a StringTransport.

The server end is a bare core ``Connection``: the test plays the server,
reading what the client sent and answering with hand-made messages, so each
case says exactly what a server sent and what the client's program saw.
"""
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.calls import ConnectionClosed
from fmspy_gateway.rtmp.connection import Connection, Role, State
from fmspy_gateway.rtmp.events import SharedObjectReceived
from fmspy_gateway.rtmp.sharedobject import (Change, Clear, Release, Remove, RequestChange, RequestRemove,
                                             SendMessage, SharedObjectMessage, Status, Success, UnknownEvent,
                                             Use, UseSuccess)
from fmspy_gateway.server.client import RTMPClientProtocol
from fmspy_gateway.server.shared_object_client import SharedObjectRefused


class SharedObjectClientTests(SynchronousTestCase):
    amf3 = False

    def setUp(self):
        self.protocol = RTMPClientProtocol(Clock(), handshake_timeout=None, ping_interval=None,
                                           keepalive_timeout=None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.protocol.amf3 = self.amf3
        self.server = Connection(Role.SERVER)
        while self.server.state is not State.OPEN or self.protocol.connection.state is not State.OPEN:
            self.received()
            self.answer()
        self.received()
        self.syncs, self.messages, self.statuses = [], [], []

    def received(self):
        """The shared object messages the server got from the client since last asked."""
        sent = self.transport.value()
        self.transport.clear()
        events = self.server.receive_data(sent) if sent else []
        return [(e.message, e.amf3) for e in events if isinstance(e, SharedObjectReceived)]

    def answer(self, *messages):
        for message in messages:
            self.server.send_shared_object(message, amf3=self.amf3)
        back = self.server.data_to_send()
        if back:
            self.protocol.dataReceived(back)

    def watched(self, name="board", persistent=False):
        so = self.protocol.shared_object(name, persistent)
        so.on_sync = self.syncs.append
        so.on_message = lambda handler, args: self.messages.append((handler, args))
        so.on_status = lambda code, level: self.statuses.append((code, level))
        return so

    def synced(self, slots=(("a", 1),), version=3):
        so = self.watched()
        d = so.connect()
        self.received()
        self.answer(SharedObjectMessage("board", version, False, (UseSuccess(), Clear(), Change(tuple(slots)))))
        self.assertIs(self.successResultOf(d), so)
        del self.syncs[:]
        return so

    def test_connect_sends_use_and_fires_after_the_first_sync(self):
        so = self.watched(persistent=True)
        d = so.connect()
        self.assertEqual(self.received(), [(SharedObjectMessage("board", 0, True, (Use(),)), self.amf3)])
        self.assertNoResult(d)
        self.answer(SharedObjectMessage("board", 4, True, (UseSuccess(), Clear(), Change((("a", 1), ("b", "x"))))))
        self.assertIs(self.successResultOf(d), so)
        self.assertTrue(so.connected)
        self.assertEqual((so.data, so.version), ({"a": 1, "b": "x"}, 4))
        self.assertEqual(self.syncs, [[("clear", None), ("change", "a"), ("change", "b")]])

    def test_the_same_name_is_the_same_object(self):
        self.assertIs(self.protocol.shared_object("board"), self.protocol.shared_object("board"))
        self.assertIsNot(self.protocol.shared_object("board"), self.protocol.shared_object("other"))

    def test_set_property_shows_at_once_and_success_confirms_it(self):
        so = self.synced()
        so.set_property("b", [1, 2])
        self.assertEqual(so.data, {"a": 1, "b": [1, 2]})
        self.assertEqual(self.received(), [(SharedObjectMessage("board", 3, False, (RequestChange("b", [1, 2]),)),
                                            self.amf3)])
        self.answer(SharedObjectMessage("board", 4, False, (Success("b"),)))
        self.assertEqual(self.syncs, [[("success", "b")]])
        self.assertEqual((so.data, so.version), ({"a": 1, "b": [1, 2]}, 4))

    def test_a_refused_change_puts_the_servers_value_back(self):
        so = self.synced()
        so.set_property("a", 2)
        so.set_property("new", "x")
        self.received()
        refused = SharedObjectMessage("board", 3, False, (Status("SharedObject.NoWriteAccess", "error"),))
        self.answer(refused)
        self.assertEqual(so.data, {"a": 1, "new": "x"})        # one answer: the oldest request
        self.answer(refused)
        self.assertEqual(so.data, {"a": 1})
        self.assertEqual(self.syncs, [[("reject", "a")], [("reject", "new")]])
        self.assertEqual(self.statuses, [("SharedObject.NoWriteAccess", "error")] * 2)

    def test_answers_come_in_request_order_so_a_refusal_finds_its_request(self):
        so = self.synced()
        so.set_property("locked", 2)     # refused
        so.set_property("a", 5)          # applied
        so.delete("other")               # refused
        so.set_property("locked", 3)     # refused again
        self.answer(SharedObjectMessage("board", 3, False, (Status("SharedObject.NoWriteAccess", "error"),)))
        self.assertEqual(so.data, {"a": 5, "locked": 3})       # the later set of "locked" still shows
        self.answer(SharedObjectMessage("board", 4, False, (Success("a"),)),
                    SharedObjectMessage("board", 4, False, (Status("SharedObject.NoWriteAccess", "error"),)),
                    SharedObjectMessage("board", 4, False, (Status("SharedObject.NoWriteAccess", "error"),)))
        self.assertEqual(so.data, {"a": 5})
        self.assertEqual(self.syncs, [[("reject", "locked")], [("success", "a")], [("reject", "other")],
                                      [("reject", "locked")]])

    def test_a_change_from_someone_else_does_not_hide_ours_before_the_server_answers(self):
        so = self.synced()
        so.set_property("a", 7)
        self.answer(SharedObjectMessage("board", 4, False, (Change((("a", 6),)),)))   # applied before ours
        self.assertEqual(so.data, {"a": 7})
        self.answer(SharedObjectMessage("board", 5, False, (Success("a"),)))
        self.assertEqual(so.data, {"a": 7})

    def test_deleting_with_a_null_value(self):
        so = self.synced()
        so.set_property("a", None)
        self.assertEqual(so.data, {})
        self.answer(SharedObjectMessage("board", 4, False, (Success("a"),)))
        self.assertEqual(so.data, {})
        self.answer(SharedObjectMessage("board", 5, False, (Change((("a", 1),)),)))
        self.assertEqual(so.data, {"a": 1})

    def test_someone_elses_change_and_removal(self):
        so = self.synced()
        self.answer(SharedObjectMessage("board", 5, False, (Change((("a", 9), ("c", None))),)),
                    SharedObjectMessage("board", 6, False, (Remove("a"),)))
        self.assertEqual(self.syncs, [[("change", "a"), ("change", "c")], [("delete", "a")]])
        self.assertEqual((so.data, so.version), ({"c": None}, 6))

    def test_delete_asks_and_the_slot_goes_when_the_server_says_so(self):
        so = self.synced()
        so.delete("a")
        self.assertEqual(self.received(), [(SharedObjectMessage("board", 3, False, (RequestRemove("a"),)),
                                            self.amf3)])
        self.assertEqual(so.data, {"a": 1})
        self.answer(SharedObjectMessage("board", 4, False, (Remove("a"),)))
        self.assertEqual(so.data, {})

    def test_send_and_messages(self):
        so = self.synced()
        so.send("draw", 1, {"x": 2.5})
        drawn = SharedObjectMessage("board", 3, False, (SendMessage("draw", (1, {"x": 2.5})),))
        self.assertEqual(self.received(), [(drawn, self.amf3)])
        self.answer(drawn)
        self.assertEqual(self.messages, [("draw", (1, {"x": 2.5}))])
        self.assertEqual(self.syncs, [])

    def test_an_error_status_fails_the_connect(self):
        so = self.watched()
        d = so.connect()
        self.answer(SharedObjectMessage("board", 0, False, (Status("SharedObject.BadPersistence", "error"),)))
        failure = self.failureResultOf(d, SharedObjectRefused)
        self.assertEqual(failure.value.code, "SharedObject.BadPersistence")
        self.assertFalse(so.connected)
        self.assertIsNot(self.protocol.shared_object("board"), so)     # the name is free again

    def test_close_releases_and_frees_the_name(self):
        so = self.synced()
        so.close()
        self.assertEqual(self.received(), [(SharedObjectMessage("board", 3, False, (Release(),)), self.amf3)])
        self.assertFalse(so.connected)
        self.assertIsNot(self.protocol.shared_object("board"), so)
        self.answer(SharedObjectMessage("board", 4, False, (Change((("a", 2),)),)))     # in flight: dropped
        self.assertEqual((so.data, self.syncs), ({"a": 1}, []))

    def test_unknown_events_are_skipped(self):
        so = self.synced()
        self.answer(SharedObjectMessage("board", 4, False, (UnknownEvent(14, b"?"), Change((("a", 2),)))))
        self.assertEqual((so.data, self.syncs), ({"a": 2}, [[("change", "a")]]))

    def test_losing_the_connection_fails_a_waiting_connect_and_later_ones(self):
        so = self.watched()
        d = so.connect()
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertIn("connection closed", self.failureResultOf(d, ConnectionClosed).getErrorMessage())
        self.failureResultOf(self.protocol.shared_object("other").connect(), ConnectionClosed)
        self.assertRaises(ConnectionClosed, self.protocol.shared_object("third").set_property, "a", 1)


class AMF3SharedObjectClientTests(SharedObjectClientTests):
    """The same over an objectEncoding 3 connection: type 16 both ways."""

    amf3 = True
