"""An explain page's question, read from its form: the frame, the selector, its options, a time.

The form is a GET (its URL is the permalink), so every field is text, as the
options of ``koa-cal explain`` are: the frame's metadata comes in as
``--meta KEY=VALUE`` would (``mjd_start`` read as a number), the selector's options
as ``--option KEY=VALUE``, and ``as_of`` as ``--as-of`` (a bare date is the end of
that day). :meth:`ExplainQuery.command_line` writes the same question as that
command, shell-quoted, and :func:`pin_manifest` the choice as the run manifest
``koa-cal explain --manifest`` would record.

Examples
--------
>>> query = ExplainQuery.from_fields(
...     {"selector": "nearest", "cal_type": "dark", "datetime_obs": "2024-01-01T10:00"},
...     ["datetime_obs", "spectrograph"])
>>> query.frame, query.options
({'datetime_obs': '2024-01-01T10:00'}, {'cal_type': 'dark'})
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidRecordError, KOAError
from ..fits_headers import DEFAULT_HEADER_MAP
from ..manifest import ManifestRecorder
from ..profiles import load_profile
from ..records import validate_column_name
from ..selector_options import accepted_options
from .local_tools import LocalTools

logger = logging.getLogger(__name__)

__all__ = ["ExplainQuery", "ExplainRefused", "frame_fields", "pin_manifest"]

#: Fields of the form that are not frame metadata.
RESERVED = frozenset({"selector", "cal_type", "options", "as_of", "extra", "csrf", "frame", "fits"})
#: Characters of one field, and ``KEY=VALUE`` lines of a text area, at most.
MAX_VALUE, MAX_LINES = 500, 50
#: Bytes of a frame given as JSON (the "save as manifest" form of an uploaded header).
MAX_FRAME_JSON = 64 << 10
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ExplainRefused(KOAError, ValueError):
    """The form's question cannot be asked; the message says which field and what to give."""


def frame_fields(instrument: str) -> list[str]:
    """The frame metadata the form asks for: ``filename`` and the header map's fields.

    The fields of :data:`~koa_middleware.fits_headers.DEFAULT_HEADER_MAP` and of the
    instrument profile's header map, but ``cal_type`` (a frame has none) and
    ``time_obs`` (it completes ``datetime_obs``).
    """
    try:
        mapped = list(load_profile(instrument).header_map)
    except KOAError:  # an unreadable profile: the default map still names the fields
        mapped = []
    names = ["filename", *DEFAULT_HEADER_MAP, *mapped]
    skipped = RESERVED | {"time_obs"}
    return [name for name in dict.fromkeys(names) if name not in skipped]


def _text(value: Any, name: str) -> str:
    text = str(value or "").strip()
    if len(text) > MAX_VALUE:
        raise ExplainRefused(f"{name} is longer than {MAX_VALUE} characters; shorten it.")
    if _CONTROL.search(text):
        raise ExplainRefused(f"{name} holds a control character; type plain text.")
    return text


def _pairs(text: str, name: str, column_keys: bool) -> dict[str, str]:
    """``KEY=VALUE`` lines, as ``koa-cal explain`` reads its repeated options."""
    found: dict[str, str] = {}
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    if len(lines) > MAX_LINES:
        raise ExplainRefused(f"{name} has more than {MAX_LINES} lines.")
    for line in lines:
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ExplainRefused(f"{name}: {line[:80]!r} is not KEY=VALUE; one per line.")
        if column_keys:
            try:
                validate_column_name(key)
            except InvalidRecordError as exc:
                raise ExplainRefused(f"{name}: {exc}") from None
        elif not key.isidentifier() or key.startswith("_"):
            raise ExplainRefused(f"{name}: {key[:80]!r} is not an option name.")
        found[key] = _text(value, f"{name} {key}")
    return found


