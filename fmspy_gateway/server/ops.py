"""What the server is doing, as plain dicts: the figures behind /api/v1/, /metrics and the status page.

Everything is read from live objects when asked (the factory's connections,
the applications' hub for rooms and clients, live streams, each gateway's route
figures), so nothing here must be kept in step with the rest of the server.
What comes from the hub comes as a Deferred (its answer may come from another
node): ``summary``, ``applications_list``, ``rooms``, ``clients``, ``client``
and ``disconnect`` return Deferreds, and server/api.py and server/metrics.py
render when they fire (``server/later.py``).
The one thing that needs history is a rate: a sampler (``RateSampler``, a
LoopingCall on the injected reactor) reads the byte counters every
``interval`` seconds and keeps bits/s per connection, per stream and in total,
and the process's CPU share.

Sources, all added for this module as plain attributes: ``bytes_in`` /
``bytes_out`` / ``close_reason`` of each RTMP connection and ``accepted`` /
``closed_bytes_*`` / ``closed_observers`` of the factory
(``server/protocol.py``; the observer keeps the limit hits of connections
that are gone); ``published_at`` / ``bytes_in`` of a
live stream (``app/live.py``); ``peer`` / ``session`` of a client
(``app/client.py``); ``stats`` of a gateway application (``bridge/stats.py``).
"""
import os
import resource
import socket
import time
from typing import Any, Dict, List, Optional

from twisted.application import service
from twisted.internet.defer import Deferred, FirstError, gatherResults, succeed
from twisted.internet.task import LoopingCall

from ..rtmp import amf, flv
from ..rtmp.messages import MessageType
from . import jsonlog

VERSION = "0.1.0"

_AVC_PROFILES = {66: "Baseline", 77: "Main", 88: "Extended", 100: "High", 110: "High 10", 122: "High 4:2:2",
                 244: "High 4:4:4", 44: "CAVLC 4:4:4"}
_AAC_PROFILES = {1: "Main", 2: "LC", 3: "SSR", 4: "LTP", 5: "HE-AAC", 29: "HE-AACv2"}
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_LEGACY_RATES = (5512, 11025, 22050, 44100)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("fmspy-gateway")
    except Exception:
        return VERSION


def _gather(deferreds) -> Deferred:
    """Fires with the results of ``deferreds`` in order; fails with the first failure itself (not FirstError)."""
    return gatherResults(list(deferreds), consumeErrors=True).addErrback(
        lambda failure: failure.value.subFailure if failure.check(FirstError) else failure)


# -- media facts from sequence headers and metadata ----------------------------------------------

def _metadata_object(metadata) -> Dict[str, Any]:
    """The onMetaData object of a stream's ``("onMetaData", {...})`` values, as a dict."""
    if not metadata:
        return {}
    for value in metadata[1:]:
        if hasattr(value, "items"):
            try:
                return {str(k): v for k, v in value.items()}
            except Exception:
                return {}
    return {}


def _number(value) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return value


def video_info(header, metadata: Dict[str, Any]) -> Optional[dict]:
    """Codec, profile, level, size and frame rate of a stream's video, or None without video."""
    payload = bytes(header.payload[:16]) if header is not None else b""
    if header is None and not any(k in metadata for k in ("videocodecid", "width", "height")):
        return None
    info = {"codec": flv.codec_name(MessageType.VIDEO, payload) if payload else None,
            "profile": None, "level": None,
            "width": _int(metadata.get("width")), "height": _int(metadata.get("height")),
            "frame_rate": _number(metadata.get("framerate", metadata.get("videoframerate"))),
            "data_rate_kbps": _number(metadata.get("videodatarate"))}
    if payload and not payload[0] & 0x80 and payload[0] & 0x0F == 7 and len(payload) >= 9:
        # AVCDecoderConfigurationRecord after FrameType/CodecID, AVCPacketType and the 3-byte CTS.
        info["profile"] = _AVC_PROFILES.get(payload[6], str(payload[6]))
        info["level"] = payload[8] / 10
    return info


def _int(value) -> Optional[int]:
    number = _number(value)
    return int(number) if number is not None else None


