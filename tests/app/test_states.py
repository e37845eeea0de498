"""Table tests of the two state tables (app/states.py): every (state, command) pair and what the client sees.

Each state is reached through a real ``Session`` on a fake peer (a server
``Connection`` paired with a client one), so replies are decoded from the
bytes queued for the client.
"""
import shutil
import tempfile

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app import stream_commands
from fmspy_gateway.app.application import Application
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.live import LiveStreams
from fmspy_gateway.app.recording import Recorder
from fmspy_gateway.app.session import Session
from fmspy_gateway.app.states import (CONNECTION_TRANSITIONS, IGNORE, RUN, STREAM_COMMANDS, Action, ConnectionEvent,
                                      ConnectionState, Refuse, StreamState, connection_action,
                                      next_connection_state, stream_state)
from fmspy_gateway.rtmp.errors import LocalProtocolError
from fmspy_gateway.rtmp.events import CommandReceived
from fmspy_gateway.rtmp.messages import MessageType

from .test_live import VIDEO_HEADER, FakePeer, codes, keyframe

VIDEO = MessageType.VIDEO
C, E = ConnectionState, ConnectionEvent


class ConnectionTransitionTests(SynchronousTestCase):
    def test_every_state_and_event(self):
        expected = {
            (C.AWAITING_CONNECT, E.CONNECT): C.DECIDING, (C.AWAITING_CONNECT, E.REFUSED): C.CLOSED,
            (C.AWAITING_CONNECT, E.LOST): C.CLOSED,
            (C.DECIDING, E.ACCEPTED): C.CONNECTED, (C.DECIDING, E.REFUSED): C.CLOSED, (C.DECIDING, E.LOST): C.CLOSED,
            (C.CONNECTED, E.LOST): C.CLOSED,
            (C.CLOSED, E.LOST): C.CLOSED, (C.CLOSED, E.REFUSED): C.CLOSED,
        }
        self.assertEqual(CONNECTION_TRANSITIONS, expected)
        for state in C:
            for event in E:
                if (state, event) in expected:
                    self.assertIs(next_connection_state(state, event), expected[state, event])
                else:
                    self.assertRaises(LocalProtocolError, next_connection_state, state, event)


