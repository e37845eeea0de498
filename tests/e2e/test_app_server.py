"""The application server end to end: our client (and librtmp) against a real server on loopback.

Chat rooms with several clients, every connect outcome an application can
choose, calls from the server to the client (answered, timed out, cut by a
disconnect), the client's properties as the application sees them, and the
stream commands clients send around connect.  Nothing sleeps: every wait is
for a Deferred, and "did not receive" is proved by a round trip made after
the message would have been sent (TCP keeps the order on one connection).
"""
import json
import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.application import Accept, Application, ConnectRedirected, ConnectRejected, remote
from fmspy_gateway.app.calls import CallFailed, CallTimedOut, ConnectionClosed
from fmspy_gateway.app.chat import ALREADY_IDENTIFIED, NOT_IDENTIFIED, ChatApplication
from fmspy_gateway.app.echo import EchoApplication
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.server.client import FLASH_VERSION, RTMPClientProtocol, connect_client, parse_rtmp_url

from ..conftest import require_system_librtmp
from .server import LoopbackServerMixin

HERE = os.path.dirname(os.path.abspath(__file__))


class Inbox:
    """A handler that keeps what the server sent, and says when enough has arrived."""

    def __init__(self):
        self.items = []
        self._waiting = []    # (count, Deferred)

    def __call__(self, value=None, *more):
        self.items.append(value if not more else (value, *more))
        waiting, self._waiting = self._waiting, []
        for count, d in waiting:
            if len(self.items) >= count:
                d.callback(list(self.items))
            else:
                self._waiting.append((count, d))

    def wait_for(self, count: int) -> Deferred:
        """Fires with the items once there are at least ``count`` of them."""
        if len(self.items) >= count:
            return succeed(list(self.items))
        d = Deferred()
        self._waiting.append((count, d))
        return d


def entering(name):
    return f"<{name}> is entering chat..."


def leaving(name):
    return f"<{name}> is leaving chat..."


def said(name, text):
    return f"<{name}>: {text}"


class ClientMixin:
    """Connects our client and closes it at cleanup (before the server stops)."""

    @inlineCallbacks
    def connect(self, path, *args, **kwargs):
        kwargs.setdefault("reactor", reactor)
        client = yield connect_client(self.url(path), *args, **kwargs)
        self.addCleanup(client.close)
        return client

    def connect_raw(self, path, *args, **params):
        """Connect without connect_client's own close on refusal: returns (protocol, connect Deferred).

        Lets a test see that it is the server that closes a refused connection.
        """
        host, port, app = parse_rtmp_url(self.url(path))
        factory = Factory.forProtocol(lambda: RTMPClientProtocol(reactor))
        d = TCP4ClientEndpoint(reactor, host, port, timeout=10).connect(factory)

        def connected(protocol):
            self.addCleanup(protocol.close)
            return protocol, protocol.connect(app, *args, tc_url=self.url(path), **params)
        return d.addCallback(connected)


# -- chat ------------------------------------------------------------------------------------------

