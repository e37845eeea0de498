"""Several processes and machines as one server: the hub on Redis (issue 10; docs/ARCHITECTURE.md, "Cluster").

``RedisHub`` (redis_hub.py) implements the hub interface of ``app/hub.py``
over Redis; ``layout.py`` names every key and channel, ``envelope.py``
encodes what travels between nodes, ``scripts.py`` holds the Lua that makes
each cluster decision atomic, ``link.py`` keeps the node's two Redis
connections.  This package may use ``app``, ``rtmp`` and ``server``'s
client; only ``tap.py`` wires it in.
"""
from .redis_hub import BroadcastIncomplete, ClusterUnavailable, NodeGone, RedisHub, RedisUnreachable

__all__ = ["RedisHub", "BroadcastIncomplete", "ClusterUnavailable", "NodeGone", "RedisUnreachable"]
