"""Tests of the RTMP handshake: our client against our server, every input fed
whole, one byte at a time and with trailing chunk bytes; digests checked by
recomputing them here from the constants in docs/PROTOCOL.md ("Handshake"),
not from the module's."""
import base64
import hashlib
import hmac
import random

import pytest
from hypothesis import given, settings, strategies as st

from fmspy_gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError
from fmspy_gateway.rtmp.handshake import ClientHandshake, ServerHandshake

# Typed from docs/PROTOCOL.md section 2 ("Handshake"), deliberately not imported from the code under test.
KEY_TAIL = bytes.fromhex(
    "F0 EE C2 4A 80 68 BE E8 2E 00 D0 D1 02 9E 7E 57 6E EC 5D 2D 29 80 6F AB 93 B8 E6 36 CF EB 31 AE")
CLIENT_KEY = b"Genuine Adobe Flash Player 001"
SERVER_KEY = b"Genuine Adobe Flash Media Server 001"
FULL_CLIENT_KEY = CLIENT_KEY + KEY_TAIL
FULL_SERVER_KEY = SERVER_KEY + KEY_TAIL
SIZE = 1536
SCHEME_BASES = {0: 8, 1: 772}

# C0+C1 as ffmpeg 5.1 sends it to rtmp://host/app/stream (digest scheme 0, version
# 9.0.124.2).  ffmpeg seeds its C1 generator with a constant, so this is the same
# on every run; captured from a loopback socket.
FFMPEG_C0_C1 = base64.b64decode(
    "AwAAAAAJAHwC93hVHs6rjh42LwfFhopwsmbUAiDlCGEYoi42l9X8K2Mpwi7nx8mwtbNF36g5j+o7"
    "yHkgihBoQlqhF0y1cljP6+JNpC7E/52hnHtAbxjJW/3QTuSLb4MyFKR7i/aOsFJU4lrpqai0lsVJ"
    "b26c18aMtrzIQWnmfz43L/4YbahROGLFr961oSGKhguszdhpslPbq4oO+1mkjEQgmYdeVbdP0Hob"
    "aa8wPgmYc8t34tnixHQesfUGp/Cylir5H1BRyJCjIJlPTIs2oB+pwPFfS3z3tsOBfaYJGGEdOwL/"
    "fMlAOJN1N9M4LkFr1XV3g035yvdINSFQzpLQ27QOhx/DZOGLfjVp45h2wa4Mt5/216sy+fARhpyN"
    "pBke9G08G8a3LYOBLyJD0XUqQSYy1mogdfXTAvRc3yuYuAK3mAXcSDfYTt7RzELLp+7DE3v4bdCy"
    "1/Yk1SGj/2Vbzw30EBNB0jDpRlFijkWnq/gYMQHOmB5ehqb67Fx5qn7HGB6kWe2WbgyTKm+eS/VU"
    "q3sckFzeBU7UDS+4m7/GV1LljP3k8qBNw60eXvT8ZNV7BxwUFGpFH2oEMVbSiA9ZV9eN/T/yuID2"
    "JKxw8nCU83c06vGST2asPWSK4jKTBUSkQgtl7tRpb39Q/gX8lIUWZQv7m2X5U9hI40VpZdDXa2J6"
    "hONendq9i0Pw+truRYzfWevXc5IuCuUH1eZAkukOxn7YQ56PIhx1Op+SFvHLhbUQe8fMfE+yw+7R"
    "r8cJsZL1DeacH/ylZQ77Ujtfq1mXysS371ryv1lz5ik7rh/B2kmb5VFQd95N2z9/vNdBcRxit9gD"
    "uNBUz1eBgnFNHERb1pK6G4OaCecmb8hdqo+tQz2rvSBs3h6lcXcMa/p5VsJm7oQ16wHKpvWDwNg8"
    "M+788/l9uRe9spn4qJ+4hgqxzWRMHoLM4TI6nredJfXcVwtwtAuyAGF0M1PQU27Nq9gvInd1YijL"
    "VP5pMsTJvRMNK/xwC/XYXaaUbpb4Lgr9jpwgz+q/mmoYm7F7vvU50dnnPulm/LXWvb+YRE3oZb4W"
    "BeNAh7NM3wTjr/Vb1BN8Ui0uPHvyY02zJrIqR023+KCVKrNRDeVVOWwYo3ioOQtzv/d3L7J2D6V4"
    "ajsEWcRaHRsN/0y7tl2g7TTzIRbDwswrlYJREbz7skbBUFqgDJcNBtdsyVDONosiDbIEh8ugK7H8"
    "VLNlZ7QpE9a4hQYs13lWAdMaSo5tVkZ/pcUhYmdv1SYSJRPD5H8ubZ1qGcT4eVQxqUztA5Ih0nrG"
    "inp3DpMFJSJxRZtx0FUFxJd7cOloUSCLrNzffmgrOEiECIDx/sKjL7FAaGK8g8rYmt9ynzum/9P+"
    "gI6EA+fGoPbc2jIRiY9vFlBbB4zHi4DbYA3tLyAPJf9dyzHTLL4gVri9wxCRYxq70qwo1h/jJIDs"
    "UDW7818XM5Pw1Zoh0jALLbS1nqpj/+D5PWXcAoUWkF8iqcff84fE63jGMA5+u7KmZjz75amXfK9X"
    "ZLo/CrpX205gUeCuxuBbG9qmSal4de28QLzEIUu3/vcnMNQ2isvT4Qq0x2QqHFP5PKJtucdmVVvi"
    "b9/w4qchQluVdisLd2/T4+sXMT1TEpyfNAA8maUZaoxqrLbWS1HdmLJ8W1mnC9lBoboDAPt0TPxJ"
    "nZl+bZM5LSinZ9EW37wsuetAVA0R6zBK2TIjhv3Fl9VdPRxnvFTfNUea+xnqLNIE3TMe+0nB4XL2"
    "u4n79YIH3K5sEvinWYvvHocsDDXyK0wp3xD5uxrdOuuIerX7OMA2uING92HELyld/gtDfftPMKcS"
    "dqt9QJzkJJY/nrtPH0flKxh4byebWocib2aYHdbQrRH0mvMQVf9pcQ/aNFfEt4UtsuOTbQd4v4ef"
    "FzStOiT/sa6VhHYLnLBFKlO6CWL/4vYFr1KDC9IRpUiIlMwLBSJVBIcRzRmFEKnpQ7+Lg5GYRV+9"
    "QQcwBdMDmQuI2bY2VtQ8/sjtg3SPSw8PxRICFnlLIqBU5bxYq9jEEJYHCIQ5NFPOUJaUr76r4A=="
)


