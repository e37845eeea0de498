"""``twistd fmspy-gateway``: command-line options and the wiring of every layer into one service.

The only module that knows all the others: it loads the configuration,
builds the applications and hands them, with the reactor, to the listeners.
"""
import dataclasses
import errno
import logging
import os
import socket
import sys

from twisted.application import internet, service
from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python import usage

from .app.application import Services
from .app.registry import UnknownApplication, build_applications
from .app.hub import LocalHub, default_node_name
from .bridge.application import GatewayApplication
from .cluster import RedisHub
from .cluster.link import RedisAddress, RedisUnreachable, probe as probe_redis
from .cluster.relay import relay_for
from .cluster.workers import WorkerPool, WorkerSpec, announce_ready, die_with_supervisor, worker_argv, worker_node
from .bridge.push import PushAPI, PushResource
from .bridge.rpc import make_connection_pool, make_http_client
from .config import ConfigError, load_config, with_overrides
from .rtmp import amf, amf_plain
from .server import logging_bridge
from .server.api import install as install_operations
from .server.api import quiet_polling as quiet_operations_polling
from .server.drain import Drain, another_node
from .server.http import build_site
from .server.ops import ServerStatus, StatusService
from .server.protocol import RTMPServerFactory
from .server.rtmpt import RTMPTSessions, mount as mount_rtmpt, quiet_access_log, rtmpt_only_site
from .server.tls import CertificateReloader, ReloadableTLS, SecurePortFactory, TLSSetupError, describe_certificate
from .server.transport import DirectWritePort, listen_direct

log = Logger()


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} outside 0-65535")
    return port


class Options(usage.Options):
    synopsis = "[--config FILE] [--rtmp-port N] [--http-port N]"
    longdesc = ("Runs the RTMP server and gateway. Without --config, fmspy.cfg is read from the package "
                "directory, /etc, /usr/local/etc and the current directory, later files overriding earlier ones.")
    optParameters = [
        ["config", "c", None, "Read this fmspy.cfg only, instead of searching."],
        ["rtmp-port", None, None, "Listen for RTMP on this port ([RTMP] port).", _port],
        ["http-port", None, None, "Serve HTTP on this port ([HTTP] port).", _port],
        ["rtmps-port", None, None, "Listen for RTMPS on this port ([RTMPS] port).", _port],
        # Set by the supervisor of [Cluster] workers on each worker it starts (cluster/workers.py).
        ["worker", None, None, "(internal) Run as this worker node of [Cluster] workers."],
        ["supervisor-pid", None, None, "(internal) The workers' supervisor; a worker ends with it.", int],
    ]


class ListenError(Exception):
    """A listening socket the configuration asks for cannot be had; ``str()`` is the one line to print."""


def _is_loopback(host: str) -> bool:
    return host.startswith("127.") or host == "::1"


