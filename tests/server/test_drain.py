"""server/drain.py and the push API's ``drain`` method, on a Clock, with stand-ins for the factory's connections.

What a client sees (the ReconnectRequest, the refused connection, the close
after the grace) is tested end to end in tests/e2e/test_drain.py.
"""
import json

from treq.testing import StubTreq
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.bridge.push import PushAPI, PushResource
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.server.drain import Drain, DrainError, another_node

TOKEN = "s3cret"


class FakeSession:
    def __init__(self, reconnect):
        self.reconnect = reconnect
        self.asked = []

    def request_reconnect(self, description, target=None):
        if self.reconnect:
            self.asked.append((description, target))
        return self.reconnect


class FakeProtocol:
    def __init__(self, session):
        self.session = session


class FakeFactory:
    def __init__(self, protocols):
        self.connections = set(protocols)
        self.draining = False
        self.closed_because = []

    def close_all(self, reason):
        self.closed_because.append(reason)


class FakeListener:
    stopped = 0

    def stopService(self):
        self.stopped += 1


class DrainTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.movable, self.legacy = FakeSession(True), FakeSession(False)
        # A connection still in its handshake has no client: it cannot be asked either.
        self.factory = FakeFactory([FakeProtocol(self.movable), FakeProtocol(self.legacy), FakeProtocol(None)])
        self.listeners = [FakeListener(), FakeListener()]
        self.drain = Drain(self.factory, self.listeners, grace=30, clock=self.clock)

    def test_stops_accepting_asks_who_can_and_closes_the_rest_after_the_grace(self):
        started = self.successResultOf(self.drain.start(target="rtmp://other:1935"))
        self.assertEqual(started.to_dict(), {"asked": 1, "toClose": 2, "grace": 30, "target": "rtmp://other:1935",
                                             "started": True})
        self.assertTrue(self.factory.draining)
        self.assertEqual([listener.stopped for listener in self.listeners], [1, 1])
        self.assertEqual(len(self.movable.asked), 1)
        self.assertEqual(self.movable.asked[0][1], "rtmp://other:1935")
        self.clock.advance(29.9)
        self.assertEqual(self.factory.closed_because, [])
        self.clock.advance(0.1)
        self.assertEqual(self.factory.closed_because, ["server drained"])

    def test_the_request_may_set_the_grace(self):
        self.assertEqual(self.successResultOf(self.drain.start(grace=0)).grace, 0)
        self.clock.advance(0)
        self.assertEqual(self.factory.closed_because, ["server drained"])

    def test_a_second_drain_changes_nothing(self):
        self.successResultOf(self.drain.start())
        again = self.successResultOf(self.drain.start(grace=1, target="rtmp://elsewhere"))
        self.assertEqual((again.started, again.asked, again.grace, again.target), (False, 1, 30, None))
        self.assertEqual(len(self.movable.asked), 1)
        self.assertEqual([listener.stopped for listener in self.listeners], [1, 1])
        self.clock.advance(30)
        self.assertEqual(self.factory.closed_because, ["server drained"])

    def test_the_target_comes_from_the_finder_unless_the_request_names_one(self):
        drain = Drain(self.factory, [], grace=5, find_target=lambda: fail(RuntimeError("registry down")),
                      clock=self.clock)
        with self.assertLogs("fmspy_gateway.server.drain", "WARNING") as logged:
            started = self.successResultOf(drain.start())
        self.assertIsNone(started.target)
        self.assertEqual(self.movable.asked[0][1], None)
        self.assertIn("registry down", logged.output[0])

    def test_another_live_node_is_the_target_the_first_by_name_never_this_one(self):
        hub = LocalHub("node-b", advertise="rtmp://10.0.0.2:1935")
        self.assertIsNone(self.successResultOf(another_node(hub)()), "a node alone has nowhere to send them")
        hub.nodes = lambda: succeed({"node-b": "rtmp://10.0.0.2:1935", "node-d": "rtmp://10.0.0.4:1935",
                                     "node-a": None, "node-c": "rtmp://10.0.0.3:1935"})
        drain = Drain(self.factory, [], grace=5, find_target=another_node(hub), clock=self.clock)
        self.assertEqual(self.successResultOf(drain.start()).target, "rtmp://10.0.0.3:1935")
        self.assertEqual(self.movable.asked[0][1], "rtmp://10.0.0.3:1935")

    def test_a_grace_out_of_range_is_refused_before_anything_happens(self):
        for grace in (-1, float("nan"), float("inf"), 86401, "5"):
            self.assertRaises(DrainError, self.drain.start, grace=grace)
        self.assertFalse(self.factory.draining)
        self.assertEqual(self.movable.asked, [])


class PushDrainTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.factory = FakeFactory([FakeProtocol(FakeSession(True))])
        self.drain = Drain(self.factory, [], grace=30, clock=self.clock)

    def rpc(self, params, drain=True):
        api = PushAPI({}, hub=object(), drain=self.drain if drain else None)
        stub = StubTreq(PushResource(api, TOKEN))
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "drain", "params": params}).encode()
        response = self.successResultOf(stub.post("http://gateway.test/rpc", body, headers={
            "Content-Type": ["application/json"], "Authorization": [f"Bearer {TOKEN}"]}))
        return json.loads(self.successResultOf(response.content()))

    def test_drain_answers_what_it_did(self):
        answer = self.rpc({"grace": 2.5, "target": "rtmp://10.0.0.2:1935"})
        self.assertEqual(answer["result"], {"asked": 1, "toClose": 0, "grace": 2.5, "target": "rtmp://10.0.0.2:1935",
                                            "started": True})
        self.assertTrue(self.factory.draining)

    def test_bad_parameters_are_invalid_params_and_drain_nothing(self):
        for params in ({"grace": -1}, {"grace": "soon"}, {"target": "http://x"}, {"target": "rtmp://x/app"},
                       {"grace": 1e9}, {"when": 1}):
            answer = self.rpc(params)
            self.assertEqual(answer["error"]["code"], -32602, params)
        self.assertFalse(self.factory.draining)

    def test_a_server_without_drain_says_so(self):
        answer = self.rpc({}, drain=False)
        self.assertEqual(answer["error"], {"code": -32001, "message": "drain is not available on this server"})
