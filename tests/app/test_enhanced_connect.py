"""Enhanced RTMP connect negotiation: what a client declares is read, and the connect _result states what we forward."""
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.application import Application
from fmspy_gateway.app.client import EnhancedCapabilities
from fmspy_gateway.app.hub import LocalHub
from fmspy_gateway.app.session import Session
from fmspy_gateway.rtmp.connection import Connection, Role

from .fakes import FakePeer, exchange

LEGACY_PROPERTIES = {"fmsVer": "FMS/3,5,1,516", "capabilities": 31, "mode": 1}


class EnhancedConnectTests(SynchronousTestCase):
    def setUp(self):
        self.app = Application("app", hub=LocalHub())
        self.peer = FakePeer()
        self.session = Session({"app": self.app}, self.peer, clock=Clock())
        self.client = Connection(Role.CLIENT)
        self.pump()

    def connect(self, **params):
        """The connect _result the client reads."""
        self.client.send_command("connect", 1, {"app": "app", "tcUrl": "rtmp://h/app", **params}, [])
        (result,) = self.pump()
        self.assertEqual(result.name, "_result")
        return result

    def pump(self):
        """Move bytes both ways; the commands the client received."""
        return exchange(self.client, self.session)

    def test_legacy_client_gets_the_legacy_reply(self):
        result = self.connect()
        self.assertEqual(result.command_object, LEGACY_PROPERTIES)
        self.assertEqual(self.session.client.capabilities, EnhancedCapabilities())
        self.assertFalse(self.session.client.capabilities.reconnect)

    def test_enhanced_client_is_read_and_answered_with_what_we_forward(self):
        result = self.connect(fourCcList=["hvc1", "av01", "Opus"], videoFourCcInfoMap={"hvc1": 1, "*": 4},
                              audioFourCcInfoMap={"Opus": 3}, capsEx=1 | 2)
        self.assertEqual(result.command_object, {**LEGACY_PROPERTIES, "fourCcList": ["*"],
                                                 "videoFourCcInfoMap": {"*": 4}, "audioFourCcInfoMap": {"*": 4},
                                                 "capsEx": 5})
        capabilities = self.session.client.capabilities
        self.assertEqual(capabilities.fourcc_list, ("hvc1", "av01", "Opus"))
        self.assertEqual(dict(capabilities.video), {"hvc1": 1, "*": 4})
        self.assertEqual(dict(capabilities.audio), {"Opus": 3})
        self.assertEqual(capabilities.caps_ex, 3)
        self.assertTrue(capabilities.reconnect)

    def test_fourcc_list_alone_is_enhanced(self):
        """A client of Enhanced RTMP v1 sends only fourCcList (ffmpeg 6.1+: -rtmp_enhanced_codecs)."""
        result = self.connect(fourCcList=["hvc1"])
        self.assertEqual(result.command_object["capsEx"], 5)
        self.assertFalse(self.session.client.capabilities.reconnect)

    def test_malformed_declarations_are_ignored_entry_by_entry(self):
        result = self.connect(fourCcList=["hvc1", 7, "toolong", None, "*"],
                              videoFourCcInfoMap={"hvc1": "4", "av01": -1, "vp09": 4.5, "avc1": 2 ** 40, "vp08": 4},
                              audioFourCcInfoMap=["Opus"], capsEx=float("nan"))
        self.assertEqual(result.command_object["fourCcList"], ["*"])
        capabilities = self.session.client.capabilities
        self.assertEqual(capabilities.fourcc_list, ("hvc1", "*"))
        self.assertEqual(capabilities.video, (("vp08", 4),))
        self.assertEqual(capabilities.audio, ())
        self.assertEqual(capabilities.caps_ex, 0)
        self.assertTrue(capabilities.declared)

    def test_caps_ex_must_be_a_number(self):
        for value in ("1", True, [1], -1, 2 ** 33, 1.5):
            self.assertEqual(EnhancedCapabilities.from_connect({"capsEx": value}).caps_ex, 0, value)
        self.assertTrue(EnhancedCapabilities.from_connect({"capsEx": 9.0}).reconnect)

    def test_the_number_of_entries_kept_is_bounded(self):
        many = [f"c{i:03d}" for i in range(500)]
        capabilities = EnhancedCapabilities.from_connect({"fourCcList": many,
                                                          "videoFourCcInfoMap": dict.fromkeys(many, 4)})
        self.assertEqual(capabilities.fourcc_list, tuple(many[:64]))
        self.assertEqual(capabilities.video, tuple((name, 4) for name in many[:64]))
        self.assertEqual(capabilities.ignored, 2 * (500 - 64))
        self.assertEqual(EnhancedCapabilities.from_connect({"fourCcList": many[:64]}).ignored, 0)

    def test_entries_past_the_bound_are_logged_with_their_count(self):
        many = [f"c{i:03d}" for i in range(70)]
        with self.assertLogs("fmspy_gateway", "WARNING") as logged:
            self.connect(fourCcList=many, audioFourCcInfoMap=dict.fromkeys(many, 1))
        self.assertEqual(len(logged.records), 1)
        self.assertIn("connect declared 12 Enhanced RTMP codec entries past maxFourCcEntries (64 per list or map):"
                      " ignored", logged.output[0])
        self.assertEqual(self.session.limit_log.counts, {"maxFourCcEntries": 1})
        self.assertEqual(len(self.session.client.capabilities.audio), 64)

    def test_the_bound_is_the_sessions(self):
        session = Session({"app": self.app}, FakePeer(), clock=Clock(), max_fourcc_entries=2)
        client = Connection(Role.CLIENT)
        exchange(client, session)
        client.send_command("connect", 1, {"app": "app", "fourCcList": ["hvc1", "av01", "vp09"]}, [])
        with self.assertLogs("fmspy_gateway", "WARNING") as logged:
            exchange(client, session)
        self.assertEqual(session.client.capabilities.fourcc_list, ("hvc1", "av01"))
        self.assertIn("connect declared 1 Enhanced RTMP codec entries past maxFourCcEntries (2 per list",
                      logged.output[0])
