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

from ..records import escape_controls

logger = logging.getLogger(__name__)

__all__ = [
    "MISSING_SHOWN",
    "cell",
    "count",
    "csv_value",
    "escape_controls",
    "human_size",
    "render_csv",
    "render_explain",
    "render_json",
    "render_status",
    "render_table",
    "render_verify",
]

#: How many missing files ``koa-cal status`` and ``koa-cal verify`` list by name.
MISSING_SHOWN = 10

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


#: First characters that make a spreadsheet read a CSV cell as a formula (OWASP).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def count(number: int, singular: str, plural: str | None = None) -> str:
    """A count with thousands separators and the noun that agrees with it.

    Examples
    --------
    >>> count(2014, "record"), count(1, "file"), count(3, "version issue")
    ('2,014 records', '1 file', '3 version issues')
    """
    noun = singular if number == 1 else plural or f"{singular}s"
    return f"{number:,} {noun}"


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


def cell(value: Any, none: str = "") -> str:
    """One value on one line of a table or a text: escaped, its white space collapsed.

    Parameters
    ----------
    value : Any
        A value of a record or a report.
    none : str
        What None is shown as.

    Returns
    -------
    str
        The text (see :func:`escape_controls`).

    Examples
    --------
    >>> cell("hot\\x1b[2J  pixels"), cell(None, none="none"), cell(["a", 1.5])
    ('hot\\\\x1b[2J pixels', 'none', 'a, 1.5')
    """
    if value is None:
        return none
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{cell(k)}={cell(v, none)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(cell(v, none) for v in value)
    # Escaped first, so that a line break in a value shows as \n instead of vanishing.
    return " ".join(escape_controls(str(value), keep="\t").split())


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
    cells = [[cell(row.get(column)) for column in columns] for row in rows]
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


def csv_value(value: Any) -> Any:
    """A value as a CSV cell: text that a spreadsheet would run as a formula is defused.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
    gets a leading ``'`` (OWASP's rule against CSV injection), and control
    characters are escaped (:func:`escape_controls`; a tab stays). Numbers
    and None are left as they are.

    Examples
    --------
    >>> print(csv_value('=HYPERLINK("http://x","click")'))
    '=HYPERLINK("http://x","click")
    >>> csv_value(-1.5), csv_value("dark")
    (-1.5, 'dark')
    """
    if not isinstance(value, str):
        return value
    guarded = "'" + value if value.startswith(_FORMULA_STARTS) else value
    return escape_controls(guarded, keep="\t")


def render_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV with a header line; by default the union of the rows' keys, in first-seen order.

    Each cell goes through :func:`csv_value`.

    Examples
    --------
    >>> print(render_csv([{"a": 1}, {"a": 2, "b": "x"}, {"a": 3, "b": "@SUM(A1)"}]), end="")
    a,b
    1,
    2,x
    3,'@SUM(A1)
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
    wanted = list(columns)
    writer.writerows({key: csv_value(row.get(key)) for key in wanted} for row in rows)
    return buffer.getvalue()


def _names_capped(rows: Sequence[Mapping[str, Any]], total: int) -> list[str]:
    """``  filename  (id)`` lines for the first rows, and how many more there are."""
    lines = [f"  {cell(row['filename'])}  ({cell(row['id'])})" for row in rows[:MISSING_SHOWN]]
    if total > len(lines):
        lines.append(f"  and {total - len(lines):,} more")
    return lines


def render_status(status: Mapping[str, Any]) -> str:
    """The human form of ``koa-cal status``.

    Parameters
    ----------
    status : Mapping
        What :func:`koa_middleware.cache.report.cache_status` returned, with
        ``archive`` (``url``, ``last_updated``, ``not_pushed``,
        ``not_pulled`` or ``error``) when the command asked the archive.

    Returns
    -------
    str
        The text; files not downloaded are named up to :data:`MISSING_SHOWN`,
        then counted ("and 1,990 more").

    Examples
    --------
    >>> text = render_status(cache_status_of_a_store)  # doctest: +SKIP
    """
    size = status["cache_bytes"]
    lines = [
        f"instrument:          {status['instrument']}",
        f"cache:               {status['cache_dir']}",
        f"database:            {status['database']}",
        f"records:             {status['records']:,}",
        f"last updated here:   {status['local_last_updated'] or '-'}",
    ]
    if "archive" in status:
        lines += _archive_lines(status["archive"])
    missing = status["files_not_downloaded"]
    hint = " (koa-cal sync --files fetches them)" if missing else ""
    lines.append(f"not downloaded:      {count(missing, 'file')}{hint}")
    limit = size.get("limit")
    bound = f"; limit {human_size(limit)}, KOA_CACHE_MAX_SIZE" if limit is not None else ""
    lines.append(
        f"cache size:          {human_size(size['total'])} (files "
        f"{human_size(size['calibrations'])}, database {human_size(size['database'])}{bound})"
    )
    if status.get("retracted"):
        lines.append(f"retracted:           {count(status['retracted'], 'calibration')}")
    if status["by_type_origin"]:
        lines += ["", render_table(status["by_type_origin"], ["cal_type", "origin", "count"])]
    if missing:
        lines += ["", "files not downloaded:", *_names_capped(status["missing_files"], missing)]
    return "\n".join(lines)


def _archive_lines(archive: Mapping[str, Any]) -> list[str]:
    remote = archive.get("last_updated") or "-"
    if archive.get("error"):
        remote = f"unreachable ({archive['error']})"
    elif not archive.get("url"):
        remote = "no archive configured"
    lines = [f"last updated there:  {remote}"]
    if archive.get("url"):
        lines.append(f"archive:             {archive['url']}")
    if archive.get("not_pushed") is not None:
        pushed = archive["not_pushed"]
        hint = " (koa-cal push uploads them)" if pushed else ""
        lines.append(f"not pushed:          {count(pushed, 'record')}{hint}")
    if archive.get("not_pulled") is not None:
        pulled = archive["not_pulled"]
        hint = " (koa-cal sync pulls them)" if pulled else ""
        lines.append(f"not pulled:          {count(pulled, 'record')}{hint}")
    return lines


#: What ``koa-cal verify`` calls each problem.
PROBLEM_WORDS = {"missing": "lost", "corrupt": "damaged", "invalid": "invalid record"}


def render_verify(report: Mapping[str, Any], repair: bool) -> str:
    """The human form of ``koa-cal verify``.

    Files never downloaded (the normal state after a sync without ``--files``)
    are counted apart from files lost or damaged after they were placed.

    Parameters
    ----------
    report : Mapping
        What :func:`koa_middleware.cache.report.verify_cache` returned.
    repair : bool
        Whether repairs were tried.

    Returns
    -------
    str
        The text.

    Examples
    --------
    >>> print(render_verify({"checked": 2, "ok": 2, "problems": [], "not_downloaded": [],
    ...                      "unrepaired": 0}, repair=False))
    Checked 2 records: 2 intact, 0 not downloaded yet, 0 lost or damaged.
    """
    lines = []
    problems = report["problems"]
    if problems:
        columns = ["filename", "problem", "detail"] + (["repaired"] if repair else [])
        rows = [
            dict(p, problem=PROBLEM_WORDS.get(p["problem"], p["problem"]),
                 detail=p.get("repair_error") or p["detail"])
            for p in problems
        ]  # fmt: skip
        lines += [render_table(rows, columns), ""]
    waiting = report["not_downloaded"]
    if waiting:
        lines += ["not downloaded yet:", *_names_capped(waiting, len(waiting)), ""]
    summary = (
        f"Checked {count(report['checked'], 'record')}: {report['ok']:,} intact, "
        f"{len(waiting):,} not downloaded yet, {len(problems):,} lost or damaged"
    )
    if repair:
        summary += f" ({report['unrepaired']:,} not repaired)"
    lines.append(summary + ".")
    if waiting:
        lines.append("koa-cal sync --files downloads the files not downloaded yet.")
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
    options = ", ".join(f"{k}={cell(v, none='none')}" for k, v in report["options"].items())
    lines.append(f"options:  {options}")
    frame = report["input"]
    shown = {k: v for k, v in frame.items() if k in ("filename", "datetime_obs", "mjd_start")}
    shown.update({k: v for k, v in frame.items() if k in report["options"].get("match", [])})
    lines.append(f"input:    {cell(shown or frame)}")
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
        lines.append(f"chosen:   {cell(chosen.get('filename'))} (id {cell(chosen.get('id'))})")
    else:
        lines.append("chosen:   none")
    lines.append(f"why:      {cell(report['reason'])}")
    retracted = report.get("retracted") or []
    if retracted:
        lines += ["", f"skipped, retracted ({len(retracted)}):"]
        lines.append(render_table(retracted, ["filename", "cal_version", "retracted_at", "reason"]))
    eliminated = report.get("eliminated_by")
    if eliminated and eliminated.get("funnel"):
        lines += ["", "conditions applied one after another:"]
        lines.append(render_table(eliminated["funnel"], ["condition", "remaining"]))
        relaxed = [r for r in eliminated.get("relaxed", []) if r["remaining"]]
        if relaxed:
            lines += ["", "dropping one condition alone:"]
            lines.append(render_table(relaxed, ["without", "remaining"]))
    return "\n".join(lines)
