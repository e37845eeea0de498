"""Run by Debian's python3 (python3-librtmp): join a chat room with librtmp, identify, say one line.

Reads packets until the server's ``message`` calls for our entering notice
and our own line have arrived, and the answers to identify and say; prints
them as one JSON object.  Exits non-zero (with the reason on stderr) on an
``_error`` or anything unexpected.
"""
import json
import sys
from urllib.parse import urlsplit

import librtmp
from librtmp.amf import decode_amf
from librtmp.packet import PACKET_TYPE_INVOKE

url = sys.argv[1]
# librtmp would read rtmp://host/chat/room1 as app "chat", play path "room1": name the app outright.
conn = librtmp.RTMP(url, app=urlsplit(url).path.lstrip("/"), live=True, timeout=10)
conn.connect()

calls = {conn.call("identify", "lib").transaction_id: "identify",
         conn.call("say", "hello from librtmp").transaction_id: "say"}
messages, results = [], {}
while len(messages) < 2 or len(results) < len(calls):
    packet = conn.read_packet()
    if packet.type != PACKET_TYPE_INVOKE:
        conn.handle_packet(packet)     # chunk size, window size, pings: librtmp's business
        continue
    method, transaction_id, _, *args = decode_amf(packet.body)
    if method == "message":
        messages.append(args[0])
    elif method == "_result" and transaction_id in calls:
        results[calls[transaction_id]] = args[0] if args else None
    elif method == "_error":
        sys.exit(f"{method} for transaction {transaction_id}: {args}")
    # anything else (the connect's _result, onStatus) is not ours to answer
conn.close()
print(json.dumps({"messages": messages, "results": results}))