class ChatTests(ClientMixin, LoopbackServerMixin, TestCase):
    def applications(self):
        hub = LocalHub()
        self.chat = ChatApplication("chat", hub=hub)
        return {"chat": self.chat, "echotest": EchoApplication("echotest", hub=hub)}

    @inlineCallbacks
    def join(self, room, name=None):
        """A client of chat/<room> (identified as ``name`` if given) and its inbox of messages."""
        inbox = Inbox()
        client = yield self.connect(f"chat/{room}", handlers={"message": inbox})
        if name is not None:
            self.assertIsNone((yield client.call("identify", name)))
        return client, inbox

    @inlineCallbacks
    def test_rooms_are_separate_conversations(self):
        alice, a = yield self.join("lobby", "alice")
        self.assertEqual((yield a.wait_for(1)), [entering("alice")])
        bob, b = yield self.join("lobby", "bob")
        self.assertEqual((yield b.wait_for(1)), [entering("bob")])
        self.assertEqual((yield a.wait_for(2)), [entering("alice"), entering("bob")])
        carol, c = yield self.join("dev", "carol")
        self.assertEqual((yield c.wait_for(1)), [entering("carol")])
        self.assertEqual(len((yield self.chat.room("lobby").members())), 2)
        self.assertEqual(len((yield self.chat.room("dev").members())), 1)

        # The speaker hears itself, and so does everyone in its room.
        self.assertIsNone((yield alice.call("say", "hello lobby")))
        self.assertEqual((yield a.wait_for(3))[-1], said("alice", "hello lobby"))
        self.assertEqual((yield b.wait_for(2))[-1], said("alice", "hello lobby"))
        # carol's own line comes back after anything the lobby sent her before it: nothing.
        yield carol.call("say", "only dev")
        self.assertEqual((yield c.wait_for(2)), [entering("carol"), said("carol", "only dev")])
        # ...and the lobby never heard carol: bob's next line is the next thing both see.
        yield bob.call("say", "still lobby")
        lobby = [entering("alice"), entering("bob"), said("alice", "hello lobby"), said("bob", "still lobby")]
        self.assertEqual((yield a.wait_for(4)), lobby)
        self.assertEqual((yield b.wait_for(3)), lobby[1:])

        # bob leaves: the lobby is told, dev is not.
        yield bob.close()
        self.assertEqual((yield a.wait_for(5))[-1], leaving("bob"))
        yield carol.call("say", "bye")
        self.assertEqual(c.items, [entering("carol"), said("carol", "only dev"), said("carol", "bye")])
        yield alice.call("say", "alone now")
        self.assertEqual(a.items, lobby + [leaving("bob"), said("alice", "alone now")])
        self.assertEqual(b.items, lobby[1:])
        self.assertEqual(len((yield self.chat.room("lobby").members())), 1)

    @inlineCallbacks
    def test_identify_twice_and_say_before_identify_are_errors(self):
        watcher, w = yield self.join("errors", "watcher")
        dora, d = yield self.join("errors")
        with self.assertRaises(CallFailed) as raised:
            yield dora.call("say", "too early")
        self.assertEqual(raised.exception.code, NOT_IDENTIFIED)
        self.assertEqual(raised.exception.description, "Client wasn't identified, please don't say anything")

        yield dora.call("identify", "dora")
        with self.assertRaises(CallFailed) as raised:
            yield dora.call("identify", "someone else")
        self.assertEqual(raised.exception.code, ALREADY_IDENTIFIED)
        self.assertEqual(raised.exception.description, "Client was already identified")

        # The first name stays; the refused calls said nothing to the room.
        yield dora.call("say", "it is still me")
        expected = [entering("watcher"), entering("dora"), said("dora", "it is still me")]
        self.assertEqual((yield w.wait_for(3)), expected)
        self.assertEqual((yield d.wait_for(2)), expected[1:])

    @inlineCallbacks
    def test_an_unidentified_client_leaves_silently(self):
        watcher, w = yield self.join("quiet", "watcher")
        lurker, _ = yield self.join("quiet")
        yield lurker.close()
        yield watcher.call("say", "anyone?")
        self.assertEqual(w.items, [entering("watcher"), said("watcher", "anyone?")])

    @inlineCallbacks
    def test_librtmp_talks_in_a_room(self):
        python = require_system_librtmp()
        mine, m = yield self.join("room1", "mine")
        other, o = yield self.join("room2", "other")
        yield m.wait_for(1)
        yield o.wait_for(1)
        out, err, code = yield getProcessOutputAndValue(
            python, [os.path.join(HERE, "librtmp_chat.py"), self.url("chat/room1")], env=dict(os.environ),
            reactor=reactor)
        self.assertEqual(code, 0, err.decode(errors="replace"))
        result = json.loads(out)
        lib_lines = [entering("lib"), said("lib", "hello from librtmp")]
        self.assertEqual(result["messages"], lib_lines)
        self.assertEqual(result["results"], {"identify": None, "say": None})
        # Our client in room1 heard librtmp come, talk and (on close) go.
        self.assertEqual((yield m.wait_for(4)), [entering("mine")] + lib_lines + [leaving("lib")])
        # room2 heard none of it.
        yield other.call("say", "quiet here")
        self.assertEqual(o.items, [entering("other"), said("other", "quiet here")])


