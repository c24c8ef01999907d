"""Reading the pages' HTML in tests: link targets and the rows of a table."""

from __future__ import annotations

import re
from html import unescape


def links(html: str, text: str) -> list[str]:
    """The targets of the links whose text is ``text``, unescaped."""
    return [unescape(href) for href, label in re.findall(r'href="([^"]*)"[^>]*>([^<]*)<', html)
            if label.strip() == text]  # fmt: skip


def row_files(html: str) -> list[str]:
    """The file names of a browse table's rows, in order."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [
        unescape(name) for name in re.findall(r'<th scope="row"><a href="[^"]*">([^<]*)</a>', body)
    ]
