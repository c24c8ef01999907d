"""The manifest check page, ``/INST/manifest``: what became of the calibrations a run pinned.

A run manifest (``koa-manifest/1``, :mod:`koa_middleware.manifest`) is uploaded
(a ``multipart/form-data`` post carrying the form's CSRF token, at most
:data:`MAX_MANIFEST_UPLOAD` bytes a manifest) or, in ``koa-cal ui --manifests DIR``,
picked from the ``*.json`` files of that folder (a GET, so the URL is a permalink;
only a name the folder lists is read, never a path from the request). One manifest
is checked pin by pin (:func:`~.manifest_check.check_manifest`); two are compared
selection by selection (:func:`~.manifest_check.compare_manifests`). Nothing is
written anywhere: the page only reads.

Examples
--------
>>> pages = ManifestPages(site_pages, LocalTools(manifests=Path("runs")))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..bounded_read import FileRefused, read_regular_file
from ..errors import ManifestError
from ..manifest import parse_manifest
from .form_body import BodyRefused, FormPart, FormToken, parse_multipart, read_body
from .local_tools import LocalTools
from .manifest_check import check_manifest, compare_manifests

logger = logging.getLogger(__name__)

__all__ = ["MAX_MANIFEST_UPLOAD", "ManifestPages", "list_manifests"]

#: Bytes of one manifest the page reads at most (some 7,000 selections).
MAX_MANIFEST_UPLOAD = 5 << 20
#: Bytes of an upload form: two manifests and the other fields.
MAX_FORM_BYTES = 2 * MAX_MANIFEST_UPLOAD + (64 << 10)
#: Manifest files of the folder listed at most.
MAX_LISTED = 1000


class ManifestRefused(ValueError):
    """A manifest the page does not check; ``status`` is the answer's code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def list_manifests(folder: Path | None) -> list[str]:
    """The names of the regular ``*.json`` files directly in ``folder`` (links left out)."""
    if folder is None:
        return []
    names = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    if stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                        names.append(entry.name)
    except OSError as exc:
        logger.warning("Cannot list the manifests of %s: %s", folder, exc)
        return []
    return sorted(names)[:MAX_LISTED]


class ManifestPages:
    """The handlers of the manifest check page.

    Parameters
    ----------
    pages : Pages
        The site's pages (rendering, access, the reader).
    tools : LocalTools | None
        ``koa-cal ui``'s tools: the folder whose manifests may be picked
        (``--manifests``), if any; None on the archive.
    """

    def __init__(self, pages: Any, tools: LocalTools | None = None):
        self.pages = pages
        self.local = tools is not None
        folder = tools.manifests if tools is not None else None
        self.folder = None if folder is None else Path(folder).absolute()

    def show(self, request: Request, inst: str, status: int = 200, **values: Any) -> Response:
        """The page: its forms, and a check or comparison when one is given."""
        token, new = FormToken.value(request)
        response = self.pages.render(
            request,
            "manifest.html",
            status=status,
            instrument=inst,
            csrf=token,
            listed=list_manifests(self.folder),
            picking=self.folder is not None,
            explains=self.local,
            max_mib=MAX_MANIFEST_UPLOAD >> 20,
            **values,
        )
        if new:
            FormToken.set_cookie(response, request, token, self.pages.base(request))
        return response

    def get(self, request: Request) -> Response:
        """The forms; with ``pick`` (and ``other``), the check of manifests of the folder."""
        refusal, inst = self.pages.guard(request)
        if refusal is not None:
            return refusal
        params = request.query_params
        names = [params.get(key, "").strip() for key in ("pick", "other")]
        if not names[0]:
            return self.show(request, inst, picked=names)
        try:
            documents = [(name, self._picked(name, inst)) for name in names if name]
            return self._checked(request, inst, documents, picked=names)
        except ManifestRefused as exc:
            return self.show(request, inst, exc.status, error=str(exc), picked=names)

    async def post(self, request: Request) -> Response:
        """Check an uploaded manifest, or compare two."""
        refusal, inst = self.pages.guard(request)
        if refusal is not None:
            return refusal
        try:
            body, _ = await read_body(request, MAX_FORM_BYTES)
            parts = parse_multipart(body, request.headers.get("content-type", ""))
        except BodyRefused as exc:
            return self.show(request, inst, exc.status, error=str(exc))
        fields: dict[str, FormPart] = {}
        for part in parts:
            fields.setdefault(part.name, part)
        sent = fields.get("csrf")
        if not FormToken.valid(request, sent.text if sent else None):
            return self.show(
                request, inst, 403, error="The form expired or came from another site; "
                "the page is loaded again: choose the manifest and send it once more."
            )  # fmt: skip
        try:
            documents = [
                self._uploaded(fields[key], inst)
                for key in ("manifest", "other")
                if key in fields and fields[key].filename
            ]
            if not documents:
                raise ManifestRefused("Choose a run manifest (a .json file) to check.")
            return await run_in_threadpool(self._checked, request, inst, documents)
        except ManifestRefused as exc:
            return self.show(request, inst, exc.status, error=str(exc))

    def _checked(
        self, request: Request, inst: str, documents: list[tuple[str, dict]], **values: Any
    ) -> Response:
        reader = self.pages.reader
        checks = [check_manifest(reader, inst, doc, name) for name, doc in documents]
        if len(checks) == 1:
            return self.show(request, inst, check=checks[0], **values)
        comparison = compare_manifests(checks[0], checks[1], documents[0][1], documents[1][1])
        return self.show(request, inst, comparison=comparison, **values)

    def _uploaded(self, part: FormPart, inst: str) -> tuple[str, dict]:
        name = os.path.basename(str(part.filename).replace("\\", "/"))[:200] or "upload.json"
        if len(part.data) > MAX_MANIFEST_UPLOAD:
            raise ManifestRefused(
                f"{name} is larger than {MAX_MANIFEST_UPLOAD >> 20} MiB, which this page reads "
                "at most; check it with koa-cal manifest verify instead.",
                413,
            )
        return name, _checked_document(part.data, name, inst)

    def _picked(self, name: str, inst: str) -> dict:
        if self.folder is None:
            raise ManifestRefused(
                "This site has no folder of manifests to pick from; upload the manifest "
                "(koa-cal ui --manifests DIR lists the manifests of DIR)."
            )
        if name not in list_manifests(self.folder):
            raise ManifestRefused(
                f"{name[:80]!r} is not one of the manifests of the folder; pick one from the list."
            )
        try:
            data = read_regular_file(self.folder / name, MAX_MANIFEST_UPLOAD)
        except FileRefused as exc:
            raise ManifestRefused(f"The manifest {name} is refused: it {exc.problem}.") from None
        except OSError as exc:
            raise ManifestRefused(f"Cannot read the manifest {name}: {exc.strerror}.") from None
        return _checked_document(data, name, inst)


def _checked_document(data: bytes, name: str, inst: str) -> dict:
    """A parsed manifest of ``inst``, or the reason it is refused."""
    try:
        document = parse_manifest(data, name)
    except ManifestError as exc:
        raise ManifestRefused(str(exc)) from None
    recorded = document.get("instrument")
    if recorded is not None and str(recorded).lower() != inst:
        raise ManifestRefused(
            f"{name} is a manifest of {str(recorded)[:40]!r}, not {inst}; check it on the "
            "pages of its instrument."
        )
    return document
