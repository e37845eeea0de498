"""Route the standard library's logging (used by app/ and bridge/) into Twisted's log.

The layers below the glue log with ``logging`` so they need no Twisted; under
twistd everything should still land in one log, with one format.
"""
import logging

from twisted.logger import Logger, LogLevel

_LEVELS = [(logging.ERROR, LogLevel.error), (logging.WARNING, LogLevel.warn),
           (logging.INFO, LogLevel.info), (logging.NOTSET, LogLevel.debug)]


class TwistedLogHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self._log = Logger()

    def emit(self, record: logging.LogRecord):
        level = next(twisted for threshold, twisted in _LEVELS if record.levelno >= threshold)
        self._log.emit(level, "{name}: {message}", name=record.name, message=self.format(record))


def install(level: int = logging.INFO, logger_name: str = "fmspy_gateway"):
    """Send ``logger_name``'s records at ``level`` and above to Twisted's log (idempotent)."""
    logger = logging.getLogger(logger_name)
    logger.setLevel(level)
    if not any(isinstance(h, TwistedLogHandler) for h in logger.handlers):
        logger.addHandler(TwistedLogHandler())
    logger.propagate = False