def seeded(seed):
    """A deterministic stand-in for os.urandom."""
    rng = random.Random(seed)
    return rng.randbytes


def hmac_sha256(key, message):
    return hmac.new(key, message, hashlib.sha256).digest()


def digest_offset(packet, scheme):
    base = SCHEME_BASES[scheme]
    return sum(packet[base:base + 4]) % 728 + base + 4


def stored_and_computed(packet, scheme, key):
    """(digest found at the scheme's offset, HMAC of the packet without it)."""
    offset = digest_offset(packet, scheme)
    return packet[offset:offset + 32], hmac_sha256(key, packet[:offset] + packet[offset + 32:])


def valid_schemes(packet, key):
    return [s for s in (0, 1) if len(set(stored_and_computed(packet, s, key))) == 1]


def signature_valid(packet, peer_digest, full_key):
    """The S2 / C2 rule: last 32 bytes = HMAC(HMAC(full key, peer digest), first 1504)."""
    return packet[-32:] == hmac_sha256(hmac_sha256(full_key, peer_digest), packet[:-32])


def feed(handshake, data, split):
    """Feed ``data`` whole or one byte at a time, as the connection does: once the
    handshake is complete, ``leftover`` and every later byte go to the chunk layer.

    Returns (what the handshake queued meanwhile, what the chunk layer got).
    """
    out = chunk_layer = b""
    pieces = [data] if split == "whole" else [data[i:i + 1] for i in range(len(data))]
    for piece in pieces:
        if handshake.complete:
            chunk_layer += piece
            continue
        handshake.receive_data(piece)
        out += handshake.data_to_send()
        if handshake.complete:
            chunk_layer += handshake.leftover
    return out, chunk_layer


