"""``fmspy-gateway listen``: stay connected to an application and print every call the server makes.

A push through the gateway (``broadcast``, ``call``) reaches only clients
that are connected at that moment; a Flash client is not always at hand, so
this tool is the one that stays: it connects with the given connect
arguments, answers every server call with ``null``, and prints one line per
call, ``name(arg, ...)`` with each argument as JSON, on stdout (flushed, so
it works through pipes).  Its own notices go to stderr.  Ctrl+C leaves with
status 0; a refused or dropped connection prints one line and leaves with 1.
"""
import datetime
import functools
import json
import sys

from twisted.internet.defer import Deferred, maybeDeferred



def _jsonable(value):
    """What ``json`` cannot write: dates as ISO 8601, the rest (ByteArray, XML, ...) as its text."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return repr(bytes(value))
    return str(value)


def format_call(name: str, args) -> str:
    """``news("Sale starts now")``: the call as one line, as a reader of the terminal expects it."""
    return f"{name}({', '.join(json.dumps(arg, default=_jsonable, ensure_ascii=False) for arg in args)})"


def listen(url: str, connect_args=(), reactor=None, out=None, err=None) -> Deferred:
    """Connect to ``url`` and print every server call; fires with the exit status once the connection ends.

    Fails (with the connect failure) if the connection cannot be made, so the
    caller decides how to report it; ``cli`` turns that into one line.
    """
    from ..server.client import connect_client
    if reactor is None:
        from twisted.internet import reactor
    out = out if out is not None else functools.partial(print, flush=True)
    err = err if err is not None else functools.partial(print, file=sys.stderr, flush=True)
    done = Deferred()
    leaving = []      # set once the reactor shuts down (Ctrl+C): the close that follows is ours

    reactor.addSystemEventTrigger("before", "shutdown", leaving.append, True)

    def show(name, *args):
        out(format_call(name, args))
        return None      # answers the call with null

    def connected(client):
        said = ""
        if isinstance(client.connect_info, dict) and client.connect_info.get("application") is not None:
            said = f"; the application answered {format_call('connect', [client.connect_info['application']])}"
        err(f"connected to {url}{said}; printing every call the server makes (Ctrl+C leaves)")
        client.closed.addCallback(closed)

    def closed(message):
        if leaving:
            done.callback(0)
            return
        err(f"{url}: the server closed the connection ({message})")
        done.callback(1)

    d = maybeDeferred(connect_client, url, *connect_args, reactor=reactor, handlers={"*": show})
    d.addCallbacks(connected, done.errback)
    return done
