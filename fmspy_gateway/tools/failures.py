"""What the command-line tools say when they cannot reach a server, or lose it: one line, with what to do.

Every tool connects the same way and fails the same ways (nothing listens,
no such application, refused by the application, not an RTMP server), so the
wording lives here once.  A tool prints ``error: <line>`` on stderr and exits
1; a traceback is for our bugs, never for a server that is down.
"""
from twisted.internet import error as net_error
from twisted.python.failure import Failure

from ..app.calls import CallFailed, CallTimedOut, ConnectionClosed
from ..server.client import parse_rtmp_url

URL_FORM = "rtmp://host[:port]/application[/room]"


def _where(url: str) -> str:
    try:
        host, port, _ = parse_rtmp_url(url)
    except ValueError:
        return url
    return f"{host}:{port}"


def _application(url: str) -> str:
    try:
        return parse_rtmp_url(url)[2].split("/", 1)[0].split("?", 1)[0]
    except ValueError:
        return ""


def explain(url: str, reason) -> str:
    """One line saying why talking to ``url`` failed and what to do about it.

    ``reason`` is a Failure or an exception.  Unknown kinds of error fall back
    to their message, still on one line.
    """
    if isinstance(reason, Failure):
        reason = reason.value
    where = _where(url)
    if isinstance(reason, ValueError) and "rtmp://" in str(reason):
        return f"{url}: not an rtmp:// URL; expected {URL_FORM}"
    if isinstance(reason, net_error.ConnectionRefusedError):
        return (f"cannot connect to {url}: nothing listens on {where}; "
                "start the server (twistd -n fmspy-gateway) or fix the host and port in the URL")
    if isinstance(reason, net_error.DNSLookupError):
        return f"cannot connect to {url}: the host name does not resolve; fix the host in the URL"
    if isinstance(reason, (net_error.TimeoutError, net_error.TCPTimedOutError)):
        return f"cannot connect to {url}: no answer from {where}; check the host, the port and any firewall"
    if isinstance(reason, (net_error.ConnectError, net_error.ConnectionLost, net_error.ConnectionDone)):
        return f"cannot connect to {url}: {_message(reason)}"
    if isinstance(reason, CallFailed):
        if reason.code == "NetConnection.Connect.InvalidApp":
            return (f"cannot connect to {url}: the server has no application {_application(url)!r} "
                    f"({reason.code}: {_one_line(reason.description)}); use an application its fmspy.cfg enables")
        if reason.code == "NetConnection.Connect.Rejected":
            return (f"cannot connect to {url}: the application refused the connection ({reason.code}: "
                    f"{_one_line(reason.description)})")
        if isinstance(reason, ConnectionClosed):
            return f"{url}: the server closed the connection ({_one_line(reason.description)})"
        if isinstance(reason, CallTimedOut):
            return f"{url}: no answer from the server ({_one_line(reason.description)})"
        return f"{url}: {reason.code}: {_one_line(reason.description)}"
    return f"{url}: {_message(reason)}"


def _message(reason) -> str:
    text = str(reason) or type(reason).__name__
    return _one_line(text)


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