class Exchange:
    """One whole handshake, run as two connections would run it."""

    def __init__(self, client, server, split="whole", after_c2=b"", after_s2=b""):
        self.c0c1 = client.data_to_send()
        self.s0s1s2, nothing = feed(server, self.c0c1, split)
        assert nothing == b""
        self.c2, self.client_chunk_layer = feed(client, self.s0s1s2 + after_s2, split)
        queued, self.server_chunk_layer = feed(server, self.c2 + after_c2, split)
        assert queued == b"" and client.data_to_send() == b""
        self.c1 = self.c0c1[1:]
        self.s1, self.s2 = self.s0s1s2[1:1 + SIZE], self.s0s1s2[1 + SIZE:]

    @property
    def wire(self):
        return self.c0c1, self.s0s1s2, self.c2


MODES = {
    "simple": dict(digest=False),
    "scheme0": dict(digest=True, digest_scheme=0),
    "scheme1": dict(digest=True, digest_scheme=1),
}
AFTER_C2 = bytes.fromhex("030000000000c3140000000002000763") + b"onnect..."  # start of a connect
AFTER_S2 = bytes.fromhex("02000000000004050000000000989680")                   # Window Ack Size


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("split", ["whole", "bytewise"])
@pytest.mark.parametrize("trailing", [False, True], ids=["exact", "trailing"])
def test_client_against_server(mode, split, trailing):
    client = ClientHandshake(random_bytes=seeded(1), epoch=1000, **MODES[mode])
    server = ServerHandshake(random_bytes=seeded(2), epoch=2000)
    after_c2, after_s2 = (AFTER_C2, AFTER_S2) if trailing else (b"", b"")
    run = Exchange(client, server, split, after_c2, after_s2)
    assert [len(packets) for packets in run.wire] == [1 + SIZE, 1 + 2 * SIZE, SIZE]
    assert client.complete and server.complete
    assert run.server_chunk_layer == after_c2  # nothing lost, nothing doubled
    assert run.client_chunk_layer == after_s2
    if split == "whole":
        assert (server.leftover, client.leftover) == (after_c2, after_s2)
    else:
        assert (server.leftover, client.leftover) == (b"", b"")
    if mode == "simple":
        assert server.digest_scheme is None
        assert client.server_digest_valid is None
    else:
        assert server.digest_scheme == MODES[mode]["digest_scheme"]
        assert client.server_digest_valid is True


def test_simple_handshake_packets():
    client = ClientHandshake(random_bytes=seeded(1), epoch=1000, digest=False)
    server = ServerHandshake(random_bytes=seeded(2), epoch=2000)
    run = Exchange(client, server)
    c1, s1, s2, c2 = run.c1, run.s1, run.s2, run.c2
    assert run.c0c1[0] == 3 and run.s0s1s2[0] == 3
    assert c1[:8] == (1000).to_bytes(4, "big") + bytes(4)
    assert s1[:8] == (2000).to_bytes(4, "big") + bytes(4)
    # S2 is C1 verbatim: librtmp compares S2 with its whole C1; ffmpeg's own
    # server sends C1's time, zero, C1's random, which is the same bytes here.
    assert s2 == c1
    assert c2 == s1


