"""Publishing one NetStream: publish, FCPublish/FCUnpublish, the publisher's media and data, recording it.

A publish passes the application's ``on_publish``, claims the name through
the hub (one publisher in the cluster, docs/ARCHITECTURE.md "The hub"), opens
its recording if it has one, and becomes the publisher of the application's
``LiveStream`` (``app/live.py`` fans it out).  The recording's file I/O (open,
every write, close) runs through the session's executor, one ``SerialQueue``
per file (``app/fileio.py``), so the reactor never waits on the disk.
"""
import logging
import time
from typing import Optional

from twisted.internet.defer import maybeDeferred

from ..rtmp.budget import brief, brief_name
from ..rtmp.events import DataReceived, MediaReceived
from ..rtmp.messages import UserControl
from .application import StreamRejected
from .fileio import SerialQueue
from .hub import StreamTaken
from .live import AUDIO, VIDEO, LiveStream
from .logs import log_failure
from .recording import RECORD_CHOICES, Recorder
from .replies import NetStreamCode, status

log = logging.getLogger(__name__)

#: publish's second argument; anything else publishes live.
PUBLISH_MODES = ("live", "record", "append")


class Recording:
    """One open recording of a published stream, its file tasks in order through ``queue``.

    ``kind``: why it records, "record"/"append" (the publisher asked: it is
    told of the recording's start, stop and failure) or the application's
    ``record`` option (it is not).  ``stopped`` is set (from either thread)
    once a limit or an error ended it: writes still queued are skipped.
    """

    __slots__ = ("recorder", "kind", "queue", "stopped")

    def __init__(self, recorder: Recorder, kind: str, queue: SerialQueue):
        self.recorder = recorder
        self.kind = kind
        self.queue = queue
        self.stopped = False

    @property
    def told(self) -> bool:
        return self.kind in ("record", "append")


def _write(recording: Recording, policy, type_id: int, timestamp: int, payload) -> Optional[str]:
    """Runs in the executor: one tag written; the limit it crossed, if any (then nothing more is written)."""
    if recording.stopped:
        return None
    recording.recorder.write(type_id, timestamp, payload)
    limit = policy.over(recording.recorder)
    if limit is not None:
        recording.stopped = True
    return limit


def _write_metadata(recording: Recording, values) -> None:
    if not recording.stopped:
        recording.recorder.write_metadata(values)


