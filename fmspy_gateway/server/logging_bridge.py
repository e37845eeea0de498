"""Route the standard library's logging (used by app/ and bridge/) into Twisted's log.

The layers below the glue log with ``logging`` so they need no Twisted; under
twistd everything should still land in one log, with one format.
"""
import logging

from twisted.logger import Logger, LogLevel

#: The format of every bridged event.
FORMAT = "{logger_name}: {text}"

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
    """Each record as one Twisted event: "{logger_name}: {text}" (server/jsonlog.py reads those two keys).

    Not "message": Twisted's legacy observers take that key for their own
    and overwrite it in the event every observer shares.

    Every connect and every leave is a line, so the path is kept short: a
    dict look-up for the level, and the record's own message unless it
    carries a traceback (only then the Formatter, which appends it).
    """

    def __init__(self):
        super().__init__()
        self._log = Logger()

    def emit(self, record: logging.LogRecord):
        plain = record.exc_info is None and record.stack_info is None
        message = record.getMessage() if plain else self.format(record)
        self._log.emit(_level(record.levelno), FORMAT, logger_name=record.name, text=message)


def install(level: int = logging.INFO, logger_name: str = "fmspy_gateway"):
    """Send ``logger_name``'s records at ``level`` and above to Twisted's log (idempotent)."""
    logger = logging.getLogger(logger_name)
    logger.setLevel(level)
    if not any(isinstance(h, TwistedLogHandler) for h in logger.handlers):
        logger.addHandler(TwistedLogHandler())
    logger.propagate = False