@pytest.mark.parametrize("scheme", [0, 1])
def test_digest_packets_validate_against_design_constants(scheme):
    version = bytes((5, 0, 3, 1))
    client = ClientHandshake(random_bytes=seeded(3), epoch=7, digest_scheme=scheme)
    server = ServerHandshake(random_bytes=seeded(4), epoch=9, version=version)
    run = Exchange(client, server)
    c1, s1, s2, c2 = run.c1, run.s1, run.s2, run.c2

    assert c1[:8] == (7).to_bytes(4, "big") + bytes((10, 0, 32, 18))
    assert valid_schemes(c1, CLIENT_KEY) == [scheme]
    client_digest = stored_and_computed(c1, scheme, CLIENT_KEY)[0]

    assert s1[:8] == (9).to_bytes(4, "big") + version
    assert valid_schemes(s1, SERVER_KEY) == [scheme]  # answered in the client's scheme
    assert valid_schemes(s1, CLIENT_KEY) == []
    server_digest = stored_and_computed(s1, scheme, SERVER_KEY)[0]

    assert signature_valid(s2, client_digest, FULL_SERVER_KEY)
    assert not signature_valid(s2, client_digest, SERVER_KEY)
    assert signature_valid(c2, server_digest, FULL_CLIENT_KEY)


@pytest.mark.parametrize("scheme", [0, 1])
@pytest.mark.parametrize("fill", [0x00, 0xB5, 0xB6, 0xFF], ids=lambda f: f"sum{4 * f}")
def test_digest_offsets_across_the_modulus(scheme, fill):
    # The four bytes that place a digest sum to 0..1020; the modulus 728 only
    # shows for sums of 728 and more, which random packets rarely give.
    constant = lambda n: bytes((fill,)) * n  # noqa: E731
    client = ClientHandshake(random_bytes=constant, digest_scheme=scheme)
    server = ServerHandshake(random_bytes=constant)
    run = Exchange(client, server)
    base = SCHEME_BASES[scheme]
    assert sum(run.c1[base:base + 4]) == sum(run.s1[base:base + 4]) == 4 * fill
    assert valid_schemes(run.c1, CLIENT_KEY) == [scheme]
    assert valid_schemes(run.s1, SERVER_KEY) == [scheme]
    assert server.digest_scheme == scheme and client.server_digest_valid


def test_server_recognises_a_real_ffmpeg_c1():
    assert valid_schemes(FFMPEG_C0_C1[1:], CLIENT_KEY) == [0]
    client_digest = stored_and_computed(FFMPEG_C0_C1[1:], 0, CLIENT_KEY)[0]
    server = ServerHandshake(random_bytes=seeded(5))
    server.receive_data(FFMPEG_C0_C1)
    s0s1s2 = server.data_to_send()
    assert server.digest_scheme == 0
    s1, s2 = s0s1s2[1:1 + SIZE], s0s1s2[1 + SIZE:]
    assert s1[4] >= 3  # ffmpeg checks the server digests only then
    assert valid_schemes(s1, SERVER_KEY) == [0]
    assert signature_valid(s2, client_digest, FULL_SERVER_KEY)


@pytest.mark.parametrize("mode", MODES)
def test_server_takes_the_whole_client_stream_in_one_call(mode):
    client = ClientHandshake(random_bytes=seeded(1), **MODES[mode])
    run = Exchange(client, ServerHandshake(random_bytes=seeded(2)))
    server = ServerHandshake(random_bytes=seeded(2))
    server.receive_data(run.c0c1 + run.c2 + AFTER_C2)
    assert server.complete
    assert server.leftover == AFTER_C2
    assert len(server.data_to_send()) == 1 + 2 * SIZE


@pytest.mark.parametrize("mode", MODES)
def test_each_packet_is_answered_on_its_last_byte(mode):
    client = ClientHandshake(random_bytes=seeded(1), **MODES[mode])
    server = ServerHandshake(random_bytes=seeded(2))
    c0c1 = client.data_to_send()
    for byte in c0c1[:-1]:
        server.receive_data(bytes((byte,)))
        assert server.data_to_send() == b""
    server.receive_data(c0c1[-1:])
    s0s1s2 = server.data_to_send()
    assert len(s0s1s2) == 1 + 2 * SIZE

    s0s1, s2 = s0s1s2[:1 + SIZE], s0s1s2[1 + SIZE:]
    client.receive_data(s0s1[:-1])
    assert client.data_to_send() == b""
    client.receive_data(s0s1[-1:])
    c2 = client.data_to_send()  # C2 goes out after S1, as librtmp does
    assert len(c2) == SIZE
    client.receive_data(s2[:-1])
    assert not client.complete
    client.receive_data(s2[-1:])
    assert client.complete and client.leftover == b""

    server.receive_data(c2[:-1])
    assert not server.complete
    server.receive_data(c2[-1:])
    assert server.complete and server.leftover == b""


