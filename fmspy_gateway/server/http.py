"""The bundled HTTP site: not needed for plain RTMP; home of the examples and the gateway's push API."""
import os

from twisted.web.resource import Resource
from twisted.web.static import File

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "examples")


class Index(Resource):
    isLeaf = False

    def __init__(self, applications):
        super().__init__()
        self._applications = applications

    def getChild(self, path, request):
        if path == b"":
            return self
        return super().getChild(path, request)

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        names = ", ".join(sorted(self._applications)) or "none"
        return f"fmspy-gateway is running. RTMP applications: {names}\n".encode()


def build_site_root(http_config, applications, push: Resource = None, examples_dir: str = EXAMPLES_DIR) -> Resource:
    root = Index(applications)
    if push is not None:
        root.putChild(b"rpc", push)
    if http_config.examples_enabled and os.path.isdir(examples_dir):
        root.putChild(b"examples", File(examples_dir))
    return root
