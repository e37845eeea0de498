"""The shapes of the replies Flash clients expect (DESIGN.md, protocol facts)."""

#: What connect's properties say about us; values real servers send.
FMS_VERSION = "FMS/3,5,1,516"
CAPABILITIES = 31
MODE = 1


def status(code: str, description: str, level: str = "status", **extra) -> dict:
    """An information object; ``level, code, description`` first, in that order (Flash is picky)."""
    info = {"level": level, "code": code, "description": description}
    info.update(extra)
    return info


def error(code: str, description: str, **extra) -> dict:
    return status(code, description, level="error", **extra)


def connect_properties() -> dict:
    return {"fmsVer": FMS_VERSION, "capabilities": CAPABILITIES, "mode": MODE}
