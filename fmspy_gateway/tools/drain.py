"""``fmspy-gateway drain``: ask a running node to drain, through its push API (``POST /rpc``, method ``drain``).

What the node then does is ``server/drain.py``'s: it stops accepting
connections, asks the clients that declared Enhanced RTMP's Reconnect to
move (to ``--target``; without one, to another live node of the cluster, or
else to the URL they used), and closes every connection still open after the
grace period.  The push API's token is read from the
environment (``FMSPY_PUSH_TOKEN``), not the command line, where any user of
the machine could read it in the process list.  One line on stdout says
what the node did; a node that cannot be reached or refuses is one line on
stderr and status 1.
"""
import json
import urllib.error
import urllib.request
from typing import Optional

TOKEN_VARIABLE = "FMSPY_PUSH_TOKEN"
#: Seconds to wait for the node's answer (it answers once its clients were asked, not after the grace).
TIMEOUT = 30.0


class DrainFailed(Exception):
    """``str()`` is the one line to print."""


def request_body(grace: Optional[float], target: Optional[str]) -> bytes:
    params = {}
    if grace is not None:
        params["grace"] = grace
    if target:
        params["target"] = target
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "drain", "params": params}).encode()


def drain(url: str, token: str, grace: Optional[float] = None, target: Optional[str] = None,
          timeout: float = TIMEOUT) -> dict:
    """The node's answer (``asked``, ``toClose``, ``grace``, ``target``, ``started``), or DrainFailed."""
    endpoint = url.rstrip("/") + "/rpc"
    if not endpoint.startswith(("http://", "https://")):
        raise DrainFailed(f"{url}: expected the node's HTTP address, http://host:port")
    request = urllib.request.Request(endpoint, data=request_body(grace, target), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as e:
        if e.code == 401:
            raise DrainFailed(f"{endpoint}: refused (HTTP 401): set {TOKEN_VARIABLE} to the node's [HTTP] "
                              "push-token") from None
        raise DrainFailed(f"{endpoint}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DrainFailed(f"{endpoint}: cannot reach the node ({e.reason}); is its [HTTP] port right?") from None
    except (OSError, ValueError) as e:
        raise DrainFailed(f"{endpoint}: no JSON-RPC answer ({e})") from None
    if not isinstance(answer, dict) or "result" not in answer:
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        raise DrainFailed(f"{endpoint}: {error.get('message', 'not a JSON-RPC answer')}")
    return answer["result"]


def describe(result: dict) -> str:
    """The one line the tool prints."""
    if not result.get("started", True):
        return "the node was already draining: nothing changed"
    where = result.get("target") or "the URL they used"
    return (f"draining: {result['asked']} client(s) asked to reconnect to {where}; every connection still "
            f"open ({result['toClose']} cannot be asked) closes in {result['grace']:g} s")
