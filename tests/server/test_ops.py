"""Unit tests of the figures behind the operations API: media facts, rates, route figures, JSON log lines."""
import io
import json
import logging
import struct

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from fmspy_gateway.bridge.rpc import BackendError, HTTPStatusError, RPCError
from fmspy_gateway.bridge.stats import BUCKETS, GatewayStats
from fmspy_gateway.server import jsonlog, logging_bridge
from fmspy_gateway.server.ops import RateSampler, audio_info, video_info


class _Header:
    def __init__(self, payload):
        self.payload = payload


def avc_sequence_header(profile=100, level=31):
    # FrameType 1 / CodecID 7, AVCPacketType 0, CTS 0, then AVCDecoderConfigurationRecord.
    return bytes([0x17, 0, 0, 0, 0, 1, profile, 0, level, 0xFF, 0xE1])


def aac_sequence_header(object_type=2, index=4, channels=2):
    config = (object_type << 11) | (index << 7) | (channels << 3)
    return bytes([0xAF, 0]) + struct.pack(">H", config)


class MediaInfoTests(TestCase):
    def test_avc_profile_level_and_metadata_size(self):
        info = video_info(_Header(avc_sequence_header(100, 31)), {"width": 640.0, "height": 360.0,
                                                                   "framerate": 25.0})
        self.assertEqual(info, {"codec": "AVC", "profile": "High", "level": 3.1, "width": 640, "height": 360,
                                "frame_rate": 25.0, "data_rate_kbps": None})

    def test_aac_config(self):
        info = audio_info(_Header(aac_sequence_header(2, 4, 2)), {})
        self.assertEqual((info["codec"], info["profile"], info["sample_rate"], info["channels"]),
                         ("AAC", "LC", 44100, 2))
        info = audio_info(_Header(aac_sequence_header(5, 3, 1)), {})
        self.assertEqual((info["profile"], info["sample_rate"], info["channels"]), ("HE-AAC", 48000, 1))

    def test_legacy_audio_rate_and_channels_from_the_first_byte(self):
        # MP3 (2), 44 kHz (3), 16 bit, stereo.
        info = audio_info(_Header(bytes([0x2F, 0xFF])), {})
        self.assertEqual((info["codec"], info["sample_rate"], info["channels"]), ("MP3", 44100, 2))

    def test_enhanced_video_fourcc(self):
        info = video_info(_Header(bytes([0x90]) + b"hvc1" + b"\x01\x02"), {})
        self.assertEqual(info["codec"], "HEVC")

    def test_no_media_and_odd_metadata(self):
        self.assertIsNone(video_info(None, {}))
        self.assertIsNone(audio_info(None, {}))
        info = video_info(None, {"width": "wide", "height": float("nan"), "videocodecid": 7})
        self.assertEqual((info["codec"], info["width"], info["height"]), (None, None, None))
        self.assertIsNone(video_info(_Header(b"\x17\x00"), {})["profile"])     # cut short: no crash


class RateSamplerTests(TestCase):
    def test_bits_per_second_from_two_samples_and_forgetting(self):
        clock = Clock()
        rates = RateSampler(clock)
        rates.begin(), rates.watch("x", 0), rates.end()
        self.assertEqual(rates.rate("x"), 0)
        clock.advance(2)
        rates.begin(), rates.watch("x", 1000), rates.end()
        self.assertEqual(rates.rate("x"), 4000)      # 1000 bytes in 2 s
        rates.begin(), rates.end()
        self.assertEqual(rates.rate("x"), 0)


class _Route:
    def __init__(self, name, endpoint="http://b/rpc"):
        self.client_method, self.endpoint = name, endpoint


class GatewayStatsTests(TestCase):
    def test_outcomes_by_kind_latency_and_in_flight(self):
        clock = Clock()
        stats = GatewayStats(clock)
        route = _Route("getUser")
        pending = Deferred()
        stats.track(route, pending)
        self.assertEqual(stats.figures(route).in_flight, 1)
        clock.advance(0.02)
        pending.callback("fine")
        for error in (RPCError(1, "no"), BackendError("t", "timeout"), HTTPStatusError("x", 502),
                      BackendError("b", "bad-response"), BackendError("o", "overloaded"),
                      BackendError("c", "unavailable"), BackendError("r", "refused")):
            stats.track(route, fail(error)).addErrback(lambda _: None)
        stats.refused(route, "invalid-params")
        stats.track(route, succeed("bad"))
        stats.refused(route, "invalid-result")
        figures = stats.figures(route)
        self.assertEqual(figures.in_flight, 0)
        self.assertEqual(figures.calls, 10)
        self.assertEqual(figures.ok, 1)
        self.assertEqual(figures.errors, {"backend-error": 1, "timeout": 1, "http-status": 1, "not-json": 1,
                                          "overloaded": 1, "circuit-open": 1, "unreachable": 1,
                                          "invalid-params": 1, "invalid-result": 1})
        self.assertEqual(figures.statuses, {502: 1})
        self.assertEqual(figures.last_outcome, "invalid-result")
        self.assertAlmostEqual(figures.percentile(0.99), 0.02)
        self.assertEqual(sum(figures.buckets), 9)       # every answered request observed, refusals not
        self.assertEqual(figures.buckets[BUCKETS.index(0.025)], 1)


class _Client:
    id, application_name = "c1", "chat"


class _Protocol:
    def __init__(self, address):
        self.address = address
        self.session = type("S", (), {"client": _Client()})()


class _Status:
    def __init__(self, connections):
        self.factory = type("F", (), {"connections": set(connections)})()


class JSONLinesTests(TestCase):
    def test_lines_name_the_client_of_their_address(self):
        out = io.StringIO()
        observer = jsonlog.JSONLinesObserver(out)
        protocol = _Protocol("127.0.0.1:5000")
        status = _Status([protocol])
        jsonlog.attach(status)
        self.addCleanup(jsonlog.detach, status)
        logger = Logger(namespace="fmspy_gateway.server.protocol", observer=observer)
        logger.info("{address}: closing: {reason}", address="127.0.0.1:5000", reason="bye")
        # A standard-library record through the real bridge (server/logging_bridge.py) into Twisted's log.
        record = logging.LogRecord("fmspy_gateway.app.session", logging.WARNING, __file__, 1, "%s: limit hit: %s",
                                   ("127.0.0.1:5000", "maxStreams"), None)
        globalLogPublisher.addObserver(observer)
        try:
            logging_bridge.TwistedLogHandler().handle(record)
        finally:
            globalLogPublisher.removeObserver(observer)
        logger.info("nothing about a connection")
        try:
            1 / 0
        except ZeroDivisionError:
            logger.failure("{address}: handling failed", address="10.0.0.1:1", failure=Failure())
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        self.assertEqual(len(lines), 4)
        first, second, third, fourth = lines
        self.assertEqual((first["message"], first["address"], first["client"], first["app"], first["level"]),
                         ("127.0.0.1:5000: closing: bye", "127.0.0.1:5000", "c1", "chat", "info"))
        self.assertEqual(first["logger"], "fmspy_gateway.server.protocol")
        self.assertEqual((second["message"], second["logger"], second["client"], second["level"]),
                         ("127.0.0.1:5000: limit hit: maxStreams", "fmspy_gateway.app.session", "c1", "warn"))
        self.assertRegex(second["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertNotIn("address", third)
        self.assertEqual(fourth["address"], "10.0.0.1:1")
        self.assertNotIn("client", fourth)
        self.assertIn("ZeroDivisionError", fourth["traceback"])
