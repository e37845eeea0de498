"""echotest: returns whatever it is sent, to prove every AMF type survives the trip."""
from .application import Application, remote


class EchoApplication(Application):
    """FMSPy's (and Red5's) echo test: ``echo(value)`` answers with ``value``, unchanged."""

    @remote
    def echo(self, client, value=None):
        return value