@given(st.sampled_from(sorted(MODES)), st.data())
@settings(max_examples=50, deadline=None)
def test_any_fragmentation(mode, data):
    def pieces(stream):
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
        bounds = [0] + cuts + [len(stream)]
        return [stream[a:b] for a, b in zip(bounds, bounds[1:])]

    def run(handshake, stream):
        out = chunk_layer = b""
        for piece in pieces(stream):
            if handshake.complete:
                chunk_layer += piece
            else:
                handshake.receive_data(piece)
                out += handshake.data_to_send()
                chunk_layer += handshake.leftover
        return out, chunk_layer

    client = ClientHandshake(random_bytes=seeded(1), **MODES[mode])
    server = ServerHandshake(random_bytes=seeded(2))
    s0s1s2, _ = run(server, client.data_to_send())
    c2, client_chunk_layer = run(client, s0s1s2 + AFTER_S2)
    _, server_chunk_layer = run(server, c2 + AFTER_C2)
    assert client.complete and server.complete
    assert (client_chunk_layer, server_chunk_layer) == (AFTER_S2, AFTER_C2)
    assert client.server_digest_valid is (None if mode == "simple" else True)


@pytest.mark.parametrize("first, words", [
    (6, ["RTMPE", "version 6", "not supported"]),
    (8, ["RTMPE", "version 8", "not supported"]),
    (ord("G"), ["0x47", "HTTP"]),
    (ord("P"), ["0x50", "HTTP"]),
    (0x16, ["0x16", "TLS"]),
    (0, ["0x00", "version 3"]),
    (0xFF, ["0xff", "version 3"]),
])
def test_server_refuses_other_versions(first, words):
    server = ServerHandshake(random_bytes=seeded(1))
    with pytest.raises(RemoteProtocolError) as caught:
        server.receive_data(bytes((first,)) + bytes(15))  # refused on the first byte
    for word in words:
        assert word in caught.value.reason
    assert server.data_to_send() == b""
    assert not server.complete
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"\x03")


