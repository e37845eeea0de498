"""Recording and playback do their file I/O through an executor: the reactor never waits on the disk.

The thread-pool tests run on the real reactor with Twisted's thread pool
behind a gate (a ``threading.Event`` the test holds): while a file task is
held, the reactor keeps turning and the session keeps answering its client;
opening the gate lets the task finish and its answer reach the client.
"""
import os
import shutil
import tempfile
import threading

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fmspy_gateway.app.application import Application
from fmspy_gateway.app.fileio import SerialQueue, SynchronousExecutor, ThreadPoolExecutor, default_executor
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.live import LiveStreams
from fmspy_gateway.app.recording import RecordedStream, Recorder
from fmspy_gateway.app.session import Session
from fmspy_gateway.rtmp.events import CommandReceived, MediaReceived, UserControlReceived
from fmspy_gateway.rtmp.messages import MessageType, UserControl

from .test_live import AUDIO_HEADER, VIDEO_HEADER, FakePeer, audio, codes, inter, keyframe

AUDIO, VIDEO = MessageType.AUDIO, MessageType.VIDEO
#: Real seconds a wait may take before the test fails (nothing waits on time: a gate or a Deferred).
WAIT = 10


class GatedExecutor(ThreadPoolExecutor):
    """The reactor's thread pool; every task first waits for ``gate``, and says which thread ran it."""

    def __init__(self):
        super().__init__(reactor)
        self.gate = threading.Event()
        self.threads = []
        self.pending = []

    def run(self, function, *args, **kwargs):
        def gated():
            self.threads.append(threading.get_ident())
            if not self.gate.wait(WAIT):
                raise AssertionError("the gate was never opened")
            return function(*args, **kwargs)

        d = super().run(gated)
        self.pending.append(d)
        return d

    @inlineCallbacks
    def settle(self):
        """Wait until every task given so far (and those their answers gave) has answered."""
        while self.pending:
            pending, self.pending = self.pending, []
            yield DeferredList(pending, consumeErrors=True).addTimeout(WAIT, reactor)


def turn():
    """One turn of the reactor: fires only if nothing holds the reactor thread."""
    return deferLater(reactor, 0, lambda: "turned").addTimeout(WAIT, reactor)


class ThreadPoolRecordingTests(TestCase):
    def setUp(self):
        self.app = Application("live", hub=LocalHub())
        self.app.live = LiveStreams(reactor)
        self.app.record_dir = tempfile.mkdtemp(prefix="fmspy-fileio-")
        self.addCleanup(shutil.rmtree, self.app.record_dir, True)
        self.executor = GatedExecutor()
        self.peer = FakePeer()
        self.session = Session({"live": self.app}, self.peer, clock=reactor, executor=self.executor)
        self.send("connect", 1, {"app": "live", "tcUrl": "rtmp://h/live"})
        self.send("createStream", 2, None)

    @inlineCallbacks
    def tearDown(self):
        self.session.connection_lost("test over")
        self.executor.gate.set()
        yield self.executor.settle()

    def send(self, name, transaction_id, command_object, *args, stream_id=0):
        self.peer.client.send_command(name, transaction_id, command_object, args, stream_id=stream_id)
        return self.deliver()

    def deliver(self):
        for event in self.peer.connection.receive_data(self.peer.client.data_to_send()):
            self.session.handle(event)
        self.session.events_handled()
        return self.peer.received()

    def media(self, type_id, timestamp, payload):
        self.peer.client.send_media(type_id, 1, timestamp, payload)
        return self.deliver()

    def results(self, events):
        return [e.arguments[0] for e in events if isinstance(e, CommandReceived) and e.name == "_result"]

    @inlineCallbacks
    def test_opening_a_recording_holds_neither_the_reactor_nor_the_session(self):
        events = self.send("publish", 0, None, "cam", "record", stream_id=1)
        self.assertEqual(codes(events), [])                 # the file is being opened, in the pool
        self.assertEqual((yield turn()), "turned")           # the reactor goes on meanwhile
        self.assertEqual(self.results(self.send("createStream", 3, None)), [2.0])   # and the session answers
        self.executor.gate.set()
        yield self.executor.settle()
        self.assertEqual(len(self.executor.threads), 1)
        self.assertNotEqual(self.executor.threads[0], threading.get_ident())
        self.assertEqual(codes(self.peer.received()), ["NetStream.Publish.Start", "NetStream.Record.Start"])

    @inlineCallbacks
    def test_writes_run_in_the_pool_in_order_and_the_file_is_whole(self):
        self.executor.gate.set()
        self.send("publish", 0, None, "cam", "record", stream_id=1)
        yield self.executor.settle()
        self.executor.gate.clear()
        self.media(VIDEO, 0, VIDEO_HEADER)
        self.media(AUDIO, 0, AUDIO_HEADER)
        for t in range(0, 1000, 40):
            self.media(VIDEO, t, keyframe() if t == 0 else inter())
            self.media(AUDIO, t, audio())
        self.assertEqual((yield turn()), "turned")           # 52 writes held: the reactor still turns
        self.assertEqual(self.results(self.send("createStream", 3, None)), [2.0])
        self.executor.gate.set()
        self.send("deleteStream", 0, None, 1)
        yield self.executor.settle()
        self.assertNotIn(threading.get_ident(), self.executor.threads)
        with RecordedStream(self.app.record_path("cam")) as recorded:
            tags = list(recorded.tags_from(0))
            self.assertEqual(recorded.duration_ms, 960)
        self.assertEqual([t.timestamp for t in tags if t.type_id == VIDEO], list(range(0, 1000, 40)))

    @inlineCallbacks
    def test_playing_a_recording_reads_it_in_the_pool(self):
        with Recorder(self.app.record_path("cam")) as recorder:
            recorder.write(VIDEO, 0, VIDEO_HEADER)
            for t in range(0, 500, 40):
                recorder.write(VIDEO, t, keyframe() if t == 0 else inter())
        events = self.send("play", 0, None, "cam", 0, stream_id=1)
        self.assertEqual(codes(events), [])                  # opened and indexed in the pool
        self.assertEqual((yield turn()), "turned")
        self.assertEqual(self.results(self.send("createStream", 3, None)), [2.0])
        self.executor.gate.set()
        yield self.executor.settle()
        got = self.peer.received()
        self.assertEqual(codes(got), ["NetStream.Play.Reset", "NetStream.Play.Start", "NetStream.Play.Stop"])
        self.assertTrue(any(isinstance(e, UserControlReceived) and e.event_type == UserControl.STREAM_IS_RECORDED
                            for e in got))
        video = [e.timestamp for e in got if isinstance(e, MediaReceived) and e.type_id == VIDEO]
        self.assertEqual(video, [0] + list(range(0, 500, 40)))       # the header, then every frame
        self.assertNotIn(threading.get_ident(), self.executor.threads)
        self.assertEqual(self.app.live.recorded_indexes.misses, 1)

    @inlineCallbacks
    def test_a_stop_while_the_file_opens_closes_it_and_sends_nothing(self):
        with Recorder(self.app.record_path("cam")) as recorder:
            recorder.write(VIDEO, 0, VIDEO_HEADER)
        self.send("play", 0, None, "cam", 0, stream_id=1)
        self.send("closeStream", 0, None, stream_id=1)
        self.executor.gate.set()
        yield self.executor.settle()
        self.assertEqual(codes(self.peer.received()), [])


class IndexCacheTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.app = Application("live", hub=LocalHub())
        self.app.live = LiveStreams(self.clock)
        self.app.record_dir = tempfile.mkdtemp(prefix="fmspy-fileio-")
        self.addCleanup(shutil.rmtree, self.app.record_dir, True)
        self.path = self.app.record_path("cam")
        with Recorder(self.path) as recorder:
            recorder.write(VIDEO, 0, VIDEO_HEADER)
            recorder.write(VIDEO, 0, keyframe())

    def play(self):
        peer = FakePeer()
        session = Session({"live": self.app}, peer, clock=self.clock)
        for name, txn, args, stream_id in (("connect", 1, (), 0), ("createStream", 2, (), 0),
                                           ("play", 0, ("cam", 0), 1)):
            peer.client.send_command(name, txn, {"app": "live"} if name == "connect" else None, args,
                                     stream_id=stream_id)
            for event in peer.connection.receive_data(peer.client.data_to_send()):
                session.handle(event)
        got = codes(peer.received())
        session.connection_lost("done")
        return got

    def test_a_recording_is_indexed_once_while_it_does_not_change(self):
        indexes = self.app.live.recorded_indexes
        self.assertIn("NetStream.Play.Start", self.play())
        self.assertIn("NetStream.Play.Start", self.play())
        self.assertEqual((indexes.misses, indexes.hits), (1, 1))

    def test_a_recording_that_changed_is_indexed_again(self):
        indexes = self.app.live.recorded_indexes
        self.play()
        with Recorder(self.path, "append") as recorder:
            recorder.write(VIDEO, 0, keyframe())
        self.play()
        self.assertEqual((indexes.misses, indexes.hits), (2, 0))

    def test_the_cache_keeps_the_last_files_only(self):
        indexes = self.app.live.recorded_indexes
        indexes.size = 1
        other = self.app.record_path("other")
        shutil.copy(self.path, other)
        RecordedStream(self.path, indexes).close()
        RecordedStream(other, indexes).close()
        RecordedStream(self.path, indexes).close()
        self.assertEqual((indexes.misses, indexes.hits), (3, 0))
        self.assertTrue(os.path.exists(other))


class SerialQueueTests(TestCase):
    @inlineCallbacks
    def test_tasks_of_one_queue_run_one_at_a_time_in_order_in_the_pool(self):
        queue = SerialQueue(ThreadPoolExecutor(reactor))
        running, order, threads = [], [], set()

        def task(i):
            running.append(i)
            assert len(running) == 1, running
            threads.add(threading.get_ident())
            order.append(i)
            running.remove(i)
            return i

        results = yield DeferredList([queue.run(task, i) for i in range(50)], fireOnOneErrback=True)
        self.assertEqual([value for _, value in results], list(range(50)))
        self.assertEqual(order, list(range(50)))
        self.assertNotIn(threading.get_ident(), threads)
        yield turn()
        self.assertTrue(queue.idle)

    def test_a_failed_task_fails_its_deferred_and_the_queue_goes_on(self):
        queue = SerialQueue(SynchronousExecutor())
        failed = queue.run(lambda: 1 / 0)
        after = queue.run(lambda: "next")
        self.failureResultOf(failed, ZeroDivisionError)
        self.assertEqual(self.successResultOf(after), "next")

    def test_a_clock_gets_the_synchronous_executor_and_a_reactor_its_thread_pool(self):
        self.assertIsInstance(default_executor(Clock()), SynchronousExecutor)
        self.assertIsInstance(default_executor(None), SynchronousExecutor)
        self.assertIsInstance(default_executor(reactor), ThreadPoolExecutor)
