"""The wheel carries the pages' templates and stylesheet, so an installed archive serves them."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import koa_middleware.web

ROOT = Path(koa_middleware.__file__).resolve().parent.parent
WEB = Path(koa_middleware.web.__file__).parent


def _can_build_in_place() -> bool:
    """Whether setuptools and wheel here can build without fetching build tools."""
    if importlib.util.find_spec("wheel") is None:
        return False
    import setuptools

    return int(setuptools.__version__.split(".")[0]) >= 68


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_wheel_holds_every_template_and_static_file(tmp_path):
    # A copy of what the wheel is built from, so no build folder lands in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "koa_middleware", source / "koa_middleware",
        ignore=shutil.ignore_patterns("__pycache__"),
    )  # fmt: skip
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path)]
    if _can_build_in_place():  # offline and quick; else pip fetches setuptools and wheel
        command.append("--no-build-isolation")
    done = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, timeout=200, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("koa_middleware-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"koa_middleware/web/{path.relative_to(WEB).as_posix()}"
        for folder in ("templates", "static")
        for path in (WEB / folder).iterdir()
        if path.is_file()
    }
    assert "koa_middleware/web/templates/record.html" in expected
    assert "koa_middleware/web/static/style.css" in expected
    assert expected <= names, sorted(expected - names)
    assert "koa_middleware/web/record_page.py" in names
