"""An application for tests/e2e/test_cluster.py: chat that logs its room hooks, so the test can count them.

Loaded by the nodes' twistd through an entry point that the test declares
in a dist-info directory of its own on PYTHONPATH (``room_hooks_path``), as
an installed third-party package would declare it.
"""
import os

from fmspy_gateway.app.chat import ChatApplication
from fmspy_gateway.app.registry import ENTRY_POINT_GROUP
from twisted.logger import Logger

#: Twisted's logger: straight to twistd's log, whatever the standard library's logging lets through.
log = Logger()

#: The lines the nodes log, which the test counts.
CREATED, DESTROYED = "room hook: created {}/{}", "room hook: destroyed {}/{}"


class RoomHooksApplication(ChatApplication):
    def on_room_create(self, room):
        log.info("{line}", line=CREATED.format(room.application, room.name))

    def on_room_destroy(self, room):
        log.info("{line}", line=DESTROYED.format(room.application, room.name))


def room_hooks_path(folder: str) -> str:
    """Declare ``RoomHooksApplication`` as an ``fmspy_gateway.applications`` entry point under ``folder``."""
    info = os.path.join(folder, "fmspy_cluster_test_apps-1.0.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: fmspy-cluster-test-apps\nVersion: 1.0\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as f:
        f.write(f"[{ENTRY_POINT_GROUP}]\nRoomHooksApplication = {__name__}:RoomHooksApplication\n")
    return folder
