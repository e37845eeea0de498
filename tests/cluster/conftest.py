"""The ``redis_server`` fixture for the cluster tests (tests/cluster/redis_server.py)."""
from tests.cluster.redis_server import redis_server  # noqa: F401  (a fixture pytest finds by name)
