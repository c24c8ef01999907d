"""The web pages, which the archive mounts, never import the client side nor the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import koa_middleware.web

FORBIDDEN = ("koa_middleware.client", "koa_middleware.cli", "koa_middleware.store")


def imported_modules(path: Path) -> set[str]:
    """The absolute names of the koa_middleware modules a module of web/ imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = "koa_middleware" if node.level == 2 else "koa_middleware.web"
            name = (node.module or "") if node.level == 0 else f"{base}.{node.module or ''}"
            found.add(name)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("koa_middleware")}


def test_web_modules_never_import_the_client_or_the_command_line():
    folder = Path(koa_middleware.web.__file__).parent
    modules = sorted(folder.glob("*.py"))
    assert len(modules) >= 7
    for path in modules:
        for name in imported_modules(path):
            assert not name.startswith(FORBIDDEN), (path.name, name)
