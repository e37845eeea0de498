"""/api/v1/, its OpenAPI description and /metrics against a running server with real clients.

ffmpeg publishes H.264/AAC, our client calls the gateway (a real backend, and
a gateway whose backend is down), and every answer is checked against the
OpenAPI description the server itself serves, then for plausible values.
"""
import jsonschema
import referencing
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from fmspy_gateway.server.client import connect_client

from .operations import HEIGHT, RATE, WIDTH, OperationsMixin


def validator(openapi, name):
    """A JSON Schema 2020-12 validator for one of the document's components (OpenAPI 3.1 schemas are that)."""
    resource = referencing.Resource.from_contents(openapi, default_specification=referencing.jsonschema.DRAFT202012)
    registry = referencing.Registry().with_resource("urn:openapi", resource)
    return jsonschema.Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{name}"}, registry=registry)


class OperationsAPITests(OperationsMixin, TestCase):
    timeout = 90

    @inlineCallbacks
    def connect(self, path="shop/lobby", *args, **params):
        nc = yield connect_client(self.rtmp_url(path), *args, reactor=reactor, **params)
        self.addCleanup(lambda: nc.transport.loseConnection() or nc.closed)
        return nc

    @inlineCallbacks
    def check(self, openapi, path, schema, array=False):
        code, answer = yield self.api(path)
        self.assertEqual(code, 200, answer)
        check = validator(openapi, schema)
        for item in (answer if array else [answer]):
            errors = [e.message for e in check.iter_errors(item)]
            self.assertEqual(errors, [], f"{path}: {item}")
        return answer

    @inlineCallbacks
    def test_every_answer_matches_the_description_and_the_traffic(self):
        code, openapi = yield self.api("openapi.json", token=None)   # readable without the token
        self.assertEqual(code, 200)
        self.assertEqual(openapi["openapi"], "3.1.0")
        # Every path it describes is requested below and its answer checked against its schema.
        self.assertEqual(set(openapi["paths"]), {f"/api/v1/{p}" for p in (
            "summary", "applications", "rooms", "clients", "clients/{id}", "streams", "gateway")})
        alice = yield self.connect("shop/lobby", "let-me-in", "alice", pageUrl="http://example.com/page",
                                   swfUrl="http://example.com/app.swf")
        user = yield alice.call("getUser", 42)
        self.assertEqual(user["id"], 42)
        with self.assertRaises(Exception):
            yield alice.call("divide", 1, 0)            # a JSON-RPC error: backend-error, route still healthy
        bob = yield self.connect("broken/room1", "let-me-in", "bob")
        with self.assertRaises(Exception):
            yield bob.call("whoami")                    # refused: the backend is down
        stream = yield self.live_stream()

        summary = yield self.check(openapi, "summary", "Summary")
        self.assertGreaterEqual(summary["connections"], 3)            # alice, bob, ffmpeg
        self.assertGreaterEqual(summary["connections_accepted"], summary["connections"])
        self.assertEqual(summary["clients"], 3)
        self.assertGreater(summary["bytes_in"], 10000)
        self.assertGreater(summary["bits_in_per_second"], 0)
        self.assertGreater(summary["memory_bytes"], 1 << 20)
        self.assertIn(summary["amf_codec"].split()[0], ("cpyamf", "pyamf"))
        yield deferLater(reactor, 2.5, lambda: None)     # one more sample: bytes grow
        later = yield self.check(openapi, "summary", "Summary")
        self.assertGreater(later["bytes_in"], summary["bytes_in"])
        self.assertGreater(later["uptime_seconds"], summary["uptime_seconds"])

        apps = yield self.check(openapi, "applications", "Application", array=True)
        by_name = {a["name"]: a for a in apps}
        self.assertEqual(set(by_name), {"live", "shop", "broken"})
        self.assertEqual((by_name["shop"]["clients"], by_name["shop"]["gateway"]), (1, True))
        self.assertEqual(by_name["live"]["streams"], 1)

        rooms = yield self.check(openapi, "rooms", "Room", array=True)
        self.assertIn({"app": "shop", "name": "lobby", "default": False, "clients": 1}, rooms)
        self.assertIn({"app": "broken", "name": "room1", "default": False, "clients": 1}, rooms)
        code, only_shop = yield self.api("rooms?app=shop")
        self.assertEqual({r["app"] for r in only_shop}, {"shop"})

        page = yield self.check(openapi, "clients", "ClientPage")
        self.assertEqual(page["total"], 3)
        clients = {c["app"]: c for c in page["clients"]}
        mine = clients["shop"]
        self.assertEqual((mine["room"], mine["page_url"], mine["swf_url"], mine["object_encoding"]),
                         ("lobby", "http://example.com/page", "http://example.com/app.swf", 0))
        self.assertTrue(mine["address"].startswith("127.0.0.1:"))
        self.assertEqual(mine["transport"], "rtmp")
        self.assertGreater(mine["bytes_in"], 1536)                   # handshake and more
        self.assertGreater(mine["bytes_out"], 3072)
        publisher = clients["live"]
        self.assertIn("FMLE", publisher["agent"])                    # ffmpeg's flashVer
        self.assertEqual(publisher["streams"], [{"app": "live", "name": "cam", "type": "publish"}])
        self.assertGreater(publisher["bytes_in"], 20000)
        self.assertGreater(publisher["bits_in_per_second"], 50000)      # sampled: it publishes
        self.assertGreater(mine["bits_in_per_second"], 0)                # the others: average since connect
        first = yield self.api("clients?start=0&count=1")
        second = yield self.api("clients?start=1&count=5")
        self.assertEqual((first[1]["count"], second[1]["count"], second[1]["total"]), (1, 2, 3))
        self.assertNotIn(first[1]["clients"][0]["id"], [c["id"] for c in second[1]["clients"]])
        code, bad = yield self.api("clients?count=many")
        self.assertEqual(code, 400)
        one = yield self.check(openapi, f"clients/{mine['id']}", "Client")
        self.assertEqual(one["id"], mine["id"])
        code, _ = yield self.api("clients/nobody")
        self.assertEqual(code, 404)

        streams = yield self.check(openapi, "streams", "Stream", array=True)
        cam = [s for s in streams if s["name"] == "cam"][0]
        self.assertEqual(cam["publisher"], publisher["id"])
        self.assertEqual((cam["video"]["codec"], cam["video"]["width"], cam["video"]["height"]),
                         ("AVC", WIDTH, HEIGHT))
        self.assertEqual(cam["video"]["frame_rate"], RATE)
        self.assertIn(cam["video"]["profile"], ("Baseline", "Main", "High"))
        self.assertEqual((cam["audio"]["codec"], cam["audio"]["sample_rate"], cam["audio"]["channels"],
                          cam["audio"]["profile"]), ("AAC", 44100, 2, "LC"))
        self.assertGreater(cam["age_seconds"], 0)
        self.assertGreater(stream["bits_in_per_second"], 50000)       # 300 kbit/s video + AAC
        self.assertLess(stream["bits_in_per_second"], 5000000)
        self.assertEqual((cam["players"], cam["recording"]), (0, False))

        gateway = yield self.check(openapi, "gateway", "Gateway", array=True)
        routes = {(g["app"], r["route"]): r for g in gateway for r in g["routes"]}
        get_user = routes[("shop", "getUser")]
        self.assertEqual((get_user["calls"], get_user["ok"], get_user["errors"], get_user["health"]),
                         (1, 1, 0, "ok"))
        self.assertGreater(get_user["latency_p50_ms"], 0)
        divide = routes[("shop", "divide")]
        self.assertEqual((divide["errors_by_kind"], divide["health"]), ({"backend-error": 1}, "ok"))
        self.assertEqual(routes[("shop", "@connect")]["ok"], 1)
        whoami = routes[("broken", "whoami")]
        self.assertEqual((whoami["errors_by_kind"], whoami["health"]), ({"unreachable": 1}, "failing"))
        endpoints = {g["app"]: g["endpoints"] for g in gateway}
        self.assertEqual(endpoints["shop"][0]["circuit"], "closed")

    @inlineCallbacks
    def test_the_token_is_required(self):
        for path in ("summary", "clients", "streams", "gateway", "applications", "rooms"):
            code, answer = yield self.api(path, token=None)
            self.assertEqual(code, 401, path)
            self.assertIn("admin-token", answer["error"])
            code, _ = yield self.api(path, token="wrong")
            self.assertEqual(code, 401, path)
        code, headers, _ = yield self.http("/metrics", token=None)
        self.assertEqual(code, 401)
        self.assertTrue(headers.getRawHeaders(b"www-authenticate")[0].startswith(b"Bearer"))

    @inlineCallbacks
    def test_delete_disconnects_the_client(self):
        alice = yield self.connect("shop/lobby", "let-me-in", "alice")
        code, page = yield self.api("clients?app=shop")
        client_id = page["clients"][0]["id"]
        code, answer = yield self.api(f"clients/{client_id}", token=None, method=b"DELETE")
        self.assertEqual(code, 401)
        self.assertFalse(alice.closed.called)
        code, answer = yield self.api(f"clients/{client_id}", method=b"DELETE")
        self.assertEqual((code, answer), (200, {"disconnected": client_id}))
        yield alice.closed
        code, page = yield self.api("clients?app=shop")
        self.assertEqual(page["total"], 0)
        code, _ = yield self.api(f"clients/{client_id}", method=b"DELETE")
        self.assertEqual(code, 404)

    @inlineCallbacks
    def test_metrics(self):
        alice = yield self.connect("shop/lobby", "let-me-in", "alice")
        yield alice.call("getUser", 7)
        bob = yield self.connect("broken", "let-me-in", "bob")
        with self.assertRaises(Exception):
            yield bob.call("whoami")
        yield self.live_stream()
        code, headers, body = yield self.http("/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        samples = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        self.assertGreaterEqual(samples[("fmspy_connections", ())], 3)
        self.assertGreater(samples[("fmspy_receive_bytes_total", ())], 10000)
        self.assertEqual(samples[("fmspy_clients", (("app", "shop"),))], 1)
        self.assertEqual(samples[("fmspy_streams", (("app", "live"),))], 1)
        self.assertEqual(samples[("fmspy_stream_players", (("app", "live"), ("stream", "cam")))], 0)
        route = (("app", "shop"), ("route", "getUser"))
        self.assertEqual(samples[("fmspy_gateway_calls_total", route)], 1)
        self.assertEqual(samples[("fmspy_gateway_latency_seconds_count", route)], 1)
        self.assertEqual(samples[("fmspy_gateway_latency_seconds_bucket", (("app", "shop"), ("le", "+Inf"), ("route", "getUser")))], 1)
        self.assertEqual(samples[("fmspy_gateway_errors_total", (("app", "broken"), ("kind", "unreachable"),
                                                                 ("route", "whoami")))], 1)
        breaker = [v for (name, labels), v in samples.items() if name == "fmspy_gateway_circuit_state"]
        self.assertEqual(set(breaker), {0})
        self.assertEqual(samples[("fmspy_hub_up", (("kind", "local"),))], 1)
        self.assertIn(("fmspy_build_info", ()), [(n, ()) for (n, _) in samples])


class OpenWithoutTokenTests(OperationsMixin, TestCase):
    """No admin-token: reads are open (the site is on loopback), disconnecting is refused."""

    http_options = ""
    publish = False
    timeout = 60

    @inlineCallbacks
    def test_reads_open_delete_refused(self):
        nc = yield connect_client(self.rtmp_url("shop/lobby"), "let-me-in", "carol", reactor=reactor)
        self.addCleanup(lambda: nc.transport.loseConnection() or nc.closed)
        code, page = yield self.api("clients", token=None)
        self.assertEqual((code, page["total"]), (200, 1))
        code, answer = yield self.api(f"clients/{page['clients'][0]['id']}", token=None, method=b"DELETE")
        self.assertEqual(code, 403)
        self.assertIn("admin-token", answer["error"])
        self.assertFalse(nc.closed.called)
        code, _, body = yield self.http("/metrics", token=None)
        self.assertEqual(code, 200)
        self.assertIn(b"fmspy_connections 1.0", body)
        code, headers, body = yield self.http("/status/", token=None)
        self.assertEqual(code, 200)
        self.assertIn(b"status.js", body)
        # Nothing but the page's own files may load or run (the browser test proves the page keeps to it).
        self.assertIn(b"default-src 'none'", headers.getRawHeaders(b"content-security-policy")[0])


class LimitFiguresTests(OperationsMixin, TestCase):
    """A connection closed for a limit is counted after it is gone, in the summary and in /metrics."""

    rtmp_options = "maxMessageSize = 64K"
    publish = False
    timeout = 60

    @inlineCallbacks
    def test_a_limit_close_is_counted(self):
        nc = yield connect_client(self.rtmp_url("shop/lobby"), "let-me-in", "dave", reactor=reactor)
        nc.call("cart.add", "x" * 100000).addErrback(lambda _: None)     # a 100 KB message: over the limit
        yield nc.closed
        summary = yield self.wait_for("the closed connection in the summary", lambda: self.api("summary").addCallback(
            lambda answer: answer[1] if answer[1]["connections"] == 0 else None))
        self.assertEqual(summary["closed_by_limit"], {"maxMessageSize": 1})
        code, openapi = yield self.api("openapi.json", token=None)
        self.assertEqual(list(validator(openapi, "Summary").iter_errors(summary)), [])
        code, _, body = yield self.http("/metrics")
        self.assertIn(b'fmspy_connections_closed_by_limit_total{option="maxMessageSize"} 1.0', body)
