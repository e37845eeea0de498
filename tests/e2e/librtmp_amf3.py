"""Run by Debian's python3 (python3-librtmp): send raw type-17 (AMF3 command) messages through librtmp.

argv: URL, then the hex of each message body.  librtmp carries the bytes as
they are (it has no AMF3 encoder: nothing of ours touches them).  Prints one
JSON object: for each body sent, the type and hex body of the server's
answer (the first command message that comes back).
"""
import json
import struct
import sys

import librtmp
from librtmp.packet import PACKET_SIZE_MEDIUM, PACKET_TYPE_FLEX_MESSAGE, PACKET_TYPE_INVOKE, RTMPPacket



def transaction_id(packet):
    """The AMF0 number after the command name (the test's calls use 100 and up), or -1."""
    body = packet.body[1:] if packet.type == PACKET_TYPE_FLEX_MESSAGE else packet.body
    if body[:1] != b"\x02":
        return -1
    at = 3 + int.from_bytes(body[1:3], "big")
    return struct.unpack(">d", body[at + 1:at + 9])[0] if body[at:at + 1] == b"\x00" else -1


conn = librtmp.RTMP(sys.argv[1], live=True)
conn.connect()
answers = []
for body in sys.argv[2:]:
    conn.send_packet(RTMPPacket(type=PACKET_TYPE_FLEX_MESSAGE, format=PACKET_SIZE_MEDIUM, channel=3,
                                body=bytes.fromhex(body)))
    while True:
        packet = conn.read_packet()
        if packet.type in (PACKET_TYPE_INVOKE, PACKET_TYPE_FLEX_MESSAGE) and transaction_id(packet) >= 100:
            answers.append({"type": packet.type, "body": packet.body.hex()})
            break
        if packet.type <= 6:
            # Set Chunk Size, window and bandwidth: librtmp must see these to read on.  Not the connect's
            # _result: handled, it makes librtmp create a stream and play it (here: nothing, then a close).
            conn.handle_packet(packet)
conn.close()
print(json.dumps(answers))
