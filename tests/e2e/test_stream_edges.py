"""What a client sees at the edges of streaming and sessions: a VOD player that stops reading, a
recording that cannot be made or closed, metadata changed mid-recording, decisions that come after
the client left, a second connect, calls the client answers oddly, an application that disconnects
a client.

Same set-up as ``test_netstream_commands.py`` (our client, media built there, the server's timers on
a ``task.Clock``): nothing here waits on real time.
"""
import os
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.trial.unittest import TestCase

from fmspy_gateway.app import publishing as publishing_module
from fmspy_gateway.app.application import Application, Services
from fmspy_gateway.app.calls import ConnectionClosed
from fmspy_gateway.app.live_application import LiveApplication
from fmspy_gateway.app.recording import Recorder
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.config import ApplicationConfig, RTMPConfig
from fmspy_gateway.rtmp import flv
from fmspy_gateway.rtmp.budget import ValueBudget
from fmspy_gateway.rtmp.limits import Limits
from fmspy_gateway.rtmp.events import DataReceived

from .clocked import WAIT
from .test_netstream_commands import (AUDIO, AUDIO_HEADER, VIDEO, VIDEO_HEADER, NetStreamServer, interframe,
                                      is_header, keyframe, live_messages)


# -- a VOD player that stops reading ---------------------------------------------------------------

#: A recording of big pictures: 10 s, 25 a second, 20 KB each (5 MB), a keyframe each second.
BIG_MS, BIG_FRAME = 10_000, 20_000


def big_tags():
    tags = [(VIDEO, 0, VIDEO_HEADER)]
    for ts in range(0, BIG_MS, 40):
        picture = keyframe(ts) if ts % 1000 == 0 else interframe(ts)
        tags.append((VIDEO, ts, picture + bytes(BIG_FRAME)))
    return tags


def write_flv(path, tags, metadata_at=()):
    """An FLV file of ``tags``, with an onMetaData first and again before each tag index in ``metadata_at``."""
    with open(path, "wb") as f:
        f.write(flv.flv_header())
        for index, (type_id, ts, payload) in enumerate(tags):
            if index == 0 or index in metadata_at:
                body = flv.script_body("onMetaData", {"duration": BIG_MS / 1000, "take": float(index)})
                f.write(flv.tag_header(flv.SCRIPT, ts, len(body)) + body + flv.previous_tag_size(len(body)))
            f.write(flv.tag_header(type_id, ts, len(payload)) + payload + flv.previous_tag_size(len(payload)))


class SlowVODTests(NetStreamServer, TestCase):
    timeout = 60

    @inlineCallbacks
    def test_vod_to_a_player_that_stops_reading_waits_for_it_and_then_sends_everything(self):
        write_flv(os.path.join(self.record_dir, "big.flv"), big_tags())
        player = yield self.client()
        server_side = self.factory.protocol_of(player)
        stream_id = yield player.play("big", 0)
        yield player.barrier()
        player.transport.pauseProducing()        # it reads nothing from now on
        # A small send buffer stands in for a slow link (loopback's autotuning would take megabytes).
        server_side.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        # Ten seconds of the file come due while it reads nothing.
        self.advance(BIG_MS / 1000)
        # The server stopped sending when the socket filled up: what waits for the player is the lead
        # VOD sends ahead and a tick's worth, far less than the file.
        self.assertLess(server_side.queued_bytes, (BIG_MS / 1000) * 25 * BIG_FRAME / 4)
        self.assertTrue(player.connected)
        # Reading again, it gets every picture, in order, none skipped, as the clock goes on.
        player.transport.resumeProducing()
        expected = [(t, ts) for t, ts, _ in big_tags()[1:]]
        got = lambda: [(m.type_id, m.timestamp) for m in player.media(stream_id=stream_id)  # noqa: E731
                       if not is_header(m)]
        for _ in range(300):
            if len(got()) >= len(expected):
                break
            self.advance(0.1)
            yield player.barrier()      # everything the server wrote before has arrived
        self.assertEqual(got(), expected)
        yield player.wait_code("NetStream.Play.Stop")


# -- recordings that cannot be made or closed, metadata changed mid-recording ---------------------

class UnclosableRecorder(Recorder):
    """A Recorder whose file cannot be closed (a disk that went away, say)."""

    def close(self):
        super().close()
        raise OSError(5, "Input/output error")


