"""The operations API across nodes: node A's /api/v1/ finds and disconnects a client connected to node B.

Two ``twistd -n fmspy-gateway`` nodes on one real redis-server, started as
tests/e2e/test_cluster.py starts them (its ``setUp`` and helpers, reused).
``GET`` and ``DELETE /api/v1/clients/<id>`` go through the hub
(``hub.locate``, ``hub.disconnect``), so they work whichever node holds the
client; what a client on a socket sees is the proof.
"""
import jsonschema
import referencing
import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway.server.client import connect_client

from . import test_cluster as cluster
from .test_cluster import ADMIN_TOKEN, WAIT, wait_for


class OperationsAcrossNodesTests(TestCase):
    timeout = 180

    # Two nodes and a Redis of the test's own, exactly as the cluster tests have them.
    # (Through the module: a ClusterTests name here would make pytest run those tests a second time.)
    setUp = cluster.ClusterTests.setUp
    _stop_tools = cluster.ClusterTests._stop_tools
    client_id = cluster.ClusterTests.client_id
    describe = cluster.ClusterTests.describe

    @inlineCallbacks
    def api(self, node, path, method="GET"):
        """(HTTP code, decoded JSON) of one operations API request to ``node``."""
        response = yield treq.request(method, f"http://127.0.0.1:{node.http_port}/api/v1/{path}", reactor=reactor,
                                      headers={"Authorization": [f"Bearer {ADMIN_TOKEN}"]}, persistent=False)
        return response.code, (yield response.json())

    @inlineCallbacks
    def check_client_schema(self, node, answer):
        code, openapi = yield self.api(node, "openapi.json")
        resource = referencing.Resource.from_contents(openapi,
                                                      default_specification=referencing.jsonschema.DRAFT202012)
        registry = referencing.Registry().with_resource("urn:openapi", resource)
        validator = jsonschema.Draft202012Validator({"$ref": "urn:openapi#/components/schemas/Client"},
                                                    registry=registry)
        self.assertEqual([e.message for e in validator.iter_errors(answer)], [], answer)

    @inlineCallbacks
    def test_node_a_describes_and_disconnects_a_client_of_node_b(self):
        client = yield connect_client(self.b.url("chat/lobby"), reactor=reactor)
        self.addCleanup(lambda: client.close() if client.connected else None)
        client_id = yield self.client_id(self.a, "chat")

        code, far = yield self.api(self.a, f"clients/{client_id}")
        self.assertEqual(code, 200, self.describe())
        self.assertEqual((far["id"], far["node"], far["app"], far["room"]), (client_id, "node-b", "chat", "lobby"))
        self.assertTrue(far["address"].startswith("127.0.0.1:"))
        self.assertEqual((far["transport"], far["bytes_in"], far["bits_out_per_second"]), (None, None, None))
        yield self.check_client_schema(self.a, far)
        code, near = yield self.api(self.b, f"clients/{client_id}")     # its own node knows its connection
        self.assertEqual((code, near["node"], near["transport"]), (200, "node-b", "rtmp"))
        self.assertGreater(near["bytes_in"], 1536)
        # This node's list holds only this node's clients; the client on B is not in A's page.
        code, page = yield self.api(self.a, "clients?app=chat")
        self.assertEqual((code, page["total"]), (200, 0))

        self.assertFalse(client.closed.called)
        code, answer = yield self.api(self.a, f"clients/{client_id}", method="DELETE")
        self.assertEqual((code, answer), (200, {"disconnected": client_id}), self.describe())
        yield client.closed.addTimeout(WAIT, reactor)                  # node B closed its connection
        yield wait_for("the client gone from the cluster", lambda: self.api(self.a, f"clients/{client_id}")
                       .addCallback(lambda answer: answer[0] == 404))
        code, _ = yield self.api(self.a, f"clients/{client_id}", method="DELETE")
        self.assertEqual(code, 404)

    @inlineCallbacks
    def test_metrics_say_the_hub_is_redis(self):
        response = yield treq.get(f"http://127.0.0.1:{self.a.http_port}/metrics", reactor=reactor, persistent=False,
                                  headers={"Authorization": [f"Bearer {ADMIN_TOKEN}"]})
        body = (yield response.text()).splitlines()
        self.assertEqual(response.code, 200)
        self.assertIn('fmspy_hub_up{kind="redis"} 1.0', body, self.describe())