class ConnectionCommandTableTests(SynchronousTestCase):
    """Every (connection state, kind of command) pair: the action, and what the client sees."""

    KINDS = {"connect": ("connect", 0, False), "connect on a stream": ("connect", 1, False),
             "_result": ("_result", 0, False), "_error": ("_error", 0, False),
             "stream command": ("createStream", 0, True), "call": ("echo", 0, False)}
    EXPECTED = {
        C.AWAITING_CONNECT: {"connect": Action.CONNECT, "connect on a stream": Action.CLOSE_BEFORE_CONNECT,
                             "_result": Action.CLOSE_BEFORE_CONNECT, "_error": Action.CLOSE_BEFORE_CONNECT,
                             "stream command": Action.CLOSE_BEFORE_CONNECT, "call": Action.CLOSE_BEFORE_CONNECT},
        C.DECIDING: dict.fromkeys(KINDS, Action.HOLD),
        C.CONNECTED: {"connect": Action.CLOSE_SECOND_CONNECT, "connect on a stream": Action.CLOSE_SECOND_CONNECT,
                      "_result": Action.RESOLVE, "_error": Action.RESOLVE, "stream command": Action.STREAM,
                      "call": Action.CALL},
        C.CLOSED: dict.fromkeys(KINDS, Action.IGNORE),
    }

    def test_the_table(self):
        for state in C:
            for kind, (name, stream_id, is_stream) in self.KINDS.items():
                self.assertIs(connection_action(state, name, stream_id, is_stream), self.EXPECTED[state][kind],
                              (state, kind))

    def setUp(self):
        self.clock = Clock()
        test = self
        self.decision = True

        class App(Application):
            def on_connect(self, client, *args):
                return test.decision

            def handle_call(self, client, name, args, wants_result):
                return "echoed"

        self.app = App("app", hub=LocalHub())
        self.app.live = LiveStreams(self.clock)
        self.peer = FakePeer()
        self.session = Session({"app": self.app}, self.peer, clock=self.clock)

    def send(self, name, transaction_id, *args, stream_id=0, command_object=None):
        self.peer.client.send_command(name, transaction_id, command_object, args, stream_id=stream_id)
        for event in self.peer.connection.receive_data(self.peer.client.data_to_send()):
            self.session.handle(event)
        self.session.events_handled()
        return [e for e in self.peer.received() if isinstance(e, CommandReceived)]

    def connect(self):
        return self.send("connect", 1, command_object={"app": "app"})

    def test_awaiting_connect_anything_but_connect_closes(self):
        self.assertIs(self.session.state, C.AWAITING_CONNECT)
        self.assertEqual(self.send("echo", 2), [])
        self.assertEqual(self.peer.closed_because, "echo before connect")

    def test_awaiting_connect_to_an_unknown_application_is_refused_and_closed(self):
        replies = self.send("connect", 1, command_object={"app": "nope"})
        self.assertEqual(replies[0].arguments[0]["code"], "NetConnection.Connect.InvalidApp")
        self.assertIs(self.session.state, C.CLOSED)

    def test_deciding_holds_commands_and_answers_them_in_order_once_accepted(self):
        self.decision = Deferred()
        self.assertEqual(self.connect(), [])
        self.assertIs(self.session.state, C.DECIDING)
        self.assertEqual(self.send("echo", 2), [])
        self.assertEqual(self.send("createStream", 3), [])
        self.decision.callback(True)
        replies = [e for e in self.peer.received() if isinstance(e, CommandReceived)]
        self.assertEqual([(e.name, e.transaction_id) for e in replies], [("_result", 1), ("_result", 2),
                                                                          ("_result", 3)])
        self.assertIs(self.session.state, C.CONNECTED)

    def test_deciding_then_refused_is_closed(self):
        self.decision = False
        replies = self.connect()
        self.assertEqual(replies[0].arguments[0]["code"], "NetConnection.Connect.Rejected")
        self.assertIs(self.session.state, C.CLOSED)
        self.assertEqual(self.send("echo", 2), [])            # closed: ignored

    def test_connected_a_second_connect_closes(self):
        self.connect()
        self.assertEqual(self.send("connect", 2, command_object={"app": "app"}), [])
        self.assertEqual(self.peer.closed_because, "second connect on one connection")

    def test_connected_calls_and_stream_commands_are_answered(self):
        self.connect()
        self.assertEqual([(e.name, e.arguments) for e in self.send("echo", 2)], [("_result", ("echoed",))])
        self.assertEqual([(e.name, e.arguments) for e in self.send("createStream", 3)], [("_result", (1.0,))])

    def test_closed_ignores_everything_and_sends_nothing(self):
        self.connect()
        self.session.connection_lost("gone")
        self.assertIs(self.session.state, C.CLOSED)
        for name in ("connect", "echo", "createStream", "_result"):
            self.assertEqual(self.send(name, 5, command_object={"app": "app"}), [])