class RecordingEdgeTests(NetStreamServer, TestCase):
    timeout = 60

    def applications(self):
        apps = super().applications()
        # What fmspy.cfg's [LiveApplication:rec] with record = all configures.
        section = ApplicationConfig(class_name="LiveApplication", label="rec", enabled=True, name="rec",
                                    options={"recordDir": "auto", "record": "all"},
                                    source=os.path.join(self.work, "fmspy.cfg"))
        rec = apps["rec"] = LiveApplication("rec", section.options)
        rec.configure_streaming(section, Services(LocalHub(), clock=self.clock, rtmp=self.rtmp_config))
        return apps

    @inlineCallbacks
    def sync(self, *clients):
        for client in clients:
            yield client.barrier()

    @inlineCallbacks
    def test_record_all_that_cannot_open_its_file_logs_it_and_the_stream_goes_on_live(self):
        auto = os.path.join(self.work, "auto")
        os.makedirs(os.path.join(auto, "cam.flv"))       # a directory where the recording would go
        publisher = yield self.client("rec")
        pub_id, answer = yield publisher.publish("cam")
        self.assertEqual(answer, "NetStream.Publish.Start")
        # The publisher never asked for a recording: nothing about it reaches the publisher.
        self.assertNotIn("NetStream.Record.Failed", publisher.codes())
        self.assertNotIn("NetStream.Record.Start", publisher.codes())
        player = yield self.client("rec")
        yield player.play("cam", -1)
        publisher.send(pub_id, [(VIDEO, 0, VIDEO_HEADER), (AUDIO, 0, AUDIO_HEADER)] + live_messages(0, 1000))
        yield self.sync(publisher, player)
        self.assertEqual(len([m for m in player.media() if not is_header(m)]), 20)
        self.assertTrue(any("cannot record to" in line and os.path.join(auto, "cam.flv") in line
                            for line in self.log.lines), self.log.lines)
        self.assertEqual(os.listdir(os.path.join(auto, "cam.flv")), [])

    @inlineCallbacks
    def test_a_recording_that_cannot_be_closed_is_logged_and_unpublish_still_succeeds(self):
        self.patch(publishing_module, "Recorder", UnclosableRecorder)
        publisher = yield self.client()
        pub_id, answer = yield publisher.publish("show", "record")
        self.assertEqual(answer, "NetStream.Publish.Start")
        publisher.send(pub_id, [(VIDEO, 0, VIDEO_HEADER), (AUDIO, 0, AUDIO_HEADER)] + live_messages(0, 1000))
        mark = publisher.mark()
        publisher.command(0, "deleteStream", pub_id)
        yield publisher.wait_code("NetStream.Unpublish.Success", mark)
        self.assertTrue(any("closing the recording of show failed" in line and "Input/output error" in line
                            for line in self.log.lines), self.log.lines)
        self.assertTrue(publisher.connected)
        # The name is free again for the next publisher.
        again = yield self.client()
        _, answer = yield again.publish("show", "live")
        self.assertEqual(answer, "NetStream.Publish.Start")

    @inlineCallbacks
    def test_metadata_changed_mid_recording_plays_back_once_at_the_start_and_the_media_is_whole(self):
        publisher = yield self.client()
        pub_id, answer = yield publisher.publish("show", "record")
        self.assertEqual(answer, "NetStream.Publish.Start")
        first = live_messages(0, 1000)
        second = live_messages(1000, 2000)
        publisher.connection.send_data(["@setDataFrame", "onMetaData", {"width": 320.0}], stream_id=pub_id)
        publisher.send(pub_id, [(VIDEO, 0, VIDEO_HEADER), (AUDIO, 0, AUDIO_HEADER)] + first)
        publisher.connection.send_data(["@setDataFrame", "onMetaData", {"width": 640.0}], stream_id=pub_id)
        publisher.send(pub_id, second)
        mark = publisher.mark()
        publisher.command(0, "deleteStream", pub_id)
        yield publisher.wait_code("NetStream.Unpublish.Success", mark)
        # The file has the second onMetaData between the media (a script tag the player must not get as media).
        with open(os.path.join(self.record_dir, "show.flv"), "rb") as f:
            scripts = [tag for tag in flv.iter_tags(f) if tag.type_id == flv.SCRIPT]
        self.assertEqual(len(scripts), 2)

        player = yield self.client()
        stream_id = yield player.play("show", 0)
        self.advance(3)
        yield player.wait_code("NetStream.Play.Stop")
        data = [e.values for e in player.since() if isinstance(e, DataReceived)]
        self.assertEqual([v[0] for v in data], ["|RtmpSampleAccess", "onMetaData"])
        self.assertEqual(data[1][1]["width"], 320.0)
        media = [(m.type_id, m.timestamp, m.payload) for m in player.media(stream_id=stream_id) if not is_header(m)]
        self.assertEqual(media, first + second)


# -- decisions that come after the client left ----------------------------------------------------

