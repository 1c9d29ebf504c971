"""GET /runbooks: docs/runbooks.md as a page with one anchor per alert.

Grafana panels and the alert annotations link to `<runbooks>#<alert name in lower case>`; the
API serves the page so those links work wherever the API runs. The Markdown subset the
runbooks use (headings, lists, fenced code, inline code, bold, links) is rendered here.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "docs" / "runbooks.md"
_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)"), r'<a href="\2">\1</a>'),
]


def anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", title.lower().replace(" ", "-"))


def _inline(text: str) -> str:
    out = html.escape(text, quote=True)
    for pattern, replacement in _INLINE:
        out = pattern.sub(replacement, out)
    return out


def render(markdown: str) -> str:
    parts: list[str] = []
    block: list[str] = []   # lines of the current paragraph or list item
    in_list = in_code = False

    def flush() -> None:
        if block:
            text = _inline(" ".join(line.strip() for line in block))
            parts.append(f"<li>{text}</li>" if in_list else f"<p>{text}</p>")
            block.clear()

    for line in markdown.splitlines():
        if line.startswith("```"):
            flush()
            parts.append("</code></pre>" if in_code else "<pre><code>")
            in_code = not in_code
        elif in_code:
            parts.append(html.escape(line) + "\n")
        elif heading := re.match(r"^(#{1,4})\s+(.*)$", line):
            flush()
            if in_list:
                parts.append("</ul>")
                in_list = False
            level, title = len(heading.group(1)), heading.group(2).strip()
            parts.append(f'<h{level} id="{anchor(title)}">{_inline(title)}</h{level}>')
        elif item := re.match(r"^\s*[-*]\s+(.*)$", line):
            flush()
            if not in_list:
                parts.append("<ul>")
                in_list = True
            block.append(item.group(1))
        elif not line.strip():
            flush()
            if in_list:
                parts.append("</ul>")
                in_list = False
        else:
            block.append(line)
    flush()
    if in_list:
        parts.append("</ul>")
    body = "".join(parts)
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>CUGAr runbooks</title><style>body{font:15px/1.5 system-ui,sans-serif;"
            "max-width:60rem;margin:2rem auto;padding:0 1rem}pre{background:#f4f4f4;"
            "padding:.75rem;overflow:auto}code{background:#f4f4f4}h2{border-top:1px solid #ddd;"
            "padding-top:1rem}</style></head><body>" + body + "</body></html>")
