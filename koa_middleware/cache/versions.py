"""Calibration versions: the next one in a family, and checking a family's numbering.

A version family is the set of calibrations that share the values of the
family columns (``CalibrationStore.get_version_family_column_names``) and an
origin. Its versions run ``001``, ``002``, ... ``999`` and never wrap.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import KOAError, VersionLimitError
from ..records import MAX_VERSION, format_version

logger = logging.getLogger(__name__)

__all__ = ["find_version_issues", "next_version"]


def next_version(current: int, family: dict[str, Any], origin: str) -> str:
    """The version after ``current`` (0 for an empty family).

    Raises
    ------
    VersionLimitError
        If ``current`` is already 999.

    Examples
    --------
    >>> next_version(0, {"cal_type": "dark"}, "KECK")
    '001'
    """
    if current >= MAX_VERSION:
        raise VersionLimitError(
            f"Version family {family} of origin {origin} already holds version "
            f"{MAX_VERSION}; versions never wrap. Change a family value (such as "
            "datetime_obs) or register under another origin."
        )
    return format_version(current + 1)


def find_version_issues(
    rows: Iterable[dict], family_of: Callable[[dict], dict[str, Any]]
) -> list[dict]:
    """Duplicates, gaps and invalid versions among ``rows``.

    Parameters
    ----------
    rows : iterable of dict
        Calibration records.
    family_of : callable
        Returns a record's version-family values.

    Returns
    -------
    list[dict]
        One dict per problem: ``issue`` (``'duplicate'``, ``'gap'`` or
        ``'invalid'``), ``origin``, ``family``, ``cal_version`` and ``ids``.

    Examples
    --------
    >>> rows = [{"id": "a", "origin": "K", "cal_type": "dark", "cal_version": "002"}]
    >>> [i["issue"] for i in find_version_issues(rows, lambda r: {"cal_type": r["cal_type"]})]
    ['gap']
    """
    families: dict[tuple, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        try:
            family = family_of(row)
        except KOAError:
            continue
        key = (row.get("origin"), tuple(sorted(family.items())))
        families[key][str(row.get("cal_version"))].append(row["id"])
    issues = []
    for (origin, family), versions in families.items():
        base = {"origin": origin, "family": dict(family)}
        numbers = []
        for version, ids in sorted(versions.items()):
            if not (len(version) == 3 and version.isdigit() and version != "000"):
                issues.append({**base, "issue": "invalid", "cal_version": version, "ids": ids})
                continue
            numbers.append(int(version))
            if len(ids) > 1:
                issues.append({**base, "issue": "duplicate", "cal_version": version, "ids": ids})
        for missing in sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers)):
            issues.append(
                {**base, "issue": "gap", "cal_version": format_version(missing), "ids": []}
            )
    return issues
