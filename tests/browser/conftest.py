"""Fixtures of the browser tests: one Chromium per session, one pair of sites per module.

The sites are real processes on 127.0.0.1: a ``koa-archive serve`` that needs a token
to read, holding records of three ``cal_type`` (one retracted, with its reason), and a
``koa-cal ui --manifests DIR`` over a local cache that ``koa-cal sync`` filled from that
archive. DIR holds the run manifest ``koa-cal explain --manifest`` recorded on that
cache before the retraction: it pins the record retracted since.
Screenshots go to the folder ``KOA_SCREENSHOTS`` names, else to a temporary one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser.pages import SiteUnderTest

from support.archive import ArchiveServer, create_token, make_record, md5_hex, upload
from support.browser import VIEWPORT, launch_chromium, require_browser
from support.koa_cal import cli_env, koa_cal, write_cal

SCREENSHOTS_ENV = "KOA_SCREENSHOTS"
INSTRUMENT = "hispec"
#: Records published: enough for a second browse page (50 rows) and for later changes (100).
NIGHTS = 45
FIRST_NIGHT = date(2025, 3, 1)
#: Nights without an arc, so that the coverage map shows a gap.
ARC_GAP = range(20, 31)
RETRACT_REASON = "hot pixels in the flat field"
#: The run manifest ``koa-cal ui --manifests`` lists: it pins the record retracted later.
RUN_MANIFEST = "run-before-retraction.json"


def _records() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The records to publish, and the names the page paths need."""
    found = []
    for night in range(NIGHTS):
        day = (FIRST_NIGHT + timedelta(days=night)).isoformat()
        for cal_type, clock in (("dark", "02:00:00"), ("flat", "02:30:00"), ("arc", "03:00:00")):
            if cal_type == "arc" and night in ARC_GAP:
                continue
            spectrograph = ("yJ", "HK")[night % 2]
            found.append(
                make_record(
                    filename=f"hispec_{spectrograph.lower()}_{cal_type}_{day.replace('-', '')}"
                    "_v001.fits",
                    cal_type=cal_type,
                    datetime_obs=f"{day}T{clock}.000",
                    spectrograph=spectrograph,
                    instrument_era="era1",
                )
            )
    # A flat reprocessed twice; its second version is retracted (see RETRACT_REASON).
    base = next(r for r in found if r["cal_type"] == "flat")
    versions = [
        {
            **base,
            "id": make_record()["id"],
            "filename": base["filename"].replace("_v001", f"_v{n:03d}"),
            "cal_version": f"{n:03d}",
        }
        for n in (2, 3)
    ]
    found += versions
    flats = sum(r["cal_type"] == "flat" for r in found) - 1  # the retracted one is hidden
    names = {
        "instrument": INSTRUMENT,
        "record": versions[0]["id"],
        "flats": flats,
        "reason": RETRACT_REASON,
        "manifest": RUN_MANIFEST,
        # A live dark of the last night: the one the retract test retracts and makes live again.
        "spare": next(r["id"] for r in reversed(found) if r["cal_type"] == "dark"),
    }
    return found, names


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the whole session (Debian's, through Playwright)."""
    executable = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, executable)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where page screenshots are written: ``KOA_SCREENSHOTS``, else a temporary folder."""
    wanted = os.environ.get(SCREENSHOTS_ENV, "").strip()
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Archive:
    """The running archive of a module: its server, tokens and what it holds.

    ``cache_home`` is the folder of a ``koa-cal`` cache synced from it before the
    retraction, and ``manifests`` the folder of the run manifest recorded there.
    """

    def __init__(
        self,
        server: ArchiveServer,
        tokens: dict[str, str],
        names: dict[str, Any],
        cache_home: Path,
        manifests: Path,
    ):
        self.server = server
        self.tokens = tokens
        self.names = names
        self.cache_home = cache_home
        self.manifests = manifests

    def cache_env(self) -> dict[str, str]:
        """The environment of ``koa-cal`` on the cache, reading from this archive."""
        return cli_env(
            self.cache_home,
            KOA_CALIBRATIONS_URL=self.server.base_url,
            KOA_API_TOKEN=self.tokens["read"],
        )

    @property
    def pages(self) -> str:
        """``http://127.0.0.1:PORT/ui``."""
        return self.server.base_url.split("/api/", 1)[0] + "/ui"