def describe_address(host: str, port: int) -> str:
    """'0.0.0.0:1935 (every interface)', '127.0.0.1:3000 (loopback only)': what a log reader must know."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if host in ("0.0.0.0", "::"):
        return f"{shown} (every interface)"
    if _is_loopback(host):
        return f"{shown} (loopback only)"
    return f"{shown} (this address only)"


def bind_listener(section: str, interface: str, port: int, backlog: int, port_flag: str,
                  port_from_flag: bool = False, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """Bind and listen now, in makeService, so that a port in use or a wrong address is one line.

    twistd starts listening only after it has begun logging (and, without
    ``-n``, after daemonizing), where a ``CannotListenError`` becomes a
    40-line traceback in the log.  Bound here, the error reaches the
    terminal before any of that, and the socket is handed to the reactor
    unchanged when the service starts.  The socket is set up as Twisted's
    own ``tcp.Port`` sets it up (SO_REUSEADDR, non-blocking, not inherited).
    """
    port_option = f"{port_flag} {port}" if port_from_flag else f"[{section}] port = {port}"
    other_port = f"choose another port with [{section}] port or {port_flag}"
    interface_option = f"[{section}] interface = {interface}"
    fix_interface = "give an IP address of this machine, or leave interface empty for every interface"
    family = socket.AF_INET6 if isIPv6Address(interface) else socket.AF_INET
    try:
        address = socket.getaddrinfo(interface or None, port, family, socket.SOCK_STREAM, 0,
                                     socket.AI_PASSIVE)[0][4]
    except (socket.gaierror, UnicodeError) as e:
        raise ListenError(f"{interface_option}: not an address of this machine "
                          f"({getattr(e, 'strerror', None) or e}); {fix_interface}")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuse_port and not listen and port:
            # The workers' supervisor: with SO_REUSEPORT alone its bind would succeed beside another
            # supervisor's workers (same user) and silently share their port; bound first without it,
            # it fails wherever anyone listens.
            _bind_once_without_reuse_port(family, address)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:      # [Cluster] workers share the port (cluster/workers.py)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:          # the workers' supervisor only reserves the port
            sock.listen(backlog)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        on = f"on {interface}" if interface else "on every interface"
        reason = e.strerror or str(e)
        if e.errno == errno.EADDRINUSE:
            raise ListenError(f"{port_option}: the port is already in use {on} ({reason}); stop the program "
                              f"listening there or {other_port}")
        if e.errno == errno.EACCES:
            raise ListenError(f"{port_option}: not allowed to listen {on} ({reason}); ports below 1024 need "
                              f"privileges: {other_port}")
        raise ListenError(f"{interface_option}: cannot listen there ({reason}); {fix_interface}")
    return sock


def _bind_once_without_reuse_port(family, address) -> None:
    """Raise the OSError of binding ``address`` as a lone server would (SO_REUSEADDR only), then let it go."""
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    finally:
        probe.close()


class BoundListener(internet.TCPServer):
    """``internet.TCPServer`` that starts on a socket already bound by makeService (see bind_listener).

    ``args`` stay ``(port, factory)`` as in TCPServer; a restarted service,
    whose first socket is gone, listens afresh on the port it had.  Once
    listening it logs the address actually bound: which interfaces can reach
    the service is a security question an operator must be able to read in
    the log (``[RTMP]`` faces clients, ``[HTTP]`` carries the push API).
    """

    def __init__(self, label: str, sock: socket.socket, factory, reactor=None, **kwargs):
        super().__init__(sock.getsockname()[1], factory, reactor=reactor, **kwargs)
        self.label = label
        self.bound = sock
        self.address = sock.getsockname()[0]

    def _getPort(self):
        reactor = self.reactor or _global_reactor()
        port_number, factory = self.args
        sock, self.bound = self.bound, None
        if sock is None:
            listening = self._listen(reactor, port_number, factory, self.address)
        else:
            try:
                listening = self._adopt(reactor, sock, factory)
            finally:
                sock.close()      # the reactor's port holds its own duplicate of the descriptor
        host = listening.getHost()
        log.info("{label} listening on {address}", label=self.label, address=describe_address(host.host, host.port))
        return listening

    def _adopt(self, reactor, sock, factory):
        return reactor.adoptStreamPort(sock.fileno(), sock.family, factory)

    def _listen(self, reactor, port, factory, interface):
        return reactor.listenTCP(port, factory, backlog=self.kwargs.get("backlog", 50), interface=interface)

    def stopService(self):
        if self.bound is not None:       # never started (a test, or a start-up that failed later)
            self.bound.close()
            self.bound = None
        return super().stopService()


class RTMPListener(BoundListener):
    """A BoundListener whose connections write directly to their sockets (server.transport)."""

    def _adopt(self, reactor, sock, factory):
        listening = DirectWritePort._fromListeningDescriptor(reactor, sock.fileno(), sock.family, factory)
        listening.startListening()
        return listening

    def _listen(self, reactor, port, factory, interface):
        return listen_direct(reactor, port, factory, backlog=self.kwargs.get("backlog", 50), interface=interface)


def _global_reactor():
    from twisted.internet import reactor
    return reactor


def build_hub(config, reactor):
    """LocalHub, or with [Cluster] redis a RedisHub, Redis having answered a PING now (before twistd logs or
    daemonizes, so that "Redis unreachable" is one line and exit status 1, like the other start-up errors)."""
    cluster = config.cluster
    node = cluster.node or default_node_name()
    if not cluster.enabled:
        return LocalHub(node, advertise=cluster.advertise or None)
    try:
        probe_redis(RedisAddress.parse(cluster.redis), cluster.connect_timeout)
    except RedisUnreachable as e:      # the option to look at, and the address without its password
        raise RedisUnreachable(f"[Cluster] redis: {e}; start Redis there or correct the address") from None
    # Values between nodes are clients' values: the same budget as in an RTMP message ([RTMP] maxValue*).
    return RedisHub(cluster.redis, node, advertise=cluster.advertise or None, heartbeat=cluster.heartbeat,
                    reactor=reactor, call_timeout=config.rtmp.call_timeout, reply_timeout=cluster.reply_timeout,
                    connect_timeout=cluster.connect_timeout, command_timeout=cluster.command_timeout,
                    max_envelope_bytes=cluster.max_envelope_bytes, budget=config.rtmp.limits.value_budget)


def destroy_hook_of(applications):
    """What the hub calls for a room emptied by a node the cluster forgot: its application's on_room_destroy."""
    def destroy(room):
        application = applications.get(room.application)
        return application.on_room_destroy(room) if application is not None else None
    return destroy


