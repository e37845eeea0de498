"""twistd plugin: ``twistd -n fmspy-gateway``; options and wiring live in fmspy_gateway.tap."""
from twisted.application.service import ServiceMaker

fmspy_gateway = ServiceMaker(
    "fmspy-gateway", "fmspy_gateway.tap", "RTMP server and JSON-RPC gateway for Flash/AIR clients", "fmspy-gateway")
