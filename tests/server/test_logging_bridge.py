"""The standard library's records as Twisted events (server/logging_bridge.py)."""
import logging

from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from fmspy_gateway.server import logging_bridge


class BridgeTests(SynchronousTestCase):
    def setUp(self):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.logger = logging.getLogger("fmspy_gateway.tests.bridge")
        self.addCleanup(setattr, self.logger, "level", self.logger.level)
        self.logger.setLevel(1)
        # Only this test's handler: an earlier test of the run may have installed the bridge on "fmspy_gateway".
        self.addCleanup(setattr, self.logger, "propagate", self.logger.propagate)
        self.logger.propagate = False
        self.handler = logging_bridge.TwistedLogHandler()
        self.logger.addHandler(self.handler)
        self.addCleanup(self.logger.removeHandler, self.handler)

    def bridged(self):
        return [e for e in self.events if e.get("logger_name") == "fmspy_gateway.tests.bridge"]

    def test_a_record_becomes_one_event_with_its_name_and_message(self):
        self.logger.info("client %s connected to %s", "abc", "echotest")
        (event,) = self.bridged()
        self.assertEqual(formatEvent(event), "fmspy_gateway.tests.bridge: client abc connected to echotest")
        self.assertEqual(event["log_level"], LogLevel.info)

    def test_braces_in_a_message_are_text_not_fields(self):
        # The event's format is the line itself, its braces doubled: a client's name such as "{0}" or
        # "{text}" must come out as it was, never be looked up in the event.
        self.logger.info("client %s joined room %s", "{0}", "{text}}")
        (event,) = self.bridged()
        self.assertEqual(formatEvent(event), "fmspy_gateway.tests.bridge: client {0} joined room {text}}")
        self.assertEqual(event["text"], "client {0} joined room {text}}")
        self.assertEqual(event["log_namespace"], logging_bridge.NAMESPACE)

    def test_levels_between_the_standard_ones_go_to_the_one_below(self):
        for levelno in (5, logging.DEBUG, 15, logging.INFO, 25, logging.WARNING, 35, logging.ERROR,
                        logging.CRITICAL, 60):
            self.logger.log(levelno, "at %d", levelno)
        self.assertEqual([e["log_level"] for e in self.bridged()],
                         [LogLevel.debug, LogLevel.debug, LogLevel.debug, LogLevel.info, LogLevel.info,
                          LogLevel.warn, LogLevel.warn, LogLevel.error, LogLevel.critical, LogLevel.critical])

    def test_a_record_with_a_traceback_keeps_it(self):
        try:
            1 / 0
        except ZeroDivisionError:
            self.logger.exception("handling failed")
        (event,) = self.bridged()
        self.assertTrue(event["text"].startswith("handling failed\nTraceback"), event["text"])
        self.assertIn("ZeroDivisionError", event["text"])
