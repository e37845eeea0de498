"""The base of every RTMP application: what ``rtmp://host/<name>`` connects to.

An application is a class configured by its fmspy.cfg section.  Methods a
client may call are marked ``@remote``; nothing else is reachable by name, so
a client can never call hooks, private helpers or attributes.
"""
from typing import Any, Callable, Mapping, Optional


def remote(method: Callable) -> Callable:
    """Mark a method as callable by clients (``nc.call("name", ...)``)."""
    method.remote = True
    return method


class CallError(Exception):
    """An error an application means the client to see.

    It reaches the client as ``_error`` with ``code`` (default
    NetConnection.Call.Failed), ``description`` and, if given, ``application``.
    Any other exception in a method is logged and reported without details.
    """

    def __init__(self, description: str, code: str = "NetConnection.Call.Failed", application: Any = None):
        super().__init__(description)
        self.description = description
        self.code = code
        self.application = application


class Application:
    """Base class of applications; subclasses add ``@remote`` methods and hooks."""

    def __init__(self, name: str, options: Optional[Mapping[str, str]] = None):
        #: The RTMP application name clients connect to.
        self.name = name
        #: Application-specific options from the fmspy.cfg section, as strings.
        self.options = dict(options or {})

    def find_method(self, name: Optional[str]) -> Optional[Callable]:
        """The remote method a call named ``name`` reaches (dotted names walk attributes), or None."""
        if not name:
            return None
        target: Any = self
        for part in name.split("."):
            if not part or part.startswith("_"):
                return None
            target = getattr(target, part, None)
            if target is None:
                return None
        return target if callable(target) and getattr(target, "remote", False) else None
