"""Rooms and the local directory as plain objects."""
from fmspy_gateway.app.rooms import DEFAULT_ROOM, LocalDirectory


class FakeClient:
    def __init__(self, client_id, application_name="chat"):
        self.id = client_id
        self.application_name = application_name
        self.room = None
        self.notified = []
        #: False stands for a client over its output budget: its session drops what it is sent.
        self.reading = True

    def notify(self, method, *args):
        if not self.reading:
            return False
        self.notified.append((method, args))
        return True


def test_named_room_created_by_first_client_destroyed_by_last():
    directory = LocalDirectory()
    a, b = FakeClient("a"), FakeClient("b")
    room, created = directory.join(a, "lobby")
    assert created and room.name == "lobby" and a.room is room
    same, created_again = directory.join(b, "lobby")
    assert same is room and not created_again
    assert [c.id for c in room] == ["a", "b"] and len(room) == 2 and a in room
    assert directory.leave(a) == (room, False)
    assert directory.leave(b) == (room, True)
    assert directory.room("chat", "lobby") is None
    assert a.room is None


def test_default_room_is_permanent():
    directory = LocalDirectory()
    client = FakeClient("a")
    room, created = directory.join(client, DEFAULT_ROOM)
    assert room.is_default and not created
    assert directory.leave(client) == (room, False)
    assert directory.room("chat") is room


def test_lookup_and_rooms_per_application():
    directory = LocalDirectory()
    a, b = FakeClient("a", "chat"), FakeClient("b", "other")
    directory.join(a, "x")
    directory.join(b, "x")
    assert directory.client("a") is a and directory.client("nope") is None
    assert [r.application_name for r in directory.rooms("chat")] == ["chat"]
    assert directory.clients("other") == [b]
    assert directory.room("chat", "x") is not directory.room("other", "x")
    directory.leave(a)
    assert directory.client("a") is None


def test_broadcast_reaches_only_the_room_and_counts():
    directory = LocalDirectory()
    a, b, c = FakeClient("a"), FakeClient("b"), FakeClient("c")
    directory.join(a, "one")
    directory.join(b, "one")
    directory.join(c, "two")
    assert directory.broadcast("chat", "one", "message", "hi") == 2
    assert a.notified == b.notified == [("message", ("hi",))] and c.notified == []
    assert a.room.broadcast("message", "x", exclude=a) == 1
    assert directory.broadcast("chat", "nowhere", "message", "x") == 0


def test_broadcast_skips_and_does_not_count_a_client_that_is_not_reading():
    directory = LocalDirectory()
    talker, silent = FakeClient("a"), FakeClient("b")
    directory.join(talker, "one")
    directory.join(silent, "one")
    silent.reading = False
    assert talker.room.broadcast("message", "hi") == 1
    assert silent.notified == [] and talker.notified == [("message", ("hi",))]
