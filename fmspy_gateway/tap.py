"""``twistd fmspy-gateway``: command-line options and the wiring of every layer into one service.

The only module that knows all the others: it loads the configuration,
builds the applications and hands them, with the reactor, to the listeners.
"""
import errno
import logging
import socket
import sys

from twisted.application import internet, service
from twisted.internet.abstract import isIPv6Address
from twisted.internet.defer import inlineCallbacks, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python import usage

from .app.application import Services
from .app.registry import UnknownApplication, build_applications
from .app.hub import LocalHub
from .bridge.application import GatewayApplication
from .bridge.push import PushAPI, PushResource
from .bridge.rpc import make_connection_pool, make_http_client
from .config import ConfigError, load_config, with_overrides
from .rtmp import amf
from .server import logging_bridge
from .server.api import install as install_operations
from .server.api import quiet_polling as quiet_operations_polling
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
                  port_from_flag: bool = False) -> socket.socket:
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
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
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

    def __init__(self, factory, applications, pool):
        self.factory = factory
        self.applications = applications
        self.pool = pool
        #: The applications whose start() succeeded, in order.
        self.started = []
        #: Fires when every start() has: what stopService waits for before stopping them.
        self.ready = succeed(None)

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

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        yield self.factory.close_all("server stopping")
        yield self.ready
        while self.started:
            application = self.started.pop()
            try:
                yield maybeDeferred(application.stop)
            except Exception:
                log.failure("application {name} ({cls}) failed to stop", name=application.name,
                            cls=type(application).__name__)
        yield self.pool.closeCachedConnections()


def makeService(options, reactor=None) -> service.MultiService:
    if reactor is None:
        from twisted.internet import reactor
    logging_bridge.install(logging.INFO)
    try:
        config = with_overrides(load_config(options["config"]),
                                rtmp_port=options["rtmp-port"], http_port=options["http-port"])
        pool = make_connection_pool(reactor)
        services = Services(LocalHub(), clock=reactor, http_client=make_http_client(reactor, pool=pool),
                            rtmp=config.rtmp)
        applications = build_applications(config, services, {"GatewayApplication": GatewayApplication})
        # Keep a persistent connection for every backend request an application may have in flight.
        pool.maxPersistentPerHost = max([pool.maxPersistentPerHost] + [
            app.http_connections for app in applications.values()])
    except (ConfigError, UnknownApplication) as e:
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
    try:
        rtmp_socket = bind_listener("RTMP", rtmp.interface, rtmp.port, rtmp.backlog, "--rtmp-port",
                                    options["rtmp-port"] is not None)
        if config.http.enabled:
            http_socket = bind_listener("HTTP", config.http.interface, config.http.port, 50, "--http-port",
                                        options["http-port"] is not None)
        if tls is not None:
            rtmps_socket = bind_listener("RTMPS", config.rtmps.interface, config.rtmps.port, rtmp.backlog,
                                         "--config")
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

    log.info("configuration: {files}", files=", ".join(config.files))
    log.info("pyamf codec: {codec}", codec=amf.codec_name())
    log.info("applications: {apps}", apps=", ".join(
        f"{name} ({type(app).__name__})" for name, app in sorted(applications.items())) or "none")

    top = service.MultiService()
    factory = RTMPServerFactory(applications, rtmp, reactor=reactor)
    # Added first, so started first and stopped last: after the listeners have stopped accepting.
    ApplicationService(factory, applications, pool).setServiceParent(top)
    rtmp_service = RTMPListener("RTMP", rtmp_socket, factory, backlog=rtmp.backlog, reactor=reactor)
    rtmp_service.setName("rtmp")
    rtmp_service.setServiceParent(top)
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
        CertificateReloader(tls, reactor=reactor).setServiceParent(top)
    if http_socket is not None:
        push_api = PushAPI(applications, hub=services.hub, max_call_timeout=config.http.push_max_call_timeout)
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