# -- connect outcomes --------------------------------------------------------------------------------

class Rejecting(Application):
    def on_connect(self, client, *args):
        raise ConnectRejected("go away", application={"retry": 5})


class Redirecting(Application):
    def on_connect(self, client, *args):
        raise ConnectRedirected("rtmp://other/app")


class Deciding(Application):
    """on_connect hands the test a Deferred to decide with, later."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked = Deferred()

    def on_connect(self, client, *args):
        decision = Deferred()
        self.asked.callback(decision)
        return decision


class Broken(Application):
    def on_connect(self, client, *args):
        raise RuntimeError("secret detail: password=hunter2")


class Welcoming(Application):
    def on_connect(self, client, *args):
        return Accept(application={"welcome": "x"}, room="vip")

    @remote
    def whoami(self, client):
        return client.id


class ConnectOutcomeTests(ClientMixin, LoopbackServerMixin, TestCase):
    def applications(self):
        hub = LocalHub()
        self.deciding = Deciding("deciding", hub=hub)
        self.welcoming = Welcoming("welcoming", hub=hub)
        return {"rejecting": Rejecting("rejecting", hub=hub),
                "redirecting": Redirecting("redirecting", hub=hub),
                "broken": Broken("broken", hub=hub),
                "deciding": self.deciding, "welcoming": self.welcoming}

    @inlineCallbacks
    def refused(self, path):
        """Connect to ``path``; returns the CallFailed, after checking that the server hung up."""
        protocol, connecting = yield self.connect_raw(path)
        with self.assertRaises(CallFailed) as raised:
            yield connecting
        # We did not close; the server did, right after its _error.
        yield protocol.closed
        return raised.exception

    @inlineCallbacks
    def test_rejected_with_a_reason_and_a_value(self):
        refusal = yield self.refused("rejecting")
        self.assertEqual(refusal.code, "NetConnection.Connect.Rejected")
        self.assertEqual(refusal.description, "go away")
        self.assertEqual(refusal.info["level"], "error")
        self.assertEqual(refusal.info["application"], {"retry": 5})

    @inlineCallbacks
    def test_rejected_through_connect_client(self):
        with self.assertRaises(CallFailed) as raised:
            yield connect_client(self.url("rejecting"), reactor=reactor)
        self.assertEqual(raised.exception.code, "NetConnection.Connect.Rejected")
        self.assertEqual(raised.exception.info["application"], {"retry": 5})

    @inlineCallbacks
    def test_redirected(self):
        refusal = yield self.refused("redirecting")
        self.assertEqual(refusal.code, "NetConnection.Connect.Rejected")
        self.assertEqual(refusal.info["ex"], {"code": 302, "redirect": "rtmp://other/app"})

    @inlineCallbacks
    def test_decided_later_with_false(self):
        protocol, connecting = yield self.connect_raw("deciding")
        decision = yield self.deciding.asked
        self.assertFalse(connecting.called)
        decision.callback(False)
        with self.assertRaises(CallFailed) as raised:
            yield connecting
        self.assertEqual(raised.exception.code, "NetConnection.Connect.Rejected")
        yield protocol.closed

    @inlineCallbacks
    def test_decided_later_with_true(self):
        protocol, connecting = yield self.connect_raw("deciding")
        decision = yield self.deciding.asked
        self.assertFalse(connecting.called)
        decision.callback(True)
        info = yield connecting
        self.assertEqual(info["code"], "NetConnection.Connect.Success")

    @inlineCallbacks
    def test_unexpected_exception_rejects_without_details(self):
        refusal = yield self.refused("broken")
        self.assertEqual(refusal.code, "NetConnection.Connect.Rejected")
        for leak in ("Traceback", "RuntimeError", "hunter2", ".py"):
            self.assertNotIn(leak, repr(refusal.info))

    @inlineCallbacks
    def test_accepted_with_a_value_into_another_room(self):
        client = yield self.connect("welcoming/lobby")
        self.assertEqual(client.connect_info["code"], "NetConnection.Connect.Success")
        self.assertEqual(client.connect_info["application"], {"welcome": "x"})
        client_id = yield client.call("whoami")
        server_side = yield self.welcoming.client(client_id)
        self.assertIsNotNone(server_side)
        self.assertEqual(server_side.room, "vip")
        self.assertIn(server_side, (yield self.welcoming.room("vip").members()))
        self.assertEqual(server_side.handle.room, self.welcoming.room("vip"))
        self.assertEqual([room.name for room in (yield self.welcoming.rooms())], ["vip"])


# -- calls from the server to the client ---------------------------------------------------------------

class Caller(Application):
    """Calls the client back and records what came of it, hooks included."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.results = []
        self.failures = []
        self.events = []
        self.outstanding = None
        self.disconnected = Deferred()

    @remote
    def askMe(self, client, method, args, timeout=None):
        """Call ``method(*args)`` on the caller and answer with what it answered."""
        d = client.call(method, *args, timeout=timeout)

        def got(value):
            self.results.append(value)
            return value

        def failed(failure):
            self.failures.append(failure.value)
            return failure
        return d.addCallbacks(got, failed)

    @remote
    def callMeLater(self, client, method):
        """Start a call on the client and answer at once, leaving the call outstanding."""
        self.outstanding = client.call(method)

    @remote
    def describe(self, client):
        return [client.agent, client.tc_url, client.page_url, client.swf_url, client.object_encoding,
                client.address, client.args, isinstance(client.id, str) and client.id != "",
                client.application_name, client.room_name]

    def on_room_create(self, room):
        self.events.append(("room_create", room.name))

    def on_room_enter(self, room, client):
        self.events.append(("room_enter", room.name, client.id))

    def on_room_leave(self, room, client):
        self.events.append(("room_leave", room.name, client.id))

    def on_room_destroy(self, room):
        self.events.append(("room_destroy", room.name))

    def on_disconnect(self, client):
        self.events.append(("disconnect", client.id))
        self.disconnected.callback(client)


