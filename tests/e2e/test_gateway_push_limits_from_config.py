"""README, "Push API" and the [HTTP] options: ``push-max-call-timeout`` written in fmspy.cfg is the bound
the push API applies (not only its 300 s default), through the gateway as twistd builds it."""
import json
import os
import shutil
import tempfile

import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway import tap

TOKEN = "s3cret"


class PushLimitsFromConfigTests(TestCase):
    @inlineCallbacks
    def setUp(self):
        folder = tempfile.mkdtemp(prefix="fmspy-gateway-push-")
        self.addCleanup(shutil.rmtree, folder, True)
        config = os.path.join(folder, "fmspy.cfg")
        with open(config, "w") as f:
            f.write(f"[RTMP]\nport = 0\ninterface = 127.0.0.1\n[HTTP]\nenabled = yes\nport = 0\n"
                    f"push-token = {TOKEN}\npush-max-call-timeout = 5\n")
        options = tap.Options()
        options.parseOptions(["--config", config])
        self.service = tap.makeService(options, reactor=reactor)
        yield self.service.startService()
        self.addCleanup(self.service.stopService)
        self.http_port = self.service.getServiceNamed("http").args[0]

    @inlineCallbacks
    def answer(self, timeout):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "call",
                           "params": {"client": "nobody", "method": "m", "timeout": timeout}}).encode()
        response = yield treq.post(f"http://127.0.0.1:{self.http_port}/rpc", body, reactor=reactor,
                                   headers={"Authorization": [f"Bearer {TOKEN}"]}, persistent=False)
        self.assertEqual(response.code, 200)
        return (yield response.json())["error"]

    @inlineCallbacks
    def test_the_configured_maximum_call_timeout_is_the_bound(self):
        error = yield self.answer(6)
        self.assertEqual(error["code"], -32602)
        self.assertIn("is more than the maximum of 5 s (push-max-call-timeout)", error["message"])
        error = yield self.answer(5)
        self.assertEqual((error["code"], error["message"]), (-32001, "no client 'nobody'"))   # within the bound
