"""What a reference-shaped nearest-in-time selector chooses, computed without SQL."""

from __future__ import annotations


def reference_choice(records: list[dict], frame: dict) -> str | None:
    """What SQLite's ``ORDER BY ABS(mjd_start - :mjd)`` gives over rows in insertion order.

    Its sort is stable, so among rows at the same distance the first added wins.
    """
    candidates = [
        r for r in records if r["cal_type"] == "dark" and r["spectrograph"] == frame["spectrograph"]
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda r: abs(r["mjd_start"] - frame["mjd_start"]))["id"]
