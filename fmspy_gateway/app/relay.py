"""Live streams across nodes, as the application server sees them (docs/ARCHITECTURE.md, "Live streams across nodes").

A stream name is published on one node of the cluster (the hub records
where: ``Hub.announce`` / ``find``).  A player on another node gets it
through a *relay*: its own node runs the application's ``on_play``, then
pulls the stream over RTMP from the publishing node and fans it out locally
as if it were published there.  The pull itself needs our RTMP client, which
``app/`` may not import (``rtmp <- app <- server``), so this module holds only
what both ends agree on and the interface the puller implements
(``fmspy_gateway/cluster/relay.py`` ``RelayPuller``):

- the player's side asks ``Relay.pull(application, live, publication)``;
- the origin's side asks ``Relay.accepts(presented)`` whether a connect that
  presents ``RELAY_CREDENTIAL`` comes from a node of the cluster; such a
  session is a *relay session*: no ``on_connect``, no room, no ``on_play``
  (the player's node ran it), and it may only play.
"""
import hmac
from typing import Optional

#: The connect command object's member a relay connection presents the cluster's secret in.
RELAY_CREDENTIAL = "fmspyRelaySecret"


class Relay:
    """The node's relay, as ``app/`` uses it; ``secret`` is [Cluster] secret.

    Applications find it as ``Application.relay`` (``Services.relay``); None
    (one process, no cluster) means a stream published elsewhere is never
    looked for.
    """

    def __init__(self, secret: str):
        #: What this node presents when it pulls, and what it accepts from the nodes pulling from it.
        self.secret = secret

    def accepts(self, presented) -> bool:
        """Whether a connect's ``RELAY_CREDENTIAL`` is this cluster's secret (compared in constant time).

        A wrong guess must not tell how much of it was right: ``hmac.compare_digest``.
        """
        if not isinstance(presented, str) or not self.secret:
            return False
        return hmac.compare_digest(presented.encode("utf-8"), self.secret.encode("utf-8"))

    def pull(self, application, live, publication) -> None:
        """Feed ``live`` (a ``LiveStream`` of ``application`` with no publisher here) from ``publication.node``.

        The puller becomes ``live``'s publisher and ``live.upstream`` at once,
        so that a second player finds the pull already under way; it starts
        pulling after the caller has added its player (a later reactor turn), and it ends
        the stream (``live.stop()``: players get UnpublishNotify and StreamEOF)
        when the origin's publisher or node goes away, or the pull cannot be
        made.  ``live.upstream.drop()`` is called when its last player left.
        """
        raise NotImplementedError


def relay_credential(params) -> Optional[object]:
    """What a connect command object presents as a relay credential, or None (an ordinary client)."""
    return params.get(RELAY_CREDENTIAL) if isinstance(params, dict) else None
