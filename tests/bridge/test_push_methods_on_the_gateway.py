"""README, Push API methods, against a real GatewayApplication and RTMP client (no fakes on the app side):

- ``broadcast(app, room, method, args)`` answers the number of clients reached, ``room`` "" being the
  default room (a client that connected to rtmp://host/shop, no room);
- ``clients(app[, room])`` answers ``[{id, address, room, agent, connectedAt}]``;
- ``rooms(app)`` answers ``[{name, clients}]``;
- ``disconnect(client, reason)`` answers ``true`` and the client is gone.
"""
import json

from treq.testing import StubTreq

from fmspy_gateway.bridge.push import PushAPI, PushResource

from .test_application import GatewayTestCase

TOKEN = "s3cret"


class PushMethodTests(GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.push_stub = StubTreq(PushResource(PushAPI({"shop": self.app}), TOKEN))
        self.client.send_command("connect", 1, {"app": "shop", "flashVer": "WIN 32,0,0,465",
                                                "tcUrl": "rtmp://h/shop"}, ())
        (reply,) = self.pump()
        self.assertEqual(reply.arguments[0]["code"], "NetConnection.Connect.Success")
        self.me = self.successResultOf(self.app.clients())[0]

    def push(self, method, params):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
        d = self.push_stub.post("http://gateway.test/rpc", body, headers={"Authorization": [f"Bearer {TOKEN}"]})
        self.push_stub.flush()
        response = self.successResultOf(d)
        answer = json.loads(self.successResultOf(response.content()))
        self.assertEqual(response.code, 200)
        return answer.get("result", answer.get("error"))

    def test_broadcast_to_the_default_room(self):
        self.assertEqual(self.push("broadcast", ["shop", "", "news", ["sale"]]), 1)
        (news,) = self.pump()
        self.assertEqual((news.name, news.arguments), ("news", ("sale",)))
        self.assertEqual(self.push("broadcast", ["shop", "lobby", "news", ["sale"]]), 0)
        self.assertEqual(self.pump(), [])

    def test_clients_and_rooms_list_what_the_readme_says(self):
        expected = [{"id": self.me.id, "address": "192.0.2.7:40001", "room": "", "agent": "WIN 32,0,0,465",
                     "connectedAt": self.me.connected_at}]
        self.assertEqual(self.push("clients", ["shop"]), expected)
        self.assertEqual(self.push("clients", {"app": "shop", "room": ""}), expected)
        self.assertEqual(self.push("clients", {"app": "shop", "room": "lobby"}), [])
        self.assertEqual(self.push("rooms", ["shop"]), [{"name": "", "clients": 1}])

    def test_disconnect_answers_true_and_the_client_is_gone(self):
        self.assertIs(self.push("disconnect", [self.me.id, "bye"]), True)
        self.pump()
        self.assertIsNotNone(self.peer.closed_because)      # the server hung up on it
        self.assertIn("bye", self.peer.closed_because)

