"""Which application classes exist and which instances run, from fmspy.cfg.

Built-in applications are listed here; third-party ones are found through the
``fmspy_gateway.applications`` entry point group (see examples/), so adding
one never means editing this package.
"""
from importlib.metadata import entry_points
from typing import Dict, Type

from .application import Application
from .echo import EchoApplication

ENTRY_POINT_GROUP = "fmspy_gateway.applications"

BUILTIN_APPLICATIONS: Dict[str, Type[Application]] = {
    "EchoApplication": EchoApplication,
}


class UnknownApplication(Exception):
    """An enabled fmspy.cfg section names a class nobody provides."""


def application_classes() -> Dict[str, Type[Application]]:
    """Built-in classes plus those installed packages declare as entry points."""
    classes = dict(BUILTIN_APPLICATIONS)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        classes.setdefault(entry_point.name, entry_point)
    return classes


def build_applications(config) -> Dict[str, Application]:
    """Instantiate every enabled application section; returns name -> application."""
    classes = application_classes()
    applications = {}
    for section in config.enabled_applications():
        cls = classes.get(section.class_name)
        if cls is None:
            label = section.class_name + (f":{section.label}" if section.label else "")
            raise UnknownApplication(
                f"{section.source}: [{label}]: no application class named {section.class_name!r} "
                f"(known: {', '.join(sorted(classes))})")
        if not isinstance(cls, type):
            cls = cls.load()
        applications[section.name] = cls(section.name, section.options)
    return applications
