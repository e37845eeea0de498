"""The Twisted side of a server connection: bytes from the socket into the core, events to the session.

Thin on purpose (Twisted's own ``web/_http2.py`` around h2): feed bytes, hand
events on, write what the core queued.  It owns the socket and schedules
the core's deadlines (``rtmp/timers.py``: handshake, ``connectTimeout``,
the ping after ``pingInterval`` of silence, the close after
``keepAliveTimeout``) with one DelayedCall per connection, and acts on the
``TimedOut`` the core hands up.  It also owns what one
connection may cost the others: the output budget (``maxOutgoingBytes``),
the count of junk messages (``maxIgnoredMessages``) and, in the factory,
the number of connections (``maxConnections``, ``maxConnectionsPerAddress``).
"""
import logging
from typing import Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from ..app.logs import RateLimitedLog
from ..app.fileio import default_executor
from ..app.session import Session
from ..app.stream_commands import StreamLimits
from ..rtmp.connection import Connection, Role
from ..rtmp.errors import LimitExceeded, RemoteProtocolError
from ..rtmp.events import (CommandReceived, DataReceived, HandshakeCompleted, MediaReceived, MessageIgnored,
                           MessageRefused, SharedObjectReceived, TimedOut)
from ..rtmp.timers import Timeouts
from ..deadline import Deadline

log = Logger()
#: Limit hits are logged with the standard library (bridged into twistd's log), those that can repeat
#: through ``RateLimitedLog``.
limit_log = logging.getLogger(__name__)

#: The core is fed at most this many bytes at a time, and a connection closed meanwhile is not fed the rest:
#: a 64 KB read of one-byte junk messages is 32,000 messages, and parsing them all before looking at the
#: first would cost every other client tens of milliseconds for a connection that is closed after 100.
READ_SLICE = 8192
#: The read size of a transport that names none (never counted as full).
_UNBUFFERED = float("inf")

# How _traffic classifies an event for the junk count.
_ACCEPTED, _NEUTRAL = "accepted", "neutral"


