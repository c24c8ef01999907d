"""Run manifests: which calibrations a reduction used, recorded and replayed.

A manifest is a JSON file. While :meth:`CalibrationStore.record_manifest
<koa_middleware.store.CalibrationStore.record_manifest>` is active, every
``select_and_get_calibration`` and ``get_calibration`` adds an entry: the input
(its file name and the metadata the selector reads), the selector (class and
parameters), and the calibration chosen (id, file name, version, MD5, size),
with the archive URL and the library version once for the run. A store made
with ``manifest="run.json"`` replays it: each selection the manifest knows
returns the pinned calibration, fetched and MD5-checked if missing.

The format (``"format": "koa-manifest/1"``)::

    {"format": "koa-manifest/1", "created": "2026-11-29T17:00:00.000",
     "library_version": "0.1.0", "instrument": "hispec",
     "archive_url": "https://.../api/calibrations",
     "entries": [{"call": "select_and_get_calibration",
                  "input": {"name": "sci_0001.fits", "metadata": {...}},
                  "selector": {"class": "koa_middleware.selectors:NearestInTimeSelector",
                               "parameters": {"cal_type": "dark", ...}},
                  "chosen": {"id": "...", "filename": "...", "cal_version": "001",
                             "cal_type": "dark", "file_md5": "...", "file_size": 123}}]}
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import __version__
from .bounded_read import FileRefused, json_nesting_exceeds, read_regular_file
from .cache.layout import create_private_file
from .errors import ChecksumMismatchError, ManifestError
from .fits import FITSCalibration
from .records import utc_now, validate_cal_id, validate_filename, validate_md5

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "ManifestRecorder",
    "ManifestReplay",
    "RunManifests",
    "check_pinned",
    "fetch_manifest",
    "input_identity",
    "parse_manifest",
    "read_manifest",
    "selector_identity",
    "verify_manifest",
]

FORMAT = "koa-manifest/1"
#: Fields of the chosen record that a manifest keeps.
CHOSEN_FIELDS = ("id", "filename", "cal_version", "cal_type", "file_md5", "file_size")
#: A manifest larger than this is refused (about 130,000 selections): parsing
#: takes some 27 times a manifest's size in memory.
MAX_MANIFEST_BYTES = 64 << 20
#: Arrays and objects nest at most this deep in a manifest (one made here: 5).
MAX_MANIFEST_DEPTH = 64


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    return repr(value)


def input_identity(input: Any, selector: Any = None) -> dict[str, Any]:
    """The identity of a selection's input: its file name and the metadata the selector reads.

    Parameters
    ----------
    input : Any
        A FITS path, a :class:`~koa_middleware.fits.FITSCalibration`, a dict of
        metadata, a data model, or (for ``get_calibration``) an id or a record.
    selector : CalibrationSelector | None
        The selector, whose ``get_metadata`` turns the input into metadata.

    Returns
    -------
    dict
        ``{"name": ..., "metadata": {...}}`` (JSON-safe).

    Examples
    --------
    >>> input_identity({"filename": "sci.fits", "exptime": 300})
    {'name': 'sci.fits', 'metadata': {'filename': 'sci.fits', 'exptime': 300}}
    """
    if isinstance(input, str | os.PathLike):
        name = os.path.basename(os.fspath(input))
    elif isinstance(input, FITSCalibration):
        name = input.path.name
    elif isinstance(input, Mapping):
        name = input.get("filename") or input.get("id")
    else:
        record = getattr(input, "to_record", None)
        name = record().get("filename") if callable(record) else None
    if selector is not None:
        metadata = selector.get_metadata(input)
    elif isinstance(input, Mapping):  # a record handed to get_calibration: its id says it
        metadata = {"id": input.get("id")} if input.get("id") else dict(input)
    else:
        metadata = {}
    return {"name": None if name is None else str(name), "metadata": _json_safe(metadata)}


def selector_identity(selector: Any) -> dict[str, Any]:
    """The selector's class (``module:QualName``) and the parameters that tell its choice.

    The parameters are those the selector declares as selecting (its
    ``selection_parameters``; every public attribute for a selector that
    declares none), without those at their constructor default, so that a
    new option with a default leaves the identity of older selections as it
    was. Display settings (``explain_limit``) are not part of it, nor is an
    origin that came from the environment rather than from the selector's
    arguments.

    Examples
    --------
    >>> from koa_middleware.selectors import LatestVersionSelector
    >>> selector_identity(LatestVersionSelector(cal_type="dark", explain_limit=5))
    {'class': 'koa_middleware.selectors:LatestVersionSelector', 'parameters': {'cal_type': 'dark'}}
    """
    if selector is None:
        return {"class": None, "parameters": {}}
    defaults = _json_safe(_parameter_defaults(selector))
    parameters = {
        name: value
        for name, value in _json_safe(_selection_values(selector)).items()
        if name not in defaults or defaults[name] != value
    }
    return {"class": _class_name(selector), "parameters": parameters}


def _class_name(selector: Any) -> str | None:
    if selector is None:
        return None
    kind = type(selector)
    return f"{kind.__module__}:{kind.__qualname__}"


def _selection_values(selector: Any) -> dict[str, Any]:
    """The selecting parameters' values; every public attribute of an object that is no selector."""
    values = getattr(selector, "selection_values", None)
    if callable(values):
        return dict(values())
    return {k: v for k, v in vars(selector).items() if not k.startswith("_")}


