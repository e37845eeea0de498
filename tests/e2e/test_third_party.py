"""Real third-party clients against our server: librtmp (Debian's python3-librtmp) and ffmpeg."""
import json
import os
import struct
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from fmspy_gateway.rtmp import amf

from ..conftest import require_system_librtmp, require_tool
from .server import LoopbackServerMixin

HERE = os.path.dirname(os.path.abspath(__file__))


def _s(text: str) -> bytes:
    return len(text).to_bytes(2, "big") + text.encode()


# AMF0 values as raw bytes, sent through librtmp and expected back unchanged.
RAW_AMF0 = [
    b"\x03" + _s("a") + b"\x02" + _s("x") + b"\x00\x00\x09",                       # object {a: "x"}
    b"\x08\x00\x00\x00\x01" + _s("a") + b"\x00" + struct.pack(">d", 42) + b"\x00\x00\x09",  # ECMA array
    b"\x0a\x00\x00\x00\x02\x00" + struct.pack(">d", 1) + b"\x02" + _s("one"),     # strict array
    b"\x0b" + struct.pack(">dh", 1322000000123.0, 0),                                # date with ms
    b"\x0b" + struct.pack(">dh", -1500.0, 0),                                        # date before 1970
    b"\x0c" + (70000).to_bytes(4, "big") + b"a" * 70000,                             # long string
    b"\x06",                                                                         # undefined
    b"\x0f" + (10).to_bytes(4, "big") + b"<a b='1'/>",                                # XML document
    b"\x10" + _s("my.Class") + _s("x") + b"\x00" + struct.pack(">d", 2.5) + b"\x00\x00\x09",  # typed
    b"\x11\x0c\x07\x00\x01\x02",                                                  # switch to AMF3: ByteArray
]


class LibrtmpTests(LoopbackServerMixin, TestCase):
    @inlineCallbacks
    def test_librtmp_connects_and_echoes(self):
        python = require_system_librtmp()
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump([v.hex() for v in RAW_AMF0], f)
        self.addCleanup(os.unlink, f.name)
        out, err, code = yield getProcessOutputAndValue(
            python, [os.path.join(HERE, "librtmp_echo.py"), self.url(), f.name], env=dict(os.environ),
            reactor=reactor)
        self.assertEqual(code, 0, err.decode(errors="replace"))
        result = json.loads(out)
        self.assertEqual(result["scalars"], ["hello", "", 42.5, -1.0, True, False, None])
        self.assertEqual(len(result["raw"]), len(RAW_AMF0))
        for number, (sent, reply) in enumerate(zip(RAW_AMF0, result["raw"]), start=100):
            expected_prefix = amf.encode_values(["_result", number, None], amf3=False).hex()
            self.assertEqual(reply, expected_prefix + sent.hex())


class FfmpegTests(LoopbackServerMixin, TestCase):
    @inlineCallbacks
    def test_ffmpeg_digest_handshake_and_connect(self):
        ffmpeg = require_tool("ffmpeg")
        protocols = []
        build = self.factory.buildProtocol
        self.factory.buildProtocol = lambda addr: protocols.append(build(addr)) or protocols[-1]
        # Nothing is published, so ffmpeg ends with an error after connect; what matters is how far it got.
        out, err, code = yield getProcessOutputAndValue(
            ffmpeg, ["-hide_banner", "-nostdin", "-v", "debug", "-rw_timeout", "5000000",
                     "-i", self.url("echotest/stream"), "-t", "1", "-f", "null", "-"],
            env=dict(os.environ), reactor=reactor)
        log = err.decode(errors="replace")
        self.assertNotIn("Server response validating failed", log)
        self.assertNotIn("Signature mismatch", log)
        self.assertIn("Handshaking...", log)
        self.assertIn("Window acknowledgement size = 2500000", log)
        self.assertIn("New incoming chunk size = 4096", log)
        # ffmpeg sends createStream only after it accepted connect's _result.
        self.assertIn("Creating stream...", log)
        self.assertEqual([p.digest_scheme for p in protocols], [0])