class RTMPServerProtocol(Protocol):
    """One accepted RTMP connection."""

    #: How the client reached us, for the status API and the log: "rtmp" here; server/tls.py and
    #: server/rtmpt.py set "rtmps", "rtmpt" or "rtmpts" on the protocols they drive.
    transport_name = "rtmp"

    def __init__(self, factory: "RTMPServerFactory"):
        self.factory = factory
        self.connection = None
        self.session = None
        self.address = ""
        #: The one DelayedCall at the core's next deadline (rtmp/timers.py decides them all).
        self._deadline = Deadline(factory.reactor, self._on_timer)
        #: The close linger (``closeLinger``), once closing.
        self._timer = None
        self._closing = False
        #: 0 or 1 once a client completed the FP9 digest handshake with that scheme.
        self.digest_scheme = None
        #: The peer's IP address, counted against ``maxConnectionsPerAddress``.
        self.host = None
        #: Over ``maxOutgoingBytes``: its commands are not read and notifications to it are dropped.
        self.over_budget = False
        #: The transport paused us: its buffer is full (``pauseProducing`` until ``resumeProducing``).
        self._transport_full = False
        self._budget_timer = None
        #: Ignored or refused messages since the last accepted command or media (``maxIgnoredMessages``).
        self._junk = 0
        #: Bytes read from and written to the socket, for the status API and /metrics (server/ops.py).
        self.bytes_in = 0
        self.bytes_out = 0
        #: Why the server closed or aborted it ("limit hit: maxMessageSize"...), None if it did not.
        self.close_reason = None
        #: Inside ``dataReceived``: a flush asked for waits for the end of the read.
        self._reading = False
        #: Where flushes outside a read wait for the end of the reactor turn (None: written at once),
        #: and its dict of connections waiting.
        self._turn_writes = self._pending_writes = None
        #: Where live media waits: ``mediaFlushInterval``'s table, else the turn's (None: written at once).
        self._media_writes = None
        #: Merged reads (``_read_at_next_media_write``): the socket is not read until the next media write ...
        self._reads_wait = False
        #: ... and a read since the media write's drain last asked filled the transport's buffer
        #: (``took_full_read``): the kernel may hold more.
        self._read_full = False

    @property
    def limit_log(self):
        """This connection's limit hits and dropped traffic, one log line per kind per interval (the session's)."""
        return self.session.limit_log

    # -- Protocol ---------------------------------------------------------------------

    def connectionMade(self):
        factory = self.factory
        reactor = factory.reactor
        peer = self.transport.getPeer()
        self.address = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        config = factory.config
        self.connection = Connection(Role.SERVER, limits=config.limits, epoch=0, timeouts=factory.timeouts,
                                     now=reactor.seconds())
        self.session = Session(factory.applications, self, clock=reactor, call_timeout=config.call_timeout,
                               stream_limits=factory.stream_limits, max_queued_commands=config.max_queued_commands,
                               executor=factory.executor, max_fourcc_entries=config.max_fourcc_entries)
        self._turn_writes = factory.turn_writes(getattr(self.transport, "reactor", None))
        if self._turn_writes is not None:
            self._pending_writes = self._turn_writes.pending
            self._media_writes = factory.media_writes(self.transport.reactor) or self._turn_writes
        self._arm_timer()
        if self.host is None:
            self.host = getattr(peer, "host", None)
        factory.connection_made(self)
        # As a streaming producer we hear when the socket's buffer is full: live media then waits.
        self.transport.registerProducer(self, True)

    def dataReceived(self, data: bytes):
        if self._closing:
            return
        now = self.factory.reactor.seconds()
        self.bytes_in += len(data)
        self._reading = True        # flush() asked for meanwhile is done once, below
        try:
            handled, carried_media = self._read(data, now)
        finally:
            self._reading = False
        self._write_queued()
        if handled:
            # Players this read fed get their bytes at the end of this reactor turn, even if this connection
            # was closed by it.
            self.session.events_handled()
        self._arm_timer()
        # A read as large as the transport's buffer may have left more in the kernel (merged reads drain it).
        self._read_full = len(data) >= getattr(self.transport, "bufferSize", _UNBUFFERED)
        if carried_media and not self._read_full:
            self._read_at_next_media_write()

    def _read(self, data: bytes, now: float) -> tuple:
        """Feed one read to the core and its events to the session; returns whether there were events, and
        whether any was audio or video."""
        handled = carried_media = False
        for start in range(0, len(data), READ_SLICE):
            if self._closing:
                break           # closed by what came before: the rest of this read is dropped unparsed
            piece = data if len(data) <= READ_SLICE else data[start:start + READ_SLICE]
            try:
                events = self.connection.receive_data(piece, now)
            except LimitExceeded as e:
                log.warn("{address}: limit hit: {reason}", address=self.address, reason=e.reason)
                self.close(f"limit hit: {e.limit}")
                break
            except RemoteProtocolError as e:
                self.close(f"protocol error: {e.reason}")
                break
            handled = handled or bool(events)
            for event in events:
                if event.__class__ is MediaReceived:
                    carried_media = True
                if isinstance(event, HandshakeCompleted):
                    self._handshake_completed(event)
                elif not self._traffic(event):
                    break
                try:
                    self.session.handle(event)
                except Exception:
                    # A bug of ours or an application's: this connection only.
                    log.failure("{address}: handling {event} failed", address=self.address,
                                event=type(event).__name__)
                    self.close("internal error")
                if self._closing:
                    break
        return handled, carried_media

    def _traffic(self, event) -> bool:
        """Count junk; False once this connection was closed for sending nothing else.

        Junk is what we read and drop: a message of a type the core does not
        know, media, data or shared-object messages before connect was
        accepted, and messages refused for their size (``MessageRefused``,
        answered by the session).  Anything else the session acts on (a
        command, media or data once connected) resets the count; protocol
        control messages (pings, acknowledgements, chunk size) leave it as it
        is.  More than ``maxIgnoredMessages`` junk messages in a row close the
        connection: no client that means to be served sends them, and each
        one is work and, unbounded, log lines (a megabyte of one-byte messages
        once cost 23 s of CPU in debug lines).
        """
        kind = self._classify(event)
        if kind is _NEUTRAL:
            return True
        if kind is _ACCEPTED:
            self._junk = 0
            return True
        self._junk += 1
        limit = self.factory.config.max_ignored_messages
        if isinstance(event, MessageIgnored):
            self.limit_log.hit(kind, f"ignored a message of unknown type {event.type_id} "
                                     f"({self._junk} in a row without an accepted command; maxIgnoredMessages)")
        elif isinstance(event, MessageRefused):
            pass    # the session answers and logs it; here it only counts
        else:
            self.limit_log.hit(kind, f"ignored a {type(event).__name__} before connect "
                                     f"({self._junk} in a row without an accepted command; maxIgnoredMessages)")
        if self._junk > limit:
            limit_log.warning("%s: limit hit: more than %d ignored or refused messages in a row without an "
                              "accepted command (maxIgnoredMessages)", self.address, limit)
            self.close("limit hit: maxIgnoredMessages")
            return False
        return True

    def _classify(self, event) -> str:
        if isinstance(event, (MediaReceived, DataReceived)):
            return _ACCEPTED if self.session.connected else "message before connect"
        if isinstance(event, CommandReceived):
            return _ACCEPTED
        if isinstance(event, MessageIgnored):
            return "ignored message"
        if isinstance(event, MessageRefused):
            return "refused message"
        if isinstance(event, SharedObjectReceived) and not self.session.connected:
            return "message before connect"
        return _NEUTRAL

    # -- IPushProducer: the transport tells us when its buffer is full -----------------

    def pauseProducing(self):
        self._transport_full = True
        self.session.writing_paused(True)

    def resumeProducing(self):
        # The transport's buffer drained completely: a client over its output budget is read again.
        self._transport_full = False
        if self.over_budget:
            self._leave_budget()
        self.session.writing_paused(False)

    def stopProducing(self):
        pass

    def connectionLost(self, reason):
        self._closing = True
        self._deadline.cancel()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._budget_timer is not None and self._budget_timer.active():
            self._budget_timer.cancel()
        self._budget_timer = None
        self.factory.connection_closed(self)
        for writes in {self._turn_writes, self._media_writes}:
            if writes is not None:
                writes.discard(self)
        if self.session is not None:
            self.session.connection_lost(reason.getErrorMessage())     # tells its limit log's last counts

    # -- what the session uses (app.session.Peer) -------------------------------------

    def flush(self):
        """Have what the core queued written: once per reactor turn, however often this is asked.

        Inside a read of this connection it is written when the read has
        been handled; otherwise at the end of the reactor turn
        (``TurnWrites``), when every read of the turn has been handled: a
        player fed by a publisher's read, a chat message broadcast to a room,
        answers that came in from several Deferreds each cost one write per
        connection per turn.  A transport that does not say which reactor
        runs it (a test's StringTransport, TLS, RTMPT) is written to at once.
        """
        if self._reading or self._closing:
            return
        pending = self._pending_writes
        if pending is None:
            self._write_queued()
            return
        if not pending:
            self._turn_writes.schedule()
        pending[self] = None        # into TurnWrites.pending directly: once per player per publisher read

    def flush_media(self):
        """Have live media written, within ``mediaFlushInterval`` (app/live.py ``LiveStreams.flush``).

        With an interval, the players fed by a publisher's reads are written
        together once per interval rather than once per read: a 2 Mbit/s
        stream comes as some 70 messages a second, and each write costs a
        system call and its Python path, whatever its size.  SRS does the
        same ("merged write", ``mw_latency``).  Anything else flushed
        meanwhile (a command's answer) writes the media queued before it too.
        """
        # ``flush`` itself, but for the table, written out rather than shared through a helper: the fan-out
        # calls this once per player per publisher read, and a call frame more is measurable there.
        if self._reading or self._closing:
            return
        media = self._media_writes
        if media is None:
            self._write_queued()
            return
        pending = media.pending
        if not pending:
            media.schedule()
        pending[self] = None

    @property
    def media_waits(self) -> bool:
        """Live media waits ``mediaFlushInterval`` (``Peer.media_waits``): a TCP transport and an interval set."""
        return self._media_writes is not None and self._media_writes is not self._turn_writes

    def _read_at_next_media_write(self):
        """Merged reads (``mergedReads``): after a read that carried media, the socket waits for the next media write.

        Why: a publisher's 2 Mbit/s stream comes in some 90 reads a second,
        and each wakes the server and costs its Python path (the reactor's,
        ours, the core's) whatever it holds.  With ``mediaFlushInterval``
        0.1 that cost, paid with one player as with a hundred, was some 40%
        of the server's CPU at 100 players, whose writes it had already
        merged (bench/streaming.py: 8-10 ms of CPU a second with one player,
        about 21 with 100).  Read once per interval, the bytes wait in the
        kernel and come in one read: 5.3-5.8 ms a second with one player,
        and 0.089-0.097 against 0.103-0.109 CPU-s per Gbit at 100 players.
        SRS does the same for publishers ("merged read", ``mr``).  No media
        waits longer than before: the media write first resumes the reads,
        and writes once they are in, a reactor turn later, or more while a
        read fills the buffer (``TurnWrites._write``, up to
        ``mergedReadTurns``).  Only after a read shorter than the
        transport's buffer (the kernel had nothing more), so a publisher
        that sends more than a buffer a turn is read on as it comes.  Only
        a TCP transport with an interval set: others never wait.
        """
        if not self.media_waits or self._closing or self._reads_wait or not self.factory.config.merged_reads:
            return
        self._reads_wait = True
        self.transport.pauseProducing()
        self._media_writes.read_first(self)

    def _read_again(self):
        """The media write has come (or the connection closes): the socket is read again, unless over its budget
        (or already closed: ``close`` calls this before it marks the connection closing)."""
        if self._reads_wait:
            self._reads_wait, self._read_full = False, False
            if not self.over_budget and not self._closing:
                self.transport.resumeProducing()

    def took_full_read(self) -> bool:
        """Whether a read since the last time this was asked filled the transport's buffer, so that the kernel may
        hold more (the media write's drain asks once a turn).  Asking forgets it: a socket with nothing more
        to read is not read at all, and must not look as if its last full read were a new one."""
        full, self._read_full = self._read_full, False
        return full

    def _write_queued(self):
        """Write what the core queued now, and look at the output budget."""
        data = self.connection.data_to_send()
        if data and not self._closing:
            self.bytes_out += len(data)
            self.transport.write(data)
            # Fan-out writes here once per player and turn: the budget is looked at only once the
            # transport has paused us (its own buffer, 64 KB, is full), so a client that reads costs
            # nothing more.  A budget below the transport's buffer is therefore checked from there on.
            if (self._transport_full and not self.over_budget
                    and self.queued_bytes > self.factory.config.max_outgoing_bytes):
                self._enter_budget()

    @property
    def queued_bytes(self) -> int:
        """Bytes written for this client and not yet taken by the kernel.

        The core's own output waits at most until the end of the reactor turn
        (``flush``), so the transport's buffer is all that lasts.  A transport that cannot tell
        (``server.transport.DirectWriteServer`` can) counts as empty.
        """
        return getattr(self.transport, "queued_bytes", 0)

    # -- the output budget -------------------------------------------------------------

    def _enter_budget(self):
        """More than ``maxOutgoingBytes`` is waiting for this client: stop making more.

        Its commands are not read (their replies would only add to the
        queue); notifications and broadcasts to it are dropped by the session;
        live media already waits (the transport paused us long before).  It
        has ``slowPlayerTimeout`` to drain, as a slow player has.
        """
        config = self.factory.config
        self.over_budget = True
        self.transport.pauseProducing()
        self.limit_log.hit("maxOutgoingBytes",
                           f"{self.queued_bytes} bytes queued for a client that is not reading, more than "
                           f"maxOutgoingBytes ({config.max_outgoing_bytes}): its commands wait; disconnected "
                           f"if still over after {config.slow_player_timeout:g} s (slowPlayerTimeout)")
        self._budget_timer = self.factory.reactor.callLater(config.slow_player_timeout, self._over_budget_too_long)

    def _leave_budget(self):
        self.over_budget = False
        if self._budget_timer is not None and self._budget_timer.active():
            self._budget_timer.cancel()
        self._budget_timer = None
        if not self._closing and not self._reads_wait:
            self.transport.resumeProducing()

    def _over_budget_too_long(self):
        self._budget_timer = None
        config = self.factory.config
        limit_log.warning("%s: limit hit: more than %d bytes queued (maxOutgoingBytes) for %g s "
                          "(slowPlayerTimeout); disconnecting", self.address, config.max_outgoing_bytes,
                          config.slow_player_timeout)
        # Not close(): that waits for the queue to drain, which a client that stopped reading never lets it.
        self.abort("limit hit: maxOutgoingBytes")

    def close(self, reason: str):
        """Flush what is queued, then close; only this connection is affected.

        Our side is shut first and what the peer still sends is read and
        dropped for a moment: closing a socket with unread data resets it,
        and the reset could destroy the reply (a rejection, say) on its way.
        """
        if self._closing:
            return
        log.info("{address}: closing: {reason}", address=self.address, reason=reason)
        self.close_reason = reason
        self._write_queued()
        self._read_again()          # what the peer still sends is read and dropped (below)
        self._closing = True
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is None:
            self.transport.loseConnection()
            return
        half_close()
        self._deadline.cancel()
        # The peer's own close ends it sooner (its EOF reaches connectionLost); one that neither
        # closes nor reads (its socket full) would hold the connection forever: drop it then.
        self._timer = self.factory.reactor.callLater(self.factory.config.close_linger, self._linger_over)

    def _linger_over(self):
        """``closeLinger`` after ``close``, the client still there: cut, with what it did not read.

        Logged on the server's log, not the connection's: each connection
        lingers once, and a flood of clients closed and not going (each
        refused at ``connectTimeout``, say) is then one line per interval.
        """
        self._timer = None
        self.factory.lingers.hit("closeLinger", f"{self.address}: closed ({self.close_reason}), but the client did "
                                                f"not go within {self.factory.config.close_linger:g} s (closeLinger), "
                                                f"{self.queued_bytes} bytes unsent: cut")
        self.transport.abortConnection()

    def abort(self, reason: str):
        """Drop the connection now, unsent data and all (a peer that stopped reading)."""
        log.info("{address}: aborting: {reason}", address=self.address, reason=reason)
        self.close_reason = self.close_reason or reason
        self._closing = True
        self.transport.abortConnection()

    # -- timers: the core decides (rtmp/timers.py), one DelayedCall wakes it ----------

    def _handshake_completed(self, event: HandshakeCompleted):
        self.digest_scheme = event.digest_scheme

    def _arm_timer(self):
        """After a read: the one DelayedCall moves only if the core's deadline became sooner (fmspy_gateway/deadline.py)."""
        if not self._closing:
            self._deadline.arm(self.connection.get_timer())

    def _on_timer(self, now: float):
        """The core's deadline came: hand it the time, act on what it decided."""
        if self._closing:
            return
        for event in self.connection.handle_timer(now):
            if isinstance(event, TimedOut):
                self._timed_out(event)
                return
        self.flush()            # a PingRequest, if one was due
        self._arm_timer()

    def _timed_out(self, event: TimedOut):
        if event.limit == "connectTimeout":
            # Bytes move the idle deadline, so one byte now and then would keep a connection that never
            # connects open for ever: connect has its own deadline, which no byte moves.
            limit_log.warning("%s: limit hit: %s", self.address, event.reason)
            self.close(f"limit hit: {event.limit}")
        else:
            self.close(event.reason)