def audio_info(header, metadata: Dict[str, Any]) -> Optional[dict]:
    """Codec, profile, sample rate and channels of a stream's audio, or None without audio."""
    payload = bytes(header.payload[:8]) if header is not None else b""
    if header is None and "audiocodecid" not in metadata:
        return None
    stereo = metadata.get("stereo")
    info = {"codec": flv.codec_name(MessageType.AUDIO, payload) if payload else None, "profile": None,
            "sample_rate": _int(metadata.get("audiosamplerate")),
            "channels": _int(metadata.get("audiochannels")) or ((2 if stereo else 1) if isinstance(stereo, bool)
                                                                  else None),
            "data_rate_kbps": _number(metadata.get("audiodatarate"))}
    if payload:
        sound_format = payload[0] >> 4
        if sound_format == 10 and len(payload) >= 4:
            # AudioSpecificConfig: 5 bits object type, 4 bits frequency index, 4 bits channel configuration.
            object_type = payload[2] >> 3
            index = ((payload[2] & 0x07) << 1) | (payload[3] >> 7)
            channels = (payload[3] >> 3) & 0x0F
            info["profile"] = _AAC_PROFILES.get(object_type, str(object_type))
            if index < len(_AAC_RATES):
                info["sample_rate"] = _AAC_RATES[index]
            if channels:
                info["channels"] = channels
        elif sound_format != 9:
            info["sample_rate"] = info["sample_rate"] or _LEGACY_RATES[(payload[0] >> 2) & 0x03]
            info["channels"] = info["channels"] or (2 if payload[0] & 0x01 else 1)
    return info


# -- rates --------------------------------------------------------------------------------------

class RateSampler:
    """bits/s of byte counters, sampled every ``interval`` seconds on ``clock``.

    ``watch(key, counter)`` is called for each counter at each tick (by
    ``ServerStatus.sample``); ``rate(key)`` answers from the last two samples,
    0 until there are two.  Keys not watched at a tick are forgotten.
    """

    def __init__(self, clock):
        self._clock = clock
        self._last: Dict[Any, tuple] = {}
        self._rates: Dict[Any, float] = {}
        self._seen = set()

    def begin(self):
        self._seen = set()

    def watch(self, key, counter: float, scale: float = 8.0):
        now = self._clock.seconds()
        self._seen.add(key)
        last = self._last.get(key)
        if last is not None and now > last[0]:
            self._rates[key] = max(0.0, (counter - last[1]) * scale / (now - last[0]))
        self._last[key] = (now, counter)

    def end(self):
        for key in list(self._last):
            if key not in self._seen:
                self._last.pop(key, None)
                self._rates.pop(key, None)

    def rate(self, key) -> float:
        return self._rates.get(key, 0.0)

    def known(self, key) -> bool:
        """Whether ``key`` was watched at the latest tick."""
        return key in self._last


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- the status ---------------------------------------------------------------------------------

