"""The RTMP handshake (C0/C1/C2 and S0/S1/S2), both sides, as sans-I/O objects.

Owns everything between the first byte of a connection and the first chunk:
version checks, the simple handshake and the Flash Player 9 digest handshake
(HMAC-SHA256 digests at a data-dependent offset, keyed on the "Genuine Adobe"
keys), and handing on whatever arrived after the last handshake packet.
Time and randomness are injected: the caller passes ``epoch`` (the 4-byte time
field, in ms) and ``random_bytes``, so every packet is reproducible in tests.

Packets are fixed-size, so each side is a table of steps, ``state -> (bytes
needed, handler)``; a handler consumes exactly one packet and names the next
state.  Nothing is buffered beyond the packet being waited for: whatever
follows the last packet goes to ``leftover`` for the chunk layer.
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import os
from typing import Callable, Dict, Optional, Tuple

from fmspy_gateway.rtmp.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["ServerHandshake", "ClientHandshake", "PACKET_SIZE", "RTMP_VERSION"]

#: C0/S0: plain RTMP.
RTMP_VERSION = 3
#: C1, S1, C2, S2 are all this long.
PACKET_SIZE = 1536
DIGEST_SIZE = 32

# The 32 bytes both full keys append to their readable part.
_KEY_TAIL = bytes.fromhex(
    "F0EEC24A8068BEE82E00D0D1029E7E576EEC5D2D29806FAB93B8E636CFEB31AE")
_CLIENT_KEY_TEXT = b"Genuine Adobe Flash Player 001"          # 30 bytes: C1's digest
_SERVER_KEY_TEXT = b"Genuine Adobe Flash Media Server 001"    # 36 bytes: S1's digest
_CLIENT_KEY = _CLIENT_KEY_TEXT + _KEY_TAIL                    # 62 bytes: keys C2's signature
_SERVER_KEY = _SERVER_KEY_TEXT + _KEY_TAIL                    # 68 bytes: keys S2's signature

# Where each scheme reads the 4 bytes that place its digest.
_SCHEME_BASES = (8, 772)

# First bytes that are not RTMP at all, with what they most likely are.
_RTMPE_VERSIONS = (6, 8, 9)
_HTTP_FIRST_BYTES = b"GPHOD"  # GET, POST/PUT/PATCH, HEAD, OPTIONS, DELETE
_TLS_HANDSHAKE = 0x16


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


# The four fixed keys, keyed once: an HMAC's copy() starts from the hashed key pads, so a digest
# does not hash them again (per connect: up to four HMACs over a packet, plus S2's signature).
_KEYED = {key: hmac.new(key, digestmod=hashlib.sha256)
          for key in (_CLIENT_KEY_TEXT, _SERVER_KEY_TEXT, _CLIENT_KEY, _SERVER_KEY)}


def _keyed_hmac(key: bytes, *parts) -> bytes:
    """HMAC-SHA256 under one of the fixed keys over ``parts`` in order, without joining them."""
    digest = _KEYED[key].copy()
    for part in parts:
        digest.update(part)
    return digest.digest()


def _digest_offset(packet: bytes, scheme: int) -> int:
    base = _SCHEME_BASES[scheme]
    return sum(packet[base:base + 4]) % 728 + base + 4


def _packet_digest(packet: bytes, offset: int, key: bytes) -> bytes:
    """HMAC over the packet without the 32 bytes the digest itself occupies."""
    view = memoryview(packet)
    return _keyed_hmac(key, view[:offset], view[offset + DIGEST_SIZE:])


def _find_digest(packet: bytes, key: bytes) -> Optional[Tuple[int, bytes]]:
    """``(scheme, digest)`` of the first scheme whose digest validates, else None."""
    for scheme in (0, 1):
        offset = _digest_offset(packet, scheme)
        digest = packet[offset:offset + DIGEST_SIZE]
        if hmac.compare_digest(digest, _packet_digest(packet, offset, key)):
            return scheme, digest
    return None


def _sign(packet: bytearray, scheme: int, key: bytes) -> bytes:
    """Write the packet's digest in place for ``scheme``; return it."""
    offset = _digest_offset(packet, scheme)
    digest = _packet_digest(packet, offset, key)
    packet[offset:offset + DIGEST_SIZE] = digest
    return digest


def _signed_random(random_bytes: Callable[[int], bytes], peer_digest: bytes,
                   key: bytes) -> bytes:
    """S2 / C2 of the digest handshake: random bytes, then a signature keyed on
    the peer's digest, which proves we read the peer's first packet."""
    body = _random(random_bytes, PACKET_SIZE - DIGEST_SIZE)
    return body + _hmac_sha256(_keyed_hmac(key, peer_digest), body)


def _random(random_bytes: Callable[[int], bytes], size: int) -> bytes:
    data = random_bytes(size)
    if len(data) != size:
        raise LocalProtocolError(f"random_bytes({size}) returned {len(data)} bytes")
    return bytes(data)


def _time_field(epoch: int) -> bytes:
    # RTMP timestamps wrap around; so does the handshake's time field.
    return (epoch & 0xFFFFFFFF).to_bytes(4, "big")


