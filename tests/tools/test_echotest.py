"""The echotest battery: the comparison catches every kind of change, and the battery passes against our server."""
import datetime
import io

import pytest
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from fmspy_gateway.app.application import Application, remote
from fmspy_gateway.rtmp import amf
from fmspy_gateway.tools.echotest import AMF0, AMF3, CASES, echotest, same

from ..e2e.server import LoopbackServerMixin


def shared_pair():
    o = {"x": 1}
    return [o, o]


@pytest.mark.parametrize("sent, received, encoding", [
    (1, 1.0, AMF3),                                   # int vs double in AMF3
    (-0.0, 0.0, AMF0),                                # sign of zero
    (float("nan"), 1.0, AMF0),
    (True, 1, AMF0),
    ("a", amf.XML("a"), AMF3),
    (amf.XML("<a/>", document=True), amf.XML("<a/>", document=False), AMF3),
    (amf.TypedObject("a.B"), amf.TypedObject("a.C"), AMF3),
    (amf.ASObject(a=1), amf.MixedArray(a=1), AMF0),
    (shared_pair(), [{"x": 1}, {"x": 1}], AMF3),       # a shared reference became two objects
    (amf.Vector([1], kind="int"), amf.Vector([1], kind="uint"), AMF3),
    (amf.Vector([1], kind="int"), [1], AMF3),
    (amf.ByteArray(b"ab"), amf.ByteArray(b"ac"), AMF3),
    (datetime.datetime(2000, 1, 1), datetime.datetime(2000, 1, 1, 0, 0, 1), AMF0),
    (amf.Dictionary([("k", 1)]), amf.Dictionary([("k", 1)], weak_keys=True), AMF3),
    (amf.Undefined, None, AMF0),
])
def test_same_catches_changes(sent, received, encoding):
    assert not same(sent, received, encoding)


def test_same_accepts_faithful_copies():
    assert same(2 ** 28, 268435456.0, AMF0)           # one number type on the AMF0 wire
    assert same(float("nan"), float("nan"), AMF3)
    aware = datetime.datetime(2020, 1, 1, 5, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30)))
    assert same(aware, datetime.datetime(2020, 1, 1), AMF3)
    cycle = ["x"]
    cycle.append(cycle)
    echoed = ["x"]
    echoed.append(echoed)
    assert same(cycle, echoed, AMF3)


class Mangler(Application):
    """A broken echo: strings come back upper-cased."""

    @remote
    def echo(self, client, value=None):
        return value.upper() if isinstance(value, str) else value


class EchotestAgainstServerTests(LoopbackServerMixin, TestCase):
    def applications(self):
        apps = super().applications()
        apps["mangler"] = Mangler("mangler")
        return apps

    @inlineCallbacks
    def test_battery_passes_in_both_encodings(self):
        out = io.StringIO()
        passed = yield echotest(self.url(), (AMF0, AMF3), reactor=reactor, out=lambda text: out.write(text))
        table = out.getvalue()
        self.assertTrue(passed, table)
        expected = sum(AMF0 in c.encodings for c in CASES) + sum(AMF3 in c.encodings for c in CASES)
        self.assertIn(f"{expected} passed, 0 failed", table)

    @inlineCallbacks
    def test_battery_reports_a_broken_echo(self):
        out = io.StringIO()
        passed = yield echotest(self.url("mangler"), (AMF3,), reactor=reactor, out=lambda text: out.write(text))
        self.assertFalse(passed)
        self.assertIn("FAIL", out.getvalue())


class EchotestCommandLineTests(LoopbackServerMixin, TestCase):
    """The installed command: exit status 0 on an all-pass table, 1 on any mismatch."""

    def applications(self):
        apps = super().applications()
        apps["mangler"] = Mangler("mangler")
        return apps

    def run_cli(self, *args):
        import os
        import sys
        from twisted.internet.utils import getProcessOutputAndValue
        return getProcessOutputAndValue(sys.executable, ["-m", "fmspy_gateway.cli", "echotest", *args],
                                        env=dict(os.environ), reactor=reactor)

    @inlineCallbacks
    def test_all_pass_exits_zero(self):
        out, err, code = yield self.run_cli(self.url(), "--both")
        self.assertEqual(code, 0, out.decode() + err.decode())
        self.assertIn(b" 0 failed", out)
        self.assertIn(b"AMF0", out)
        self.assertIn(b"AMF3", out)

    @inlineCallbacks
    def test_mismatch_exits_non_zero(self):
        out, err, code = yield self.run_cli(self.url("mangler"), "--amf0")
        self.assertEqual(code, 1)
        self.assertIn(b"FAIL", out)
