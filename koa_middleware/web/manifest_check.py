"""What became of the calibrations a run manifest pins, and how two manifests differ.

:func:`check_manifest` looks up every calibration a manifest pins in a
:class:`~.reader.CalibrationReader` and says, for each, whether it is still live,
retracted since (with the reason), superseded by a newer live version of its
version family, no longer the bytes the run used, or unknown here. A pin that is
not live must be redone. :func:`compare_manifests` pairs the selections of two
manifests (same call, same input, same ``cal_type``) and says which chose the same
calibration, which another, and which are in one manifest only.

Examples
--------
>>> check = check_manifest(reader, "hispec", read_manifest("run.json"))  # doctest: +SKIP
>>> f"{check.must_redo} of {len(check.pins)} pins must be redone"  # doctest: +SKIP
'1 of 3 pins must be redone'
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .reader import CalibrationReader, family_columns

logger = logging.getLogger(__name__)

__all__ = ["ManifestCheck", "ManifestComparison", "Pin", "PinPair", "check_manifest",
           "compare_manifests"]  # fmt: skip

#: Pin states, worst first: the order of the table.
STATES = ("unknown", "changed", "retracted", "superseded", "live")


@dataclass
class Pin:
    """One calibration a manifest pins, and what became of it.

    Attributes
    ----------
    chosen : dict
        The manifest's ``chosen`` (id, filename, cal_version, cal_type, file_md5, file_size).
    inputs : list of str
        The inputs whose selections chose it.
    state : str
        One of :data:`STATES`.
    record : dict | None
        The source's record of the pinned id.
    newer : dict | None
        The newest live version of its family above the pinned one, if any.
    """

    chosen: dict[str, Any]
    inputs: list[str] = field(default_factory=list)
    state: str = "live"
    record: dict[str, Any] | None = None
    newer: dict[str, Any] | None = None

    @property
    def must_redo(self) -> bool:
        """Whether a run using it must be redone (anything but live)."""
        return self.state != "live"


@dataclass
class ManifestCheck:
    """The pins of one manifest, worst first, and its header."""

    name: str
    header: dict[str, Any]
    pins: list[Pin]
    selections: int
    _by_id: dict[str, Pin] | None = field(default=None, repr=False)

    @property
    def must_redo(self) -> int:
        """How many pins must be redone."""
        return sum(pin.must_redo for pin in self.pins)

    @property
    def selections_to_redo(self) -> int:
        """How many of the manifest's selections chose a pin that must be redone."""
        return sum(len(pin.inputs) for pin in self.pins if pin.must_redo)

    def pin(self, cal_id: str) -> Pin | None:
        """The pin of ``cal_id``, if the manifest pins it."""
        if self._by_id is None:
            self._by_id = {pin.chosen["id"]: pin for pin in self.pins}
        return self._by_id.get(cal_id)


def check_manifest(
    reader: CalibrationReader, instrument: str, document: Mapping[str, Any], name: str = ""
) -> ManifestCheck:
    """Look up every calibration ``document`` (a checked manifest) pins in ``reader``.

    Parameters
    ----------
    reader : CalibrationReader
        The archive's catalog or a local cache.
    instrument : str
        The instrument whose records are looked up.
    document : Mapping
        A manifest as :func:`~koa_middleware.manifest.parse_manifest` returns it.
    name : str
        What the page calls the manifest (its file name).
    """
    pins: dict[str, Pin] = {}
    for entry in document["entries"]:
        chosen = entry["chosen"]
        pin = pins.setdefault(chosen["id"], Pin(dict(chosen)))
        pin.inputs.append(input_label(entry))
    found = reader.records_by_id(instrument, list(pins))
    families = _Families(reader, instrument)
    families.read_at_times(list(found.values()))
    for pin in pins.values():
        pin.record = found.get(pin.chosen["id"])
        pin.state = _state(pin.chosen, pin.record)
        if pin.record is not None:
            pin.newer = families.newer(pin.record)
            if pin.state == "live" and pin.newer is not None:
                pin.state = "superseded"
    ordered = sorted(pins.values(), key=lambda p: (STATES.index(p.state), p.chosen["filename"]))
    header = {k: v for k, v in document.items() if k != "entries"}
    return ManifestCheck(name, header, ordered, len(document["entries"]))


def _state(chosen: Mapping[str, Any], record: Mapping[str, Any] | None) -> str:
    if record is None:
        return "unknown"
    # A record without an MD5 cannot say its bytes changed; one with another MD5 does.
    md5 = str(record.get("file_md5") or "").lower()
    pinned_md5 = str(chosen.get("file_md5") or "").lower()
    if record.get("filename") != chosen.get("filename") or (md5 and md5 != pinned_md5):
        return "changed"
    return "retracted" if record.get("retracted_at") else "live"


