"""A room's broadcast through real sessions: one notification, encoded once per form its members read."""
import logging

import pytest
from twisted.internet.task import Clock

from fmspy_gateway.app import notification as notification_module
from fmspy_gateway.app.application import Application
from fmspy_gateway.app.hub import LocalHub, Room
from fmspy_gateway.app.notification import Notification
from fmspy_gateway.app.session import Session
from fmspy_gateway.rtmp import amf
from fmspy_gateway.rtmp.connection import Connection, Role, State
from fmspy_gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError

from .fakes import FakePeer, exchange

#: The three forms a member reads a notification in: AMF0 without the switch (an AMF0-only client),
#: AMF0 with the 0x11 switch (a client that wrote AMF3 itself, as librtmp does), AMF3.
PLAIN, SWITCHED, AMF3 = "plain", "switched", "amf3"


class Member:
    """One connected client of the room: its core Connection and the session serving it."""

    def __init__(self, app, clock, index, form):
        self.form = form
        self.client = Connection(Role.CLIENT)
        self.session = Session({"app": app}, FakePeer(f"127.0.0.1:{6000 + index}"), clock=clock)
        self.pump()                                         # the handshake
        params = {"app": "app", "tcUrl": "rtmp://h/app", "objectEncoding": 3 if form == AMF3 else 0}
        self.client.send_command("connect", 1, params, ())
        (reply,) = self.pump()
        assert reply.name == "_result"
        if form == SWITCHED:        # a ByteArray in an AMF0 command goes as 0x11 + AMF3: it reads the switch too
            self.client.send_command("nothing", 2, None, [amf.ByteArray(b"x")])
            self.pump()
            assert self.session.peer.connection.peer_sent_amf3

    def pump(self):
        return exchange(self.client, self.session)


@pytest.fixture
def room():
    hub, clock = LocalHub(), Clock()
    app = Application("app", hub=hub)
    forms = [PLAIN, SWITCHED, AMF3] * 4
    members = [Member(app, clock, index, form) for index, form in enumerate(forms)]
    return hub, Room("app", ""), members


@pytest.fixture
def encodings(monkeypatch):
    """Every body a Notification encodes, as (amf3, switch)."""
    seen = []
    real = notification_module.encode_values

    def counted(values, amf3, switch):
        seen.append((amf3, switch))
        return real(values, amf3=amf3, switch=switch)

    monkeypatch.setattr(notification_module, "encode_values", counted)
    return seen


def test_a_broadcast_is_encoded_once_per_form_and_every_member_gets_it(room, encodings):
    hub, where, members = room
    reached = []
    hub.broadcast(where, "say", ("hello", {"n": 1})).addCallback(reached.append)
    assert reached == [12]
    assert sorted(encodings) == [(False, False), (False, True), (True, True)]
    for member in members:
        (command,) = member.pump()
        assert (command.name, command.transaction_id, command.arguments) == ("say", 0, ("hello", {"n": 1}))
        assert command.amf3 is (member.form == AMF3)


def test_a_value_some_members_cannot_read_reaches_the_others_and_each_of_the_rest_logs_a_line(room, caplog):
    hub, where, members = room
    reached = []
    with caplog.at_level(logging.WARNING):
        hub.broadcast(where, "take", (amf.ByteArray(b"\x00\x01"),)).addCallback(reached.append)
    assert reached == [8]                                  # the four AMF0-only members cannot carry a ByteArray
    for member in members:
        heard = member.pump()
        if member.form == PLAIN:
            assert heard == []
            assert member.session.peer.closed_because is None
        else:
            (command,) = heard
            assert bytes(command.arguments[0].getvalue()) == b"\x00\x01"
    lines = [r.getMessage() for r in caplog.records if "take not sent" in r.getMessage()]
    assert sorted(line.split(":")[1] for line in lines) == ["6000", "6003", "6006", "6009"]


def test_a_member_whose_connection_closed_under_it_is_skipped_and_the_rest_still_hear(room, caplog):
    # A protocol error closes the core at once while the glue lingers (closeLinger): the session is still in
    # its room, and queueing for it fails. That member is logged; the loop goes on to the others.
    hub, where, members = room
    with pytest.raises(RemoteProtocolError):                # a 16 MB message, over maxMessageSize
        members[4].session.peer.connection.receive_data(b"\x03\x00\x00\x00\xff\xff\xff\x14\x00\x00\x00\x00")
    assert members[4].session.peer.connection.state is State.CLOSED
    reached = []
    with caplog.at_level(logging.WARNING):
        hub.broadcast(where, "say", ("still here",)).addCallback(reached.append)
    assert reached == [11]
    for index, member in enumerate(members):
        if index != 4:
            (command,) = member.pump()
            assert command.arguments == ("still here",)
    assert [r.getMessage() for r in caplog.records if "say not sent" in r.getMessage()] == [
        "127.0.0.1:6004: say not sent: cannot send messages while closed"]


def test_a_notification_keeps_each_body_and_not_a_failure():
    notification = Notification("take", [amf.ByteArray(b"x")])
    assert notification.body(True, True) is notification.body(True, True)
    for _ in range(2):                                     # the failure is raised again, not kept
        with pytest.raises(LocalProtocolError):
            notification.body(False, False)
    assert notification.body(False, True) != notification.body(True, True)
    assert amf.decode_values(notification.body(False, True), amf3=False)[:3] == ["take", 0, None]
