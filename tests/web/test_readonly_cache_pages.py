"""``koa-cal ui`` over a cache that reads a group's read-only cache.

A cluster worker's cache names the shared cache in its read-only caches: the
pages list the shared cache's records, read a file's header where the shared
cache holds it, serve that file (with ``Range``) in place, and show what the
shared cache retracted.
"""

from __future__ import annotations

from starlette.testclient import TestClient

from koa_middleware import CalibrationStore
from koa_middleware.cache.local_cache import LocalCache
from koa_middleware.config import resolve_config
from koa_middleware.timestamps import utc_now
from koa_middleware.web import create_local_site
from koa_middleware.web.cache_reader import CacheReader
from support.models import FileModel, dark
from support.web_files import fits_file
from support.web_html import row_files

DATA = fits_file([("OBJECT", "shared dark"), ("EXPTIME", 300)], b"\x01" * 4000)


def test_pages_show_and_serve_what_a_read_only_cache_holds(tmp_path, no_koa_environment):
    shared = tmp_path / "shared"
    with CalibrationStore("hispec", str(shared), connect_remote=False) as store:
        kept = store.register_calibration(FileModel(dark(1, instrument_era="era1"), DATA))[1]
        gone = store.register_calibration(FileModel(dark(2, instrument_era="era1"), DATA))[1]
        store.local_db.set_retractions({gone["id"]: (utc_now(), "hot pixels")}, pushed=True)
    config = resolve_config("hispec", str(tmp_path / "worker"), readonly_caches=[str(shared)])
    cache = LocalCache.open(config)
    cache.refresh()  # as koa-cal ui does: what the read-only caches hold
    try:
        client = TestClient(create_local_site(CacheReader({"hispec": cache})))
        listed = client.get("/ui/hispec/browse", params={"include_retracted": "1"}).text
        assert sorted(row_files(listed)) == sorted([kept["filename"], gone["filename"]])
        assert row_files(client.get("/ui/hispec/browse").text) == [kept["filename"]]
        page = client.get(f"/ui/hispec/records/{kept['id']}").text
        assert "shared dark" in page and "EXPTIME" in page  # the header, read in place
        assert "hot pixels" in client.get(f"/ui/hispec/records/{gone['id']}").text
        served = client.get(f"/ui/hispec/files/{kept['id']}", headers={"Range": "bytes=0-79"})
        assert served.status_code == 206 and served.content == DATA[:80]
        assert client.get(f"/ui/hispec/files/{kept['id']}").content == DATA
        # Served in place: the worker's own folder holds no copy.
        assert not list((tmp_path / "worker").rglob(kept["filename"]))
    finally:
        cache.close()
