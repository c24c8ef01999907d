"""A real koa-archive with published files, for ``koa-cal`` tests, and helpers to watch a cache.

Examples
--------
>>> with PublishedArchive(tmp_path / "archive", count=30) as archive:  # doctest: +SKIP
...     env = cli_env(tmp_path, KOA_CALIBRATIONS_URL=archive.url)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from support.archive import ArchiveServer, create_token, make_client
from support.published import publish

__all__ = ["PublishedArchive", "cached_files", "wait_for"]


class PublishedArchive:
    """A ``koa-archive serve`` for hispec holding ``count`` published calibrations.

    Parameters
    ----------
    root : Path
        The archive folder.
    count : int
        How many calibrations to publish.
    size : int
        Bytes per file.

    Attributes
    ----------
    server : ArchiveServer
    read_token, write_token : str
    records : list[dict]
        The published records.
    """

    def __init__(self, root: Path, count: int, size: int = 2048):
        self.root = Path(root)
        self.count = count
        self.size = size
        self.server = ArchiveServer(self.root / "archive", instruments=("hispec",))
        self.records: list[dict] = []
        self.read_token = ""
        self.write_token = ""

    @property
    def url(self) -> str:
        return self.server.base_url

    def publish(self, count: int, **fields) -> list[dict]:
        """Publish ``count`` more calibrations; return their records."""
        with make_client(self.url, "hispec", self.write_token) as client:
            added = publish(client, self.root / "files", count, self.size, **fields)
        self.records += added
        return added

    def __enter__(self) -> PublishedArchive:
        self.server.start()
        try:
            self.write_token = create_token(self.server.root, "write")
            self.read_token = create_token(self.server.root, "read")
            if self.count:
                self.publish(self.count)
        except BaseException:
            self.server.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(None, None, None)


def cached_files(cache: Path, instrument: str = "hispec") -> set[str]:
    """Names of the files in a cache's calibrations folder (empty when it does not exist)."""
    folder = cache / "calibrations" / instrument
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def wait_for(condition: Callable[[], bool], what: str, deadline: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"waited {deadline:.0f} s for {what}")
        time.sleep(0.01)
