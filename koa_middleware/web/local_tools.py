"""What ``koa-cal ui`` adds to the pages of a local cache: its selectors and manifests folder.

The archive serves no selector (selection runs where the pipeline's selectors
live) and no folder of manifests; ``koa-cal ui`` hands :func:`~.app.create_local_site`
a :class:`LocalTools` with the built-in selectors, those named by ``--selector``, and
the folder of ``--manifests``.

Examples
--------
>>> LocalTools().selector_names()
['nearest', 'latest']
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["LocalTools", "builtin_selectors"]


def builtin_selectors() -> dict[str, type]:
    """The built-in selectors by the names ``koa-cal explain --selector`` gives them."""
    from ..selectors import LatestVersionSelector, NearestInTimeSelector

    return {"nearest": NearestInTimeSelector, "latest": LatestVersionSelector}


@dataclass(frozen=True)
class LocalTools:
    """The selectors and manifests of a local site.

    Attributes
    ----------
    selectors : Mapping[str, type]
        Name (an alias such as ``nearest``, or ``MODULE:CLASS``, as ``koa-cal explain
        --selector`` takes it) -> the selector class; by default the built-in ones.
    manifests : Path | None
        The folder whose ``*.json`` manifests the manifest page lists.
    archive_url : str | None
        The archive the cache follows, as shown (no credentials), for saved manifests.
    cache_dir : str | None
        The cache folder, named in the command lines the pages give to copy.
    """

    selectors: Mapping[str, type] = field(default_factory=builtin_selectors)
    manifests: Path | None = None
    archive_url: str | None = None
    cache_dir: str | None = None

    def selector_names(self) -> list[str]:
        """The selectors the explain page offers, in the order given."""
        return list(self.selectors)
