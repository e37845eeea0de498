"""Route the standard library's logging (used by app/ and bridge/) into Twisted's log.

The layers below the glue log with ``logging`` so they need no Twisted; under
twistd everything should still land in one log, with one format.
"""
import logging

from twisted.logger import Logger, LogLevel

#: The namespace of every bridged event (the text log shows it as ``[fmspy_gateway.server.logging_bridge#info]``).
NAMESPACE = __name__

#: The standard levels; any other goes to the nearest one below it (``_level``).
_LEVELS = {logging.CRITICAL: LogLevel.critical, logging.ERROR: LogLevel.error, logging.WARNING: LogLevel.warn,
           logging.INFO: LogLevel.info, logging.DEBUG: LogLevel.debug}


def _level(levelno: int) -> LogLevel:
    level = _LEVELS.get(levelno)
    if level is None:
        below = [known for known in _LEVELS if known <= levelno]
        level = _LEVELS[max(below)] if below else LogLevel.debug
    return level


class TwistedLogHandler(logging.Handler):
    """Each record as one Twisted event with the record's ``logger_name`` and ``text`` (server/jsonlog.py reads them).

    Not "message": Twisted's legacy observers take that key for their own
    and overwrite it in the event every observer shares.

    Every connect and every leave is a line, and those two lines were a
    third of a connect + close cycle's CPU (bench/connections.py), so the path is kept
    short: a dict look-up for the level; the record's own message unless it
    carries a traceback (only then the Formatter, which appends it); and the
    line made here, "{logger_name}: {text}" with its braces doubled, as the
    event's format, so that Twisted's formatting (a pure-Python
    ``string.Formatter``) reads one literal instead of looking up and
    formatting two fields.
    """

    def __init__(self):
        super().__init__()
        self._log = Logger(namespace=NAMESPACE)

    def emit(self, record: logging.LogRecord):
        plain = record.exc_info is None and record.stack_info is None
        text = record.getMessage() if plain else self.format(record)
        line = f"{record.name}: {text}".replace("{", "{{").replace("}", "}}")
        self._log.emit(_level(record.levelno), line, logger_name=record.name, text=text)


def install(level: int = logging.INFO, logger_name: str = "fmspy_gateway"):
    """Send ``logger_name``'s records at ``level`` and above to Twisted's log (idempotent)."""
    logger = logging.getLogger(logger_name)
    logger.setLevel(level)
    if not any(isinstance(h, TwistedLogHandler) for h in logger.handlers):
        logger.addHandler(TwistedLogHandler())
    logger.propagate = False