def _parameter_defaults(selector: Any) -> dict[str, Any]:
    defaults = getattr(selector, "parameter_defaults", None)
    return dict(defaults()) if callable(defaults) else {}


def _differences(recorded: Mapping[str, Any], selector: Any) -> list[str] | None:
    """The parameters of ``selector`` whose values differ from a recorded selector's.

    Returns None for another class. Only the parameters ``selector`` counts
    as selecting are compared: a recorded parameter it does not have (a
    display setting kept by an older release, an origin taken from the
    environment) is ignored. A parameter missing from the record compares
    by its default; without a default (recorded before it existed, or an
    origin that the recording left to the environment) it is not compared.
    """
    if recorded.get("class") != _class_name(selector):
        return None
    if selector is None:
        return []
    was = recorded.get("parameters") or {}
    defaults = _json_safe(_parameter_defaults(selector))
    changed = []
    for name, value in _json_safe(_selection_values(selector)).items():
        if name in was:
            before = was[name]
        elif name in defaults:
            before = defaults[name]
        else:
            continue
        if before != value:
            changed.append(name)
    return changed


def _key(call: str, identity: Mapping[str, Any]) -> str:
    """The replay key of a selection's input: the call and the input's name (else its metadata).

    The selector is matched separately (:func:`_differences`), so that an
    entry recorded with more parameters than a selector now declares still
    matches.
    """
    name = identity.get("name")
    if name is None:
        text = json.dumps(identity.get("metadata"), sort_keys=True)
        name = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return json.dumps([call, name])


def _chosen(record: Mapping[str, Any]) -> dict[str, Any]:
    return {field: record.get(field) for field in CHOSEN_FIELDS}


class ManifestRecorder:
    """Collects the entries of a run and writes them, atomically, to its manifest file.

    Parameters
    ----------
    path : str | os.PathLike
        The manifest file to write (replaced when the run ends).
    instrument : str
        The store's instrument.
    archive_url : str | None
        The archive the store uses, or None for a local-only store.
    """

    def __init__(self, path: str | os.PathLike, instrument: str, archive_url: str | None):
        self.path = Path(path).expanduser().absolute()
        self.header = {
            "format": FORMAT,
            "created": utc_now(),
            "library_version": __version__,
            "instrument": instrument,
            "archive_url": archive_url,
        }
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ManifestRecorder({str(self.path)!r}, entries={len(self.entries)})"

    @classmethod
    def extending(
        cls, path: str | os.PathLike, instrument: str, archive_url: str | None
    ) -> ManifestRecorder:
        """A recorder that keeps the entries ``path`` already holds (if it exists).

        Raises
        ------
        ManifestError
            If the file exists but is not a manifest, or is another instrument's.
        """
        recorder = cls(path, instrument, archive_url)
        if recorder.path.exists():
            document = read_manifest(recorder.path)
            if document.get("instrument") != instrument:
                raise ManifestError(
                    f"{recorder.path} is a manifest of {document.get('instrument')}, not "
                    f"{instrument}; record into another file."
                )
            recorder.header["created"] = document.get("created", recorder.header["created"])
            recorder.entries = list(document["entries"])
        return recorder

    def add(self, call: str, input: Any, selector: Any, record: Mapping[str, Any]) -> None:
        """Record one call and the calibration it returned."""
        entry = {
            "call": call,
            "input": input_identity(input, selector),
            "selector": selector_identity(selector),
            "chosen": _chosen(record),
        }
        with self._lock:
            self.entries.append(entry)

    def document(self) -> dict[str, Any]:
        """The manifest as it would be written now: the run's header and its entries."""
        with self._lock:
            return {**self.header, "entries": list(self.entries)}

    def write(self) -> Path:
        """Write the manifest (a temporary file renamed into place); return its path.

        The temporary file is created new (``O_CREAT|O_EXCL|O_NOFOLLOW``): a link
        or file planted at its name is removed, never written through. The
        rename then takes the place of whatever has the manifest's name (a link
        there is replaced, not followed).

        Raises
        ------
        UnsafeCachePathError
            If something keeps putting a file or link at the temporary name.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = self.document()
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.part")
        try:
            with open(create_private_file(partial), "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=1, sort_keys=False)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, self.path)
        finally:
            partial.unlink(missing_ok=True)
        logger.info("Wrote the run manifest %s (%d entries)", self.path, len(document["entries"]))
        return self.path


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a manifest file.

    Raises
    ------
    ManifestError
        If the file is missing, not a regular file (a link, a FIFO, a device),
        larger than :data:`MAX_MANIFEST_BYTES`, nested deeper than
        :data:`MAX_MANIFEST_DEPTH`, not JSON, not of this format, or an entry
        lacks a valid id, file name or MD5; the message names the file and the
        entry.
    """
    path = Path(path).expanduser()
    try:
        data = read_regular_file(path, MAX_MANIFEST_BYTES)
    except FileRefused as exc:
        raise ManifestError(f"The manifest {path} is refused: it {exc.problem}.") from None
    except OSError as exc:
        raise ManifestError(f"Cannot read the manifest {path}: {exc.strerror or exc}.") from None
    return parse_manifest(data, path)