def announced_hook_of(applications):
    """What the hub calls for a stream name claimed on another node: the application's waiting players pull it."""
    def announced(publication):
        application = applications.get(publication.application)
        if application is not None:
            application.stream_published_elsewhere(publication)
    return announced


class HubService(service.Service):
    """The node's membership of the cluster: joined at start, left at stop.

    Added to the top service first, so it starts before anything accepts
    clients and stops last, after the connections closed and left their rooms.
    A hub that cannot start (Redis gone between the start-up probe and the
    reactor's first turn) stops the server, with the reason in one line.
    """

    name = "hub"

    def __init__(self, hub, reactor, stop_after=lambda: succeed(None)):
        self.hub = hub
        self.reactor = reactor
        #: What must be over before the node leaves the cluster: the applications' stop (their clients'
        #: leaves must reach the hub first).  twistd's MultiService stops its children all at once.
        self.stop_after = stop_after

    def startService(self):
        super().startService()
        self.hub.start().addErrback(self._not_started)

    def _not_started(self, failure):
        print(f"fmspy-gateway: {failure.getErrorMessage()}", file=sys.stderr)
        log.error("cluster: {reason}; stopping", reason=failure.getErrorMessage())
        self.reactor.stop()

    def stopService(self):
        super().stopService()
        return self.stop_after().addBoth(lambda _: self.hub.stop())


class ApplicationService(service.Service):
    """The applications' lifecycle, and the server's graceful stop.

    At start: ``start()`` of every application, in fmspy.cfg order, each after
    the one before has fired.  At stop: close the client connections (their
    hooks run, so a gateway can still notify its backends), then ``stop()``
    of every started application in the reverse order, then close the shared
    HTTP pool.  Added to the top service before the listeners, so it starts
    first and stops last (after the listeners stopped accepting).
    """

    name = "applications"

    def __init__(self, factory, applications, pool, *, clock=None, stop_timeout: float = 30.0):
        self.factory = factory
        self.applications = applications
        self.pool = pool
        self.clock = clock if clock is not None else _global_reactor()
        #: Seconds to wait for the clients' leave chains at stop ([Cluster] stopTimeout).
        self.stop_timeout = stop_timeout
        #: The applications whose start() succeeded, in order.
        self.started = []
        #: Fires when every start() has: what stopService waits for before stopping them.
        self.ready = succeed(None)
        #: The graceful stop under way (what the hub's service waits for), fired once it is over.
        self.stopping = succeed(None)

    def startService(self):
        super().startService()
        self.started = []
        d = succeed(None)
        for name, application in self.applications.items():
            d.addCallback(lambda _, name=name, application=application: self._start(name, application))
        self.ready = d

    def _start(self, name, application):
        def started(_):
            self.started.append(application)

        def failed(failure):
            log.failure("application {name} ({cls}) failed to start; it will not be stopped", failure,
                        name=name, cls=type(application).__name__)

        return maybeDeferred(application.start).addCallbacks(started, failed)

    def stopService(self):
        super().stopService()
        self.stopping = self._stop()
        return self.stopping

    def _leaves_done(self) -> Deferred:
        """Fires once every client's leave chain ran (its hooks, the hub's answer), or ``stop_timeout`` passed:
        then with how many were still running, and that is logged (the applications stop anyway)."""
        chains = [chain for application in self.applications.values() for chain in application.leaving]
        done = Deferred()
        if not chains:
            return succeed(0)

        def over(_):
            if not done.called:
                timer.cancel()
                done.callback(0)

        def late():
            if not done.called:
                left = sum(len(application.leaving) for application in self.applications.values())
                log.warn("graceful stop: {count} client(s) still leaving (their hub answers or room and "
                         "disconnect hooks) after {timeout} s ([Cluster] stopTimeout); stopping the "
                         "applications anyway", count=left, timeout=self.stop_timeout)
                done.callback(left)
        timer = self.clock.callLater(self.stop_timeout, late)
        DeferredList(chains).addCallback(over)
        return done

    @inlineCallbacks
    def _stop(self):
        yield self.factory.close_all("server stopping")
        yield self._leaves_done()
        yield self.ready
        while self.started:
            application = self.started.pop()
            try:
                yield maybeDeferred(application.stop)
            except Exception:
                log.failure("application {name} ({cls}) failed to stop", name=application.name,
                            cls=type(application).__name__)
        yield self.pool.closeCachedConnections()


