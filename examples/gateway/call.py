"""Call the gateway walkthrough's routes with our RTMP client; run it with the virtual environment's Python.

    .venv/bin/python examples/gateway/call.py [rtmp://127.0.0.1/shop/lobby]

(the system's python3 has neither Twisted nor fmspy_gateway).
"""
import sys

from twisted.internet import task
from twisted.internet.defer import ensureDeferred

from fmspy_gateway.server.client import connect_client

URL = sys.argv[1] if len(sys.argv) > 1 else "rtmp://127.0.0.1/shop/lobby"


async def main(reactor):
    # AMF3 (objectEncoding 3), as Flash AS3 connects: the typed object and ByteArray arrive as such.
    nc = await connect_client(URL, "let-me-in", "alice", object_encoding=3, reactor=reactor)
    print(nc.connect_info["application"])    # {'welcome': 'Hello, alice'}: from the @connect hook
    user = await nc.call("getUser", 42)       # -> users.get; typed com.example.User with a Date and a ByteArray
    print(user.alias, user["created"])
    print(await nc.call("cart.add", "apple")) # {'apple': 1}
    try:
        await nc.call("divide", 1, 0)         # a JSON-RPC error becomes _error
    except Exception as e:
        print(e.description, e.info["application"])
    await nc.close()

task.react(lambda reactor: ensureDeferred(main(reactor)))
