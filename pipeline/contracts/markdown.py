"""Text from settings or data written into Markdown (the dataset card, the eval report) as inert text."""

from __future__ import annotations

import html
import re

_MD_INLINE = re.compile(r"([\\`*_{}\[\]()#!|~>])")  # emphasis, code, links, images, headings, tables, quotes
_MD_LIST = re.compile(r"^([-+=])|^(\d+)([.)])")  # what opens a list or a setext heading at a line's start


def md_text(text: str) -> str:
    """Text from settings or data as inert Markdown: one line, HTML escaped, Markdown punctuation backslashed, so
    a name cannot open a heading, a link, a list, a table cell or a tag."""
    one_line = " ".join(str(text).split())
    escaped = _MD_INLINE.sub(r"\\\1", html.escape(one_line, quote=False))
    return _MD_LIST.sub(lambda m: f"\\{m[1]}" if m[1] else f"{m[2]}\\{m[3]}", escaped)