def _check_version_field(version: bytes) -> bytes:
    version = bytes(version)
    if len(version) != 4 or version == bytes(4):
        # Zero would tell the peer "simple handshake" while we sign packets.
        raise ValueError(f"version must be 4 bytes, not all zero; got {version!r}")
    return version


def _refusal(first: int, who: str) -> str:
    """One log line saying why the first byte is not an RTMP version we speak."""
    named = f"{who} sent version byte 0x{first:02x}"
    if first in _RTMPE_VERSIONS:
        return (f"{named}: RTMPE (encrypted RTMP, version {first}) is not supported; "
                f"use rtmp:// (or rtmps:// through a TLS terminator)")
    if first in _HTTP_FIRST_BYTES:
        return (f"{named} ({chr(first)!r}): looks like an HTTP request sent to the RTMP "
                f"port; only plain RTMP (version 3) is spoken here")
    if first == _TLS_HANDSHAKE:
        return (f"{named}: looks like a TLS ClientHello (rtmps:// or https://) sent to "
                f"the plain RTMP port; only plain RTMP (version 3) is spoken here")
    return f"{named}: unsupported RTMP version, only version 3 is spoken here"


class _State(enum.Enum):
    AWAIT_C0 = "awaiting C0"
    AWAIT_C1 = "awaiting C1"
    AWAIT_C2 = "awaiting C2"
    AWAIT_S0 = "awaiting S0"
    AWAIT_S1 = "awaiting S1"
    AWAIT_S2 = "awaiting S2"
    COMPLETE = "complete"
    FAILED = "failed"


