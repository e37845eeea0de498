"""Sessions without sockets: a real core Connection on each side, a fake peer, a Clock for timeouts."""
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.application import (Accept, Application, CallError, ConnectRedirected, ConnectRejected,
                                           remote)
from fmspy_gateway.app.calls import CallFailed, CallTimedOut, ConnectionClosed
from fmspy_gateway.app.rooms import LocalDirectory
from fmspy_gateway.app.session import Session, split_app_path
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.rtmp.events import CommandReceived

from .fakes import FakePeer


class Service:
    def __init__(self):
        self.calls = 0

    @remote
    def method(self, client, x):
        return x * 2

    def unmarked(self, client):
        return "never"


class HookApp(Application):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events = []
        self.decision = True
        self.service = Service()

    def on_connect(self, client, *args):
        self.events.append(("connect", args))
        if isinstance(self.decision, Exception):
            raise self.decision
        return self.decision

    def on_disconnect(self, client):
        self.events.append(("disconnect", client.id))

    def on_room_create(self, room):
        self.events.append(("create", room.name))

    def on_room_enter(self, room, client):
        self.events.append(("enter", room.name))
        raise RuntimeError("a broken hook must not break the session")

    def on_room_leave(self, room, client):
        self.events.append(("leave", room.name))

    def on_room_destroy(self, room):
        self.events.append(("destroy", room.name))

    @remote
    def fail(self, client):
        raise ValueError("secret internal detail")

    @remote
    def refuse(self, client):
        raise CallError("not allowed", "App.Error.NotAllowed", application={"why": 1})

    def invoke_legacy(self, client, value):
        return ["legacy", value]

    @remote
    def callGoneClient(self, client):
        from twisted.internet.defer import fail
        return fail(ConnectionClosed("connection closed: that client left", "NetConnection.Connect.Closed"))

    @remote
    def later(self, client):
        self.pending = Deferred()
        return self.pending


class SessionTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.app = HookApp("app", directory=LocalDirectory())
        self.peer = FakePeer()
        self.session = Session({"app": self.app}, self.peer, clock=self.clock, call_timeout=10)
        self.client = Connection(Role.CLIENT)
        self.pump()

    def pump(self):
        """Move bytes both ways; return the commands the client side received."""
        commands = []
        while True:
            out = self.client.data_to_send()
            for event in self.peer.connection.receive_data(out) if out else []:
                self.session.handle(event)
            back = self.peer.connection.data_to_send()
            if back:
                commands.extend(e for e in self.client.receive_data(back) if isinstance(e, CommandReceived))
            if not out and not back:
                return commands

    def connect(self, app="app/lobby", *args, **params):
        self.client.send_command("connect", 1, {"app": app, "flashVer": "TEST 1,0,0,0", "tcUrl": "rtmp://h/app",
                                                "pageUrl": "http://page", "swfUrl": "http://swf", **params}, args)
        return self.pump()

    def call(self, name, *args, transaction_id=2, amf3=False):
        self.client.send_command(name, transaction_id, None, args, amf3=amf3)
        return self.pump()

    def test_split_app_path(self):
        self.assertEqual(split_app_path("chat/room1?token=x"), ("chat", "room1"))
        self.assertEqual(split_app_path("chat"), ("chat", ""))
        self.assertEqual(split_app_path("/chat/a/b/"), ("chat", "a/b"))

    def test_accept_sets_up_client_and_room(self):
        (result,) = self.connect("app/lobby", "arg1", 2, objectEncoding=3)
        self.assertEqual(result.name, "_result")
        self.assertEqual(result.arguments[0]["objectEncoding"], 3)
        client = self.session.client
        self.assertTrue(client.id)
        self.assertEqual((client.address, client.agent, client.tc_url, client.page_url, client.swf_url,
                          client.object_encoding, client.args),
                         ("127.0.0.1:5555", "TEST 1,0,0,0", "rtmp://h/app", "http://page", "http://swf", 3,
                          ("arg1", 2)))
        self.assertEqual(client.room.name, "lobby")
        self.assertIs(self.app.client(client.id), client)
        self.assertEqual(self.app.events, [("connect", ("arg1", 2)), ("create", "lobby"), ("enter", "lobby")])
        self.flushLoggedErrors()

    def test_disconnect_runs_leave_destroy_disconnect_in_order(self):
        self.connect()
        client_id = self.session.client.id
        self.session.connection_lost("gone")
        self.assertEqual(self.app.events[-3:], [("leave", "lobby"), ("destroy", "lobby"), ("disconnect", client_id)])
        self.assertIsNone(self.app.client(client_id))
        self.assertIsNone(self.app.room("lobby"))

    def test_reject_with_reason_and_application_value(self):
        self.app.decision = ConnectRejected("go away", application={"retry": 5})
        (reply,) = self.connect()
        info = reply.arguments[0]
        self.assertEqual((reply.name, info["level"], info["code"], info["description"], info["application"]),
                         ("_error", "error", "NetConnection.Connect.Rejected", "go away", {"retry": 5}))
        self.assertIn("go away", self.peer.closed_because)

    def test_false_rejects(self):
        self.app.decision = False
        (reply,) = self.connect()
        self.assertEqual(reply.arguments[0]["code"], "NetConnection.Connect.Rejected")
        self.assertIsNotNone(self.peer.closed_because)

    def test_redirect(self):
        self.app.decision = ConnectRedirected("rtmp://other/app")
        (reply,) = self.connect()
        self.assertEqual(reply.arguments[0]["ex"], {"code": 302, "redirect": "rtmp://other/app"})
        self.assertEqual(reply.arguments[0]["code"], "NetConnection.Connect.Rejected")

    def test_hook_exception_rejects_without_details(self):
        self.app.decision = RuntimeError("database password is hunter2")
        (reply,) = self.connect()
        self.assertEqual(reply.arguments[0]["code"], "NetConnection.Connect.Rejected")
        self.assertNotIn("hunter2", repr(reply.arguments))
        self.assertEqual(len(self.flushLoggedErrors()), 0)   # logged through logging, not as a Twisted error

    def test_deferred_decision_and_early_calls_wait_for_it(self):
        self.app.decision = Deferred()
        self.assertEqual(self.connect(), [])
        self.assertEqual(self.call("service.method", 21), [])
        self.app.decision.callback(Accept(application={"hello": 1}, room="vip"))
        replies = self.pump()
        self.assertEqual([(r.name, r.transaction_id) for r in replies], [("_result", 1), ("_result", 2)])
        self.assertEqual(replies[0].arguments[0]["application"], {"hello": 1})
        self.assertEqual(replies[1].arguments, (42,))
        self.assertEqual(self.session.client.room.name, "vip")

    def test_unknown_application(self):
        (reply,) = self.connect("nope")
        self.assertEqual(reply.arguments[0]["code"], "NetConnection.Connect.InvalidApp")
        self.assertIsNotNone(self.peer.closed_because)

    def test_calls_dotted_legacy_and_refused_names(self):
        self.connect()
        self.assertEqual(self.call("service.method", 4)[0].arguments, (8,))
        self.assertEqual(self.call("legacy", "x")[0].arguments, (["legacy", "x"],))
        for name in ("service.unmarked", "on_connect", "_private", "service._x", "events", "nothing.here", ""):
            (reply,) = self.call(name)
            self.assertEqual((reply.name, reply.arguments[0]["code"]), ("_error", "NetConnection.Call.Failed"), name)

    def test_method_exception_is_reported_without_details(self):
        self.connect()
        (reply,) = self.call("fail")
        self.assertEqual(reply.arguments[0]["code"], "NetConnection.Call.Failed")
        self.assertNotIn("secret", reply.arguments[0]["description"])
        self.assertNotIn("Traceback", reply.arguments[0]["description"])

    def test_call_error_carries_code_and_application(self):
        self.connect()
        (reply,) = self.call("refuse", amf3=True)
        self.assertEqual((reply.amf3, reply.arguments[0]["code"], reply.arguments[0]["description"],
                          reply.arguments[0]["application"]), (True, "App.Error.NotAllowed", "not allowed", {"why": 1}))

    def test_inner_call_failure_is_a_call_failure_for_the_caller(self):
        self.connect()
        (reply,) = self.call("callGoneClient")
        self.assertEqual(reply.arguments[0]["code"], "NetConnection.Call.Failed")
        self.assertIn("that client left", reply.arguments[0]["description"])

    def test_transaction_zero_gets_no_reply(self):
        self.connect()
        self.assertEqual(self.call("service.method", 1, transaction_id=0), [])
        self.assertEqual(self.call("fail", transaction_id=0), [])

    def test_answer_after_disconnect_is_dropped(self):
        self.connect()
        self.assertEqual(self.call("later"), [])
        self.session.connection_lost("gone")
        self.app.pending.callback("late")
        self.assertEqual(self.pump(), [])

    def server_call(self, *args, **kwargs):
        d = self.session.client.call("clientMethod", *args, **kwargs)
        (request,) = self.pump()
        return d, request

    def test_server_to_client_call_result_and_error(self):
        self.connect()
        d, request = self.server_call(1, "two")
        self.assertEqual((request.name, request.arguments), ("clientMethod", (1, "two")))
        self.client.send_command("_result", request.transaction_id, None, ["answer"])
        self.pump()
        self.assertEqual(self.successResultOf(d), "answer")
        d, request = self.server_call()
        self.client.send_command("_error", request.transaction_id, None,
                                 [{"level": "error", "code": "X.Failed", "description": "no"}])
        self.pump()
        failure = self.failureResultOf(d, CallFailed)
        self.assertEqual((failure.value.code, failure.value.description), ("X.Failed", "no"))

    def test_server_to_client_call_times_out(self):
        self.connect()
        d, _ = self.server_call(timeout=2)
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.assertEqual(self.failureResultOf(d, CallTimedOut).value.code, "NetConnection.Call.Timeout")
        d, _ = self.server_call()     # the session's default timeout
        self.clock.advance(10)
        self.failureResultOf(d, CallTimedOut)

    def test_disconnect_fails_outstanding_calls(self):
        self.connect()
        first, _ = self.server_call()
        second, _ = self.server_call()
        self.session.connection_lost("peer went away")
        for d in (first, second):
            self.assertIn("peer went away", self.failureResultOf(d, ConnectionClosed).value.description)
        self.failureResultOf(self.session.client.call("more"), CallFailed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stream_commands(self):
        self.connect()
        self.assertEqual(self.call("createStream", transaction_id=5)[0].arguments, (1,))
        self.assertEqual(self.call("createStream", transaction_id=6)[0].arguments, (2,))
        self.assertEqual(self.call("getStreamLength", "x", transaction_id=7)[0].arguments, (0,))
        self.assertEqual(self.call("releaseStream", "x", transaction_id=8)[0].name, "_result")
        self.assertEqual(self.call("deleteStream", 1, transaction_id=0), [])
        # start >= 0 asks for a recording: there is none.
        self.client.send_command("play", 0, None, ["missing", 0], stream_id=2)
        (status,) = self.pump()
        self.assertEqual((status.name, status.stream_id, status.arguments[0]["code"]),
                         ("onStatus", 2, "NetStream.Play.StreamNotFound"))
        # The default (-2, live or recorded) waits for a publisher, as FMS does.
        self.client.send_command("play", 0, None, ["missing"], stream_id=2)
        codes = [c.arguments[0]["code"] for c in self.pump() if c.name == "onStatus"]
        self.assertEqual(codes, ["NetStream.Play.Reset", "NetStream.Play.Start"])

    def test_commands_before_connect_close(self):
        self.call("service.method", 1)
        self.assertIn("before connect", self.peer.closed_because)
