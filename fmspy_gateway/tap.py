"""``twistd fmspy-gateway``: command-line options and the wiring of every layer into one service.

The only module that knows all the others: it loads the configuration,
builds the applications and hands them, with the reactor, to the listeners.
"""
import logging
import sys

from twisted.application import internet, service
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from .app.application import Services
from .app.registry import UnknownApplication, build_applications
from .app.rooms import LocalDirectory
from .bridge.application import GatewayApplication
from .bridge.push import PushAPI, PushResource
from .bridge.rpc import make_connection_pool, make_http_client
from .config import ConfigError, load_config, with_overrides
from .rtmp import amf
from .server import logging_bridge
from .server.http import build_site_root
from .server.protocol import RTMPServerFactory
from .server.transport import listen_direct

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


class RTMPListener(internet.TCPServer):
    """``internet.TCPServer`` whose connections write directly to their sockets (server.transport)."""

    def _getPort(self):
        port, factory = self.args
        return listen_direct(self.reactor or _global_reactor(), port, factory, **self.kwargs)


def _global_reactor():
    from twisted.internet import reactor
    return reactor


class GracefulStop(service.Service):
    """At stop: close client connections (their hooks run), end backend calls, close the HTTP pool."""

    name = "graceful-stop"

    def __init__(self, factory, applications, pool):
        self.factory = factory
        self.applications = applications
        self.pool = pool

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        yield self.factory.close_all("server stopping")
        for application in self.applications.values():
            if isinstance(application, GatewayApplication):
                application.rpc.close()
        yield self.pool.closeCachedConnections()


def makeService(options, reactor=None) -> service.MultiService:
    if reactor is None:
        from twisted.internet import reactor
    logging_bridge.install(logging.INFO)
    try:
        config = with_overrides(load_config(options["config"]),
                                rtmp_port=options["rtmp-port"], http_port=options["http-port"])
        pool = make_connection_pool(reactor)
        services = Services(LocalDirectory(), clock=reactor, http_client=make_http_client(reactor, pool=pool),
                            rtmp=config.rtmp)
        applications = build_applications(config, services, {"GatewayApplication": GatewayApplication})
        # Keep a persistent backend connection for every request a gateway may have in flight.
        pool.maxPersistentPerHost = max([pool.maxPersistentPerHost] + [
            app.settings.max_concurrent for app in applications.values() if isinstance(app, GatewayApplication)])
    except (ConfigError, UnknownApplication) as e:
        # One clear line, not a traceback (FMSPy's FAQ about NoSectionError).
        print(f"fmspy-gateway: {e}", file=sys.stderr)
        raise SystemExit(1)

    log.info("configuration: {files}", files=", ".join(config.files))
    log.info("pyamf codec: {codec}", codec=amf.codec_name())
    log.info("applications: {apps}", apps=", ".join(
        f"{name} ({type(app).__name__})" for name, app in sorted(applications.items())) or "none")

    top = service.MultiService()
    rtmp = config.rtmp
    factory = RTMPServerFactory(applications, rtmp, reactor=reactor)
    # Added first, so stopped last: after the listeners have stopped accepting.
    GracefulStop(factory, applications, pool).setServiceParent(top)
    rtmp_service = RTMPListener(rtmp.port, factory, backlog=rtmp.backlog, interface=rtmp.interface,
                                reactor=reactor)
    rtmp_service.setName("rtmp")
    rtmp_service.setServiceParent(top)
    if config.http.enabled:
        push = PushResource(PushAPI(applications), config.http.push_token or "")
        http_service = internet.TCPServer(config.http.port, Site(build_site_root(config.http, applications, push)),
                                          interface=config.http.interface, reactor=reactor)
        http_service.setName("http")
        http_service.setServiceParent(top)
    return top