class StreamCommandTableTests(SynchronousTestCase):
    """Every (NetStream state, command) pair: the table's entry, and what the client sees."""

    def setUp(self):
        self.clock = Clock()
        self.app = Application("live", hub=LocalHub())
        self.app.live = LiveStreams(self.clock)
        self.app.record_dir = tempfile.mkdtemp(prefix="fmspy-states-")
        self.addCleanup(shutil.rmtree, self.app.record_dir, True)
        with Recorder(self.app.record_path("vod")) as recorder:
            recorder.write(VIDEO, 0, VIDEO_HEADER)
            for t in range(0, 3000, 40):
                recorder.write(VIDEO, t, keyframe())

    def session_in(self, state):
        peer = FakePeer()
        session = Session({"live": self.app}, peer, clock=self.clock)
        self.addCleanup(session.connection_lost, "test over")

        def send(name, transaction_id, *args, stream_id=0, command_object=None):
            peer.client.send_command(name, transaction_id, command_object, args, stream_id=stream_id)
            for event in peer.connection.receive_data(peer.client.data_to_send()):
                session.handle(event)
            session.events_handled()
            return peer.received()

        send("connect", 1, command_object={"app": "live"})
        send("createStream", 2)
        if state is StreamState.PUBLISHING:
            send("publish", 0, f"pub{id(peer)}", "live", stream_id=1)
        elif state is StreamState.PLAYING_LIVE:
            send("play", 0, "waiting", -1, stream_id=1)
        elif state is StreamState.PLAYING_RECORDED:
            send("play", 0, "vod", 0, stream_id=1)
        self.assertIs(stream_state(session.streams.streams[1]), state)
        return session, send

    ARGUMENTS = {"seek": (100,), "pause": (True, 0), "receiveAudio": (False,), "receiveVideo": (False,),
                 "publish": ("other", "live"), "play": ("vod", 0), "play2": ({"streamName": "vod", "start": 0},),
                 "getStreamLength": ("vod",), "FCPublish": ("x",), "FCUnpublish": ("x",), "FCSubscribe": ("x",),
                 "releaseStream": ("x",), "deleteStream": (1,)}

    def test_the_table_covers_every_command_and_state(self):
        self.assertEqual(set(STREAM_COMMANDS), set(stream_commands._COMMANDS))
        for command, entries in STREAM_COMMANDS.items():
            self.assertEqual(set(entries), set(StreamState), command)

    def test_every_pair(self):
        for state in StreamState:
            for command, entries in STREAM_COMMANDS.items():
                entry = entries[state]
                session, send = self.session_in(state)
                ran = []
                real = stream_commands._COMMANDS[command]
                stream_commands._COMMANDS[command] = lambda commands, c, name=command: ran.append(name)
                try:
                    got = send(command, 0, *self.ARGUMENTS.get(command, ()), stream_id=1)
                finally:
                    stream_commands._COMMANDS[command] = real
                if entry is RUN:
                    self.assertEqual(ran, [command], (state, command))
                elif entry is IGNORE:
                    self.assertEqual((ran, got), ([], []), (state, command))
                else:
                    self.assertIsInstance(entry, Refuse)
                    self.assertEqual(ran, [], (state, command))
                    statuses = [e.arguments[0] for e in got if isinstance(e, CommandReceived)]
                    self.assertEqual([(s["level"], s["code"]) for s in statuses], [("error", entry.code)],
                                     (state, command))

    def test_what_the_client_sees_when_a_command_runs(self):
        """The replies of the commands that depend on the state, run for real (no spy)."""
        expected = {
            (StreamState.PLAYING_RECORDED, "seek"): ["NetStream.Seek.Notify", "NetStream.Play.Start"],
            (StreamState.IDLE, "pause"): ["NetStream.Pause.Notify"],
            (StreamState.PUBLISHING, "pause"): ["NetStream.Pause.Notify"],
            (StreamState.PLAYING_LIVE, "pause"): ["NetStream.Pause.Notify"],
            (StreamState.PLAYING_RECORDED, "pause"): ["NetStream.Pause.Notify"],
            (StreamState.PLAYING_LIVE, "receiveAudio"): [],
            (StreamState.PLAYING_RECORDED, "receiveVideo"): [],
        }
        for (state, command), want in expected.items():
            session, send = self.session_in(state)
            got = send(command, 0, *self.ARGUMENTS[command], stream_id=1)
            self.assertEqual(codes(got), want, (state, command))

    def test_a_command_on_a_stream_never_created_gets_its_usual_answer(self):
        session, send = self.session_in(StreamState.IDLE)
        self.assertEqual(codes(send("seek", 0, 10, stream_id=7)), [])
        self.assertEqual(codes(send("play", 0, "vod", stream_id=7)), ["NetStream.Play.StreamNotFound"])
        self.assertEqual(codes(send("publish", 0, "x", stream_id=7)), ["NetStream.Publish.BadName"])

    def test_seek_to_nan_is_refused_not_raised(self):
        session, send = self.session_in(StreamState.PLAYING_RECORDED)
        self.assertEqual(codes(send("seek", 0, float("nan"), stream_id=1)), ["NetStream.Seek.Failed"])

    def test_a_command_with_a_transaction_id_is_always_answered(self):
        """Every (state, command) pair sent with a transaction id gets one ``_result`` or ``_error`` for it.

        ``_error`` exactly where the table refuses (with the refusal's code),
        ``_result`` everywhere else, ignored commands included: ffmpeg and
        librtmp wait on every transaction id they send (FCSubscribe used to get none).
        """
        for state in StreamState:
            for command in STREAM_COMMANDS:
                session, send = self.session_in(state)
                got = send(command, 7, *self.ARGUMENTS.get(command, ()), stream_id=1)
                answers = [(e.name, e.arguments[0]) for e in got
                           if isinstance(e, CommandReceived) and e.transaction_id == 7]
                self.assertEqual(len(answers), 1, (state, command, got))
                entry = STREAM_COMMANDS[command][state]
                name, value = answers[0]
                if isinstance(entry, Refuse):
                    self.assertEqual((name, value["code"]), ("_error", entry.code), (state, command))
                else:
                    self.assertEqual(name, "_result", (state, command))

    def test_fcsubscribe_is_answered_then_notified(self):
        session, send = self.session_in(StreamState.IDLE)
        got = [(e.name, e.transaction_id) for e in send("FCSubscribe", 9, "cam") if isinstance(e, CommandReceived)]
        self.assertEqual(got, [("_result", 9), ("onFCSubscribe", 0)])
