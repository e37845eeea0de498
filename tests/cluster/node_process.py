"""A cluster node in a process of its own, for the tests that kill one (``python -m tests.cluster.node_process``).

``URL NODE HEARTBEAT``: starts a RedisHub, connects one client (id
``<NODE>-client``) to chat/lobby, publishes live/cam, prints "ready" and
runs until it is killed.
"""
import sys

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from tests.cluster.hubs import client_of
from fmspy_gateway.cluster import RedisHub


@inlineCallbacks
def main(url, node, heartbeat):
    hub = RedisHub(url, node, heartbeat=float(heartbeat), advertise=f"rtmp://127.0.0.1:1/{node}", reactor=reactor)
    yield hub.start()
    client = yield client_of(hub, "lobby")
    yield hub.announce("live", "cam", client.id)
    print("ready", client.id, flush=True)


if __name__ == "__main__":
    reactor.callWhenRunning(lambda: main(*sys.argv[1:4]).addErrback(lambda f: (print(f), reactor.stop())))
    reactor.run()
