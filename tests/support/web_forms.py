"""The upload pages for tests: their CSRF token, their forms, and ``koa-cal ui``'s pages with tools.

``local_site`` serves the pages of a local cache as ``koa-cal ui`` does, with a
:class:`~koa_middleware.web.local_tools.LocalTools` (selectors, a manifests folder).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

from koa_middleware.cache.local_cache import LocalCache
from koa_middleware.config import resolve_config
from koa_middleware.manifest import ManifestRecorder
from koa_middleware.web import create_local_site
from koa_middleware.web.cache_reader import CacheReader
from koa_middleware.web.local_tools import LocalTools

from .web_sites import Site

#: A science frame of the tests, as a pipeline passes its metadata.
FRAME = {
    "filename": "sci_0001.fits",
    "datetime_obs": "2024-03-01T06:00:00",
    "spectrograph": "yJ",
    "instrument_era": "era1",
}


def csrf_of(site: Site, page: str) -> str:
    """The CSRF token of the form on ``page`` (its cookie stays in the site's client)."""
    html = site.get(page).text
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def upload_manifests(site: Site, *files: tuple[str, bytes], token: str | None = None):
    """Post manifests to the check page as the page's form does (first ``manifest``, ``other``)."""
    token = csrf_of(site, "/hispec/manifest") if token is None else token
    names = ("manifest", "other")
    parts = [(names[n], (name, data, "application/json")) for n, (name, data) in enumerate(files)]
    return site.client.post(f"{site.base}/hispec/manifest", data={"csrf": token}, files=parts)


def record_manifest(path: Path, choices: list[tuple[dict, Any, dict]]) -> bytes:
    """Record a run manifest with the library's recorder: ``(frame, selector, record)`` each."""
    recorder = ManifestRecorder(path, "hispec", None)
    for frame, selector, record in choices:
        recorder.add("select_and_get_calibration", frame, selector, record)
    recorder.write()
    return path.read_bytes()


def rows(html: str, caption: str) -> list[str]:
    """The rows of the table whose caption starts with ``caption``, as text (tags dropped)."""
    table = html.split(f"<caption>{caption}", 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    return [unescape(re.sub(r"<[^>]+>", " ", row)) for row in body.split("<tr>")[1:]]


def row_with(html: str, caption: str, text: str) -> str:
    """The one row of the table that holds ``text``."""
    found = [row for row in rows(html, caption) if text in row]
    assert len(found) == 1, (text, found)
    return " ".join(found[0].split())


@contextlib.contextmanager
def local_site(tmp_path: Path, tools: LocalTools | None = None) -> Iterator[Site]:
    """``koa-cal ui``'s pages over an empty cache in ``tmp_path / "cache"``, with ``tools``."""
    cache = LocalCache.open(resolve_config("hispec", str(tmp_path / "cache")))
    try:
        reader = CacheReader({"hispec": cache})
        yield Site("cache", create_local_site(reader, tools or LocalTools()), "/ui", cache)
    finally:
        cache.close()