def parse_manifest(data: bytes, path: str | os.PathLike) -> dict[str, Any]:
    """Check the bytes of a manifest, as :func:`read_manifest` does a file's.

    Parameters
    ----------
    data : bytes
        The manifest's bytes (the caller bounds their size).
    path : str | os.PathLike
        What the messages call it: its path, or the name it was uploaded under.

    Raises
    ------
    ManifestError
        As :func:`read_manifest`, for everything but reading the file.
    """
    if json_nesting_exceeds(data, MAX_MANIFEST_DEPTH):
        raise ManifestError(
            f"The manifest {path} nests arrays or objects more than {MAX_MANIFEST_DEPTH} "
            "levels deep, which no manifest does; it is not a calibration manifest."
        )
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ManifestError(f"{path} is not a JSON manifest: {exc}.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ManifestError(
            f"{path} is not a calibration manifest (format {FORMAT!r}); record one with "
            "store.record_manifest() or koa-cal explain --manifest."
        )
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise ManifestError(f"The manifest {path} has no list of entries.")
    for number, entry in enumerate(entries, 1):
        _check_entry(path, number, entry)
    return document


def _check_entry(path: str | os.PathLike, number: int, entry: Any) -> None:
    try:
        if not isinstance(entry, dict) or not isinstance(entry.get("chosen"), dict):
            raise ValueError("it is not an object with a 'chosen' calibration")
        chosen = entry["chosen"]
        validate_cal_id(chosen.get("id"))
        if "filename" not in chosen:
            raise ValueError("its chosen calibration has no 'filename'")
        validate_filename(chosen["filename"])
        if chosen.get("file_md5") is not None:  # a record without a file pins no bytes
            validate_md5(chosen["file_md5"])
        if not isinstance(entry.get("input"), dict) or not isinstance(entry.get("call"), str):
            raise ValueError("it lacks 'call' or 'input'")
        if not isinstance(entry["input"].get("metadata") or {}, dict):
            raise ValueError("its input's 'metadata' is not an object")
        selector = entry.get("selector") or {}
        if not isinstance(selector, dict) or not isinstance(selector.get("parameters") or {}, dict):
            raise ValueError("its 'selector' is not an object with an object of 'parameters'")
    except (ValueError, TypeError) as exc:
        raise ManifestError(f"Entry {number} of the manifest {path} is invalid: {exc}") from None


