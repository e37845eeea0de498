"""app/logs.py: the failure errback that formats only when it fires."""
import logging

from twisted.internet.defer import fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.app.logs import log_failure

log = logging.getLogger("fmspy_gateway.tests.logs")


class Described:
    """Counts how often it is put into words."""

    def __init__(self):
        self.described = 0

    def __repr__(self):
        self.described += 1
        return "<described>"


class LogFailureTests(SynchronousTestCase):
    def test_nothing_is_formatted_unless_it_fails(self):
        value = Described()
        succeed(None).addErrback(log_failure(log, "joining %r", value))
        self.assertEqual(value.described, 0)

    def test_a_failure_is_logged_with_its_description_and_traceback(self):
        value = Described()
        with self.assertLogs("fmspy_gateway.tests.logs", "ERROR") as logged:
            fail(ValueError("broken")).addErrback(log_failure(log, "joining %r for %s", value, "chat"))
        (line,) = logged.output
        self.assertIn("joining <described> for chat failed:", line)
        self.assertIn("ValueError: broken", line)

    def test_names_a_client_chose_are_cut(self):
        with self.assertLogs("fmspy_gateway.tests.logs", "ERROR") as logged:
            fail(ValueError()).addErrback(log_failure(log, "play %r", "x" * 100000 + "\n[forged]"))
        (line,) = logged.output
        self.assertLess(len(line.split(" failed:")[0]), 300)
        self.assertNotIn("\n[forged]", line)