def as_worker(config, options):
    """A worker's configuration and its own RTMP socket ([Cluster] workers, cluster/workers.py).

    Its node name is the one the supervisor gave, it is one process, and it
    uses the RTMPS port the supervisor bound.  Besides the shared ports it
    listens on a port of its own (chosen by the OS), which it advertises:
    a relay from another node must reach this worker, not whichever worker
    the kernel hands the shared port's connection to.  Any other process:
    ``(config, None)``, unchanged but for ``--rtmps-port``.
    """
    if options["rtmps-port"] is not None:
        config = dataclasses.replace(config, rtmps=dataclasses.replace(config.rtmps, port=options["rtmps-port"]))
    if options["worker"] is None:
        return config, None
    if options["supervisor-pid"] is not None:
        die_with_supervisor(options["supervisor-pid"])
    rtmp = config.rtmp
    own = bind_listener("RTMP", rtmp.interface, 0, rtmp.backlog, "--worker")
    host = advertised_host(config.cluster.advertise, rtmp.interface)
    cluster = dataclasses.replace(config.cluster, node=options["worker"], workers=1,
                                  advertise=f"rtmp://{host}:{own.getsockname()[1]}")
    return dataclasses.replace(config, cluster=cluster), own


def advertised_host(advertise: str, interface: str) -> str:
    """The host a worker advertises: [Cluster] advertise's, else [RTMP] interface's, else loopback."""
    if advertise:
        return advertise[len("rtmp://"):].split(":")[0]     # config.py allows no IPv6 literal there
    if interface and interface not in ("0.0.0.0", "::"):
        return f"[{interface}]" if ":" in interface else interface
    return "127.0.0.1"


def supervise(options, config, sockets, reactor) -> service.MultiService:
    """[Cluster] workers = N: this process serves nothing; it keeps N workers running on the ports it bound.

    Each worker is told the ports actually bound (port 0 became one real
    port for all) and the same fmspy.cfg; its node name is ``<node>-<i>``.
    """
    rtmp_socket, http_socket, rtmps_socket = sockets
    args = ["--config", options["config"]] if options["config"] else []
    args += ["--rtmp-port", str(rtmp_socket.getsockname()[1])]
    if http_socket is not None:
        args += ["--http-port", str(http_socket.getsockname()[1])]
    if rtmps_socket is not None:
        args += ["--rtmps-port", str(rtmps_socket.getsockname()[1])]
    node = config.cluster.node or default_node_name()
    pid = os.getpid()
    specs = [WorkerSpec(i, worker_node(node, i), worker_argv(worker_node(node, i), args, pid))
             for i in range(1, config.cluster.workers + 1)]
    for label, sock in (("RTMP", rtmp_socket), ("HTTP", http_socket), ("RTMPS", rtmps_socket)):
        if sock is not None:
            host, port = sock.getsockname()[:2]
            log.info("{label}: {count} workers share {address} (SO_REUSEPORT)", label=label,
                     count=config.cluster.workers, address=describe_address(host, port))
    top = service.MultiService()
    WorkerPool(specs, [sock for sock in sockets if sock is not None], reactor=reactor,
               pass_on_sighup=rtmps_socket is not None,
               stop_timeout=config.cluster.worker_stop_timeout).setServiceParent(top)
    return top


