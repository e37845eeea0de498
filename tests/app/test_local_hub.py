"""LocalHub (app/hub.py) against the hub contract (tests/app/hub_contract.py), plus what is LocalHub's own."""
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.hub import LocalHub, Room

from .hub_contract import HubContract


class LocalHubContractTests(HubContract, TestCase):
    """One process is one node: both ends of every test are the same hub."""

    def make_hubs(self):
        hub = LocalHub("node-a")
        return hub, hub


class LocalHubTests(TestCase):
    def test_every_answer_has_fired_already(self):
        # Today's speed: nothing waits on a reactor turn, and a broadcast is one loop over the handles.
        hub = LocalHub()
        for d in (hub.members(Room("chat", "x")), hub.broadcast(Room("chat", "x"), "m", ()), hub.rooms("chat"),
                  hub.locate("nobody"), hub.clients("chat"), hub.find("live", "cam"),
                  hub.announce("live", "cam", "c1"), hub.withdraw("live", "cam", "c1")):
            self.successResultOf(d)

    def test_the_node_defaults_to_host_name_and_pid(self):
        import os
        self.assertTrue(LocalHub().node.endswith(f"-{os.getpid()}"))
        self.assertEqual(LocalHub("edge-1").node, "edge-1")