class _Families:
    """The version families of the pinned records, each looked up once.

    Families whose columns include ``datetime_obs`` (the usual case) are read in one
    lookup per type and batch of times, instead of one per family: a manifest of
    thousands of pins has about as many families. Others are read one by one.
    """

    def __init__(self, reader: CalibrationReader, instrument: str):
        self.reader = reader
        self.instrument = instrument
        self._columns: dict[str, list[str]] = {}
        self._members: dict[tuple, list[dict[str, Any]]] = {}

    def columns(self, cal_type: str) -> list[str]:
        if cal_type not in self._columns:
            self._columns[cal_type] = family_columns(self.instrument, cal_type)
        return self._columns[cal_type]

    def key(self, record: Mapping[str, Any]) -> tuple:
        cal_type = str(record.get("cal_type"))
        return (cal_type, *(str(record.get(c)) for c in self.columns(cal_type)))

    def read_at_times(self, found: list[dict[str, Any]]) -> None:
        """Read the live members of the families of ``found`` that hold the time."""
        times: dict[str, set[str]] = {}
        for record in found:
            cal_type = str(record.get("cal_type"))
            if "datetime_obs" in self.columns(cal_type):
                times.setdefault(cal_type, set()).add(str(record.get("datetime_obs")))
                self._members.setdefault(self.key(record), [])
        for cal_type, stamps in times.items():
            for member in self.reader.live_at_times(self.instrument, cal_type, sorted(stamps)):
                members = self._members.get(self.key(member))
                if members is not None:
                    members.append(member)

    def newer(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """The newest live version of ``record``'s family above its own, if any."""
        key = self.key(record)
        if key not in self._members:
            self._members[key] = self.reader.family(self.instrument, record)
        version = str(record.get("cal_version") or "")
        newer = [
            member
            for member in self._members[key]
            if not member.get("retracted_at") and str(member.get("cal_version") or "") > version
        ]
        return max(newer, key=lambda m: (str(m.get("cal_version")), str(m["id"])), default=None)


def input_label(entry: Mapping[str, Any]) -> str:
    """How a selection's input is shown: its file name, else a digest of its metadata."""
    name = (entry.get("input") or {}).get("name")
    if name is not None:
        return str(name)
    text = json.dumps((entry.get("input") or {}).get("metadata"), sort_keys=True, default=str)
    return "metadata sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PinPair:
    """One selection in two manifests: ``state`` is same, changed, only first or only second."""

    call: str
    input: str
    cal_type: str
    state: str
    first: dict[str, Any] | None
    second: dict[str, Any] | None
    selector_changes: tuple[str, ...] = ()


@dataclass
class ManifestComparison:
    """The selections of two manifests, paired."""

    first: ManifestCheck
    second: ManifestCheck
    pairs: list[PinPair]

    def count(self, state: str) -> int:
        """How many pairs are in ``state``."""
        return sum(pair.state == state for pair in self.pairs)


def _selections(document: Mapping[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Entries by (call, input, cal_type); a selection recorded twice keeps the later one."""
    found = {}
    for entry in document["entries"]:
        key = (str(entry["call"]), input_label(entry), str(entry["chosen"].get("cal_type") or ""))
        found[key] = entry
    return found


def compare_manifests(
    first: ManifestCheck,
    second: ManifestCheck,
    first_document: Mapping[str, Any],
    second_document: Mapping[str, Any],
) -> ManifestComparison:
    """Pair the selections of two checked manifests, in the first's order, then the second's."""
    a, b = _selections(first_document), _selections(second_document)
    pairs = []
    for key in [*a, *(k for k in b if k not in a)]:
        left, right = a.get(key), b.get(key)
        if left is None or right is None:
            state = "only first" if right is None else "only second"
        elif left["chosen"]["id"] == right["chosen"]["id"]:
            state = "same"
        else:
            state = "changed"
        changes = _selector_changes(left, right) if left and right else ()
        pairs.append(
            PinPair(*key, state, left and left["chosen"], right and right["chosen"], changes)
        )
    return ManifestComparison(first, second, pairs)


def _selector_changes(left: Mapping[str, Any], right: Mapping[str, Any]) -> tuple[str, ...]:
    """What differs between the selectors of two entries: the class, or parameter names."""
    was, now = left.get("selector") or {}, right.get("selector") or {}
    if was.get("class") != now.get("class"):
        return (f"selector {was.get('class')} -> {now.get('class')}",)
    before, after = was.get("parameters") or {}, now.get("parameters") or {}
    return tuple(
        f"{name}: {before.get(name)!r} -> {after.get(name)!r}"
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    )
