"""Sessions without sockets: a real core Connection on each side, a fake peer, a Clock for timeouts."""
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.application import (Accept, Application, CallError, ConnectRedirected, ConnectRejected,
                                           remote)
from fmspy_gateway.app.calls import CallFailed, CallTimedOut, ConnectionClosed
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.session import Session, split_app_path
from fmspy_gateway.rtmp import amf
from fmspy_gateway.rtmp.connection import Connection, Role
from fmspy_gateway.rtmp.errors import RemoteProtocolError

from .fakes import FakePeer, exchange


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

    def invoke_broken(self, client):
        return len(5)   # a bug of the method's own: a TypeError raised inside it

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
    #: The application the session serves as "app".
    app_class = HookApp

    def setUp(self):
        self.clock = Clock()
        self.app = self.app_class("app", hub=LocalHub())
        self.peer = FakePeer()
        self.session = Session({"app": self.app}, self.peer, clock=self.clock, call_timeout=10)
        self.client = Connection(Role.CLIENT)
        self.pump()

    def pump(self):
        """Move bytes both ways; return the commands the client side received."""
        return exchange(self.client, self.session)

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
        self.assertIs(self.successResultOf(self.app.client(client.id)).handle, client)
        self.assertEqual(self.app.events, [("connect", ("arg1", 2)), ("create", "lobby"), ("enter", "lobby")])
        self.flushLoggedErrors()

    def test_disconnect_runs_leave_destroy_disconnect_in_order(self):
        self.connect()
        client_id = self.session.client.id
        self.session.connection_lost("gone")
        self.assertEqual(self.app.events[-3:], [("leave", "lobby"), ("destroy", "lobby"), ("disconnect", client_id)])
        self.assertIsNone(self.successResultOf(self.app.client(client_id)))
        self.assertEqual(self.successResultOf(self.app.rooms()), [])

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

    def test_wrong_argument_count_is_the_clients_error_and_logs_no_traceback(self):
        self.connect()
        with self.assertNoLogs("fmspy_gateway", level="ERROR"):
            (missing,) = self.call("legacy")
            (extra,) = self.call("legacy", 1, 2, 3)
        self.assertEqual([r.arguments[0]["description"] for r in (missing, extra)],
                         ["Method 'legacy' was called with 0 arguments, which it does not take.",
                          "Method 'legacy' was called with 3 arguments, which it does not take."])

    def test_a_type_error_inside_the_method_is_still_a_server_error(self):
        self.connect()
        with self.assertLogs("fmspy_gateway", level="ERROR") as logged:
            (reply,) = self.call("broken")
        self.assertEqual(reply.arguments[0]["description"], "Method 'broken' failed.")
        self.assertIn("TypeError", logged.output[0])

    def test_a_reply_that_cannot_be_sent_for_an_unforeseen_reason_is_logged_with_its_traceback(self):
        self.connect()

        def broken_flush():
            raise RuntimeError("the wire is on fire")

        self.peer.flush = broken_flush
        with self.assertLogs("fmspy_gateway", level="ERROR") as logged:
            self.call("service.method", 4)
        (line,) = logged.output
        self.assertIn("answering service.method failed", line)
        self.assertIn("RuntimeError: the wire is on fire", line)

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


# -- refused messages and replies that cannot be sent (issue 8, items 1, 2, 7, 12) ------------------

def exponential_tree(depth=22):
    """A0 = [], Ai = [Ai-1, Ai-1]: ~160 bytes on the wire, 2**23 nodes as a tree."""
    tree = []
    for _ in range(depth):
        tree = [tree, tree]
    return tree


class Unsendable(Application):
    """Methods whose answers cannot go on the wire as they are."""

    @remote
    def echo(self, client, value=None):
        return value

    @remote
    def huge(self, client):
        return "x" * 0x1000000          # one byte more than RTMP's 24-bit message length can say, and more

    @remote
    def refuse(self, client):
        raise CallError("not allowed", "App.Error.NotAllowed", application={"": 1})

    @remote
    def later(self, client):
        self.pending = Deferred()
        return self.pending