class ManifestReplay:
    """The pinned choices of a manifest, for a store that replays a run.

    A selection is the recorded one when the call and the input are the same
    and the selector is of the same class with the same selecting parameters
    (see :func:`selector_identity`). Manifests written before selectors
    declared their parameters hold every public attribute of each selector;
    the ones a selector does not declare are ignored, so they replay too.

    Parameters
    ----------
    path : str | os.PathLike
        The manifest to replay.
    fallback : bool
        Select as usual for an input the manifest does not know, instead of
        raising :class:`~koa_middleware.errors.ManifestError`.

    Raises
    ------
    ManifestError
        If the manifest cannot be read.
    """

    def __init__(self, path: str | os.PathLike, fallback: bool = False):
        self.path = Path(path).expanduser().absolute()
        self.document = read_manifest(self.path)
        self.fallback = fallback
        # Input -> its entries, latest last: a selection recorded twice pins the later choice.
        self._pins: dict[str, list[dict]] = {}
        for entry in self.document["entries"]:
            self._pins.setdefault(_key(entry["call"], entry["input"]), []).append(entry)

    def __repr__(self) -> str:
        return f"ManifestReplay({str(self.path)!r}, entries={len(self.document['entries'])})"

    def pinned(self, call: str, input: Any, selector: Any) -> dict | None:
        """The calibration the manifest pinned for this call, or None to select as usual.

        Raises
        ------
        ManifestError
            If the manifest does not know the input with this selector (and
            ``fallback`` is off), or knows it with other metadata (a changed
            frame).
        """
        identity = input_identity(input, selector)
        entry, changed = self._find(call, identity, selector)
        if entry is None:
            if self.fallback:
                logger.info("%s is not in %s; selecting", identity["name"], self.path.name)
                return None
            raise ManifestError(
                f"The manifest {self.path} pins no calibration for input "
                f"{identity['name'] or identity['metadata']!r} with {selector!r}{changed}; "
                "replay only the run it recorded, or pass manifest_fallback=True to select "
                "for new inputs."
            )
        recorded = entry["input"].get("metadata") or {}
        changed = sorted(
            k for k in set(recorded) | set(identity["metadata"])
            if recorded.get(k) != identity["metadata"].get(k)
        )  # fmt: skip
        if changed:
            raise ManifestError(
                f"Input {identity['name']!r} is not the frame {self.path.name} recorded: "
                f"{', '.join(changed)} differ. Replay with the recorded frames, or record anew."
            )
        return entry["chosen"]

    def _find(
        self, call: str, identity: Mapping[str, Any], selector: Any
    ) -> tuple[dict | None, str]:
        """The latest entry of this input recorded with this selector, else None and why."""
        nearest: list[str] | None = None
        for entry in reversed(self._pins.get(_key(call, identity), [])):
            changed = _differences(entry.get("selector") or {}, selector)
            if changed == []:
                return entry, ""
            if changed and (nearest is None or len(changed) < len(nearest)):
                nearest = changed
        if nearest:
            return None, f" (it recorded this input with other {', '.join(nearest)})"
        return None, ""


def check_pinned(chosen: Mapping[str, Any], record: Mapping[str, Any], manifest: Path) -> None:
    """Refuse a calibration whose bytes are not the ones the manifest pinned.

    Raises
    ------
    ChecksumMismatchError
        If the record's MD5 differs from the manifest's.
    """
    if str(record.get("file_md5") or "").lower() != _pinned_md5(chosen):
        raise ChecksumMismatchError(
            f"{chosen['filename']} (id {chosen['id']}) has MD5 {record.get('file_md5')} now, "
            f"but {manifest.name} pinned {chosen['file_md5']}; the calibration changed since "
            "the run was recorded, so the run cannot be reproduced with it."
        )


def _pinned_md5(chosen: Mapping[str, Any]) -> str:
    """The MD5 a pin recorded, lower case; empty for a record that had none."""
    return str(chosen.get("file_md5") or "").lower()


def _pinned(path: str | os.PathLike) -> dict[str, dict]:
    """The distinct calibrations a manifest pins, by id."""
    return {e["chosen"]["id"]: e["chosen"] for e in read_manifest(path)["entries"]}


def verify_manifest(cache: Any, path: str | os.PathLike) -> list[dict]:
    """What is missing or different in a cache of the calibrations a manifest pins.

    Each pin is looked up by its id: its file name and MD5 must be those of
    the cache's record of that id, and that record's file (a read-only
    cache's is checked where it is) must have the pinned MD5.

    Parameters
    ----------
    cache : LocalCache
        The cache to check (``store.cache``).
    path : str | os.PathLike
        The manifest.

    Returns
    -------
    list of dict
        ``id``, ``filename`` and ``problem`` for each pinned calibration that is
        not cached with its pinned MD5, or whose pin names another file name
        or MD5 than the cache's record of that id; empty when the cache holds
        them all.

    Raises
    ------
    ManifestError
        If the manifest cannot be read.

    Examples
    --------
    >>> verify_manifest(store.cache, "run.json")  # doctest: +SKIP
    []
    """
    problems = []
    for cal_id, chosen in _pinned(path).items():
        record = cache.db.query_id(cal_id)
        problem = (
            "no record in the cache" if record is None else _pin_problem(cache, chosen, record)
        )
        if problem is not None:
            problems.append({"id": cal_id, "filename": chosen["filename"], "problem": problem})
    return problems


