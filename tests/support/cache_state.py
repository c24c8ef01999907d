"""What a test checks of a cache after a failure: no file left behind in its temporary folder."""

from __future__ import annotations

from pathlib import Path


def temp_files(layout) -> list[Path]:
    """Files under the cache's ``tmp/<instrument>/`` (a registration's empty private folder
    may stay there while its store is open)."""
    return [path for path in Path(layout.tmp_dir).rglob("*") if not path.is_dir()]
