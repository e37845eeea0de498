"""Run by Debian's python3 (python3-librtmp): call the example gateway's methods with librtmp.

    python3 librtmp_gateway.py rtmp://127.0.0.1:PORT/shop/lobby TOKEN USER

Connects with two connect arguments (librtmp's ``conn`` options: the token the
example backend's @connect wants, then the user name), calls ``divide(6, 3)``,
``whoami()`` and ``divide(1, 0)``, and reads packets itself until all three
are answered: librtmp's ``RTMPCall.result`` never returns for an ``_error``.
Prints one JSON object with the connect reply and each call's reply
(``[name, value]``), decoded by librtmp's own AMF decoder.  Exits non-zero
(the reason on stderr) if connect is refused or anything is unexpected.
"""
import json
import sys
from urllib.parse import urlsplit

import librtmp
from librtmp.amf import decode_amf
from librtmp.packet import PACKET_TYPE_INVOKE

url, token, user = sys.argv[1:4]
# librtmp would read rtmp://host/shop/lobby as app "shop", play path "lobby": name the app outright.
conn = librtmp.RTMP(url, app=urlsplit(url).path.lstrip("/"), connect_data=[token, user], live=True, timeout=10)
conn.connect()


def next_invoke():
    """The next command or call from the server; other packets go to librtmp."""
    while True:
        packet = conn.read_packet()
        if packet.type == PACKET_TYPE_INVOKE:
            name, transaction_id, _, *args = decode_amf(packet.body)
            return name, transaction_id, args[0] if args else None
        conn.handle_packet(packet)     # chunk size, window size, pings: librtmp's business


# Wait for connect's answer before calling: when the server refuses, it closes the connection, and bytes
# we sent meanwhile would make the kernel reset it, losing the refusal on its way to us.
connect = None
while connect is None:
    name, transaction_id, value = next_invoke()
    if transaction_id == 1 and name in ("_result", "_error"):
        connect = [name, value]
if connect[0] == "_error":
    sys.exit(f"connect refused: {connect[1]}")

calls = {conn.call("divide", 6, 3).transaction_id: "divide",
         conn.call("whoami").transaction_id: "whoami",
         conn.call("divide", 1, 0).transaction_id: "divide_by_zero"}
replies = {}
while len(replies) < len(calls):
    name, transaction_id, value = next_invoke()
    if name in ("_result", "_error"):
        if transaction_id not in calls:
            sys.exit(f"{name} for a transaction we never used: {transaction_id} {value}")
        replies[calls[transaction_id]] = [name, value]
    # anything else (onStatus, onBWDone) is not ours to answer
conn.close()
print(json.dumps({"connect": connect, **replies}))