class ServerCallsTests(ClientMixin, LoopbackServerMixin, TestCase):
    def applications(self):
        self.caller = Caller("caller")
        return {"caller": self.caller}

    @inlineCallbacks
    def test_the_client_answers(self):
        client = yield self.connect("caller", handlers={"add": lambda a, b: a + b})
        self.assertEqual((yield client.call("askMe", "add", [2, 3])), 5)
        self.assertEqual(self.caller.results, [5])

    @inlineCallbacks
    def test_the_client_answers_later(self):
        pending = Inbox()
        answer = Deferred()
        client = yield self.connect("caller", handlers={"slow": lambda *args: pending(args) or answer})
        asking = client.call("askMe", "slow", ["x", 1])
        self.assertEqual((yield pending.wait_for(1)), [("x", 1)])
        self.assertFalse(asking.called)
        answer.callback({"took": "a while"})
        self.assertEqual((yield asking), {"took": "a while"})

    @inlineCallbacks
    def test_a_failing_handler_becomes_call_failed(self):
        def broken():
            raise ValueError("no such luck")
        client = yield self.connect("caller", handlers={"broken": broken})
        with self.assertRaises(CallFailed) as raised:
            yield client.call("askMe", "broken", [])
        self.assertEqual(raised.exception.code, "NetConnection.Call.Failed")
        self.assertIsInstance(self.caller.failures[0], CallFailed)
        self.assertIn("no such luck", self.caller.failures[0].description)

    @inlineCallbacks
    def test_unanswered_call_times_out(self):
        pending = Inbox()
        stalled = Deferred()
        client = yield self.connect("caller", handlers={
            "never": lambda: pending() or stalled, "add": lambda a, b: a + b})
        with self.assertRaises(CallFailed) as raised:
            yield client.call("askMe", "never", [], 0.5)
        self.assertEqual(raised.exception.code, "NetConnection.Call.Timeout")
        self.assertEqual(len(pending.items), 1)
        [timed_out] = self.caller.failures
        self.assertIsInstance(timed_out, CallTimedOut)
        self.assertEqual(timed_out.code, "NetConnection.Call.Timeout")
        # The answer arriving after all is dropped; it does not settle the next call.
        stalled.callback(1000)
        self.assertEqual((yield client.call("askMe", "add", [2, 3])), 5)
        self.assertEqual(self.caller.results, [5])

    @inlineCallbacks
    def test_disconnect_fails_outstanding_calls_and_runs_the_hooks_in_order(self):
        pending = Inbox()
        client = yield self.connect("caller/room9", handlers={"hold": lambda: pending() or Deferred()})
        self.assertIsNone((yield client.call("callMeLater", "hold")))
        yield pending.wait_for(1)
        outstanding = self.caller.outstanding
        self.assertFalse(outstanding.called)
        [server_side] = [info.handle for info in (yield self.caller.clients())]

        yield client.close()
        closed = yield self.assertFailure(outstanding, ConnectionClosed)
        self.assertEqual(closed.code, "NetConnection.Connect.Closed")
        self.assertIs((yield self.caller.disconnected), server_side)
        cid = server_side.id
        self.assertEqual(self.caller.events, [
            ("room_create", "room9"), ("room_enter", "room9", cid),
            ("room_leave", "room9", cid), ("room_destroy", "room9"), ("disconnect", cid)])
        self.assertEqual((yield self.caller.rooms()), [])
        self.assertEqual((yield self.caller.clients()), [])
        self.assertFalse(server_side.connected)
        # Calling a gone client fails at once rather than waiting.
        with self.assertRaises(CallFailed) as raised:
            yield server_side.call("hold")
        self.assertEqual(raised.exception.code, "NetConnection.Connect.Closed")

    @inlineCallbacks
    def test_client_properties_as_sent(self):
        client = yield self.connect(
            "caller/props", "first", 42, {"k": "v"}, object_encoding=3, flashVer="TEST 1,2,3,4",
            pageUrl="http://example.test/page.html", swfUrl="http://example.test/app.swf")
        local = client.transport.getHost()
        self.assertEqual((yield client.call("describe")), [
            "TEST 1,2,3,4", self.url("caller/props"), "http://example.test/page.html",
            "http://example.test/app.swf", 3, f"{local.host}:{local.port}", ["first", 42, {"k": "v"}], True,
            "caller", "props"])

    @inlineCallbacks
    def test_default_properties_in_amf0(self):
        client = yield self.connect("caller")
        agent, tc_url, page_url, swf_url, encoding, *_, args, has_id, app, room = yield client.call("describe")
        self.assertEqual((tc_url, page_url, swf_url, encoding, args, has_id, app, room),
                         (self.url("caller"), "", "", 0, [], True, "caller", ""))
        self.assertEqual(agent, FLASH_VERSION)


# -- stream commands ----------------------------------------------------------------------------------

class StreamCommandTests(ClientMixin, LoopbackServerMixin, TestCase):
    @inlineCallbacks
    def test_create_length_delete(self):
        client = yield self.connect("echotest")
        received = []
        on_command = client._on_command
        client._on_command = lambda command: received.append(command) or on_command(command)

        first = yield client.call("createStream", None)
        second = yield client.call("createStream", None)
        self.assertIsInstance(first, (int, float))
        self.assertNotIsInstance(first, bool)
        self.assertEqual((first, second), (1, 2))
        self.assertEqual((yield client.call("getStreamLength", "anything")), 0)

        del received[:]
        client.notify("deleteStream", first)
        self.assertEqual((yield client.call("echo", "still usable")), "still usable")
        # Only the echo's answer came back: deleteStream (transaction 0) got none.
        self.assertEqual([(c.name, c.arguments) for c in received], [("_result", ("still usable",))])
        self.assertEqual((yield client.call("createStream", None)), 3)
