"""librtmp (Debian's python3-librtmp) against the gateway of the example setup and its real backend process."""
import json
import os

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from ..conftest import require_system_librtmp
from .gateway import GatewayMixin

HERE = os.path.dirname(os.path.abspath(__file__))


class LibrtmpGatewayTests(GatewayMixin, TestCase):
    @inlineCallbacks
    def run_librtmp(self, *args):
        python = require_system_librtmp()
        out, err, code = yield getProcessOutputAndValue(
            python, [os.path.join(HERE, "librtmp_gateway.py"), self.url("lobby"), *args], env=dict(os.environ),
            reactor=reactor)
        return out, err.decode(errors="replace"), code

    @inlineCallbacks
    def test_librtmp_calls_the_backend_through_the_gateway(self):
        out, err, code = yield self.run_librtmp("let-me-in", "libby")
        self.assertEqual(code, 0, err)
        replies = json.loads(out)

        name, info = replies["connect"]
        self.assertEqual((name, info["code"]), ("_result", "NetConnection.Connect.Success"))
        self.assertEqual(info["application"], {"welcome": "Hello, libby"})     # from the backend's @connect

        self.assertEqual(replies["divide"], ["_result", 2.0])

        name, who = replies["whoami"]
        self.assertEqual(name, "_result")
        self.assertEqual((who["application"], who["room"], who["session"]), ("shop", "lobby", {"user": "libby"}))
        self.assertTrue(who["address"].startswith("127.0.0.1:"), who)
        self.assertEqual(len(who["client"]), 16)

        name, info = replies["divide_by_zero"]
        self.assertEqual(name, "_error")
        self.assertEqual((info["level"], info["code"], info["description"]),
                         ("error", "NetConnection.Call.Failed", "division by zero"))
        self.assertEqual(info["application"], {"code": 1001.0, "message": "division by zero", "data": {"a": 1.0}})

    @inlineCallbacks
    def test_librtmp_without_the_token_is_rejected(self):
        out, err, code = yield self.run_librtmp("wrong-token", "mallory")
        self.assertNotEqual(code, 0)
        self.assertIn("connect refused", err)
        self.assertIn("A valid token is required.", err)
