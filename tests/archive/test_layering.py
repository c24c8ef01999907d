"""The archive builds on the shared record rules only: it never imports the client side."""

from __future__ import annotations

import ast
from pathlib import Path

import koa_middleware.archive

#: The package (for its version), the shared rules, and FITS headers (ingest, lazily).
ALLOWED = {
    "koa_middleware",
    "koa_middleware.errors",
    "koa_middleware.records",
    "koa_middleware.fits",
    "koa_middleware.sqlite_wal",  # opening SQLite in WAL mode: standard library only
    "koa_middleware.profiles",  # the instrument profiles: standard library and records only
    # The web pages, mounted under /ui; they never reach the client (tests/web).
    "koa_middleware.web",
    "koa_middleware.web.catalog_reader",
}


def test_archive_modules_import_only_the_record_rules():
    folder = Path(koa_middleware.archive.__file__).parent
    found = {}
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    module = node.module or ""
                elif node.level == 1:
                    continue  # within the archive package
                else:
                    module = "koa_middleware" + (f".{node.module}" if node.module else "")
                    module = module if node.level == 2 else "?"
                if module.startswith("koa_middleware") and not module.startswith(
                    "koa_middleware.archive"
                ):
                    found.setdefault(module, []).append(path.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("koa_middleware") and not alias.name.startswith(
                        "koa_middleware.archive"
                    ):
                        found.setdefault(alias.name, []).append(path.name)
    assert set(found) <= ALLOWED, found
    assert "koa_middleware.records" in found  # the shared rules are reused, not re-implemented
