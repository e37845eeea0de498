"""The operations API and /metrics over a hub that answers later (tests/app/late_hub.py), through StubTreq.

A Redis-backed hub answers after a round trip; every endpoint that reads it
must wait (NOT_DONE_YET), a client on another node must be found and
disconnected through the hub, and a hub that fails must give a JSON error
(/metrics: ``fmspy_hub_up 0``), never a stack trace or a hung request.
"""
import json

import jsonschema
import referencing
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from treq.testing import StubTreq

from fmspy_gateway.app.application import Application
from fmspy_gateway.app.hub import ClientInfo, LocalHub
from fmspy_gateway.app.session import Session
from fmspy_gateway.server import api
from fmspy_gateway.server.ops import ServerStatus

from ..app.late_hub import LateHub
from ..app.test_live import FakePeer

TOKEN = "t0ken"
BASE = "http://ops.test"
#: A client the hub knows on another node (no handle here).
FAR = ClientInfo(id="far1", application="chat", address="10.0.0.9:4000", room="lobby", node="node-b",
                 agent="WIN 32,0,0,1", connected_at=1.0)


class _Factory:
    """What ServerStatus reads of the server factory: its open connections."""

    def __init__(self):
        self.connections = set()


class LateHubAPITests(SynchronousTestCase):
    def setUp(self):
        self.hub = LateHub()
        self.chat = Application("chat", hub=self.hub)
        self.status = ServerStatus(_Factory(), {"chat": self.chat}, clock=Clock(), node="node-a")
        self.root = Resource()
        api.install(self.root, self.status, TOKEN, clock=Clock(), status_dir="/nonexistent")
        self.stub = StubTreq(self.root)
        self.disconnected = []
        inner = self.hub.inner
        # The inner LocalHub also knows FAR, a client of node-b: found and disconnected through the hub only.
        inner.locate = lambda client_id, real=inner.locate: succeed(FAR) if client_id == FAR.id else real(client_id)
        inner.disconnect = lambda client_id, reason="", real=inner.disconnect: (
            self.disconnected.append((client_id, reason)) or succeed(True) if client_id == FAR.id
            else real(client_id, reason))

    def connect(self, room="lobby"):
        peer = FakePeer()
        session = Session({"chat": self.chat}, peer, clock=Clock())
        peer.client.send_command("connect", 1, {"app": f"chat/{room}", "flashVer": "TEST 1,0,0,0"}, [])
        for event in peer.connection.receive_data(peer.client.data_to_send()):
            session.handle(event)
        self.hub.answer_all()
        return session

    def request(self, path, method="GET", token=TOKEN):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        d = self.stub.request(method, f"{BASE}{path}", headers=headers)
        self.stub.flush()
        return d

    def answered(self, d):
        """(code, decoded body) of a request the hub has been let answer."""
        self.hub.answer_all()
        self.stub.flush()
        response = self.successResultOf(d)
        body = self.successResultOf(response.content())
        return response.code, json.loads(body)

    def validator(self, name):
        openapi = api.OPENAPI
        resource = referencing.Resource.from_contents(openapi,
                                                      default_specification=referencing.jsonschema.DRAFT202012)
        registry = referencing.Registry().with_resource("urn:openapi", resource)
        return jsonschema.Draft202012Validator({"$ref": f"urn:openapi#/components/schemas/{name}"},
                                               registry=registry)

    def test_every_endpoint_that_reads_the_hub_waits_for_its_answer(self):
        me = self.connect().client.id
        for path in ("/api/v1/summary", "/api/v1/applications", "/api/v1/rooms", "/api/v1/clients",
                     f"/api/v1/clients/{me}"):
            d = self.request(path)
            self.assertNoResult(d)
            self.assertTrue(self.hub.pending(), path)
            code, answer = self.answered(d)
            self.assertEqual(code, 200, (path, answer))
            if path.endswith("summary"):
                self.assertEqual(answer["clients"], 1)
            elif path.endswith("applications"):
                self.assertEqual([(a["name"], a["clients"], a["rooms"]) for a in answer], [("chat", 1, 1)])
            elif path.endswith("rooms"):
                self.assertEqual(answer, [{"app": "chat", "name": "lobby", "default": False, "clients": 1}])
            elif path.endswith("clients"):
                self.assertEqual([c["id"] for c in answer["clients"]], [me])
            else:
                self.assertEqual((answer["id"], answer["node"], answer["transport"]), (me, "node-a", "rtmp"))
                self.assertEqual(list(self.validator("Client").iter_errors(answer)), [])

    def test_a_client_on_another_node_is_found_through_the_hub(self):
        code, answer = self.answered(self.request(f"/api/v1/clients/{FAR.id}"))
        self.assertEqual(code, 200)
        self.assertEqual((answer["id"], answer["node"], answer["address"], answer["room"], answer["agent"]),
                         (FAR.id, "node-b", FAR.address, "lobby", FAR.agent))
        self.assertEqual((answer["transport"], answer["bytes_in"], answer["streams"]), (None, None, []))
        self.assertEqual(list(self.validator("Client").iter_errors(answer)), [])
        self.assertEqual(self.answered(self.request("/api/v1/clients/nobody"))[0], 404)

    def test_delete_disconnects_through_the_hub_on_any_node(self):
        d = self.request(f"/api/v1/clients/{FAR.id}", method="DELETE")
        self.assertNoResult(d)
        self.assertEqual(self.answered(d), (200, {"disconnected": FAR.id}))
        self.assertEqual(self.disconnected, [(FAR.id, "disconnected by an administrator")])
        session = self.connect()
        me = session.client.id
        self.assertEqual(self.answered(self.request(f"/api/v1/clients/{me}", method="DELETE")),
                         (200, {"disconnected": me}))
        self.assertEqual(session.peer.closed_because, "disconnected by an administrator")
        self.assertEqual(self.answered(self.request("/api/v1/clients/nobody", method="DELETE"))[0], 404)

    def test_a_failing_hub_is_a_json_503_and_one_log_line(self):
        for path in ("/api/v1/summary", "/api/v1/applications", "/api/v1/rooms", "/api/v1/clients",
                     "/api/v1/clients/x"):
            d = self.request(path)
            while self.hub.waiting:
                self.hub.fail_next()
            self.stub.flush()
            response = self.successResultOf(d)
            body = self.successResultOf(response.content())
            self.assertEqual(response.code, 503, path)
            self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/json"])
            self.assertIn("hub did not answer", json.loads(body)["error"])
            self.assertNotIn(b"Traceback", body)
            self.assertNotIn(b"HubUnavailable", body)
        resource = self.root.children[b"api"].children[b"v1"]
        self.assertEqual(resource.limit_log.counts, {"hub": 5})

    def test_metrics_wait_for_the_hub_and_survive_its_failure(self):
        self.connect()
        d = self.request("/metrics")
        self.assertNoResult(d)
        self.hub.answer_all()
        self.stub.flush()
        body = self.successResultOf(self.successResultOf(d).content()).decode()
        self.assertIn('fmspy_clients{app="chat"} 1.0', body)
        self.assertIn('fmspy_hub_up{kind="local"} 1.0', body)
        d = self.request("/metrics")
        self.hub.fail_next()
        self.hub.answer_all()
        self.stub.flush()
        response = self.successResultOf(d)
        body = self.successResultOf(response.content()).decode()
        self.assertEqual(response.code, 200)
        self.assertIn('fmspy_hub_up{kind="local"} 0.0', body)
        self.assertNotIn("fmspy_clients{", body)
        self.assertIn("fmspy_connections 0.0", body)        # what the process knows without the hub

    def test_a_request_gone_before_the_answer_is_left_alone(self):
        request = DummyRequest([b"summary"])
        request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {TOKEN}".encode()])
        resource = self.root.children[b"api"].children[b"v1"]
        self.assertEqual(resource.render(request), NOT_DONE_YET)
        request.processingFailed(Failure(ConnectionDone("the client went away")))
        self.hub.answer_all()
        self.assertEqual((request.written, request.finished), ([], 0))

    def test_a_local_hub_answers_at_once(self):
        """With the embedded hub nothing waits: the answer is written within render."""
        self.status.applications["chat"].hub = LocalHub()
        request = DummyRequest([b"applications"])
        request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {TOKEN}".encode()])
        self.root.children[b"api"].children[b"v1"].render(request)
        self.assertEqual(request.finished, 1)
        self.assertEqual(json.loads(b"".join(request.written))[0]["name"], "chat")
