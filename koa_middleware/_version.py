"""The package's version, under the names a setuptools-scm version file carries.

The reference implementation generates ``koa_middleware/_version.py`` at build
time; pipelines read ``__version__``, ``version`` and ``version_tuple`` from it.
The version itself is the package's :data:`koa_middleware.__version__`.

Examples
--------
>>> from koa_middleware._version import version, version_tuple
>>> version_tuple[:2] == tuple(int(part) for part in version.split(".")[:2])
True
"""

from __future__ import annotations

from . import __version__ as __version__

__all__ = [
    "__commit_id__",
    "__version__",
    "__version_tuple__",
    "commit_id",
    "version",
    "version_tuple",
]


def _as_tuple(text: str) -> tuple[int | str, ...]:
    """``'1.2.3'`` -> ``(1, 2, 3)``; parts that are not numbers stay strings (``'dev4'``)."""
    return tuple(int(part) if part.isdigit() else part for part in text.split("."))


version: str = __version__
__version_tuple__: tuple[int | str, ...] = _as_tuple(__version__)
version_tuple: tuple[int | str, ...] = __version_tuple__
#: The commit the package was built from; not recorded here.
__commit_id__: str | None = None
commit_id: str | None = __commit_id__