class TurnWrites:
    """Connections to write to once the reads of this reactor turn have been handled: one write each.

    One ``callLater(0)`` for all of them: Twisted runs it right after the
    turn's reads, before it waits for the sockets again.  Per connection it
    costs a dict entry, so a publisher's read feeding 400 players schedules
    one call, not 400.  With a ``delay`` (``mediaFlushInterval``, live media
    only) the call comes that much later and writes what came meanwhile.
    Publishers whose reads wait for it (merged reads,
    ``RTMPServerProtocol._read_at_next_media_write``) are read again first:
    the writes then come a reactor turn later, once those reads are in, and
    a turn later again while one of them still fills the transport's buffer
    (Twisted reads 64 KB a turn; a keyframe or a fast stream can leave more
    in the kernel), for at most ``max_reads`` reads in all (``mergedReadTurns``;
    1: the first only): beyond that the rest goes with the next write, and
    the limit is logged.  Only media writes have readers.
    """

    def __init__(self, reactor, delay: float = 0, max_reads: int = 1):
        self._reactor = reactor
        self._delay = delay
        self._max_reads = max_reads
        #: The connections waiting (an ordered set); one dict for ever, so that each connection can hold it.
        self.pending = {}
        self._call = None
        #: Connections not read until this call comes (an ordered set) ...
        self._readers = {}
        #: ... and those it let read again, while the writes wait for what they had left in the kernel,
        #: and how many reads (turns) the writes have waited for so far.
        self._draining = ()
        self._reads_waited = 0

    def schedule(self):
        """Make sure the writes run at the end of this turn (or ``delay`` from now); connections add themselves
        to ``pending``."""
        if self._call is None:
            self._call = self._reactor.callLater(self._delay, self._write)

    def read_first(self, protocol) -> None:
        """``protocol`` is not read until this call comes; it comes even if nothing is to be written."""
        self._readers[protocol] = None
        self.schedule()

    def discard(self, protocol) -> None:
        """A connection gone: it waits no more, and with nobody left waiting no call stays scheduled
        (a stopped server leaves no DelayedCall of ``mediaFlushInterval`` behind)."""
        self.pending.pop(protocol, None)
        self._readers.pop(protocol, None)
        if not self.pending and not self._readers and self._call is not None and self._call.active():
            self._call.cancel()
            self._call = None

    def _write(self):
        self._call = None
        # Not a drain left from before: ``discard`` may have cancelled one's turn, with its last player.
        self._draining, self._reads_waited = (), 0
        if self._readers:
            readers = list(self._readers)
            self._readers.clear()
            for protocol in readers:
                protocol._read_again()
            self._draining, self._reads_waited = readers, 1
            self._call = self._reactor.callLater(0, self._write_now)      # after the reads these let in
        else:
            self._write_now()

    def _write_now(self):
        self._call = None
        if self._draining:
            draining = [protocol for protocol in self._draining if protocol.took_full_read() and not protocol._closing]
            if draining and self._reads_waited < self._max_reads:
                self._draining, self._reads_waited = draining, self._reads_waited + 1
                self._call = self._reactor.callLater(0, self._write_now)
                return
            self._draining = ()
            for protocol in draining:
                protocol.limit_log.hit("mergedReadTurns",
                                       f"the players' media write waited for {self._max_reads} reads of a full "
                                       f"buffer (mergedReadTurns) from a publisher with more in the kernel (a "
                                       f"large keyframe, or more than that each interval): the rest goes with "
                                       f"the next write, and may wait longer than mediaFlushInterval")
        waiting = list(self.pending)
        self.pending.clear()
        for protocol in waiting:
            protocol._write_queued()
        if self._readers:
            self.schedule()         # read since the reads were let in: their next turn is the next interval