class HeldStreamApplication(LiveApplication):
    """The first on_publish and on_play of a name answer when the test fires the Deferred they returned."""

    def __init__(self, name):
        super().__init__(name)
        self.held = {}
        self._asked = {}

    def _hold(self, kind, name):
        if (kind, name) in self.held:
            return True         # only the first ask is held
        d = self.held[kind, name] = Deferred()
        waiting = self._asked.pop((kind, name), None)
        if waiting is not None:
            waiting.callback(None)
        return d

    def on_publish(self, client, name, mode, query=""):
        return self._hold("publish", name)

    def on_play(self, client, name, query=""):
        return self._hold("play", name)

    def asked(self, kind, name) -> Deferred:
        """Fires once ``kind`` of ``name`` was asked for (``held[kind, name]`` is its answer to give)."""
        if (kind, name) in self.held:
            return succeed(None)
        d = self._asked[kind, name] = Deferred()
        return d.addTimeout(WAIT, reactor)


class LateDecisionTests(NetStreamServer, TestCase):
    timeout = 60

    def applications(self):
        live = HeldStreamApplication("live")
        live.configure_streaming(object(), Services(LocalHub(), clock=self.clock, rtmp=self.rtmp_config))
        live.record_dir = self.record_dir
        return {"live": live}

    @inlineCallbacks
    def leave_while_deciding(self, kind, name):
        """A client asks to ``kind`` ``name`` and leaves before the application answers; the held Deferred."""
        client = yield self.client()
        stream_id = yield client.call("createStream", timeout=WAIT)
        client.command(stream_id, kind, name, "live" if kind == "publish" else -1)
        yield self.apps["live"].asked(kind, name)
        held = self.apps["live"].held[kind, name]
        server_side = self.factory.protocol_of(client)
        gone = Deferred()
        connection_lost = server_side.connectionLost
        server_side.connectionLost = lambda reason: (connection_lost(reason), gone.callback(None))
        client.transport.loseConnection()
        yield gone.addTimeout(WAIT, reactor)
        return held

    @inlineCallbacks
    def test_a_publish_allowed_after_the_publisher_left_publishes_nothing(self):
        held = yield self.leave_while_deciding("publish", "cam")
        held.callback(True)
        self.assertIsNone(self.apps["live"].live.get("cam"))
        # The name is free: the next publisher gets it (not Publish.BadName, as beside a live publisher).
        again = yield self.client()
        _, answer = yield again.publish("cam")
        self.assertEqual(answer, "NetStream.Publish.Start")

    @inlineCallbacks
    def test_a_publish_refused_after_the_publisher_left_is_dropped_quietly(self):
        held = yield self.leave_while_deciding("publish", "cam")
        held.errback(RuntimeError("a backend answered too late"))
        self.assertIsNone(self.apps["live"].live.get("cam"))
        self.assertFalse(any("on_publish of live raised" in line for line in self.log.lines), self.log.lines)

    @inlineCallbacks
    def test_a_play_allowed_after_the_player_left_adds_no_player(self):
        held = yield self.leave_while_deciding("play", "cam")
        held.callback(True)
        self.assertIsNone(self.apps["live"].live.get("cam"))

    @inlineCallbacks
    def test_a_play_refused_after_the_player_left_is_dropped_quietly(self):
        held = yield self.leave_while_deciding("play", "cam")
        held.errback(RuntimeError("a backend answered too late"))
        self.assertIsNone(self.apps["live"].live.get("cam"))
        self.assertFalse(any("on_play of live raised" in line for line in self.log.lines), self.log.lines)


# -- sessions: a second connect, a connect the client gave up on, a client the application drops ---

class SessionEdgeApplication(Application):
    def __init__(self, name):
        super().__init__(name)
        self.cancelled = Deferred()

    def on_connect(self, client, *args):
        if args[:1] == ("hold",):
            return Deferred(canceller=lambda d: self.cancelled.callback(client.id))
        return True

    def invoke_kickMe(self, client):
        client.disconnect("kicked by the application")
        return "bye"


class SessionEdgeTests(NetStreamServer, TestCase):
    timeout = 60

    def applications(self):
        return {"edge": SessionEdgeApplication("edge")}

    @inlineCallbacks
    def test_a_second_connect_on_one_connection_closes_it(self):
        client = yield self.client("edge")
        server_side = self.factory.protocol_of(client)
        client.connection.send_command("connect", 2, {"app": "edge"}, [])
        client.flush()
        yield client.closed.addTimeout(WAIT, reactor)
        self.assertEqual(server_side.close_reason, "second connect on one connection")

    @inlineCallbacks
    def test_a_client_gone_while_its_connect_is_decided_cancels_the_decision(self):
        client = yield self.client("edge", connect=False)
        yield client._wait(lambda: client.handshake is not None)
        connecting = client.connect("edge", "hold")
        connecting.addErrback(lambda failure: None)
        yield self.factory.wait_received(client, client.sent)
        client.transport.loseConnection()
        client_id = yield self.apps["edge"].cancelled.addTimeout(WAIT, reactor)
        self.assertIsNotNone(client_id)

    @inlineCallbacks
    def test_an_application_that_disconnects_a_client_closes_its_connection(self):
        client = yield self.client("edge")
        server_side = self.factory.protocol_of(client)
        # Closed while its call was handled: the call fails as the connection goes, it does not hang.
        yield self.assertFailure(client.call("kickMe", timeout=WAIT), ConnectionClosed)
        yield client.closed.addTimeout(WAIT, reactor)
        self.assertEqual(server_side.close_reason, "kicked by the application")


