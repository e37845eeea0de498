"""Logging helpers shared by the application layer."""


def log_failure(logger, what: str):
    """An errback that logs a failure with its traceback (for the server's log, never the client)."""
    def errback(failure):
        logger.error("%s failed:\n%s", what, failure.getTraceback())
    return errback