def _pin_problem(cache: Any, chosen: Mapping[str, Any], record: Mapping[str, Any]) -> str | None:
    """What differs between a pin and the cache's record and file of the pinned id, or None.

    The pin's file name and MD5 are those of the id's own record, or the pin
    is wrong: hashing the file the pin names would vouch for another
    calibration's bytes.
    """
    from .hashing import file_md5

    pinned_md5 = _pinned_md5(chosen)
    if chosen["filename"] != record["filename"]:
        return (
            f"the pin names the file {chosen['filename']}, but calibration {record['id']} is "
            f"{record['filename']}; the manifest does not describe this calibration"
        )
    if str(record.get("file_md5") or "").lower() != pinned_md5:
        return (
            f"the pin's MD5 {chosen['file_md5']} is not the MD5 {record.get('file_md5')} of "
            f"calibration {record['id']} ({record['filename']})"
        )
    where = cache.locate(record)
    if not where.present or not where.path.is_file():
        return "not downloaded"
    if pinned_md5 and file_md5(where.path) != pinned_md5:
        return f"the cached file's MD5 is not the pinned {chosen['file_md5']}"
    return None


def fetch_manifest(store: Any, path: str | os.PathLike) -> list[str]:
    """Get every calibration a manifest pins (downloading what is missing); return the paths.

    Raises
    ------
    ManifestError
        If the manifest cannot be read.
    ChecksumMismatchError
        If a calibration's bytes are not the pinned ones.
    """
    manifest = Path(path)
    paths = []
    for cal_id, chosen in _pinned(path).items():
        found, record = store.get_calibration(cal_id, allow_retracted=True)
        check_pinned(chosen, record, manifest)
        paths.append(found)
    return paths


@contextmanager
def recording(recorder: ManifestRecorder) -> Iterator[ManifestRecorder]:
    """Yield ``recorder``, then write its manifest whatever happened in the block."""
    try:
        yield recorder
    finally:
        recorder.write()


class RunManifests:
    """The run manifests of one store: the one it replays, and the ones being recorded.

    The store asks :meth:`pinned` before it selects and tells :meth:`note`
    what its outermost calls returned.

    Parameters
    ----------
    instrument : str
        The store's instrument.
    archive_url : str | None
        The archive the store uses (shown form, no secrets), or None.
    replay : ManifestReplay | None
        The manifest whose choices are replayed, or None to select as usual.

    Examples
    --------
    >>> manifests = RunManifests("hispec", None)
    >>> manifests.pinned("sci.fits", None) is None
    True
    """

    def __init__(
        self, instrument: str, archive_url: str | None, replay: ManifestReplay | None = None
    ):
        self.instrument = instrument
        self.archive_url = archive_url
        self.replay = replay
        self._recorder: ManifestRecorder | None = None
        self._depth = threading.local()

    def __repr__(self) -> str:
        return f"RunManifests({self.instrument!r}, replay={self.replay!r})"

    @contextmanager
    def record(self, path: str | os.PathLike) -> Iterator[ManifestRecorder]:
        """Record every calibration the block selects or gets into the manifest ``path``.

        See :meth:`CalibrationStore.record_manifest
        <koa_middleware.store.CalibrationStore.record_manifest>`.
        """
        recorder = ManifestRecorder(path, self.instrument, self.archive_url)
        previous, self._recorder = self._recorder, recorder
        try:
            with recording(recorder):
                yield recorder
        finally:
            self._recorder = previous

    @contextmanager
    def outer_call(self) -> Iterator[bool]:
        """Yield whether this call is the outermost store call of its thread."""
        depth = getattr(self._depth, "value", 0)
        self._depth.value = depth + 1
        try:
            yield depth == 0
        finally:
            self._depth.value = depth

    def pinned(self, input: Any, selector: Any) -> dict | None:
        """The calibration the replayed manifest pinned for this selection, else None.

        Raises
        ------
        ManifestError
            If the manifest does not know the input (and has no fallback).
        """
        if self.replay is None:
            return None
        return self.replay.pinned("select_and_get_calibration", input, selector)

    def note(self, call: str, input: Any, selector: Any, record: Mapping) -> None:
        """Add an outermost call and what it returned to the manifest being recorded."""
        if self._recorder is not None:
            self._recorder.add(call, input, selector, record)
