"""Applications start and stop with the server: tap.ApplicationService, in order and in reverse."""
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.application import Application
from fmspy_gateway.tap import ApplicationService


class Recorded(Application):
    def __init__(self, name, events, start=None):
        super().__init__(name)
        self.events = events
        self._start = start

    def start(self):
        self.events.append(("start", self.name))
        return self._start() if self._start is not None else succeed(None)

    def stop(self):
        self.events.append(("stop", self.name))
        return succeed(None)


class Factory:
    def __init__(self, events):
        self.events = events
        self.closed = Deferred()

    def close_all(self, reason):
        self.events.append(("close_all", reason))
        return self.closed


class Pool:
    def __init__(self, events):
        self.events = events

    def closeCachedConnections(self):
        self.events.append(("pool", None))
        return succeed(None)


class ApplicationServiceTests(SynchronousTestCase):
    def make(self, **starts):
        self.events = []
        self.factory = Factory(self.events)
        apps = {name: Recorded(name, self.events, starts.get(name)) for name in ("a", "b", "c")}
        return ApplicationService(self.factory, apps, Pool(self.events))

    def test_starts_in_order_and_stops_in_reverse_after_the_connections(self):
        service = self.make()
        service.startService()
        self.assertEqual(self.events, [("start", "a"), ("start", "b"), ("start", "c")])
        del self.events[:]
        stopped = service.stopService()
        # Nothing stops while client connections are still closing (their hooks may call backends).
        self.assertEqual(self.events, [("close_all", "server stopping")])
        self.factory.closed.callback(None)
        self.successResultOf(stopped)
        self.assertEqual(self.events, [("close_all", "server stopping"), ("stop", "c"), ("stop", "b"),
                                       ("stop", "a"), ("pool", None)])

    def test_each_start_waits_for_the_one_before(self):
        pending = Deferred()
        service = self.make(a=lambda: pending)
        service.startService()
        self.assertEqual(self.events, [("start", "a")])
        pending.callback(None)
        self.assertEqual(self.events, [("start", "a"), ("start", "b"), ("start", "c")])

    def test_a_failed_start_is_logged_and_not_stopped(self):
        service = self.make(b=lambda: fail(RuntimeError("no backend")))
        service.startService()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual([app.name for app in service.started], ["a", "c"])
        self.factory.closed.callback(None)
        self.successResultOf(service.stopService())
        self.assertNotIn(("stop", "b"), self.events)
        self.assertIn(("stop", "a"), self.events)

    def test_base_application_start_and_stop_fire(self):
        app = Application("plain")
        self.assertIsNone(self.successResultOf(app.start()))
        self.assertIsNone(self.successResultOf(app.stop()))
        self.assertEqual(app.http_connections, 0)


class GatewayLifecycleTests(SynchronousTestCase):
    def test_gateway_stop_closes_its_backend_client(self):
        from fmspy_gateway.bridge.application import GatewayApplication

        class RPC:
            closed = False

            def close(self):
                self.closed = True

        class Settings:
            max_concurrent = 7

        rpc = RPC()
        app = GatewayApplication("shop", settings=Settings(), routes=None, rpc=rpc)
        self.assertEqual(app.http_connections, 7)
        self.successResultOf(app.start())
        self.assertFalse(rpc.closed)
        self.successResultOf(app.stop())
        self.assertTrue(rpc.closed)


def test_a_misspelt_live_option_stops_twistd_with_one_line(tmp_path, capsys):
    import pytest
    from twisted.internet.task import Clock
    from fmspy_gateway import tap
    path = tmp_path / "fmspy.cfg"
    path.write_text("[RTMP]\nport = 0\ninterface = 127.0.0.1\n[LiveApplication]\nenabled = yes\nname = live\n"
                    "recordDri = rec\n")
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    with pytest.raises(SystemExit):
        tap.makeService(options, reactor=Clock())
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith(f"fmspy-gateway: {path}: [LiveApplication] recordDri = 'rec': expected one of ")
    assert "(did you mean recordDir?" in err


def test_the_shared_pool_keeps_a_connection_per_concurrent_gateway_request(tmp_path):
    from twisted.internet.task import Clock
    from fmspy_gateway import tap
    (tmp_path / "routes.cfg").write_text("[shop]\n* = *\n")
    path = tmp_path / "fmspy.cfg"
    path.write_text("[RTMP]\nport = 0\ninterface = 127.0.0.1\n[GatewayApplication:shop]\nenabled = yes\n"
                    "name = shop\nendpoint = http://127.0.0.1:1/rpc\nmax-concurrent = 77\n")
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    top = tap.makeService(options, reactor=Clock())
    try:
        lifecycle = top.getServiceNamed("applications")
        assert lifecycle.pool.maxPersistentPerHost == 77
        assert [type(app).__name__ for app in lifecycle.applications.values()] == ["GatewayApplication"]
    finally:
        top.getServiceNamed("rtmp").stopService()


def test_the_shared_pool_bounds_response_heads_as_the_most_generous_gateway_allows(tmp_path):
    from twisted.internet.task import Clock
    from fmspy_gateway import tap
    from fmspy_gateway.bridge.http11 import DEFAULT_MAX_HEAD_BYTES
    (tmp_path / "routes.cfg").write_text("[shop]\n* = *\n[blog]\n* = *\n")
    path = tmp_path / "fmspy.cfg"
    path.write_text("[RTMP]\nport = 0\ninterface = 127.0.0.1\n"
                    "[GatewayApplication:shop]\nenabled = yes\nname = shop\nendpoint = http://127.0.0.1:1/rpc\n"
                    "max-response-head-bytes = 2K\n"
                    "[GatewayApplication:blog]\nenabled = yes\nname = blog\nendpoint = http://127.0.0.1:1/rpc\n"
                    "max-response-head-bytes = 200K\n")
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    top = tap.makeService(options, reactor=Clock())
    try:
        assert top.getServiceNamed("applications").pool.max_head_bytes == 200 * 1024 != DEFAULT_MAX_HEAD_BYTES
    finally:
        top.getServiceNamed("rtmp").stopService()