class Publishing:
    """The publishing side of one session's stream commands (``StreamCommands``)."""

    # Built with every session, publisher or not: one slot, no instance dict (memory per idle connection).
    __slots__ = ("commands",)

    def __init__(self, commands):
        self.commands = commands

    @property
    def session(self):
        return self.commands.session

    @property
    def application(self):
        return self.commands.session.application

    # -- FCPublish and friends --------------------------------------------------------------

    def release_stream(self, command):
        self.commands.reply(command)

    def fc_publish(self, command):
        self.commands.reply(command)
        name = self.commands.argument(command, 0, "")
        self.session.send_command("onFCPublish", [status(NetStreamCode.PUBLISH_START,
                                                          f"FCPublish to {brief_name(name)}")])

    def fc_unpublish(self, command):
        from .stream_commands import split_stream_name
        self.commands.reply(command)
        name, _ = split_stream_name(self.commands.argument(command, 0, ""))
        for stream in self.commands.streams.values():
            if stream.live is not None and stream.name == name:
                self.unpublish(stream)
        self.session.send_command("onFCUnpublish", [status(NetStreamCode.UNPUBLISH_SUCCESS, brief_name(name))])

    # -- publish ------------------------------------------------------------------------------

    def publish(self, command):
        from .stream_commands import split_stream_name
        commands = self.commands
        stream = commands.streams.get(command.stream_id)
        raw = commands.argument(command, 0, "")
        name, query = split_stream_name(raw)
        mode = commands.argument(command, 1, "live")
        mode = mode if mode in PUBLISH_MODES else "live"
        if stream is None:
            commands.status(command.stream_id, NetStreamCode.PUBLISH_BAD_NAME,
                            "publish on a stream that was not created", "error")
            return
        if commands.name_too_long(name, "publish"):
            commands.status(stream.stream_id, NetStreamCode.PUBLISH_BAD_NAME,
                            f"Stream name longer than {commands.limits.max_stream_name_length} characters.", "error")
            return
        if not name:
            commands.status(stream.stream_id, NetStreamCode.PUBLISH_BAD_NAME, f"Invalid stream name {brief(raw)}.",
                            "error")
            return
        if self.session.is_relay:
            # A relay connection (app/relay.py) is let in on the cluster's secret to pull, never to publish.
            commands.status(stream.stream_id, NetStreamCode.PUBLISH_DENIED, "A relay connection only plays.",
                            "error")
            return
        d = maybeDeferred(self.application.on_publish, self.session.client, name, mode, query)
        d.addCallback(self._announce, name)
        d.addCallbacks(self._publish_allowed, self._publish_refused, (stream, name, mode), None, (stream, name))
        d.addErrback(log_failure(log, "publish %r", name))

    def _announce(self, decision, name: str):
        """An allowed publish claims ``name`` through the hub: one publisher in the whole cluster.

        Fails with ``StreamTaken`` (answered BadName) when it is published
        anywhere; every way out of ``_publish_allowed`` that does not publish
        gives the claim back (``_withdraw``).
        """
        if decision is False or self.session.closed:
            return decision
        d = self.application.hub.announce(self.application.name, name, self.session.client.id)
        return d.addCallback(lambda _: decision)

    def _withdraw(self, name: str):
        d = self.application.hub.withdraw(self.application.name, name, self.session.client.id)
        d.addErrback(log_failure(log, "withdrawing %r", name))

    def _publish_allowed(self, decision, stream, name: str, mode: str):
        commands = self.commands
        if self.session.closed:
            if decision is not False:
                self._withdraw(name)
            return
        if decision is False:
            return self._publish_refused(None, stream, name)
        live = self.application.live.stream(name)
        if live.publisher is not None:
            self._withdraw(name)
            commands.status(stream.stream_id, NetStreamCode.PUBLISH_BAD_NAME, f"{name} is already being published.",
                            "error")
            self.application.live.forget_if_idle(live)
            return
        if stream.live is not None or stream.player is not None:
            commands.stop(stream, "publish")
        stream.recording = None
        turn = stream.turn
        if mode in ("record", "append"):
            path = self.application.record_path(name)
            if path is None:
                commands.status(stream.stream_id, NetStreamCode.PUBLISH_BAD_NAME,
                                f"Cannot record {name!r} here (no record directory, or not a valid file name).",
                                "error")
                self.application.live.forget_if_idle(live)
                self._withdraw(name)
                return
            queue = SerialQueue(commands.executor)
            d = queue.run(Recorder, path, mode)
            d.addCallbacks(self._record_opened, self._record_refused, (stream, turn, live, name, mode, queue), None,
                           (stream, turn, live, name, path))
            d.addErrback(log_failure(log, "recording %r", name))
            return
        if self.application.record_policy.kind != "off":
            self._record_automatically(stream, turn, live, name, mode)
            return
        self._start(stream, live, name, mode)

    def _current(self, stream, turn) -> bool:
        """The stream is still where this publish left it (not closed, played or published again meanwhile)."""
        return not self.session.closed and stream.turn == turn

    def _record_opened(self, recorder, stream, turn, live: LiveStream, name: str, kind: str, queue: SerialQueue):
        if not self._current(stream, turn):
            queue.run(recorder.close).addErrback(log_failure(log, "closing the recording of %r", name))
            self.application.live.forget_if_idle(live)
            self._withdraw(name)
            return
        self._attach(stream, live, Recording(recorder, kind, queue))
        self._start(stream, live, name, kind)

    def _record_refused(self, failure, stream, turn, live: LiveStream, name: str, path: str):
        failure.trap(OSError, ValueError)
        self.application.live.forget_if_idle(live)
        self._withdraw(name)
        self._cannot_record(path, failure)
        if self._current(stream, turn):
            self.commands.status(stream.stream_id, NetStreamCode.RECORD_FAILED, f"Cannot record {name}.", "error")

    def _cannot_record(self, path: str, failure) -> None:
        """A file that cannot be opened: logged once per interval, since a client may publish again and again."""
        self.session.limit_log.hit("cannot record", f"{self.application.name}: cannot record to "
                                                             f"{brief_name(path)}: {brief_name(str(failure.value))}")

    def _record_automatically(self, stream, turn, live: LiveStream, name: str, mode: str):
        """The application's ``record`` option: a live publish is recorded too, unasked.

        The publisher did not ask, so nothing about it reaches the publisher:
        a name that cannot be a file, or a file that cannot be opened, is
        logged and the stream goes on live (ffmpeg stops at an error status).
        """
        policy = self.application.record_policy
        clock = self.commands.clock
        now = clock.seconds() if clock is not None else time.time()
        path = self.application.record_path(policy.file_name(name, now))
        if path is None:
            self.session.limit_log.hit("not recorded", f"{self.application.name}: {brief_name(name)} is "
                                                f"not recorded (record = {policy.kind}): not a valid file name")
            self._start(stream, live, name, mode)
            return
        kinds = policy.types
        queue = SerialQueue(self.commands.executor)
        d = queue.run(lambda: Recorder(path, "record", has_audio=AUDIO in kinds, has_video=VIDEO in kinds))

        def opened(recorder):
            if not self._current(stream, turn):
                queue.run(recorder.close).addErrback(log_failure(log, "closing the recording of %r", name))
                self.application.live.forget_if_idle(live)
                self._withdraw(name)
                return
            self._attach(stream, live, Recording(recorder, policy.kind, queue))
            log.info("%s: recording %s to %s (record = %s)", self.application.name, name, path, policy.kind)
            self._start(stream, live, name, mode)

        def refused(failure):
            failure.trap(OSError, ValueError)
            self._cannot_record(path, failure)
            if self._current(stream, turn):
                self._start(stream, live, name, mode)
            else:
                self.application.live.forget_if_idle(live)
                self._withdraw(name)

        d.addCallbacks(opened, refused)
        d.addErrback(log_failure(log, "recording %r", name))

    def _attach(self, stream, live: LiveStream, recording: Recording):
        stream.recording = recording
        live.taps.append(lambda message: self._record(stream, recording, message))

    def _start(self, stream, live: LiveStream, name: str, mode: str):
        stream.live, stream.name = live, name
        live.start(self.commands)
        session = self.session
        session.send_user_control(UserControl.STREAM_BEGIN, stream.stream_id)
        self.commands.status(stream.stream_id, NetStreamCode.PUBLISH_START, f"{name} is now published.")
        if stream.recording is not None and stream.recording.told:
            self.commands.status(stream.stream_id, NetStreamCode.RECORD_START, f"Recording {name}.")
        log.info("client %s publishes %s/%s (%s)", session.client.id, self.application.name, name, mode)

    # -- recording ------------------------------------------------------------------------------

    def _record(self, stream, recording: Recording, message):
        kinds = RECORD_CHOICES.get(recording.kind)
        if recording.stopped or (kinds and message.type_id not in kinds):
            return
        d = recording.queue.run(_write, recording, self.application.record_policy, message.type_id,
                                message.timestamp, message.payload)
        d.addCallbacks(self._written, self._write_failed, (stream, recording), None, (stream, recording))
        d.addErrback(log_failure(log, "recording %r", stream.name))

    def _written(self, limit, stream, recording: Recording):
        if limit is None:
            return
        # A limit ends the recording, not the live stream.
        log.warning("%s: recording of %s stopped at %s: limit hit: %s", self.application.name,
                    stream.name, recording.recorder.path, limit)
        self._end_recording(stream, recording, NetStreamCode.RECORD_STOP, f"Stopped recording {stream.name}.")

    def _write_failed(self, failure, stream, recording: Recording):
        failure.trap(OSError)
        recording.stopped = True
        # A full disk ends the recording, not the live stream.
        log.warning("%s: recording %s failed: %s", self.application.name, stream.name, failure.value)
        self._end_recording(stream, recording, NetStreamCode.RECORD_FAILED, f"Recording {stream.name} failed.",
                            "error")

    def _end_recording(self, stream, recording: Recording, code: str, description: str, level: str = "status"):
        if stream.recording is not recording:
            return      # already closed (unpublished meanwhile)
        if stream.live is not None:
            stream.live.taps.clear()
        self.close_recording(stream)
        if recording.told and not self.session.closed:
            self.commands.status(stream.stream_id, code, description, level)

    def close_recording(self, stream):
        """Close the stream's recording after its queued writes; the Deferred fires once the file is closed."""
        recording, stream.recording = stream.recording, None
        if recording is None:
            return None
        name = stream.name      # its taps are gone: the writes queued before this still land, then the close

        def failed(failure):
            failure.trap(OSError)
            log.warning("%s: closing the recording of %s failed: %s", self.application.name, name, failure.value)

        return recording.queue.run(recording.recorder.close).addErrback(failed)

    def _publish_refused(self, failure, stream, name: str):
        if self.session.closed:
            return
        reason = failure.value if failure is not None else None
        if isinstance(reason, StreamTaken):
            # Published elsewhere (this node or another, the hub says): as a second local publisher is told.
            self.commands.status(stream.stream_id, NetStreamCode.PUBLISH_BAD_NAME,
                                 f"{name} is already being published.", "error")
            return
        if failure is not None and not isinstance(reason, StreamRejected):
            log.error("on_publish of %s raised:\n%s", self.application.name, failure.getTraceback())
        description = reason.reason if isinstance(reason, StreamRejected) else f"Publishing {name} is not allowed."
        self.commands.status(stream.stream_id, NetStreamCode.PUBLISH_DENIED, description, "error")

    def unpublish(self, stream, quiet: bool = False):
        live, name = stream.live, stream.name
        stream.live = None
        if stream.recording is not None:
            live.taps.clear()
            self.close_recording(stream)
        live.stop()
        self.application.live.forget_if_idle(live)
        self._withdraw(name)
        if not quiet:
            self.commands.status(stream.stream_id, NetStreamCode.UNPUBLISH_SUCCESS, f"{name} is now unpublished.")
        d = maybeDeferred(self.application.on_unpublish, self.session.client, name)
        d.addErrback(log_failure(log, "on_unpublish of %r", name))

    # -- the publisher's media and data -------------------------------------------------------

    def _publishing(self, stream_id):
        """The stream that a media or data message on ``stream_id`` is for, or None.

        Stream 0 is the connection's own, never a NetStream: a message there
        means the connection's one published stream.  ffmpeg may send
        ``@setDataFrame`` there (as Red5 notes), and node-media-server's relay
        publishes on stream 1 but sends every audio and video message on
        stream 0; nginx-rtmp plays both.  With no or several streams
        publishing, which one is meant cannot be told.
        """
        streams = self.commands.streams
        stream = streams.get(stream_id)
        if stream is None and stream_id == 0:
            publishing = [s for s in streams.values() if s.live is not None]
            stream = publishing[0] if len(publishing) == 1 else None
        return stream if stream is not None and stream.live is not None else None

    def on_media(self, event: MediaReceived):
        stream = self._publishing(event.stream_id)
        if stream is not None:
            stream.live.publish(event.type_id, event.timestamp, event.payload)
            return
        # Counted and logged (rate-limited): a relay whose media goes nowhere must show in the log.
        if event.stream_id == 0:
            count = sum(1 for s in self.commands.streams.values() if s.live is not None)
            why = f"stream 0 stands for the one publishing stream, and {count} streams publish"
        else:
            why = f"stream {event.stream_id} does not publish"
        self.commands.dropped.hit("media dropped", f"audio/video message dropped: {why}")

    def on_data(self, event: DataReceived):
        stream = self._publishing(event.stream_id)
        if stream is None or not event.values:
            return
        values = event.values
        if values[0] == "@setDataFrame":
            values = values[1:]
        if values and values[0] == "onMetaData":
            stream.live.set_metadata(tuple(values))
            recording = stream.recording
            if recording is not None:
                d = recording.queue.run(_write_metadata, recording, values)
                d.addErrback(self._write_failed, stream, recording)
                d.addErrback(log_failure(log, "recording %r", stream.name))
        elif values and values[0] != "@clearDataFrame":
            stream.live.send_data(values)