def makeService(options, reactor=None) -> service.MultiService:
    if reactor is None:
        from twisted.internet import reactor
    logging_bridge.install(logging.INFO)
    try:
        config = with_overrides(load_config(options["config"]),
                                rtmp_port=options["rtmp-port"], http_port=options["http-port"])
        config, own_rtmp_socket = as_worker(config, options)
        pool = make_connection_pool(reactor)
        hub = build_hub(config, reactor)
        services = Services(hub, clock=reactor, http_client=make_http_client(reactor, pool=pool),
                            rtmp=config.rtmp, relay=relay_for(config, hub, reactor))
        applications = build_applications(config, services, {"GatewayApplication": GatewayApplication})
        # Keep a persistent connection for every backend request an application may have in flight.
        pool.maxPersistentPerHost = max([pool.maxPersistentPerHost] + [
            app.http_connections for app in applications.values()])
        # One pool for every gateway: its response-head bound is the largest any of them allows.
        heads = [app.http_head_bytes for app in applications.values() if app.http_head_bytes]
        if heads:
            pool.max_head_bytes = max(heads)
    except (ConfigError, UnknownApplication, ListenError, RedisUnreachable) as e:
        # One clear line, not a traceback (FMSPy's FAQ about NoSectionError).
        print(f"fmspy-gateway: {e}", file=sys.stderr)
        raise SystemExit(1)
    tls = None
    if config.rtmps.enabled:
        try:
            tls = ReloadableTLS(config.rtmps)
        except TLSSetupError as e:
            print(f"fmspy-gateway: {e}", file=sys.stderr)
            raise SystemExit(1)
    rtmp = config.rtmp
    rtmp_socket = http_socket = rtmps_socket = None
    supervising = config.cluster.workers > 1
    # Workers share each port through SO_REUSEPORT; their supervisor binds it first and never listens.
    sharing = {"reuse_port": supervising or options["worker"] is not None, "listen": not supervising}
    try:
        rtmp_socket = bind_listener("RTMP", rtmp.interface, rtmp.port, rtmp.backlog, "--rtmp-port",
                                    options["rtmp-port"] is not None, **sharing)
        if config.http.enabled:
            http_socket = bind_listener("HTTP", config.http.interface, config.http.port, 50, "--http-port",
                                        options["http-port"] is not None, **sharing)
        if tls is not None:
            rtmps_socket = bind_listener("RTMPS", config.rtmps.interface, config.rtmps.port, rtmp.backlog,
                                         "--rtmps-port" if options["rtmps-port"] is not None else "--config",
                                         options["rtmps-port"] is not None, **sharing)
    except ListenError as e:
        for bound in (rtmp_socket, http_socket):
            if bound is not None:
                bound.close()
        print(f"fmspy-gateway: {e}", file=sys.stderr)
        raise SystemExit(1)
    if http_socket is not None and config.http.push_token and not _is_loopback(http_socket.getsockname()[0]):
        log.warn("HTTP: the push API is reachable beyond this machine ([HTTP] interface = {interface}); "
                 "whoever reaches it with the token controls every client: keep it behind a firewall or "
                 "a TLS proxy, or set interface = 127.0.0.1", interface=config.http.interface)
    if not hub.advertise:       # where other nodes pull this node's live streams: [RTMP] as bound
        hub.advertise = f"rtmp://{advertised_host('', rtmp.interface)}:{rtmp_socket.getsockname()[1]}"
    if supervising:
        return supervise(options, config, (rtmp_socket, http_socket, rtmps_socket), reactor)

    log.info("configuration: {files}", files=", ".join(config.files))
    log.info("pyamf codec: {codec}; plain AMF0 fast path: {plain}", codec=amf.codec_name(),
             plain="compiled" if amf_plain.COMPILED else "Python (not compiled)")
    log.info("applications: {apps}", apps=", ".join(
        f"{name} ({type(app).__name__})" for name, app in sorted(applications.items())) or "none")

    top = service.MultiService()
    factory = RTMPServerFactory(applications, rtmp, reactor=reactor)
    hub.on_room_orphaned = destroy_hook_of(applications)
    hub.on_stream_announced = announced_hook_of(applications)
    # Added first, so started first and stopped last: after the listeners have stopped accepting.
    hub_service = HubService(hub, reactor)
    hub_service.setServiceParent(top)
    applications_service = ApplicationService(factory, applications, pool, clock=reactor,
                                              stop_timeout=config.cluster.stop_timeout)
    applications_service.setServiceParent(top)
    # The node leaves the cluster once its clients' leaves and the applications' stop are over.
    hub_service.stop_after = lambda: applications_service.stopping
    rtmp_service = RTMPListener("RTMP", rtmp_socket, factory, backlog=rtmp.backlog, reactor=reactor)
    rtmp_service.setName("rtmp")
    rtmp_service.setServiceParent(top)
    listeners = [rtmp_service]
    if own_rtmp_socket is not None:       # a worker's own port, which it advertises (as_worker)
        own_service = RTMPListener("RTMP (this worker's own, advertised)", own_rtmp_socket, factory,
                                   backlog=rtmp.backlog, reactor=reactor)
        own_service.setName("rtmp-own")
        own_service.setServiceParent(top)
        listeners.append(own_service)
        reactor.callWhenRunning(announce_ready, config.cluster.node)
    # RTMPT sessions are connections of the same factory: same applications, limits and graceful stop.
    rtmpt = RTMPTSessions(factory, config.rtmpt, reactor=reactor) if config.rtmpt.enabled else None
    if rtmpt is not None and http_socket is None and rtmps_socket is None:
        log.warn("RTMPT: enabled, but neither [HTTP] nor [RTMPS] is: no port serves it")
    if rtmps_socket is not None:
        log.info("RTMPS: certificate {certificate}", certificate=describe_certificate(tls.context))
        https = rtmpt_only_site(rtmpt, config.rtmpt.max_request_bytes, reactor) if rtmpt is not None else None
        rtmps_service = RTMPListener("RTMPS", rtmps_socket, SecurePortFactory(tls, factory, https, reactor=reactor),
                                     backlog=rtmp.backlog, reactor=reactor)
        rtmps_service.setName("rtmps")
        rtmps_service.setServiceParent(top)
        listeners.append(rtmps_service)
        CertificateReloader(tls, reactor=reactor).setServiceParent(top)
    if http_socket is not None:
        # The push API's drain: stop these listeners, move the clients, close the rest (server/drain.py).
        drain = Drain(factory, listeners, config.cluster.drain_grace, find_target=another_node(hub), clock=reactor)
        drain.setServiceParent(top)
        push_api = PushAPI(applications, hub=services.hub, max_call_timeout=config.http.push_max_call_timeout,
                           drain=drain)
        push = PushResource(push_api,
                            config.http.push_token or "", max_body=config.http.push_max_body, clock=reactor)
        site = build_site(config.http, applications, push, reactor=reactor)
        if rtmpt is not None:
            mount_rtmpt(site.resource, rtmpt)
            quiet_access_log(site)
        # /api/v1/, /metrics and /status/ (server/api.py), from figures sampled while the server runs.
        status = ServerStatus(factory, applications, clock=reactor)
        StatusService(status).setServiceParent(top)
        install_operations(site.resource, status, config.http.admin_token, clock=reactor,
                           interface=http_socket.getsockname()[0])
        quiet_operations_polling(site)
        http_service = BoundListener("HTTP", http_socket, site, reactor=reactor)
        http_service.setName("http")
        http_service.setServiceParent(top)
    return top