class _Handshake:
    """The byte plumbing both sides share: buffer, step table, outgoing queue."""

    # state -> (packet size, name of the method that consumes it and returns the next state)
    _STEPS: Dict[_State, Tuple[int, str]] = {}

    def __init__(self, state: _State, random_bytes: Callable[[int], bytes], epoch: int):
        self._state = state
        self._random_bytes = random_bytes
        self._epoch = epoch
        self._buffer = b""   # the part of a packet that came in an earlier read
        self._outgoing = bytearray()
        self._leftover = b""

    @property
    def complete(self) -> bool:
        """True once the peer's last handshake packet has been read."""
        return self._state is _State.COMPLETE

    @property
    def leftover(self) -> bytes:
        """Bytes that followed the last handshake packet; the chunk layer's first input."""
        return self._leftover

    def data_to_send(self) -> bytes:
        """Drain the queued handshake packets."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes) -> None:
        """Consume bytes from the peer, in any fragmentation.

        Raises ``RemoteProtocolError`` when the peer breaks the handshake; the
        object is then unusable.  Once ``complete``, the connection must feed
        the chunk layer (starting with ``leftover``), not this object.
        """
        if self._state is _State.COMPLETE:
            raise LocalProtocolError("handshake already complete; feed the chunk layer")
        if self._state is _State.FAILED:
            raise LocalProtocolError("handshake already failed")
        # Packets are sliced from what arrived (usually C0+C1 in one read, then C2 and the connect):
        # one copy each, nothing moved in a buffer; only a packet split across reads waits in ``_buffer``.
        buffer = self._buffer + bytes(data) if self._buffer else bytes(data)
        pos = 0
        while self._state in self._STEPS:
            size, handler = self._STEPS[self._state]
            if len(buffer) - pos < size:
                self._buffer = buffer[pos:]
                return
            packet = buffer[pos:pos + size]
            pos += size
            try:
                self._state = getattr(self, handler)(packet)
            except RemoteProtocolError:
                self._state = _State.FAILED
                self._buffer = b""
                raise
        self._leftover = buffer[pos:]
        self._buffer = b""


class ServerHandshake(_Handshake):
    """The server side: reads C0+C1, answers S0+S1+S2 at once, then reads C2.

    ``version`` goes in S1 bytes 4..7 when the client used the digest
    handshake (ffmpeg checks S1's digests only when the first byte is >= 3;
    librtmp when it is non-zero).  ``epoch`` is S1's time field and the time
    we read C1.
    """

    _STEPS = {
        _State.AWAIT_C0: (1, "_on_c0"),
        _State.AWAIT_C1: (PACKET_SIZE, "_on_c1"),
        _State.AWAIT_C2: (PACKET_SIZE, "_on_c2"),
    }

    def __init__(self, *, random_bytes: Callable[[int], bytes] = os.urandom, epoch: int = 0,
                 version: bytes = bytes((4, 5, 0, 1))):
        super().__init__(_State.AWAIT_C0, random_bytes, epoch)
        self._version = _check_version_field(version)
        self._digest_scheme: Optional[int] = None

    @property
    def digest_scheme(self) -> Optional[int]:
        """0 or 1 when C1 carried a valid FP9 client digest; None for the simple handshake."""
        return self._digest_scheme

    def _on_c0(self, c0: bytes) -> _State:
        # Checked alone, so an HTTP or TLS client is told off on its first byte.
        if c0[0] != RTMP_VERSION:
            raise RemoteProtocolError(_refusal(c0[0], "client"))
        return _State.AWAIT_C1

    def _on_c1(self, c1: bytes) -> _State:
        found = _find_digest(c1, _CLIENT_KEY_TEXT) if c1[4:8] != bytes(4) else None
        if found is None:
            # Simple handshake, also for a C1 that claims a version without a
            # valid digest (as nginx-rtmp and librtmp-era servers do).  S2 is
            # C1 verbatim: librtmp compares S2 to its whole C1 and ffmpeg's
            # own server answers (C1 time, 0, C1 random); for a simple C1,
            # whose bytes 4..7 are zero, both are the same bytes.
            s1 = _time_field(self._epoch) + bytes(4) + _random(self._random_bytes, PACKET_SIZE - 8)
            s2 = c1
        else:
            scheme, client_digest = found
            self._digest_scheme = scheme
            s1 = bytearray(_time_field(self._epoch) + self._version
                           + _random(self._random_bytes, PACKET_SIZE - 8))
            _sign(s1, scheme, _SERVER_KEY_TEXT)
            s2 = _signed_random(self._random_bytes, client_digest, _SERVER_KEY)
        self._outgoing += bytes((RTMP_VERSION,)) + s1 + s2
        return _State.AWAIT_C2

    def _on_c2(self, c2: bytes) -> _State:
        # Not checked: clients differ (Flash signs it, librtmp echoes S1 with
        # its own time, others send anything); a wrong C2 costs us nothing.
        return _State.COMPLETE


class ClientHandshake(_Handshake):
    """The client side: queues C0+C1 at construction, sends C2 after S1, done after S2.

    With ``digest`` (the default), C1 carries an FP9 client digest placed by
    ``digest_scheme`` (0 as Flash Player and ffmpeg, 1 as librtmp's RTMPE),
    and the server must prove itself: S1's server digest (either scheme) and
    S2's signature keyed on our digest must validate, else
    ``RemoteProtocolError``, as in ffmpeg and librtmp.  A server answering
    S1 with a zero version field refuses the digest handshake; we fall back
    to the simple one and ``server_digest_valid`` is False.

    Without ``digest``, C1 bytes 4..7 are zero, ``version`` is unused and C2
    echoes S1.
    """

    _STEPS = {
        _State.AWAIT_S0: (1, "_on_s0"),
        _State.AWAIT_S1: (PACKET_SIZE, "_on_s1"),
        _State.AWAIT_S2: (PACKET_SIZE, "_on_s2"),
    }

    def __init__(self, *, random_bytes: Callable[[int], bytes] = os.urandom, epoch: int = 0,
                 digest: bool = True, version: bytes = bytes((10, 0, 32, 18)),
                 digest_scheme: int = 0):
        super().__init__(_State.AWAIT_S0, random_bytes, epoch)
        if digest_scheme not in (0, 1):
            raise ValueError(f"digest_scheme must be 0 or 1, got {digest_scheme!r}")
        self._digest = digest
        self._client_digest = b""
        self._server_digest_valid: Optional[bool] = None
        if digest:
            c1 = bytearray(_time_field(epoch) + _check_version_field(version)
                           + _random(random_bytes, PACKET_SIZE - 8))
            self._client_digest = _sign(c1, digest_scheme, _CLIENT_KEY_TEXT)
        else:
            c1 = bytearray(_time_field(epoch) + bytes(4) + _random(random_bytes, PACKET_SIZE - 8))
        self._c1 = bytes(c1)
        self._outgoing += bytes((RTMP_VERSION,)) + self._c1

    @property
    def server_digest_valid(self) -> Optional[bool]:
        """Digest mode: True once S1's and S2's digests validated, False if the
        server answered with the simple handshake.  None without ``digest``."""
        return self._server_digest_valid

    def _on_s0(self, s0: bytes) -> _State:
        if s0[0] != RTMP_VERSION:
            raise RemoteProtocolError(_refusal(s0[0], "server"))
        return _State.AWAIT_S1

    def _on_s1(self, s1: bytes) -> _State:
        if self._digest and s1[4:8] != bytes(4):
            found = _find_digest(s1, _SERVER_KEY_TEXT)
            if found is None:
                raise RemoteProtocolError(
                    "S1 claims the digest handshake but its server digest validates in neither scheme")
            self._outgoing += _signed_random(self._random_bytes, found[1], _CLIENT_KEY)
            return _State.AWAIT_S2
        if self._digest:
            self._digest = False
            self._server_digest_valid = False
        self._outgoing += s1
        return _State.AWAIT_S2

    def _on_s2(self, s2: bytes) -> _State:
        if self._digest:
            body, signature = s2[:-DIGEST_SIZE], s2[-DIGEST_SIZE:]
            expected = _hmac_sha256(_keyed_hmac(_SERVER_KEY, self._client_digest), body)
            if not hmac.compare_digest(signature, expected):
                raise RemoteProtocolError("S2's signature does not match our C1 digest")
            self._server_digest_valid = True
        # Simple mode: S2 should echo C1, but servers differ in bytes 4..7 and
        # neither ffmpeg nor librtmp fails on a mismatch; neither do we.
        return _State.COMPLETE
