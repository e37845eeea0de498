"""Which application classes exist and which instances run, from fmspy.cfg.

Built-in applications are listed here; third-party ones are found through the
``fmspy_gateway.applications`` entry point group (see examples/), so adding
one never means editing this package.
"""
from importlib.metadata import entry_points
from typing import Dict, Type

from .application import Application, Services
from .chat import ChatApplication
from .echo import EchoApplication
from .live_application import LiveApplication
from .hub import LocalHub

ENTRY_POINT_GROUP = "fmspy_gateway.applications"

BUILTIN_APPLICATIONS: Dict[str, Type[Application]] = {
    "EchoApplication": EchoApplication,
    "ChatApplication": ChatApplication,
    "LiveApplication": LiveApplication,
}


class UnknownApplication(Exception):
    """An enabled fmspy.cfg section names a class nobody provides."""


def application_classes() -> Dict[str, object]:
    """Built-in classes, plus entry points of installed packages (loaded only when enabled)."""
    classes: Dict[str, object] = dict(BUILTIN_APPLICATIONS)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        classes.setdefault(entry_point.name, entry_point)
    return classes


def build_applications(config, services: Services = None, extra_classes=None) -> Dict[str, Application]:
    """Instantiate every enabled application section; returns name -> application, in fmspy.cfg order.

    Each section is parsed against its class's declarations (``Application.parse_config``) before
    the class sees it; a class without ``Settings`` still gets its raw options (``self.options``).
    All applications share ``services`` (one hub for clients, rooms and streams).
    ``extra_classes`` adds classes by name (the gateway's, from tap.py).
    """
    services = services if services is not None else Services(LocalHub())
    classes = application_classes()
    classes.update(extra_classes or {})
    applications = {}
    for section in config.enabled_applications():
        cls = classes.get(section.class_name)
        if cls is None:
            raise UnknownApplication(
                f"{section.source}: [{section.section}]: no application class named {section.class_name!r} "
                f"(known: {', '.join(sorted(classes))})")
        if not isinstance(cls, type):
            cls = cls.load()
        if not (isinstance(cls, type) and issubclass(cls, Application)):
            raise UnknownApplication(f"{section.source}: [{section.section}]: {cls!r} is not an Application class")
        # Every option of the section parsed once, here at start, against what the class declares
        # (config.parse_application): the application is built from that frozen result.
        applications[section.name] = cls.from_config(cls.parse_config(section), services)
    return applications
