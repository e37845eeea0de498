"""Shared object semantics through real sessions: a core Connection on each side, one LocalHub, a Clock.

Every client is a client-side ``Connection`` whose bytes reach its own
``Session``; what the server sends to any listener is read back from that
client's bytes, so a test sees exactly the messages (and their number) a
client on a socket would.
"""
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from fmspy_gateway.app.application import Application
from fmspy_gateway.app.chat import ChatApplication
from fmspy_gateway.app.fileio import SynchronousExecutor
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.session import Session
from fmspy_gateway.app.shared_object_store import SharedObjectStore
from fmspy_gateway.app.shared_objects import Access, SharedObjectCode, SharedObjectLimits
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.rtmp.events import SharedObjectReceived
from fmspy_gateway.rtmp.sharedobject import (Change, Clear, Release, Remove, RequestChange, RequestRemove,
                                             SendMessage, SharedObjectMessage, Status, Success, UnknownEvent, Use,
                                             UseSuccess)

from .fakes import FakePeer


class HookedApp(Application):
    """Hooks a test sets: ``use_access``, ``refused_keys``; what ``on_shared_object_changed`` heard."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.use_access = Access.ALLOW
        self.change_verdict = True
        self.changed = []
        self.change_requests = []

    def on_shared_object_use(self, client, name, persistent):
        return self.use_access

    def on_shared_object_change(self, client, name, changes):
        self.change_requests.append((client.id, name, changes))
        return self.change_verdict

    def on_shared_object_changed(self, client, name, changes):
        self.changed.append((client.id if client is not None else None, name, changes))


class Listener:
    """One connected client: its core Connection, the session serving it, the messages it received."""

    def __init__(self, server, amf3=False):
        self.server = server
        self.amf3 = amf3
        self.peer = FakePeer(f"127.0.0.1:{5000 + len(server.clients)}")
        self.session = Session({"app": server.app}, self.peer, clock=server.clock)
        self.connection = Connection(Role.CLIENT)
        #: (message, amf3) pairs, in arrival order: since the last ``take``, and ever.
        self.received = []
        self.heard = []
        server.clients.append(self)
        server.pump()                               # the handshake
        params = {"app": "app", "tcUrl": "rtmp://h/app"}
        if amf3:
            params["objectEncoding"] = 3
        self.connection.send_command("connect", 1, params, ())
        server.pump()

    def send(self, name, *events, persistent=False, version=None):
        """Events in one message carrying, as Flash does, the last version heard of (unless ``version``)."""
        if version is None:
            version = max([m.version for m, _ in self.heard if m.name == name] or [0])
        self.connection.send_shared_object(SharedObjectMessage(name, version, persistent, tuple(events)),
                                           amf3=self.amf3)
        self.server.pump()

    def use(self, name, persistent=False):
        self.send(name, Use(), persistent=persistent)
        return self.take()

    def take(self):
        """The messages received since the last ``take``."""
        taken, self.received = [m for m, _ in self.received], []
        return taken

    def only(self):
        """The one message received since the last ``take`` (fails if there were none or several)."""
        taken = self.take()
        assert len(taken) == 1, taken
        return taken[0]


class Server:
    def __init__(self, app_class=HookedApp, hub=None, limits=None, store=None):
        self.clock = Clock()
        self.hub = hub if hub is not None else LocalHub()
        self.app = app_class("app", hub=self.hub)
        if limits is not None or store is not None:
            self.hub.shared_objects.configure("app", limits or SharedObjectLimits(), store)
        self.clients = []

    def pump(self):
        moved = True
        while moved:
            moved = False
            for client in self.clients:
                out = client.connection.data_to_send()
                if out:
                    moved = True
                    for event in client.peer.connection.receive_data(out):
                        client.session.handle(event)
                back = client.peer.connection.data_to_send()
                if back:
                    moved = True
                    messages = [(e.message, e.amf3) for e in client.connection.receive_data(back)
                                if isinstance(e, SharedObjectReceived)]
                    client.received.extend(messages)
                    client.heard.extend(messages)

    def listeners(self, count, amf3=False):
        return [Listener(self, amf3=amf3 if not isinstance(amf3, list) else amf3[i]) for i in range(count)]


@pytest.fixture
def server():
    return Server()


def synced(listener, name, persistent=False):
    message = listener.use(name, persistent)
    assert len(message) == 1, message
    return message[0]


# -- use ---------------------------------------------------------------------------------------------

def test_use_is_answered_use_success_clear_then_a_change_per_slot_in_one_message(server):
    a, b = server.listeners(2)
    first = synced(a, "board")
    assert first == SharedObjectMessage("board", 0, False, (UseSuccess(), Clear()))
    a.send("board", RequestChange("x", 1), RequestChange("y", "two"))
    a.take()
    assert synced(b, "board") == SharedObjectMessage(
        "board", 1, False, (UseSuccess(), Clear(), Change((("x", 1),)), Change((("y", "two"),))))


def test_an_amf3_client_gets_the_amf3_form_and_an_amf0_client_the_amf0_form():
    server = Server()
    amf0, amf3 = server.listeners(2, amf3=[False, True])
    amf0.use("board")
    amf3.use("board")
    amf0.send("board", RequestChange("list", [1, {"a": None}]))
    assert amf0.received[0][1] is False and amf0.received[0][0].events == (Success("list"),)
    assert amf3.received[0][1] is True
    assert amf3.received[0][0].events == (Change((("list", [1, {"a": None}]),)),)


# -- changes -----------------------------------------------------------------------------------------

def test_three_clients_a_change_is_success_to_the_requester_and_change_to_the_others(server):
    a, b, c = server.listeners(3)
    for listener in (a, b, c):
        synced(listener, "board")
    a.send("board", RequestChange("x", 1))
    assert a.only() == SharedObjectMessage("board", 1, False, (Success("x"),))
    assert b.only() == c.only() == SharedObjectMessage("board", 1, False, (Change((("x", 1),)),))


def test_a_change_to_the_same_value_is_success_only_and_keeps_the_version(server):
    a, b = server.listeners(2)
    synced(a, "board"), synced(b, "board")
    a.send("board", RequestChange("x", 1))
    a.take(), b.take()
    b.send("board", RequestChange("x", 1))
    assert b.only() == SharedObjectMessage("board", 1, False, (Success("x"),))
    assert a.take() == []
    b.send("board", RequestChange("x", 1.5))        # a float is another value: it changes
    assert a.only().events == (Change((("x", 1.5),)),)


def test_a_requester_that_had_not_seen_the_latest_version_gets_its_value_back_with_the_success(server):
    a, b = server.listeners(2)
    synced(a, "board"), synced(b, "board")
    a.send("board", RequestChange("x", "a's"))                 # b's change below crosses this Change
    b.send("board", RequestChange("x", "b's"), version=0)
    assert b.take()[-1] == SharedObjectMessage("board", 2, False, (Change((("x", "b's"),)), Success("x")))
    b.send("board", RequestChange("y", None), version=0)       # a delete that crossed a change
    assert b.only().events == (Remove("y"), Success("y"))
    b.send("board", RequestChange("x", "again"))               # up to date: Success alone
    assert b.only().events == (Success("x"),)


def test_a_null_value_deletes_success_to_the_requester_remove_to_the_others(server):
    a, b, c = server.listeners(3)
    for listener in (a, b, c):
        synced(listener, "board")
    a.send("board", RequestChange("x", 1))
    a.take(), b.take(), c.take()
    b.send("board", RequestChange("x", None))
    assert b.only() == SharedObjectMessage("board", 2, False, (Success("x"),))
    assert a.only() == c.only() == SharedObjectMessage("board", 2, False, (Remove("x"),))
    assert server.app.shared_object("board").data() == {}


def test_request_remove_sends_remove_to_everyone_the_requester_included(server):
    a, b = server.listeners(2)
    synced(a, "board"), synced(b, "board")
    a.send("board", RequestChange("x", 1))
    a.take(), b.take()
    b.send("board", RequestRemove("x"))
    assert a.only() == b.only() == SharedObjectMessage("board", 2, False, (Remove("x"),))


def test_send_message_reaches_every_listener_the_sender_included_and_keeps_the_version(server):
    a, b, c = server.listeners(3)
    for listener in (a, b, c):
        synced(listener, "chat")
    b.send("chat", SendMessage("said", ("hello", 2)))
    expected = SharedObjectMessage("chat", 0, False, (SendMessage("said", ("hello", 2)),))
    assert a.only() == b.only() == c.only() == expected


def test_one_incoming_message_makes_one_message_per_listener_and_one_version(server):
    a, b = server.listeners(2)
    synced(a, "board"), synced(b, "board")
    a.send("board", RequestChange("x", 1), RequestChange("y", 2), RequestRemove("z"), SendMessage("moved", ()))
    assert a.only() == SharedObjectMessage("board", 1, False, (Success("x"), Success("y"), Remove("z"),
                                                                SendMessage("moved", ())))
    assert b.only() == SharedObjectMessage("board", 1, False, (Change((("x", 1),)), Change((("y", 2),)),
                                                                SendMessage("moved", ())))


def test_versions_rise_by_one_per_change_in_the_order_every_listener_sees_them(server):
    listeners = server.listeners(3)
    for listener in listeners:
        synced(listener, "counter")
    for n in range(9):
        listeners[n % 3].send("counter", RequestChange("n", n))
    for listener in listeners:
        assert [m.version for m in listener.take()] == list(range(1, 10))


def test_many_clients_each_get_exactly_one_message_per_change(server):
    listeners = server.listeners(40, amf3=[n % 2 == 1 for n in range(40)])
    for listener in listeners:
        synced(listener, "lobby")
    listeners[7].send("lobby", RequestChange("seat7", "taken"), RequestChange("seat8", "taken"))
    for n, listener in enumerate(listeners):
        messages = listener.take()
        assert len(messages) == 1 and messages[0].version == 1
        assert messages[0].events[0] == (Success("seat7") if n == 7 else Change((("seat7", "taken"),)))


# -- release -----------------------------------------------------------------------------------------

def test_a_transient_object_vanishes_with_its_last_listener(server):
    a, b = server.listeners(2)
    synced(a, "room"), synced(b, "room")
    a.send("room", RequestChange("x", 1))
    a.send("room", Release())
    a.take(), b.take()
    a.send("room", RequestChange("x", 2))
    assert a.only().events == (Status(SharedObjectCode.NO_WRITE_ACCESS),)      # released: no longer its object
    assert b.take() == []
    b.send("room", Release())
    assert synced(a, "room") == SharedObjectMessage("room", 0, False, (UseSuccess(), Clear()))


def test_a_closed_connection_releases_its_objects(server):
    a, b = server.listeners(2)
    synced(a, "room")
    a.session.connection_lost("gone")
    server.pump()
    assert synced(b, "room").version == 0          # the object went with a: a new one


# -- persistence -------------------------------------------------------------------------------------

def persistent_server(directory, hub=None):
    return Server(hub=hub, store=SharedObjectStore(str(directory), SynchronousExecutor()))


def test_persistent_objects_survive_a_restart(tmp_path):
    first = persistent_server(tmp_path)
    a, = first.listeners(1, amf3=True)
    synced(a, "scores", persistent=True)
    a.send("scores", RequestChange("alice", 3), persistent=True)
    a.send("scores", RequestChange("bob", {"points": 4, "at": [1, 2]}), persistent=True)
    again = persistent_server(tmp_path)                 # a new server: a new hub, the same directory
    b, = again.listeners(1)
    assert synced(b, "scores", persistent=True) == SharedObjectMessage(
        "scores", 2, True, (UseSuccess(), Clear(), Change((("alice", 3),)),
                            Change((("bob", {"points": 4, "at": [1, 2]}),))))


def test_a_persistent_object_is_kept_after_its_last_listener(tmp_path):
    server = persistent_server(tmp_path)
    a, = server.listeners(1)
    synced(a, "scores", persistent=True)
    a.send("scores", RequestChange("alice", 3), RequestChange("bob", 1), persistent=True)
    a.send("scores", Release(), persistent=True)
    a.take()
    assert synced(a, "scores", persistent=True).events[2:] == (Change((("alice", 3),)), Change((("bob", 1),)))


def test_a_different_persistence_flag_gets_bad_persistence(tmp_path):
    server = persistent_server(tmp_path)
    a, b = server.listeners(2)
    synced(a, "board")
    assert synced(b, "board", persistent=True).events == (Status(SharedObjectCode.BAD_PERSISTENCE),)
    b.send("board", RequestChange("x", 1), persistent=True)
    assert b.only().events == (Status(SharedObjectCode.NO_WRITE_ACCESS),)     # it never became a listener
    assert a.take() == []


def test_persistent_objects_are_refused_without_a_shared_object_dir(server):
    a, = server.listeners(1)
    assert synced(a, "scores", persistent=True).events == (Status(SharedObjectCode.OBJECT_CREATION_FAILED),)


def test_a_persistent_name_that_cannot_be_a_file_name_is_refused(tmp_path):
    server = persistent_server(tmp_path)
    a, = server.listeners(1)
    for name in ("../escape", "a/b", ".hidden", ""):
        assert synced(a, name, persistent=True).events == (Status(SharedObjectCode.OBJECT_CREATION_FAILED),)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- limits ------------------------------------------------------------------------------------------

def test_a_change_past_max_shared_object_bytes_gets_no_write_access_and_is_logged():
    server = Server(limits=SharedObjectLimits(max_bytes=200))
    a, b = server.listeners(2)
    synced(a, "board"), synced(b, "board")
    a.send("board", RequestChange("small", "x" * 50))
    a.take(), b.take()
    a.send("board", RequestChange("big", "x" * 200), RequestChange("other", 1))
    assert a.only() == SharedObjectMessage("board", 1, False, (Status(SharedObjectCode.NO_WRITE_ACCESS),))
    assert b.take() == []                       # all or nothing: "other" was not applied either
    assert a.session.limit_log.counts[SharedObjectCode.NO_WRITE_ACCESS] == 1
    a.send("board", RequestChange("small", None), RequestChange("big", "x" * 150))   # room made in one batch
    assert a.only().events == (Success("small"), Success("big"))


def test_max_shared_objects_refuses_a_new_object():
    server = Server(limits=SharedObjectLimits(max_objects=2))
    a, = server.listeners(1)
    synced(a, "one"), synced(a, "two")
    assert synced(a, "three").events == (Status(SharedObjectCode.OBJECT_CREATION_FAILED),)
    a.send("one", Release())
    assert synced(a, "three").events == (UseSuccess(), Clear())


def test_max_shared_object_listeners_refuses_another_listener():
    server = Server(limits=SharedObjectLimits(max_listeners=2))
    a, b, c = server.listeners(3)
    synced(a, "room"), synced(b, "room")
    assert synced(c, "room").events == (Status(SharedObjectCode.NO_READ_ACCESS),)
    assert c.session.limit_log.counts == {SharedObjectCode.NO_READ_ACCESS: 1}


def test_messages_waiting_for_a_hook_are_bounded_by_max_queued_commands():
    class SlowApp(HookedApp):
        def on_shared_object_change(self, client, name, changes):
            return Deferred()                   # never answers

    server = Server(app_class=SlowApp)
    a, = server.listeners(1)
    synced(a, "board")
    for n in range(a.session.max_queued_commands):
        a.send("board", RequestChange("x", n))
    assert a.peer.closed_because is None
    a.send("board", RequestChange("x", "one too many"))
    assert a.peer.closed_because == "limit hit: maxQueuedCommands"


# -- hooks -------------------------------------------------------------------------------------------

def test_deny_read_gets_no_read_access(server):
    a, = server.listeners(1)
    server.app.use_access = Access.DENY_READ
    assert synced(a, "secret").events == (Status(SharedObjectCode.NO_READ_ACCESS),)


def test_deny_write_listens_but_its_changes_and_messages_get_no_write_access(server):
    a, b = server.listeners(2)
    synced(a, "board")
    server.app.use_access = Access.DENY_WRITE
    assert synced(b, "board").events == (UseSuccess(), Clear())
    b.send("board", RequestChange("x", 1), SendMessage("shout", ()))
    assert b.only().events == (Status(SharedObjectCode.NO_WRITE_ACCESS),)
    assert a.take() == []
    a.send("board", RequestChange("x", 1))
    assert b.only().events == (Change((("x", 1),)),)


def test_refused_keys_get_no_write_access_after_the_applied_ones(server):
    a, b = server.listeners(2)
    synced(a, "board"), synced(b, "board")
    server.app.change_verdict = ["locked"]
    a.send("board", RequestChange("free", 1), RequestChange("locked", 2))
    assert a.only().events == (Success("free"), Status(SharedObjectCode.NO_WRITE_ACCESS))
    assert b.only().events == (Change((("free", 1),)),)
    assert server.app.change_requests == [(a.session.client.id, "board", {"free": 1, "locked": 2})]
    assert server.app.changed == [(a.session.client.id, "board", {"free": 1})]
    server.app.change_verdict = False
    a.send("board", RequestChange("free", 3))
    assert a.only().events == (Status(SharedObjectCode.NO_WRITE_ACCESS),)
    assert b.take() == []


def test_a_hook_answering_later_keeps_the_order_of_a_clients_messages():
    class LaterApp(HookedApp):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.pending = []

        def on_shared_object_change(self, client, name, changes):
            d = Deferred()
            self.pending.append(d)
            return d

    server = Server(app_class=LaterApp)
    a, b = server.listeners(2)
    synced(a, "board"), synced(b, "board")
    a.send("board", RequestChange("x", 1))
    a.send("board", RequestChange("x", 2))
    assert len(server.app.pending) == 1         # the second waits for the first
    server.app.pending[0].callback(True)
    server.pump()
    server.app.pending[1].callback(True)
    server.pump()
    assert [m.events for m in b.take()] == [(Change((("x", 1),)),), (Change((("x", 2),)),)]


def test_a_hook_that_raises_refuses_and_the_connection_stays(server):
    class BrokenApp(HookedApp):
        def on_shared_object_use(self, client, name, persistent):
            raise RuntimeError("bug")

    server = Server(app_class=BrokenApp)
    a, = server.listeners(1)
    assert synced(a, "board").events == (Status(SharedObjectCode.NO_READ_ACCESS),)
    assert a.peer.closed_because is None


def test_unknown_and_server_only_events_are_skipped_and_logged(server):
    a, = server.listeners(1)
    a.send("board", Use(), UnknownEvent(12, b"\x01\x02"), Success("x"))
    assert a.only().events == (UseSuccess(), Clear())
    assert a.session.limit_log.counts == {"unknown shared object event": 1, "unexpected shared object event": 1}


# -- the application's handle ------------------------------------------------------------------------

def test_the_application_handle_changes_reach_every_listener_and_batch_into_one_version(server):
    a, b = server.listeners(2)
    synced(a, "board"), synced(b, "board")
    board = server.app.shared_object("board")
    assert server.app.shared_object("board") is board
    versions = []
    with board.batch():
        board.set("x", 1).addCallback(versions.append)
        board.set("y", 2).addCallback(versions.append)
        board.send("tick", 3).addCallback(versions.append)
    server.pump()
    assert versions == [1, 1, 1] and board.version == 1 and board.data() == {"x": 1, "y": 2}
    expected = SharedObjectMessage("board", 1, False, (Change((("x", 1),)), Change((("y", 2),)),
                                                       SendMessage("tick", (3,))))
    assert a.only() == b.only() == expected
    assert server.app.changed == [(None, "board", {"x": 1, "y": 2})]
    board.clear()
    server.pump()
    assert a.only() == SharedObjectMessage("board", 2, False, (Clear(),))
    a.send("board", RequestChange("z", 9))
    assert board.get("z") == 9 and board.version == 3      # the mirror follows the clients' changes


def test_an_update_is_encoded_once_per_amf_flavour_for_all_its_listeners(monkeypatch):
    from fmspy_gateway.app import shared_objects
    encodings = []
    real = shared_objects.encode_shared_object

    def counted(message, amf3, **kwargs):
        encodings.append((message.events, amf3))
        return real(message, amf3, **kwargs)

    monkeypatch.setattr(shared_objects, "encode_shared_object", counted)
    server = Server()
    writer, *listeners = server.listeners(7, amf3=[False, False, True, False, True, True, False])
    for listener in (writer, *listeners):
        synced(listener, "board")
    encodings.clear()
    writer.send("board", RequestChange("x", [1, {"a": "b"}]))
    change = (Change((("x", [1, {"a": "b"}]),)),)
    # The six listeners' Change: once as AMF0, once as AMF3; the writer's own answer (a Success) once.
    assert sorted(encodings, key=repr) == sorted([(change, False), (change, True), ((Success("x"),), False)], key=repr)
    for listener in listeners:
        assert listener.received == [(SharedObjectMessage("board", 1, False, change), listener.amf3)]


def test_an_application_message_that_cannot_be_encoded_reaches_no_listener_and_closes_none(server, caplog):
    a, b = server.listeners(2)
    synced(a, "board"), synced(b, "board")
    board = server.app.shared_object("board")
    board.send("tick", object())
    server.pump()
    assert a.take() == [] and b.take() == []
    logged = sorted(r.getMessage().split(":")[1] for r in caplog.records if "shared object board: cannot encode" in
                    r.getMessage())
    assert logged == ["5000", "5001"]                      # each listener's own line (its limit log)
    assert a.session.peer.closed_because is None and b.session.peer.closed_because is None
    board.send("tick", 3)                                   # the object still works for both
    server.pump()
    assert a.only() == b.only() == SharedObjectMessage("board", 0, False, (SendMessage("tick", (3,)),))


def test_an_application_message_over_16_mb_is_one_warning_per_listener_not_a_traceback(server, caplog):
    a, b = server.listeners(2)
    synced(a, "board"), synced(b, "board")
    server.app.shared_object("board").send("tick", "x" * (17 << 20))     # encodes, but no message carries it
    server.pump()
    assert a.take() == [] and b.take() == []
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    assert all("shared object board: message of" in r.getMessage() and "24-bit length" in r.getMessage()
               for r in caplog.records)


def test_the_application_handle_keeps_a_transient_object_until_released(server):
    a, = server.listeners(1)
    board = server.app.shared_object("board")
    board.set("x", 1)
    assert synced(a, "board").events == (UseSuccess(), Clear(), Change((("x", 1),)))
    a.send("board", Release())
    assert server.app.shared_object("board").get("x") == 1
    board.release()
    assert server.app.shared_object("board").data() == {}   # a new object


def test_the_application_handle_with_the_other_persistence_is_refused(tmp_path):
    server = persistent_server(tmp_path)
    server.app.shared_object("board")
    failures = []
    server.app.shared_object("board", persistent=True).set("x", 1).addErrback(failures.append)
    assert failures[0].value.code == SharedObjectCode.BAD_PERSISTENCE


# -- chat's presence list -------------------------------------------------------------------------

def test_chat_keeps_a_presence_list_that_clients_may_read_but_not_write():
    server = Server(app_class=ChatApplication)
    ann, bob = server.listeners(2)
    synced(ann, "presence")
    ann.connection.send_command("identify", 2, None, ["ann"])
    server.pump()
    assert ann.only() == SharedObjectMessage("presence", 1, False, (Change(((ann.session.client.id, "ann"),)),))
    bob.connection.send_command("identify", 2, None, ["bob"])
    server.pump()
    assert synced(bob, "presence").events[2:] == (Change(((ann.session.client.id, "ann"),)),
                                                  Change(((bob.session.client.id, "bob"),)))
    ann.take()
    bob.send("presence", RequestChange(ann.session.client.id, "impostor"))
    assert bob.only().events == (Status(SharedObjectCode.NO_WRITE_ACCESS),)
    bob.session.connection_lost("gone")
    server.pump()
    assert ann.only() == SharedObjectMessage("presence", 3, False, (Remove(bob.session.client.id),))


def test_a_connection_closed_while_its_persistent_object_loads_leaves_no_listener(tmp_path):
    class HeldExecutor:
        def __init__(self):
            self.held = []

        def run(self, function, *args):
            self.held.append((function, args, Deferred()))
            return self.held[-1][2]

    executor = HeldExecutor()
    server = persistent_server(tmp_path)
    server.hub.shared_objects.configure("app", SharedObjectLimits(), SharedObjectStore(str(tmp_path), executor))
    a, = server.listeners(1)
    a.send("scores", Use(), persistent=True)
    a.session.connection_lost("gone")
    function, args, d = executor.held.pop()
    d.callback(function(*args))                     # the file (none) arrives after the client left
    snapshots = []
    server.hub.shared_objects.snapshot("app", "scores").addCallback(snapshots.append)
    assert snapshots == [None]                      # released at once: the object left memory