class RefusedMessageTests(NetStreamServer, TestCase):
    """Messages past the value budget (``maxValueNodes``) where only a connect may come, or a second one."""

    timeout = 60
    rtmp_config = RTMPConfig(limits=Limits(value_budget=ValueBudget(max_nodes=50)))

    def applications(self):
        return {"edge": SessionEdgeApplication("edge")}

    @inlineCallbacks
    def test_a_refused_call_before_connect_closes_the_connection(self):
        client = yield self.client("edge", connect=False)
        yield client._wait(lambda: client.handshake is not None)
        server_side = self.factory.protocol_of(client)
        client.connection.send_command("echo", 2, None, [list(range(100))])
        client.flush()
        yield client.closed.addTimeout(WAIT, reactor)
        self.assertEqual(server_side.close_reason, "echo before connect")

    @inlineCallbacks
    def test_a_refused_second_connect_closes_the_connection(self):
        client = yield self.client("edge")
        server_side = self.factory.protocol_of(client)
        client.connection.send_command("connect", 2, {"app": "edge"}, [list(range(100))])
        client.flush()
        yield client.closed.addTimeout(WAIT, reactor)
        self.assertEqual(server_side.close_reason, "second connect on one connection")


class DataFromNonPublishersTests(NetStreamServer, TestCase):
    timeout = 60

    @inlineCallbacks
    def test_data_messages_from_a_client_that_does_not_publish_reach_nobody(self):
        publisher = yield self.client()
        pub_id, answer = yield publisher.publish("cam")
        self.assertEqual(answer, "NetStream.Publish.Start")
        player = yield self.client()
        play_id = yield player.play("cam", -1)
        other = yield self.client()
        other_id = yield other.play("cam", -1)
        mark = player.mark()
        # On the stream it plays and on a stream it never created; then the publisher's own.
        other.connection.send_data(["onTextData", {"text": "from a player"}], stream_id=other_id)
        other.connection.send_data(["onTextData", {"text": "from nowhere"}], stream_id=other_id + 5)
        other.flush()
        publisher.connection.send_data(["onTextData", {"text": "from the publisher"}], stream_id=pub_id)
        publisher.flush()
        for client in (other, publisher, player):
            yield client.barrier()
        relayed = [(e.stream_id, tuple(e.values)) for e in player.since(mark) if isinstance(e, DataReceived)]
        self.assertEqual(relayed, [(play_id, ("onTextData", {"text": "from the publisher"}))])
        self.assertTrue(other.connected)


# -- calls to the client answered oddly -------------------------------------------------------------

class AskingApplication(Application):
    """``ask`` calls the client's ``question`` and answers with what came of it."""

    def invoke_ask(self, client):
        d = client.call("question")
        return d.addCallbacks(lambda value: ["answered", value],
                              lambda failure: ["failed", failure.value.code, failure.value.description])


class OddAnswerTests(NetStreamServer, TestCase):
    timeout = 60

    def applications(self):
        return {"ask": AskingApplication("ask")}

    @inlineCallbacks
    def test_an_error_answer_that_is_a_plain_string_fails_the_call_with_that_text(self):
        client = yield self.client("ask")
        client.handlers["question"] = lambda *args: Deferred()      # answered below, by hand
        asking = client.call("ask", timeout=WAIT)
        yield client._wait(lambda: any(c.name == "question" for c in client.commands))
        [question] = [c for c in client.commands if c.name == "question"]
        # Answers to calls nobody made are ignored; the connection goes on.
        client.connection.send_command("_error", question.transaction_id + 100, None, ["nobody asked"])
        client.connection.send_command("_result", question.transaction_id + 101, None, ["nobody asked"])
        client.connection.send_command("_error", question.transaction_id, None, ["just a string"])
        client.flush()
        outcome = yield asking
        self.assertEqual(outcome, ["failed", "NetConnection.Call.Failed", "just a string"])
        self.assertTrue(client.connected)