SESSION_LOG = "fmspy_gateway.app.session"


class RefusedAndUnsendableTests(SynchronousTestCase):
    app_class = Unsendable
    setUp = SessionTests.setUp
    pump = SessionTests.pump
    call = SessionTests.call

    def answer_connect_with(self, decision):
        """Make the application's on_connect return ``decision``, or raise it if it is an exception."""
        def on_connect(client, *args):
            if isinstance(decision, Exception):
                raise decision
            return decision
        self.app.on_connect = on_connect

    def connect(self, object_encoding=0, **params):
        self.client.send_command("connect", 1, {"app": "app", "flashVer": "TEST 1,0,0,0",
                                                "objectEncoding": object_encoding, **params})
        (reply,) = self.pump()
        self.assertEqual(reply.name, "_result")

    def assertCallFailed(self, reply, *fragments, transaction_id=2):
        self.assertEqual((reply.name, reply.transaction_id), ("_error", transaction_id))
        info = reply.arguments[0]
        self.assertEqual((info["level"], info["code"]), ("error", "NetConnection.Call.Failed"))
        for fragment in fragments:
            self.assertIn(fragment, info["description"])
        self.assertNotIn("Traceback", info["description"])
        return info

    def assertStillServed(self, amf3=False):
        (reply,) = self.call("echo", "still here", transaction_id=99, amf3=amf3)
        self.assertEqual((reply.name, reply.arguments), ("_result", ("still here",)))
        self.assertIsNone(self.peer.closed_because)

    # -- MessageRefused ---------------------------------------------------------------------------

    def test_a_refused_call_gets_an_error_naming_the_limit_and_one_log_line(self):
        self.connect()
        for amf3 in (False, True):
            with self.assertLogs(SESSION_LOG, "WARNING") as logged:
                (reply,) = self.call("echo", exponential_tree(), amf3=amf3)
            self.assertCallFailed(reply, "echo", "(maxValueNodes)")
            self.assertEqual(len(logged.records), 1 if not amf3 else len(logged.records))
            self.assertIn("127.0.0.1:5555: command refused", logged.output[0])
            self.assertIn("(maxValueNodes)", logged.output[0])
            self.assertStillServed(amf3)
            self.clock.advance(60)      # the next hit of the same kind gets its own line

    def test_a_string_amplified_call_gets_an_error_naming_max_value_bytes(self):
        self.connect()
        with self.assertLogs(SESSION_LOG, "WARNING") as logged:
            (reply,) = self.call("echo", ["x" * 10240] * 50_000, amf3=True)
        self.assertCallFailed(reply, "(maxValueBytes)")
        self.assertIn("(maxValueBytes)", logged.output[0])
        self.assertStillServed()

    def test_refusals_are_answered_each_time_but_logged_once_per_interval(self):
        self.connect()
        with self.assertLogs(SESSION_LOG, "WARNING") as logged:
            for transaction_id in range(2, 52):
                self.client.send_command("echo", transaction_id, None, [exponential_tree()])
            replies = self.pump()
        self.assertEqual([r.name for r in replies], ["_error"] * 50)
        self.assertEqual(len(logged.records), 1)
        self.assertEqual(self.session.limit_log.counts, {"maxValueNodes": 50})
        with self.assertLogs(SESSION_LOG, "WARNING") as logged:
            self.session.connection_lost("done")
        self.assertIn("49 more of maxValueNodes", logged.output[0])

    def test_a_refused_connect_is_rejected_and_closed(self):
        self.client.send_command("connect", 1, {"app": "app", "flashVer": exponential_tree()})
        with self.assertLogs(SESSION_LOG, "WARNING"):
            (reply,) = self.pump()
        self.assertEqual((reply.name, reply.transaction_id), ("_error", 1))
        self.assertEqual(reply.arguments[0]["code"], "NetConnection.Connect.Rejected")
        self.assertIn("(maxValueNodes)", reply.arguments[0]["description"])
        self.assertIn("connect refused", self.peer.closed_because)

    def test_refused_stream_commands_get_an_on_status_error_on_their_stream(self):
        self.connect()
        (created,) = self.call("createStream", transaction_id=3)
        stream_id = created.arguments[0]
        # Flash sends transaction id 0; ffmpeg numbers its play and publish: both get their onStatus.
        for name, transaction_id, code in (("play", 0, "NetStream.Play.Failed"),
                                           ("publish", 0, "NetStream.Publish.BadName"),
                                           ("publish", 5, "NetStream.Publish.BadName"),
                                           ("seek", 0, "NetStream.Failed")):
            self.client.send_command(name, transaction_id, None, [exponential_tree()], stream_id=stream_id)
            with self.assertLogs(SESSION_LOG, "WARNING"):
                (status,) = self.pump()
            self.assertEqual((status.name, status.stream_id), ("onStatus", stream_id))
            info = status.arguments[0]
            self.assertEqual((info["level"], info["code"]), ("error", code))
            self.assertIn("(maxValueNodes)", info["description"])
            self.clock.advance(60)
        self.assertStillServed()

    def test_a_refused_data_message_is_dropped_and_logged(self):
        self.connect()
        self.client.send_data(["@setDataFrame", "onMetaData", exponential_tree()], stream_id=1)
        with self.assertLogs(SESSION_LOG, "WARNING") as logged:
            self.assertEqual(self.pump(), [])
        self.assertIn("data message refused: @setDataFrame", logged.output[0])
        self.assertStillServed()

    def test_a_refusal_while_connect_is_decided_is_answered_after_the_connect_reply(self):
        decision = Deferred()
        self.app.on_connect = lambda client, *args: decision
        self.client.send_command("connect", 1, {"app": "app"})
        self.client.send_command("echo", 2, None, [exponential_tree()])
        with self.assertLogs(SESSION_LOG, "WARNING"):
            self.assertEqual(self.pump(), [])
        decision.callback(True)
        connected, refused = self.pump()
        self.assertEqual((connected.name, connected.transaction_id), ("_result", 1))
        self.assertCallFailed(refused, "(maxValueNodes)")

    def test_a_refused_answer_to_a_server_call_fails_that_call(self):
        self.connect()
        d = self.session.client.call("giveMe")
        (call,) = self.pump()
        self.client.send_command("_result", call.transaction_id, None, [exponential_tree()])
        with self.assertLogs(SESSION_LOG, "WARNING"):
            self.pump()
        failure = self.failureResultOf(d, CallFailed)
        self.assertIn("(maxValueNodes)", failure.value.description)

    # -- replies that cannot be encoded or carried ------------------------------------------------

    def test_unencodable_results_become_errors_naming_the_reason(self):
        self.connect(object_encoding=3)
        cases = [
            # (result, AMF3 message, what the error says)
            ({"": 0}, False, "empty property name"),
            (amf.MixedArray({"": 1}), True, "AMF3 array cannot carry the key ''"),
            (object(), False, "cannot encode a builtins.object"),
            (10 ** 400, False, "an integer of 1329 bits"),
        ]
        for value, amf3, reason in cases:
            self.app.echo = remote(lambda client, *args, value=value: value)
            with self.assertLogs(SESSION_LOG, "WARNING") as logged:
                (reply,) = self.call("echo", None, amf3=amf3)
            self.assertCallFailed(reply, "The result of 'echo' cannot be sent", reason)
            self.assertEqual(len(logged.records), 1)
            self.assertIn(reason, logged.output[0])
            self.assertNotIn("Traceback", logged.output[0])
            self.clock.advance(60)
        del self.app.echo
        self.assertStillServed()

    def test_a_result_over_the_rtmp_message_length_becomes_an_error(self):
        self.connect()
        with self.assertLogs(SESSION_LOG, "WARNING"):
            (reply,) = self.call("huge")
        self.assertCallFailed(reply, "24-bit length")
        self.assertStillServed()

    def test_an_error_with_an_unsendable_application_value_is_sent_without_it(self):
        self.connect()
        with self.assertLogs(SESSION_LOG, "WARNING"):
            (reply,) = self.call("refuse")
        self.assertEqual(reply.name, "_error")
        self.assertEqual(reply.arguments[0], {"level": "error", "code": "App.Error.NotAllowed",
                                              "description": "not allowed"})

    def test_a_late_answer_after_a_protocol_error_is_dropped_quietly(self):
        self.connect()
        self.call("later")
        with self.assertRaises(RemoteProtocolError):     # the glue closes, but the close takes a moment
            self.peer.connection.receive_data(b"\x03" + b"\xff" * 11 + b"\x00" * 200)
        with self.assertNoLogs(SESSION_LOG, "WARNING"):
            self.app.pending.callback("too late")   # no LocalProtocolError traceback in the log

    # -- AMF0 only for clients that connected with objectEncoding 0 -------------------------------

    def test_an_amf0_client_gets_an_error_instead_of_an_amf3_switch(self):
        self.connect(object_encoding=0)
        self.app.echo = remote(lambda client, value=None: amf.ByteArray(b"\x00\x01"))
        with self.assertLogs(SESSION_LOG, "WARNING"):
            (reply,) = self.call("echo")
        self.assertCallFailed(reply, "ByteArray cannot be sent to an AMF0 client")

    def test_an_amf3_client_gets_the_switched_value(self):
        self.connect(object_encoding=3)
        self.app.echo = remote(lambda client, value=None: amf.ByteArray(b"\x00\x01"))
        (reply,) = self.call("echo")                        # an AMF0 message, but the client said AMF3
        self.assertEqual((reply.name, bytes(reply.arguments[0].getvalue())), ("_result", b"\x00\x01"))

    def test_an_amf3_command_proves_the_client_reads_amf3(self):
        self.connect(object_encoding=0)
        self.app.echo = remote(lambda client, value=None: amf.ByteArray(b"\x00\x01"))
        (reply,) = self.call("echo", amf3=True)
        self.assertEqual(reply.name, "_result")

    def test_a_client_that_switched_to_amf3_itself_gets_switched_replies(self):
        # librtmp and our own client write a ByteArray in an AMF0 command as 0x11 + AMF3: they read it too.
        self.connect(object_encoding=0)
        (reply,) = self.call("echo", amf.ByteArray(b"\x00\x01"))
        self.assertEqual((reply.name, bytes(reply.arguments[0].getvalue())), ("_result", b"\x00\x01"))
        self.session.client.notify("take", amf.ByteArray(b"x"))
        (notified,) = self.pump()
        self.assertEqual(notified.name, "take")

    def test_server_calls_and_notifications_to_an_amf0_client_stay_amf0(self):
        self.connect(object_encoding=0)
        d = self.session.client.call("take", amf.ByteArray(b"x"))
        self.assertIn("AMF0 client", self.failureResultOf(d, CallFailed).value.description)
        self.assertEqual(len(self.session.outgoing_calls), 0)
        with self.assertLogs(SESSION_LOG, "WARNING") as logged:
            self.session.client.notify("take", amf.ByteArray(b"x"))
        self.assertIn("take not sent", logged.output[0])
        self.assertEqual(self.pump(), [])

    def test_connect_answers_that_cannot_be_sent_still_answer(self):
        for decision, description in ((Accept(application={"": 1}), "Connection rejected."),
                                      (ConnectRejected("go away", application={"": 1}), "go away")):
            self.setUp()
            self.answer_connect_with(decision)
            self.client.send_command("connect", 1, {"app": "app"})
            with self.assertLogs(SESSION_LOG, "WARNING"):
                (reply,) = self.pump()
            self.assertEqual((reply.name, reply.transaction_id), ("_error", 1))
            self.assertEqual(reply.arguments[0], {"level": "error", "code": "NetConnection.Connect.Rejected",
                                                  "description": description})
            self.assertIsNotNone(self.peer.closed_because)
            self.assertFalse(self.session.connected)

    def test_connect_answers_to_an_amf0_client_stay_amf0(self):
        # Item 12: an application value only AMF3 can carry is not switched (0x11) in the connect answer.
        for decision in (Accept(application=amf.ByteArray(b"x")),
                         ConnectRejected("no", application=amf.ByteArray(b"x"))):
            self.setUp()
            self.answer_connect_with(decision)
            self.client.send_command("connect", 1, {"app": "app", "objectEncoding": 0})
            with self.assertLogs(SESSION_LOG, "WARNING") as logged:
                (reply,) = self.pump()
            self.assertEqual((reply.name, reply.transaction_id), ("_error", 1))
            self.assertNotIn("application", reply.arguments[0])
            self.assertFalse(self.client.peer_sent_amf3)
            self.assertIn("AMF0 client", logged.output[0])
        self.setUp()
        self.app.on_connect = lambda client, *args: Accept(application=amf.ByteArray(b"x"))
        self.client.send_command("connect", 1, {"app": "app", "objectEncoding": 3})
        (reply,) = self.pump()                              # an AMF3 client gets it
        self.assertEqual(reply.name, "_result")
        self.assertEqual(bytes(reply.arguments[0]["application"].getvalue()), b"x")

    def test_a_non_numeric_object_encoding_is_answered_as_zero(self):
        self.client.send_command("connect", 1, {"app": "app", "objectEncoding": {"": 0}}, amf3=True)
        (reply,) = self.pump()
        self.assertEqual((reply.name, reply.arguments[0]["objectEncoding"]), ("_result", 0))

    # -- peer-sent names in replies and logs are cut (issue 8, item 1) ----------------------------

    def test_a_long_method_name_is_cut_in_the_error(self):
        self.connect()
        (reply,) = self.call("m" * 100_000)
        info = self.assertCallFailed(reply, "m" * 60, "100000 characters")
        self.assertLess(len(info["description"]), 200)

    def test_the_connected_log_line_cuts_flash_ver(self):
        with self.assertLogs(SESSION_LOG, "INFO") as logged:
            self.connect(flashVer="F" * 100_000)
        (line,) = [line for line in logged.output if "connected to" in line]
        self.assertLess(len(line), 400)
        self.assertIn("100000 characters", line)

    def test_stream_names_in_status_descriptions_are_cut(self):
        self.connect()
        (created,) = self.call("createStream", transaction_id=3)
        stream_id = created.arguments[0]
        long_name, tree = "s" * 100_000, exponential_tree(15)     # within the budget, but not printable
        self.client.send_command("FCPublish", 0, None, [long_name])
        self.client.send_command("FCSubscribe", 0, None, [tree])
        self.client.send_command("FCUnpublish", 0, None, [long_name])
        self.client.send_command("publish", 0, None, [tree], stream_id=stream_id)
        self.client.send_command("play", 0, None, [long_name], stream_id=stream_id)
        self.client.send_command("play", 0, None, [tree], stream_id=stream_id)
        replies = self.pump()
        self.assertEqual([r.name for r in replies],
                         ["onFCPublish", "onFCSubscribe", "onFCUnpublish"] + ["onStatus"] * 3)
        descriptions = [r.arguments[0]["description"] for r in replies]
        for description in descriptions:
            self.assertLess(len(description), 200)
        self.assertIn("100000 characters", descriptions[0])
        self.assertIn("<list of 2>", descriptions[1])
        self.assertEqual([r.arguments[0]["code"] for r in replies[3:]],
                         ["NetStream.Publish.BadName", "NetStream.Play.StreamNotFound",
                          "NetStream.Play.StreamNotFound"])
