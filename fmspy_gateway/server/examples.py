"""/examples/: an index page of the bundled examples, and their sources as plain text.

The examples ship inside the package (``fmspy_gateway/examples``, a link to
the repository's ``examples/`` in a checkout, package data in a wheel), so
the page works after ``pip install``.  The index is ``examples/README.md``
turned into HTML (a small subset of Markdown: headings, paragraphs, lists,
fenced code, inline code), followed by every example folder with links to
its files.  Files are served as ``text/plain`` so that a browser shows a
``.py`` or ``.cfg`` instead of downloading it.
"""
import html
import os
import re
from typing import List

from twisted.web.static import File

PACKAGE_EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
_TEXT = "text/plain; charset=utf-8"
_HIDDEN = ("__pycache__", ".gitignore", ".egg-info")

_STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#1d2330}
pre{background:#f3f4f7;padding:.7em 1em;overflow-x:auto}code{background:#f3f4f7;padding:0 .2em}
pre code{padding:0}h2{border-top:1px solid #d9dde6;padding-top:.8em}ul.files{columns:2}"""


def _inline(text: str) -> str:
    """Escaped text with `code` spans and [links](url) to relative or http(s) targets."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]*)`", text)):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        escaped = html.escape(part)
        out.append(re.sub(r"\[([^\]]+)\]\(((?:https?://|\.{0,2}/?)[^)\s\"'<>]*)\)", r'<a href="\2">\1</a>', escaped))
    return "".join(out)


def markdown_to_html(text: str) -> str:
    """The subset of Markdown examples/README.md uses, as HTML; everything else stays text."""
    out: List[str] = []
    paragraph: List[str] = []
    in_list = False
    lines = iter(text.splitlines())

    def end_paragraph():
        nonlocal in_list
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if in_list:
            out.append("</ul>")
            in_list = False

    for line in lines:
        stripped = line.strip()
        if stripped.startswith("```"):
            end_paragraph()
            code = []
            for inner in lines:
                if inner.strip().startswith("```"):
                    break
                code.append(inner)
            out.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>")
        elif stripped.startswith("#"):
            end_paragraph()
            level = min(len(stripped) - len(stripped.lstrip("#")), 6)
            title = stripped[level:].strip()
            anchor = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            out.append(f'<h{level} id="{anchor}">{_inline(title)}</h{level}>')
        elif re.match(r"[-*] ", stripped):
            if paragraph:
                out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
                paragraph.clear()
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(stripped[2:])}</li>")
        elif not stripped:
            end_paragraph()
        elif in_list and line.startswith(" "):
            out[-1] = out[-1][:-5] + " " + _inline(stripped) + "</li>"
        else:
            if in_list:
                out.append("</ul>")
                in_list = False
            paragraph.append(stripped)
    end_paragraph()
    return "\n".join(out)


def _files(folder: str, base: str = "") -> List[str]:
    found = []
    for name in sorted(os.listdir(folder)):
        if name.startswith(".") or any(hidden in name for hidden in _HIDDEN):
            continue
        path = os.path.join(folder, name)
        relative = f"{base}{name}"
        if os.path.isdir(path):
            found.extend(_files(path, relative + "/"))
        else:
            found.append(relative)
    return found


def index_page(examples_dir: str) -> bytes:
    """The /examples/ page: the README, then each example folder's files."""
    readme = os.path.join(examples_dir, "README.md")
    body = []
    if os.path.exists(readme):
        with open(readme, encoding="utf-8") as f:
            page = markdown_to_html(f.read())
        folders = {name for name in os.listdir(examples_dir) if os.path.isdir(os.path.join(examples_dir, name))}

        def link_sources(match):
            name = match.group(2)
            extra = f' <a href="#src-{name}">(sources)</a>' if name in folders else ""
            return match.group(1) + extra + match.group(3)
        # A walkthrough whose heading names its folder (`gateway/`) links to that folder's files.
        body.append(re.sub(r"(<h2[^>]*>.*?<code>([\w.-]+)/</code>.*?)(</h2>)", link_sources, page))
    else:
        body.append("<h1>Examples</h1>")
    body.append('<h2 id="sources">Sources</h2>')
    for name in sorted(os.listdir(examples_dir)):
        folder = os.path.join(examples_dir, name)
        if not os.path.isdir(folder) or name.startswith((".", "_")):
            continue
        links = "".join(f'<li><a href="{html.escape(name)}/{html.escape(path)}">{html.escape(path)}</a></li>'
                        for path in _files(folder))
        body.append(f'<h3 id="src-{html.escape(name)}">{html.escape(name)}/</h3><ul class="files">{links}</ul>')
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>fmspy-gateway examples</title>'
            f'<link rel="icon" href="data:,"><style>{_STYLE}</style></head><body>'
            f'<p><a href="/">fmspy-gateway</a> \u00b7 <a href="/status/">status</a></p>'
            + "\n".join(body) + "</body></html>").encode("utf-8")


class ExamplesDirectory(File):
    """The examples folder: the index page at its root, sources as plain text, no listing of hidden files."""

    contentTypes = dict(File.contentTypes, **{ext: _TEXT for ext in (".py", ".cfg", ".md", ".toml", ".txt",
                                                                     ".gitignore")})

    def __init__(self, path, *args, root=None, **kwargs):
        super().__init__(path, *args, **kwargs)
        self.root = root or path

    def createSimilar(self, path):
        similar = super().createSimilar(path)
        similar.root = self.root
        return similar

    def directoryListing(self):
        if os.path.abspath(self.path) == os.path.abspath(self.root):
            from twisted.web.resource import Resource

            class Index(Resource):
                isLeaf = True

                def render_GET(inner, request):
                    request.setHeader(b"content-type", b"text/html; charset=utf-8")
                    return index_page(self.root)
            return Index()
        return super().directoryListing()

    def getChild(self, path, request):
        if path in (b"__pycache__",) or path.startswith(b"."):
            return self.childNotFound
        return super().getChild(path, request)
