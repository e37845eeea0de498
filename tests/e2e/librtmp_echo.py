"""Run by Debian's python3 (python3-librtmp): connect with librtmp and call echo.

Prints one JSON object: the decoded results of scalar echoes (librtmp's own
decoder), and, for compound values librtmp's Python layer cannot decode, the
raw reply bodies as hex so the test can compare them byte for byte.
"""
import json
import sys

import librtmp
from librtmp.amf import encode_amf
from librtmp.packet import PACKET_SIZE_MEDIUM, PACKET_TYPE_INVOKE, RTMPPacket

url = sys.argv[1]
with open(sys.argv[2]) as f:
    raw_values = [bytes.fromhex(v) for v in json.load(f)]

conn = librtmp.RTMP(url, live=True)
conn.connect()
scalars = [conn.call("echo", v).result(timeout=10) for v in ["hello", "", 42.5, -1.0, True, False, None]]

raw_replies = []
for number, value in enumerate(raw_values, start=100):
    body = encode_amf("echo") + encode_amf(float(number)) + b"\x05" + value
    conn.send_packet(RTMPPacket(type=PACKET_TYPE_INVOKE, format=PACKET_SIZE_MEDIUM, channel=3, body=body))
    while True:
        packet = conn.read_packet()
        if packet.type == PACKET_TYPE_INVOKE:
            raw_replies.append(packet.body.hex())
            break
conn.close()
print(json.dumps({"scalars": scalars, "raw": raw_replies}))
