"""Pages render in turn: many viewers at once all get their pages, none is lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from starlette.testclient import TestClient

from support.archive import make_record
from support.web_sites import open_site


def test_many_viewers_at_once_all_get_their_pages(tmp_path):
    with open_site("sqlite", tmp_path) as site:
        site.add([make_record(filename=f"dark_{n}.fits") for n in range(60)])
        app = site.client.app
        paths = ["/ui/hispec/", "/ui/hispec/browse", "/ui/hispec/changes", "/ui/"] * 5

        def viewer(number: int) -> list[tuple[int, bool]]:
            client = TestClient(app)
            return [
                (answer.status_code, "dark_" in answer.text or path == "/ui/")
                for path in paths
                for answer in [client.get(path)]
            ]

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = [a for found in pool.map(viewer, range(8)) for a in found]
    assert len(answers) == 8 * len(paths)
    assert all(status == 200 and shown for status, shown in answers)