@pytest.fixture(scope="module")
def archive(chromium: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    """A token-protected ``koa-archive serve`` with the records of :func:`_records`."""
    root = tmp_path_factory.mktemp("archive")
    tokens = {
        "read": create_token(root, "read", name="reader"),
        "write": create_token(root, "write", name="publisher"),
    }
    records, names = _records()
    newest = records.pop()  # the third version, published after the run below
    with ArchiveServer(root, instruments=(INSTRUMENT,)) as server:
        archive = Archive(
            server, tokens, names, tmp_path_factory.mktemp("koa-cal"), root / "manifests"
        )
        headers = {"Authorization": f"Bearer {tokens['write']}"}
        with httpx.Client(base_url=server.base_url + "/", headers=headers, timeout=60) as client:
            _upload_file_of(client, next(r for r in records if r["id"] == names["record"]), root)
            client.post(f"{INSTRUMENT}/add", json=records).raise_for_status()
            _record_run(archive, records)
            client.post(f"{INSTRUMENT}/add", json=[newest]).raise_for_status()
            retraction = {"ids": [names["record"]], "reason": RETRACT_REASON}
            client.post(f"{INSTRUMENT}/retract", json=retraction).raise_for_status()
        yield archive


def _upload_file_of(client: httpx.Client, record: dict[str, Any], root: Path) -> None:
    """Upload a FITS file for ``record`` and note its MD5 and size (a manifest pins them)."""
    data = write_cal(root / record["filename"], DATE_OBS=record["datetime_obs"]).read_bytes()
    record.update(file_md5=md5_hex(data), file_size=len(data))
    upload(client, record["id"], data, INSTRUMENT).raise_for_status()


def _record_run(archive: Archive, records: list[dict[str, Any]]) -> None:
    """A run that chose the record retracted later: ``koa-cal explain --manifest``."""
    chosen = next(r for r in records if r["id"] == archive.names["record"])
    env = archive.cache_env()
    synced = koa_cal("sync", env=env)
    assert synced.returncode == 0, synced.stderr
    archive.manifests.mkdir()
    explained = koa_cal(
        *("explain", "--selector", "latest", "--option", "cal_type=flat"),
        *("--meta", f"datetime_obs={chosen['datetime_obs']}"),
        *("--meta", f"spectrograph={chosen['spectrograph']}"),
        *("--meta", f"instrument_era={chosen['instrument_era']}"),
        *("--manifest", str(archive.manifests / RUN_MANIFEST)),
        env=env,
    )
    assert explained.returncode == 0, explained.stderr
    assert chosen["filename"] in explained.stdout, explained.stdout


@pytest.fixture(scope="module")
def local_pages(archive: Archive) -> Iterator[str]:
    """``koa-cal ui --manifests`` over a cache synced from the archive; yields ``.../ui``."""
    synced = koa_cal("sync", env=archive.cache_env())
    assert synced.returncode == 0, synced.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "koa_middleware.cli", "ui", "--manifests", str(archive.manifests)],
        env=cli_env(archive.cache_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/ui/", line)
        assert found, f"koa-cal ui printed {line!r} (exit {process.poll()})"
        yield found.group(0).rstrip("/")
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stdout.close()


def sign_in(context: Any, pages: str, token: str) -> None:
    """Sign ``context`` in through the login form."""
    page = context.new_page()
    page.goto(pages + "/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(pages + "/")
    page.close()


@pytest.fixture(scope="module")
def sites(chromium: Any, archive: Archive, local_pages: str) -> Iterator[dict[str, SiteUnderTest]]:
    """Both sites, each with a browser context (signed in on the archive)."""
    contexts = []
    try:
        signed = chromium.new_context(viewport=VIEWPORT)
        contexts.append(signed)
        sign_in(signed, archive.pages, archive.tokens["read"])
        local = chromium.new_context(viewport=VIEWPORT)
        contexts.append(local)
        yield {
            "archive": SiteUnderTest("archive", archive.pages, signed, archive.names),
            "cache": SiteUnderTest("cache", local_pages, local, archive.names),
        }
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def fresh_context(chromium: Any) -> Iterator[Any]:
    """A browser context of its own, signed in nowhere."""
    context = chromium.new_context(viewport=VIEWPORT)
    yield context
    context.close()