@dataclass
class ExplainQuery:
    """The question of an explain page.

    Attributes
    ----------
    selector_name : str
        The selector, as the form names it (``nearest``, or ``MODULE:CLASS``).
    options : dict
        The selector's options as text (``cal_type`` first).
    frame : dict
        The frame's metadata, as handed to the selector.
    as_of_text : str
        The time as typed (empty: now).
    header_file : str | None
        The name of the uploaded FITS file the frame was read from, else None.
    """

    selector_name: str
    options: dict[str, str] = field(default_factory=dict)
    frame: dict[str, Any] = field(default_factory=dict)
    as_of_text: str = ""
    header_file: str | None = None

    @classmethod
    def selector_fields(cls, fields: Mapping[str, Any]) -> ExplainQuery:
        """The selector, its options and the time of a form (the frame left empty)."""
        name = _text(fields.get("selector"), "selector")
        options: dict[str, str] = {}
        cal_type = _text(fields.get("cal_type"), "cal_type")
        if cal_type:
            options["cal_type"] = cal_type
        options.update(_pairs(fields.get("options", ""), "options", column_keys=False))
        return cls(name, options, {}, _text(fields.get("as_of"), "as_of"))

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any], frame_names: Sequence[str]) -> ExplainQuery:
        """The whole question of the GET form: the frame from its fields and extra lines.

        Raises
        ------
        ExplainRefused
            If a field is too long, holds a control character, or a line is not
            ``KEY=VALUE``.
        """
        query = cls.selector_fields(fields)
        frame: dict[str, Any] = {}
        for name in frame_names:
            value = _text(fields.get(name), name)
            if value:
                frame[name] = value
        frame.update(_pairs(fields.get("extra", ""), "more metadata", column_keys=True))
        if "mjd_start" in frame:
            try:
                frame["mjd_start"] = float(frame["mjd_start"])
            except ValueError:
                raise ExplainRefused("mjd_start must be a number.") from None
        query.frame = frame
        return query

    def with_frame_json(self, text: str) -> ExplainQuery:
        """This question with the frame given as a JSON object (an uploaded header's).

        Raises
        ------
        ExplainRefused
            If it is not a small JSON object of column names to plain values.
        """
        if len(text) > MAX_FRAME_JSON:
            raise ExplainRefused("The frame's metadata is too long; explain the frame again.")
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            frame = None
        if not isinstance(frame, dict) or not all(
            isinstance(v, str | int | float | bool) or v is None for v in frame.values()
        ):
            raise ExplainRefused("The frame's metadata is not readable; explain the frame again.")
        for key in frame:
            try:
                validate_column_name(key)
            except InvalidRecordError as exc:
                raise ExplainRefused(f"The frame's metadata: {exc}") from None
        self.frame = frame
        return self

    @property
    def as_of(self) -> str | None:
        """The time to select as of, as ``koa-cal explain --as-of`` reads it; None: now."""
        if not self.as_of_text:
            return None
        if _DATE_ONLY.match(self.as_of_text):
            return self.as_of_text + "T23:59:59.999"
        return self.as_of_text

    def selector(self, tools: LocalTools) -> Any:
        """Build the selector the form names, with its options.

        Raises
        ------
        ExplainRefused
            If the selector is not one of this site's, or refuses the options.
        """
        cls = tools.selectors.get(self.selector_name)
        if cls is None:
            offered = ", ".join(tools.selector_names()) or "none"
            raise ExplainRefused(f"Choose a selector: this site offers {offered}.")
        known = accepted_options(cls)
        unknown = [name for name in self.options if known is not None and name not in known]
        if unknown:
            guesses = difflib.get_close_matches(unknown[0], known or [], n=1)
            hint = f" (did you mean {guesses[0]}?)" if guesses else ""
            raise ExplainRefused(
                f"{cls.__name__} takes no option {', '.join(map(repr, unknown))}{hint}; its "
                f"options are {', '.join(known or [])}."
            )
        try:
            return cls(**self.options)
        except (TypeError, ValueError, KOAError) as exc:
            raise ExplainRefused(f"Cannot build {cls.__name__}: {exc}") from None

    def params(self, frame_names: Sequence[str]) -> dict[str, str]:
        """The GET parameters of this question (its permalink).

        The frame's values in ``frame_names`` have a field each; others go to ``extra``.
        """
        params = {"selector": self.selector_name, "cal_type": self.options.get("cal_type", "")}
        rest = {k: v for k, v in self.options.items() if k != "cal_type"}
        params["options"] = "\n".join(f"{k}={v}" for k, v in rest.items())
        params["as_of"] = self.as_of_text
        typed, extra = {}, {}
        for key, value in self.frame.items():
            (typed if key in frame_names else extra)[key] = str(value)
        params.update(typed)
        params["extra"] = "\n".join(f"{k}={v}" for k, v in extra.items())
        return {k: v for k, v in params.items() if v}

    def command_line(self, instrument: str, tools: LocalTools) -> str:
        """The ``koa-cal explain`` command asking the same, shell-quoted."""
        args = ["koa-cal", "--instrument", instrument]
        if tools.cache_dir:
            args += ["--cache-dir", tools.cache_dir]
        args += ["explain", "--selector", self.selector_name]
        for key, value in self.options.items():
            args += ["--option", f"{key}={value}"]
        for key, value in self.frame.items():
            args += ["--meta", f"{key}={value}"]
        if self.as_of_text:
            args += ["--as-of", self.as_of_text]
        return shlex.join(args)


def pin_manifest(
    instrument: str, tools: LocalTools, frame: Mapping[str, Any], selector: Any, chosen: Mapping
) -> dict[str, Any]:
    """The run manifest that pins ``chosen`` for ``frame``, as ``koa-cal explain --manifest``.

    The recorder's file is never written: its document is the download.
    """
    recorder = ManifestRecorder(Path("explain-manifest.json"), instrument, tools.archive_url)
    recorder.add("select_and_get_calibration", dict(frame), selector, chosen)
    return recorder.document()