class ServerStatus:
    """The server's figures as JSON-ready dicts; see the module docstring for where each comes from."""

    def __init__(self, factory, applications, *, clock, node: Optional[str] = None, interval: float = 2.0):
        self.factory = factory
        self.applications = applications
        self.clock = clock
        hub = self._hub()
        #: This process's name: the hub's node name (what ClientInfo.node says of its clients), else the host's.
        self.node = node or (hub.node if hub is not None else socket.gethostname())
        #: What backs the hub ("local", "redis"; "none" without applications): /metrics' fmspy_hub_up{kind}.
        self.hub_kind = hub.kind if hub is not None else "none"
        self.pid = os.getpid()
        self.started_at = time.time()
        self._started = clock.seconds()
        self.interval = interval
        self.rates = RateSampler(clock)
        self._loop = None
        #: Limit hits and dropped traffic (RateLimitedLog counts) of connections already closed, by kind;
        #: connections the server closed for a limit, by option.
        self.closed_hits: Dict[str, int] = {}
        self.closed_by_limit: Dict[str, int] = {}
        observers = getattr(factory, "closed_observers", None)
        if observers is not None:
            observers.append(self._connection_closed)

    def _connection_closed(self, protocol) -> None:
        for kind, count in _hit_counts(protocol).items():
            self.closed_hits[kind] = self.closed_hits.get(kind, 0) + count
        reason = getattr(protocol, "close_reason", None)
        if isinstance(reason, str) and reason.startswith("limit hit: "):
            words = reason[len("limit hit: "):].split()
            option = _option_name(words[0]) if words else "?"
            self.closed_by_limit[option] = self.closed_by_limit.get(option, 0) + 1

    def limit_hits(self) -> Dict[str, int]:
        """Every limit hit and dropped message so far, by kind (option name or what was dropped)."""
        hits = dict(self.closed_hits)
        for protocol in list(self.factory.connections):
            for kind, count in _hit_counts(protocol).items():
                hits[kind] = hits.get(kind, 0) + count
        for kind, count in getattr(getattr(self.factory, "refusals", None), "counts", {}).items():
            hits[kind] = hits.get(kind, 0) + count
        return dict(sorted(hits.items()))

    # -- sampling --------------------------------------------------------------------------

    def start(self):
        if self._loop is None:
            self._loop = LoopingCall(self.sample)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=True)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def sample(self):
        rates = self.rates
        rates.begin()
        bytes_in, bytes_out = self._totals()
        rates.watch("in", bytes_in)
        rates.watch("out", bytes_out)
        rates.watch("cpu", _cpu_seconds(), scale=100.0)
        # Per connection only those that publish or play: sampling every idle connection cost 1 KB and
        # 10 us each (10,000 clients: 10 MB and 0.1 s a tick); the others show their average since connect.
        peers = {}
        for app_name, live in self._live_streams():
            rates.watch(("stream", app_name, live.name, id(live)), getattr(live, "bytes_in", 0))
            sessions = [getattr(live.publisher, "session", None)] + [p.session for p in list(live.players)]
            for session in sessions:
                peer = getattr(session, "peer", None)
                if peer is not None:
                    peers[id(peer)] = peer
        for key, peer in peers.items():
            rates.watch(("in", key), getattr(peer, "bytes_in", 0))
            rates.watch(("out", key), getattr(peer, "bytes_out", 0))
        rates.end()

    # -- sources ---------------------------------------------------------------------------

    def _totals(self):
        factory = self.factory
        live_in = sum(getattr(p, "bytes_in", 0) for p in factory.connections)
        live_out = sum(getattr(p, "bytes_out", 0) for p in factory.connections)
        return (getattr(factory, "closed_bytes_in", 0) + live_in, getattr(factory, "closed_bytes_out", 0) + live_out)

    def _live_streams(self):
        for app_name in sorted(self.applications):
            live = getattr(self.applications[app_name], "live", None)
            for stream in list(getattr(live, "streams", {}).values()):
                yield app_name, stream

    def _hub(self):
        """The hub every application shares (``Services.hub``), None for a server without applications."""
        for app in self.applications.values():
            return app.hub
        return None

    def _local_clients(self, app_name: Optional[str] = None) -> Deferred:
        """Fires with the ``Client`` handles of this node's clients (of one application), as the hub lists them.

        Only this node's: bytes, rates and streams of a connection are known
        where it is connected.
        """
        names = [name for name in sorted(self.applications) if app_name is None or name == app_name]
        return _gather(self.applications[name].clients() for name in names).addCallback(
            lambda lists: [info.handle for infos in lists for info in infos if info.handle is not None])

    def _streams_by_session(self) -> Dict[int, list]:
        """Session id -> [{app, name, type}] of what it publishes and plays."""
        found: Dict[int, list] = {}
        for app_name, live in self._live_streams():
            if live.publisher is not None:
                session = getattr(live.publisher, "session", live.publisher)
                found.setdefault(id(session), []).append({"app": app_name, "name": live.name, "type": "publish"})
            for player in list(live.players):
                found.setdefault(id(player.session), []).append({"app": app_name, "name": live.name,
                                                                 "type": "play"})
        return found

    # -- answers ---------------------------------------------------------------------------

    # Every answer that reads the hub is a Deferred: the hub's answers may come from other nodes (issue 10).

    def summary(self) -> Deferred:
        """Fires with the summary; ``clients`` counts this node's, as ``connections`` does."""
        return self._local_clients().addCallback(lambda clients: {**self.local_summary(), "clients": len(clients)})

    def local_summary(self) -> dict:
        """The summary but its client count: what this process knows without asking the hub."""
        bytes_in, bytes_out = self._totals()
        return {
            "version": _version(), "node": self.node, "pid": self.pid,
            "started_at": self.started_at, "uptime_seconds": round(self.clock.seconds() - self._started, 3),
            "connections": len(self.factory.connections), "connections_accepted": getattr(self.factory, "accepted", 0),
            "applications": len(self.applications),
            "streams": sum(1 for _, live in self._live_streams() if live.publisher is not None),
            "bytes_in": bytes_in, "bytes_out": bytes_out,
            "bits_in_per_second": round(self.rates.rate("in")), "bits_out_per_second": round(self.rates.rate("out")),
            "cpu_percent": round(self.rates.rate("cpu"), 1), "cpu_seconds": round(_cpu_seconds(), 3),
            "memory_bytes": _rss_bytes(), "amf_codec": amf.codec_name(),
            "limit_hits": self.limit_hits(), "closed_by_limit": dict(sorted(self.closed_by_limit.items())),
        }

    def applications_list(self) -> Deferred:
        """Fires with every application, its clients and rooms as the hub counts them (on every node)."""
        names = sorted(self.applications)
        apps = [self.applications[name] for name in names]
        return _gather(_gather((app.clients(), app.rooms())) for app in apps).addCallback(
            lambda answers: [self._application(name, app, clients, rooms)
                             for name, app, (clients, rooms) in zip(names, apps, answers)])

    @staticmethod
    def _application(name: str, app, clients, rooms) -> dict:
        streams = list(getattr(getattr(app, "live", None), "streams", {}).values())
        return {"name": name, "class": type(app).__name__, "clients": len(clients), "rooms": len(rooms),
                "streams": sum(1 for s in streams if s.publisher is not None), "gateway": hasattr(app, "stats")}

    def rooms(self, app_name: Optional[str] = None) -> Deferred:
        """Fires with the rooms of every application (or one), as the hub lists them."""
        names = [name for name in sorted(self.applications) if app_name is None or name == app_name]
        return _gather(self.applications[name].rooms() for name in names).addCallback(
            lambda lists: [{"app": name, "name": room.name, "default": room.is_default, "clients": room.clients}
                           for name, rooms in zip(names, lists) for room in sorted(rooms, key=lambda r: r.name)])

    def describe_client(self, client, streams: Optional[Dict[int, list]] = None) -> dict:
        """A client connected to this node (a ``Client`` handle), with its connection's figures."""
        peer = client.peer
        now = time.time()
        if streams is None:
            streams = self._streams_by_session()
        return {
            "id": client.id, "node": self.node, "address": client.address,
            "transport": getattr(peer, "transport_name", "rtmp"),
            "app": client.application_name, "room": client.room_name,
            "agent": _text(client.agent), "page_url": _text(client.page_url), "swf_url": _text(client.swf_url),
            "tc_url": _text(client.tc_url), "object_encoding": client.object_encoding,
            "connected_at": client.connected_at, "connected_seconds": round(max(0.0, now - client.connected_at), 3),
            "bytes_in": getattr(peer, "bytes_in", 0), "bytes_out": getattr(peer, "bytes_out", 0),
            "bits_in_per_second": self._peer_rate("in", peer, client),
            "bits_out_per_second": self._peer_rate("out", peer, client),
            "streams": streams.get(id(client.session), []),
        }

    def _peer_rate(self, direction: str, peer, client) -> int:
        """Bits/s over the last sample for a connection that publishes or plays, else since connect."""
        key = (direction, id(peer))
        if self.rates.known(key):
            return round(self.rates.rate(key))
        seconds = time.time() - client.connected_at
        return round(getattr(peer, "bytes_" + direction, 0) * 8 / seconds) if seconds > 0 else 0

    def describe_remote_client(self, info) -> dict:
        """A client connected to another node, from its ``ClientInfo``: its connection's figures are that node's."""
        return {
            "id": info.id, "node": info.node, "address": info.address, "transport": None,
            "app": info.application, "room": info.room, "agent": info.agent, "page_url": info.page_url,
            "swf_url": info.swf_url, "tc_url": info.tc_url, "object_encoding": info.object_encoding,
            "connected_at": info.connected_at,
            "connected_seconds": round(max(0.0, time.time() - info.connected_at), 3),
            "bytes_in": None, "bytes_out": None, "bits_in_per_second": None, "bits_out_per_second": None,
            "streams": [],
        }

    def clients(self, start: int = 0, count: int = 100, app_name: Optional[str] = None) -> Deferred:
        """Fires with a page of this node's clients, oldest first."""
        return self._local_clients(app_name).addCallback(self._client_page, start, count)

    def _client_page(self, clients, start: int, count: int) -> dict:
        clients = sorted(clients, key=lambda c: (c.connected_at, c.id))
        page = clients[start:start + count]
        streams = self._streams_by_session()
        return {"total": len(clients), "start": start, "count": len(page),
                "clients": [self.describe_client(c, streams) for c in page]}

    def locate(self, client_id: str) -> Deferred:
        """Fires with the ``ClientInfo`` of a client of one of these applications on any node, or None."""
        hub = self._hub()
        if hub is None:
            return succeed(None)
        return hub.locate(client_id).addCallback(
            lambda info: info if info is not None and info.application in self.applications else None)

    def client(self, client_id: str) -> Deferred:
        """Fires with the description of a client on any node (``locate``), or None."""
        return self.locate(client_id).addCallback(
            lambda info: None if info is None else self.describe_client(info.handle) if info.handle is not None
            else self.describe_remote_client(info))

    def disconnect(self, client_id: str, reason: str) -> Deferred:
        """Close a client's connection on whichever node holds it; fires with its ``ClientInfo``, or None.

        None when there was no such client, or when it left before the hub
        reached it.
        """
        def found(info):
            if info is None:
                return None
            return self._hub().disconnect(client_id, reason).addCallback(lambda done: info if done else None)
        return self.locate(client_id).addCallback(found)

    def streams(self) -> List[dict]:
        """This node's live streams (no hub: a stream's figures are where its media flows)."""
        answer = []
        now = time.time()
        for app_name, live in self._live_streams():
            publisher = live.publisher
            session = getattr(publisher, "session", publisher) if publisher is not None else None
            client = getattr(session, "client", None)
            metadata = _metadata_object(live.metadata)
            bits_in = round(self.rates.rate(("stream", app_name, live.name, id(live))))
            players = len(live.players)
            published_at = getattr(live, "published_at", None) if publisher is not None else None
            answer.append({
                "app": app_name, "name": live.name, "publishing": publisher is not None,
                "publisher": client.id if client is not None else None,
                "publisher_address": client.address if client is not None else None,
                "published_at": published_at,
                "age_seconds": round(now - published_at, 3) if published_at else None,
                "bytes_in": getattr(live, "bytes_in", 0), "bits_in_per_second": bits_in,
                # One copy of the stream per player (each gets every message but while it catches up).
                "bits_out_per_second": bits_in * players,
                "players": players, "recording": bool(live.taps),
                "video": video_info(live.video_header, metadata), "audio": audio_info(live.audio_header, metadata),
            })
        return answer

    def gateway(self) -> List[dict]:
        answer = []
        for name in sorted(self.applications):
            app = self.applications[name]
            stats = getattr(app, "stats", None)
            if stats is None:
                continue
            endpoints = []
            rpc = getattr(app, "rpc", None)
            for url, endpoint in sorted((rpc.endpoints if rpc is not None else {}).items()):
                endpoints.append({"url": url, "name": endpoint.name, "circuit": endpoint.breaker.state.value,
                                  "consecutive_failures": endpoint.breaker.failures,
                                  "in_flight": endpoint.in_flight, "queued": endpoint.queued,
                                  "max_concurrent": endpoint.max_concurrent, "max_queued": endpoint.max_queued})
            circuits = {e["url"]: e["circuit"] for e in endpoints}
            routes = []
            for figures in stats.snapshot():
                p50, p99 = figures.percentile(0.5), figures.percentile(0.99)
                circuit = circuits.get(figures.endpoint, "closed")
                routes.append({
                    "route": figures.name, "endpoint": figures.endpoint, "calls": figures.calls, "ok": figures.ok,
                    "errors": figures.error_count, "errors_by_kind": dict(sorted(figures.errors.items())),
                    "http_statuses": {str(k): v for k, v in sorted(figures.statuses.items())},
                    "in_flight": figures.in_flight,
                    "latency_p50_ms": round(p50 * 1000, 3) if p50 is not None else None,
                    "latency_p99_ms": round(p99 * 1000, 3) if p99 is not None else None,
                    "last_outcome": figures.last_outcome, "last_at": figures.last_at,
                    "circuit": circuit, "health": _health(figures, circuit),
                })
            answer.append({"app": name, "routes": routes, "endpoints": endpoints})
        return answer


def _option_name(limit: str) -> str:
    """The fmspy.cfg name of a limit: the core names them as fields (max_message_size -> maxMessageSize)."""
    first, *rest = limit.split("_")
    return first + "".join(part.capitalize() for part in rest)


def _hit_counts(protocol) -> Dict[str, int]:
    """The limit hits of one connection by kind: its session's log, which its glue and streams write to."""
    session = getattr(protocol, "session", None)
    return dict(session.limit_counts) if session is not None else {}


def _health(figures, circuit: str) -> str:
    """"failing" when the circuit is not closed or the latest outcome was a failure of the backend."""
    if circuit != "closed":
        return "failing"
    if figures.last_outcome in (None, "ok", "backend-error", "invalid-params", "cancelled"):
        return "ok" if figures.last_outcome is not None else "idle"
    return "failing"


def _text(value) -> Optional[str]:
    return value if isinstance(value, str) else None


class StatusService(service.Service):
    """Starts and stops the status's sampler with the server."""

    name = "status"

    def __init__(self, status: ServerStatus):
        self.status = status

    def startService(self):
        super().startService()
        self.status.start()
        jsonlog.attach(self.status)

    def stopService(self):
        jsonlog.detach(self.status)
        self.status.stop()
        return super().stopService()