def test_server_refuses_an_http_request():
    server = ServerHandshake()
    with pytest.raises(RemoteProtocolError, match="HTTP request"):
        server.receive_data(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")


def test_client_refuses_a_server_version():
    client = ClientHandshake(random_bytes=seeded(1))
    client.data_to_send()
    with pytest.raises(RemoteProtocolError, match="RTMPE"):
        client.receive_data(b"\x06")


def c1_with_version_but_bad_digest(seed):
    """A C1 claiming a Flash Player version whose digest validates in neither scheme."""
    client = ClientHandshake(random_bytes=seeded(seed), digest_scheme=0)
    c0c1 = bytearray(client.data_to_send())
    offset = 1 + digest_offset(c0c1[1:], 0)
    c0c1[offset] ^= 0x01
    assert valid_schemes(bytes(c0c1[1:]), CLIENT_KEY) == []
    return bytes(c0c1)


@pytest.mark.parametrize("c0c1", [
    c1_with_version_but_bad_digest(11),
    b"\x03" + bytes(4) + bytes((9, 0, 124, 2)) + random.Random(12).randbytes(SIZE - 8),
], ids=["flipped-digest-byte", "no-digest-at-all"])
def test_c1_with_invalid_digest_falls_back_to_simple(c0c1):
    server = ServerHandshake(random_bytes=seeded(2), epoch=5)
    server.receive_data(c0c1)
    out = server.data_to_send()
    s1, s2 = out[1:1 + SIZE], out[1 + SIZE:]
    assert server.digest_scheme is None
    assert s1[4:8] == bytes(4)  # tells the client: no server digest here
    assert valid_schemes(s1, SERVER_KEY) == []
    assert s2 == c0c1[1:]
    server.receive_data(s1)  # a C2 echoing S1, as librtmp sends
    assert server.complete


def test_server_does_not_check_c2_contents():
    client = ClientHandshake(random_bytes=seeded(1))
    server = ServerHandshake(random_bytes=seeded(2))
    server.receive_data(client.data_to_send())
    server.receive_data(bytes(SIZE))
    assert server.complete and server.digest_scheme == 0


@pytest.mark.parametrize("mode", MODES)
def test_output_is_a_function_of_the_injected_randomness(mode):
    runs = []
    for client_seed, server_seed in [(1, 2), (1, 2), (3, 2), (1, 4)]:
        client = ClientHandshake(random_bytes=seeded(client_seed), epoch=1, **MODES[mode])
        server = ServerHandshake(random_bytes=seeded(server_seed), epoch=2)
        runs.append(Exchange(client, server).wire)
    assert runs[0] == runs[1]
    assert runs[2][0] != runs[0][0]  # another client seed: another C1
    assert runs[3][1] != runs[0][1]  # another server seed: another S1


def test_digest_client_rejects_a_forged_server_digest():
    client = ClientHandshake(random_bytes=seeded(1))
    server = ServerHandshake(random_bytes=seeded(2))
    server.receive_data(client.data_to_send())
    out = bytearray(server.data_to_send())
    s1 = bytes(out[1:1 + SIZE])
    out[1 + digest_offset(s1, 0)] ^= 0xFF
    with pytest.raises(RemoteProtocolError, match="S1"):
        client.receive_data(bytes(out))
    assert not client.complete and client.data_to_send() == b""


def test_digest_client_rejects_a_forged_s2_signature():
    client = ClientHandshake(random_bytes=seeded(1))
    server = ServerHandshake(random_bytes=seeded(2))
    server.receive_data(client.data_to_send())
    out = bytearray(server.data_to_send())
    out[-1] ^= 0xFF
    with pytest.raises(RemoteProtocolError, match="S2"):
        client.receive_data(bytes(out))
    assert client.server_digest_valid is None


def test_digest_client_accepts_a_server_that_declines_the_digest():
    client = ClientHandshake(random_bytes=seeded(1))
    c1 = client.data_to_send()[1:]
    s1 = (42).to_bytes(4, "big") + bytes(4) + random.Random(2).randbytes(SIZE - 8)
    client.receive_data(b"\x03" + s1 + c1 + AFTER_S2)
    assert client.complete and client.leftover == AFTER_S2
    assert client.server_digest_valid is False
    assert client.data_to_send() == s1


@pytest.mark.parametrize("side", [ServerHandshake, ClientHandshake])
def test_feeding_a_completed_handshake_is_our_bug(side):
    client = ClientHandshake(random_bytes=seeded(1))
    server = ServerHandshake(random_bytes=seeded(2))
    Exchange(client, server)
    handshake = server if side is ServerHandshake else client
    with pytest.raises(LocalProtocolError):
        handshake.receive_data(b"\x03")


def test_epoch_is_the_time_field_and_wraps():
    client = ClientHandshake(random_bytes=seeded(1), epoch=2**32 + 5, digest=False)
    assert client.data_to_send()[1:5] == (5).to_bytes(4, "big")


def test_misuse_is_refused_at_construction():
    with pytest.raises(ValueError):
        ServerHandshake(version=b"\x01\x02\x03")
    with pytest.raises(ValueError):
        ServerHandshake(version=bytes(4))
    with pytest.raises(ValueError):
        ClientHandshake(digest_scheme=2)
    with pytest.raises(LocalProtocolError):
        ClientHandshake(random_bytes=lambda n: b"short")