class RTMPServerFactory(Factory):
    """Builds server protocols sharing the applications, the [RTMP] config and the reactor."""

    def __init__(self, applications, config, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.applications = applications
        self.config = config
        self.reactor = reactor
        #: Live connections, for status and for a graceful stop.
        self.connections = set()
        #: Open connections by IP address (``maxConnectionsPerAddress``).
        self.per_address = {}
        #: Refused connections: a flood of them is one log line per interval, with a count.
        self.refusals = RateLimitedLog(limit_log, clock=reactor)
        #: Closed connections cut at ``closeLinger``: likewise.
        self.lingers = RateLimitedLog(limit_log, clock=reactor)
        #: Shared by every connection: the core's deadlines (rtmp/timers.py) and where file I/O runs.
        self.timeouts = Timeouts(handshake_timeout=config.handshake_timeout, connect_timeout=config.connect_timeout,
                                 ping_interval=config.ping_interval, keepalive_timeout=config.keepalive_timeout)
        self.executor = default_executor(reactor)
        #: Shared by every session: what one connection's NetStreams may ask for.
        self.stream_limits = StreamLimits(max_streams=config.max_streams,
                                          max_stream_name_length=config.max_stream_name_length)
        self._all_closed = []
        #: Connections accepted since start, and the bytes of those already closed (server/ops.py).
        self.accepted = 0
        self.closed_bytes_in = self.closed_bytes_out = 0
        #: Called with each protocol as it leaves ``connections`` (server/ops.py keeps its figures).
        self.closed_observers = []
        #: One ``TurnWrites`` per reactor that runs transports (in practice one), and one for live media
        #: when ``mediaFlushInterval`` is set.
        self._turn_writes = {}
        self._media_writes = {}
        #: Set by a drain (server/drain.py): every new connection is refused, RTMPT ones included.
        self.draining = False

    def turn_writes(self, reactor) -> "Optional[TurnWrites]":
        """The end-of-turn writes of the transports ``reactor`` runs; None for a transport that names none."""
        if reactor is None:
            return None
        turn = self._turn_writes.get(reactor)
        if turn is None:
            turn = self._turn_writes[reactor] = TurnWrites(reactor)
        return turn

    def media_writes(self, reactor) -> "Optional[TurnWrites]":
        """Where live media waits ``mediaFlushInterval`` to be written; None when it is 0."""
        interval = self.config.media_flush_interval
        if not interval:
            return None
        media = self._media_writes.get(reactor)
        if media is None:
            media = self._media_writes[reactor] = TurnWrites(reactor, interval, self.config.merged_read_turns)
        return media

    def buildProtocol(self, addr):
        """A protocol, or None to refuse: Twisted then closes the accepted socket at once.

        Refused before the handshake, so that a client opening connections
        in a loop costs one accept and one close each, never a file
        descriptor held for ``handshakeTimeout``.
        """
        config = self.config
        host = getattr(addr, "host", None)
        if self.draining:
            self.refusals.hit("drain", f"refused a connection from {host}: this node is being drained")
            return None
        if config.max_connections and len(self.connections) >= config.max_connections:
            self.refusals.hit("maxConnections", f"refused a connection from {host}: {len(self.connections)} "
                                                f"open, the most allowed (maxConnections)")
            return None
        if (config.max_connections_per_address and host is not None
                and self.per_address.get(host, 0) >= config.max_connections_per_address):
            self.refusals.hit("maxConnectionsPerAddress",
                              f"refused a connection from {host}: {self.per_address[host]} open from that "
                              f"address, the most allowed (maxConnectionsPerAddress)")
            return None
        protocol = RTMPServerProtocol(self)
        protocol.host = host
        return protocol

    def connection_made(self, protocol: RTMPServerProtocol):
        self.connections.add(protocol)
        self.accepted += 1
        if protocol.host is not None:
            self.per_address[protocol.host] = self.per_address.get(protocol.host, 0) + 1

    def connection_closed(self, protocol: RTMPServerProtocol):
        if protocol not in self.connections:
            return
        self.connections.discard(protocol)
        self.closed_bytes_in += getattr(protocol, "bytes_in", 0)
        self.closed_bytes_out += getattr(protocol, "bytes_out", 0)
        for observer in self.closed_observers:
            observer(protocol)
        if protocol.host is not None:
            left = self.per_address.get(protocol.host, 1) - 1
            if left > 0:
                self.per_address[protocol.host] = left
            else:
                self.per_address.pop(protocol.host, None)
        if not self.connections:
            waiting, self._all_closed = self._all_closed, []
            for d in waiting:
                d.callback(None)

    def close_all(self, reason: str = "server stopping") -> Deferred:
        """Close every connection; fires once all of them are gone."""
        if not self.connections:
            return succeed(None)
        d = Deferred()
        self._all_closed.append(d)
        for protocol in list(self.connections):
            protocol.close(reason)
        return d
