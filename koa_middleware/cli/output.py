"""Text, table, JSON and CSV rendering for ``koa-cal``.

Pure functions that turn the data the commands gather into strings; the
command module writes them to stdout through click.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "human_size",
    "render_csv",
    "render_explain",
    "render_json",
    "render_status",
    "render_table",
]

#: Columns ``koa-cal query`` shows in a table unless ``--columns`` says otherwise.
DEFAULT_QUERY_COLUMNS = (
    "id",
    "filename",
    "cal_type",
    "cal_version",
    "origin",
    "datetime_obs",
    "last_updated",
)


def human_size(size: int) -> str:
    """A byte count as a person reads it.

    Examples
    --------
    >>> human_size(512), human_size(2048), human_size(5 * 1024**3)
    ('512 B', '2.0 KiB', '5.0 GiB')
    """
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - unreachable


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    return " ".join(str(value).split())


def render_table(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None
) -> str:
    """Align ``rows`` in columns under a header line.

    Examples
    --------
    >>> print(render_table([{"a": 1, "b": "xy"}], ["a", "b"]))
    a  b
    -  --
    1  xy
    """
    headers = list(headers or columns)
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [len(h) for h in headers]
    for line in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, line, strict=True)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths).rstrip())
    out += [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    return "\n".join(out)


def render_json(data: Any) -> str:
    """Pretty JSON; anything JSON cannot hold is written as its string."""
    return json.dumps(data, indent=2, default=str)


def render_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV with a header line; by default the union of the rows' keys, in first-seen order.

    Examples
    --------
    >>> print(render_csv([{"a": 1}, {"a": 2, "b": "x"}]), end="")
    a,b
    1,
    2,x
    """
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        columns = list(seen)
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def render_status(status: Mapping[str, Any]) -> str:
    """The human form of ``koa-cal status``."""
    size = status["cache_bytes"]
    lines = [
        f"instrument:          {status['instrument']}",
        f"cache:               {status['cache_dir']}",
        f"database:            {status['database']}",
        f"records:             {status['records']}",
        f"last updated here:   {status['local_last_updated'] or '-'}",
    ]
    if "archive" in status:
        archive = status["archive"]
        remote = archive.get("last_updated") or "-"
        if archive.get("error"):
            remote = f"unreachable ({archive['error']})"
        elif not archive.get("url"):
            remote = "no archive configured"
        lines.append(f"last updated there:  {remote}")
        if archive.get("url"):
            lines.append(f"archive:             {archive['url']}")
    lines.append(f"missing files:       {len(status['missing_files'])}")
    lines.append(
        f"cache size:          {human_size(size['total'])} (files "
        f"{human_size(size['calibrations'])}, database {human_size(size['database'])})"
    )
    if status["by_type_origin"]:
        lines += ["", render_table(status["by_type_origin"], ["cal_type", "origin", "count"])]
    if status["missing_files"]:
        lines += ["", "missing:"] + [
            f"  {m['filename']}  ({m['id']})" for m in status["missing_files"]
        ]
    return "\n".join(lines)


def _distance(days: float | None) -> str:
    if days is None:
        return ""
    size = abs(days)
    text = f"{size * 24:.1f} h" if size < 2 else f"{size:.2f} d"
    return ("-" if days < 0 else "+") + text


def render_explain(report: Mapping[str, Any]) -> str:
    """The human form of :meth:`CalibrationSelector.explain`'s report."""
    lines = [f"selector: {report['selector']}"]
    options = ", ".join(f"{k}={_cell(v)}" for k, v in report["options"].items())
    lines.append(f"options:  {options}")
    frame = report["input"]
    shown = {k: v for k, v in frame.items() if k in ("filename", "datetime_obs", "mjd_start")}
    shown.update({k: v for k, v in frame.items() if k in report["options"].get("match", [])})
    lines.append(f"input:    {_cell(shown or frame)}")
    candidates = report["candidates"]
    if candidates:
        rows = [
            {
                "": "*" if c["chosen"] else "",
                "rank": c["rank"],
                "filename": c["filename"],
                "version": c["cal_version"],
                "origin": c["origin"],
                "datetime_obs": c["datetime_obs"],
                "dt": _distance(c["time_distance_days"]),
                "matched": c["matched"],
            }
            for c in candidates
        ]
        columns = ["", "rank", "filename", "version", "origin", "datetime_obs", "dt", "matched"]
        lines += ["", f"candidates ({report['candidates_total']}):", render_table(rows, columns)]
    chosen = report["chosen"]
    lines.append("")
    if chosen:
        lines.append(f"chosen:   {chosen.get('filename')} (id {chosen.get('id')})")
    else:
        lines.append("chosen:   none")
    lines.append(f"why:      {report['reason']}")
    eliminated = report.get("eliminated_by")
    if eliminated and eliminated.get("funnel"):
        lines += ["", "conditions applied one after another:"]
        lines.append(render_table(eliminated["funnel"], ["condition", "remaining"]))
        relaxed = [r for r in eliminated.get("relaxed", []) if r["remaining"]]
        if relaxed:
            lines += ["", "dropping one condition alone:"]
            lines.append(render_table(relaxed, ["without", "remaining"]))
    return "\n".join(lines)
