"""Every Redis key and pub/sub channel name of the cluster, in one place (docs/ARCHITECTURE.md, "Cluster").

Application, room, stream, node and client names are arbitrary text, and a
name with a ``:`` in it must not be able to stand for another key (app
``a:b`` room ``c`` against app ``a`` room ``b:c``), so each name part is
escaped (``%`` -> ``%25``, ``:`` -> ``%3A``) before it is joined.  Keys are
only ever built here, never parsed: what a script needs to find from a
record (a client's room key, say) is stored in the record.
"""
from dataclasses import dataclass

#: What every key and channel starts with; one Redis may hold other data beside the cluster.
DEFAULT_PREFIX = "fmspy"


def escape(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")


@dataclass(frozen=True)
class Layout:
    """Key and channel names under ``prefix``."""

    prefix: str = DEFAULT_PREFIX

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- nodes ----------------------------------------------------------------------------
    @property
    def nodes(self) -> str:
        """HASH node name -> its ``node`` key, for every node that registered (one whose key is gone is swept)."""
        return self._key("nodes")

    def node(self, node: str) -> str:
        """STRING: the node's advertise URL, with a TTL of three heartbeats (the node is alive while it exists)."""
        return self._key("node", escape(node))

    def node_clients(self, node: str) -> str:
        """SET of the client keys of the node's clients (what to forget when the node is gone)."""
        return self._key("node", escape(node), "clients")

    def node_streams(self, node: str) -> str:
        """SET of the stream keys the node published."""
        return self._key("node", escape(node), "streams")

    def inbox(self, node: str) -> str:
        """Channel: requests to the node (call, disconnect) and answers to it (results, broadcast counts)."""
        return self._key("inbox", escape(node))

    # -- clients and rooms ------------------------------------------------------------------
    @property
    def sequence(self) -> str:
        """Counter: the order clients entered in (scores of the sorted sets below)."""
        return self._key("sequence")

    def client(self, client_id: str) -> str:
        """HASH: ``info`` (ClientInfo.to_dict as JSON), ``id``, ``node``, ``name`` (its room), ``default``,
        and the keys of the sets it is in (``room``, ``app``, ``rooms``: what a script removes it from)."""
        return self._key("client", escape(client_id))

    def application_clients(self, application: str) -> str:
        """ZSET: the client keys of the application's clients, scored by entry order."""
        return self._key("app", escape(application), "clients")

    def application_rooms(self, application: str) -> str:
        """HASH: room name -> room key, for every room of the application (default rooms once used)."""
        return self._key("app", escape(application), "rooms")

    def room(self, application: str, name: str) -> str:
        """ZSET: the client keys of the room's members, scored by entry order (gone with its last member)."""
        return self._key("room", escape(application), escape(name))

    def room_channel(self, application: str, name: str) -> str:
        """Channel: the room's broadcasts; subscribed by each node while it has members in the room."""
        return self._key("room", escape(application), escape(name))

    # -- live streams -----------------------------------------------------------------------
    def stream(self, application: str, name: str) -> str:
        """HASH ``node``, ``client``, ``streams`` (that node's stream set): who publishes the stream, with a
        TTL of three heartbeats refreshed by the node's heartbeat."""
        return self._key("stream", escape(application), escape(name))

    @property
    def streams_channel(self) -> str:
        """Channel: "announced" envelopes, one per stream name claimed, which every node subscribes to (so that
        players waiting on another node for that name start pulling it)."""
        return self._key("streams")

    # -- remote shared objects (cluster/redis_shared_objects.py) ---------------------------------
    def shared_object(self, scope: str, name: str) -> str:
        """HASH slot -> the slot's value (base64 of its AMF0 encoding): the object's state; Redis is its authority."""
        return self._key("so", escape(scope), escape(name))

    def shared_object_meta(self, scope: str, name: str) -> str:
        """HASH ``persistent``, ``version``, ``seq`` (every batch), ``size``, and the keys a script reaches from it
        (``data``, ``sizes``, ``listeners``, ``used``, ``name``)."""
        return self._key("so", escape(scope), escape(name), "meta")

    def shared_object_sizes(self, scope: str, name: str) -> str:
        """HASH slot -> its encoded size (what ``maxSharedObjectBytes`` counts)."""
        return self._key("so", escape(scope), escape(name), "sizes")

    def shared_object_listeners(self, scope: str, name: str) -> str:
        """HASH listener id -> the node it listens on; a transient object goes when this empties."""
        return self._key("so", escape(scope), escape(name), "listeners")

    def shared_object_channel(self, scope: str, name: str) -> str:
        """Channel: every applied batch of the object (JSON), subscribed by each node with listeners of it."""
        return self._key("so", escape(scope), escape(name))

    def shared_objects_used(self, scope: str) -> str:
        """SET of the names of the scope's objects with a listener anywhere (what ``maxSharedObjects`` counts)."""
        return self._key("so-used", escape(scope))

    def node_shared_objects(self, node: str) -> str:
        """SET of the meta keys of the objects the node has listeners of (what to forget when it restarts)."""
        return self._key("node", escape(node), "so")
