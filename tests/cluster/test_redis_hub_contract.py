"""The hub contract (tests/app/hub_contract.py) against RedisHub: two nodes on one real redis-server."""
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.app.hub_contract import HubContract
from tests.cluster.hubs import settle, start_hub
from tests.cluster.redis_server import redis_for


class RedisHubContractTests(HubContract, TestCase):
    @inlineCallbacks
    def make_hubs(self):
        server = redis_for(self)
        hub = yield start_hub(self, server, "node-a")
        other = yield start_hub(self, server, "node-b")
        return hub, other

    def settle(self):
        return settle(self.hub, self.other)
