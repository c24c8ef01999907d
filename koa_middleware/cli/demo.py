"""The end-to-end demonstration behind ``koa-cal demo``.

It runs the whole job on small synthetic HISPEC data, on this machine only:

1. writes master darks, flats and arcs for both HISPEC spectrographs (``yJ``
   and ``HK``), two instrument eras and six nights, some reprocessed into
   later versions, plus a handful of science frames;
2. starts a ``koa-archive`` on a free loopback port over a temporary folder,
   with a write token for the publisher and a read token for the pipeline;
3. publishes the calibrations: a store registers them (its version families
   include the spectrograph and era, as the HISPEC instrument profile of
   :mod:`koa_middleware.profiles` sets) and pushes them to the archive;
4. builds a pipeline store on a fresh cache and syncs it;
5. selects the best dark (nearest in time) and flat (latest version within
   two days) for each science frame, downloads and verifies the files, and
   prints what was chosen and why;
6. shuts the archive down and removes everything, unless ``keep`` is given.

While it runs, the archive's web pages (``/ui/``) are open for reading at the URL it
prints; with ``keep``, it ends with the one command that serves them again.

Examples
--------
>>> from koa_middleware.cli.demo import run_demo
>>> summary = run_demo(echo=print)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import KOAError
from ..fits import FITSCalibration, import_astropy_fits, mjd_from_datetime
from ..hashing import verify_file
from ..selectors import LatestVersionSelector, NearestInTimeSelector
from ..store import CalibrationStore

logger = logging.getLogger(__name__)

__all__ = ["run_demo", "write_calibrations", "write_science_frames"]

INSTRUMENT = "hispec"
SPECTROGRAPHS = ("yJ", "HK")
#: (night, instrument era): a detector change on 2025-03-04 starts era 2.
NIGHTS = (
    ("2025-03-01", "era1"),
    ("2025-03-02", "era1"),
    ("2025-03-03", "era1"),
    ("2025-03-04", "era2"),
    ("2025-03-05", "era2"),
    ("2025-03-06", "era2"),
)
CAL_TIMES = {"dark": "02:00:00", "flat": "02:30:00", "arc": "03:00:00"}
EXPTIMES = {"dark": 600.0, "flat": 10.0, "arc": 30.0}
#: Calibrations reprocessed after their first release: (night, spectrograph, type) -> versions.
REPROCESSED = {
    ("2025-03-02", "yJ", "flat"): 2,
    ("2025-03-02", "HK", "flat"): 2,
    ("2025-03-05", "yJ", "dark"): 2,
    ("2025-03-05", "HK", "flat"): 3,
}
#: Science frames: (file stem, DATE-OBS, spectrograph, era).
SCIENCE_FRAMES = (
    ("sci_20250301_0042", "2025-03-01T09:15:00", "yJ", "era1"),
    ("sci_20250302_0107", "2025-03-02T12:40:00", "HK", "era1"),
    ("sci_20250303_0013", "2025-03-03T08:05:00", "yJ", "era1"),
    ("sci_20250304_0055", "2025-03-04T10:30:00", "HK", "era2"),
    ("sci_20250305_0090", "2025-03-05T10:20:00", "yJ", "era2"),
    ("sci_20250306_0021", "2025-03-06T07:45:00", "HK", "era2"),
)
READY_PREFIX = "koa-archive listening on "
# Variables of the user's environment that would change how the demo's stores behave.
_ISOLATED_ENV = (
    "KOA_CALIBRATIONS_URL",
    "KOA_API_TOKEN",
    "KOA_CALIBRATION_ORIGIN",
    "KOA_CALIBRATIONS_ORIGIN",
    "KOA_LOCAL_CALIBRATION_DATABASE_FILENAME",
    "KOA_LOCAL_DATABASE_FILENAME",
    "KOA_LOCAL_CALIBRATION_DATABASE_TABLE_NAME",
    "KOA_LOCAL_DATABASE_TABLE_NAME",
    "KOA_USE_CACHED_CALIBRATIONS",
    "KOA_INSTRUMENT_PROFILE",
    "KECK_OBSERVER_EMAIL",
    "KECK_OBSERVER_PASSWORD",
    "KECK_LOGIN_URL",
)


def _demo_store(cache: Path, **options: Any) -> CalibrationStore:
    """A HISPEC store on ``cache``; refuse a profile that would merge the spectrographs."""
    store = CalibrationStore(INSTRUMENT, str(cache), sync_on_init=False, **options)
    needed = {"spectrograph", "instrument_era", "datetime_obs"}
    if not needed <= set(store.get_version_family_column_names("dark")):
        source = store.profile.source
        store.close()
        raise KOAError(
            f"The HISPEC instrument profile in force ({source}) does not split version "
            f"families by {', '.join(sorted(needed))}, so the demo's yJ and HK calibrations "
            "would collide; reinstall koa_middleware (pip install -e .) so its "
            "koa_middleware.instruments entry points are registered."
        )
    return store


def _frame_data(kind: str, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (32, 32)
    if kind == "dark":
        return rng.normal(10.0, 1.5, shape).astype(np.float32)
    if kind == "flat":
        ramp = np.linspace(0.9, 1.1, shape[1], dtype=np.float32)
        return (np.tile(ramp, (shape[0], 1)) + rng.normal(0, 0.01, shape)).astype(np.float32)
    if kind == "arc":
        data = rng.normal(5.0, 1.0, shape).astype(np.float32)
        data[:, 4::7] += 500.0  # emission lines
        return data
    return (rng.normal(50.0, 5.0, shape)).astype(np.float32)


def _header(fits: Any, values: dict[str, Any]) -> Any:
    header = fits.Header()
    for key, value in values.items():
        header[key] = value
    return header


def write_calibrations(folder: Path) -> list[tuple[Path, bool]]:
    """Write the synthetic master calibrations; return ``(path, is_new_version)`` in order.

    Parameters
    ----------
    folder : Path
        Where to write the FITS files.

    Returns
    -------
    list of (Path, bool)
        Every file, first versions before later ones; the flag is True for a
        reprocessed version (to register with ``new_version=True``).
    """
    fits = import_astropy_fits()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    seed = 0
    for night, era in NIGHTS:
        for spec in SPECTROGRAPHS:
            for kind, clock in CAL_TIMES.items():
                stamp = f"{night}T{clock}"
                for version in range(1, REPROCESSED.get((night, spec, kind), 1) + 1):
                    seed += 1
                    name = f"hispec_{spec.lower()}_{kind}_{night.replace('-', '')}_v{version:03d}"
                    header = _header(
                        fits,
                        {
                            "INSTRUME": "HISPEC",
                            "IMAGETYP": kind.upper(),
                            "DATE-OBS": stamp,
                            "MJD-OBS": round(mjd_from_datetime(stamp), 6),
                            "SPECTROG": spec,
                            "INSTERA": era,
                            "MASTRCAL": True,
                            "EXPTIME": EXPTIMES[kind],
                            "NCOMBINE": 5 + version,
                        },
                    )
                    path = folder / f"{name}.fits"
                    fits.PrimaryHDU(_frame_data(kind, seed), header=header).writeto(path)
                    written.append((path, version > 1))
    return written


def write_science_frames(folder: Path) -> list[Path]:
    """Write the synthetic science frames (``IMAGETYP = 'OBJECT'``); return their paths."""
    fits = import_astropy_fits()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed, (stem, stamp, spec, era) in enumerate(SCIENCE_FRAMES, start=1000):
        header = _header(
            fits,
            {"INSTRUME": "HISPEC", "IMAGETYP": "OBJECT", "OBJECT": "HD 189733",
             "DATE-OBS": stamp, "SPECTROG": spec, "INSTERA": era, "EXPTIME": 300.0},
        )  # fmt: skip
        path = folder / f"{stem}.fits"
        fits.PrimaryHDU(_frame_data("science", seed), header=header).writeto(path)
        paths.append(path)
    return paths


@dataclass
class _Archive:
    process: subprocess.Popen
    base_url: str
    log_path: Path


def _archive_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "koa_middleware.archive", *args]


def _start_archive(root: Path, timeout: float = 30.0) -> _Archive:
    """Start ``koa-archive serve`` on a free loopback port and wait for its listening line."""
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            _archive_command(
                "serve",
                "--root",
                str(root),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--instrument",
                INSTRUMENT,
                "--anonymous-read",  # the web pages open without a token while it runs
            ),  # fmt: skip
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith(READY_PREFIX):
                return _Archive(process, line[len(READY_PREFIX) :].strip(), log_path)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    _stop_archive(_Archive(process, "", log_path))
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    reason = " | ".join(line.strip() for line in lines[-3:]) or "it printed nothing"
    raise KOAError(f"koa-archive did not start within {timeout:.0f} s: {reason}")


def _stop_archive(archive: _Archive) -> None:
    if archive.process.poll() is None:
        archive.process.terminate()
        try:
            archive.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            archive.process.kill()
            archive.process.wait()


def _create_token(root: Path, scope: str) -> str:
    result = subprocess.run(
        _archive_command(
            "token", "create", "--root", str(root), "--scope", scope, "--name", f"demo-{scope}"
        ),  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise KOAError(f"koa-archive token create failed: {result.stderr.strip()}")
    return result.stdout.strip()


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables (and hide the user's store settings) for a while."""
    saved = {name: os.environ.get(name) for name in (*values, *_ISOLATED_ENV)}
    try:
        for name in _ISOLATED_ENV:
            os.environ.pop(name, None)
        os.environ.update(values)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _short_distance(days: float) -> str:
    hours = days * 24
    return f"{hours:+.1f} h" if abs(hours) < 48 else f"{days:+.1f} d"


def _select(store: CalibrationStore, frames: list[Path]) -> list[dict[str, Any]]:
    match = ("spectrograph", "instrument_era")
    selectors = {
        "dark": NearestInTimeSelector("dark", match=match, max_days=3, master_only=True),
        "flat": LatestVersionSelector("flat", validity_days=2, match=match, master_only=True),
    }
    rows = []
    for frame in frames:
        for kind, selector in selectors.items():
            report = selector.explain(str(frame), store.local_db)
            chosen = report["chosen"]
            row = {
                "frame": frame.name,
                "spectrograph": report["input"].get("spectrograph"),
                "era": report["input"].get("instrument_era"),
                "cal_type": kind,
                "chosen": None,
                "version": None,
                "time_distance_days": None,
                "candidates": report["candidates_total"],
                "reason": report["reason"],
                "verified": False,
            }
            if chosen is not None:
                path, record = store.get_calibration(chosen)
                verify_file(path, record)  # size and MD5 against the record
                entry = next(c for c in report["candidates"] if c["chosen"])
                row.update(
                    chosen=record["filename"],
                    version=record["cal_version"],
                    time_distance_days=entry["time_distance_days"],
                    verified=True,
                )
            rows.append(row)
    return rows


def _why(row: dict[str, Any]) -> str:
    if row["chosen"] is None:
        return row["reason"]
    if row["cal_type"] == "dark":
        return f"nearest of {row['candidates']} matching"
    return f"latest version of {row['candidates']} within 2 d"


def _table(rows: list[dict[str, Any]]) -> str:
    from .output import render_table

    shown = [
        {
            "frame": r["frame"],
            "spec": r["spectrograph"],
            "era": r["era"],
            "type": r["cal_type"],
            "chosen": r["chosen"] or "-",
            "ver": r["version"] or "-",
            "dt": _short_distance(r["time_distance_days"]) if r["chosen"] else "-",
            "why": _why(r),
            "ok": "yes" if r["verified"] else "NO",
        }
        for r in rows
    ]
    return render_table(shown, ["frame", "spec", "era", "type", "chosen", "ver", "dt", "why", "ok"])


def run_demo(keep: Path | None = None, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the end-to-end demonstration; see the module description.

    Parameters
    ----------
    keep : Path | None
        Folder in which to write everything and leave it afterwards (archive,
        caches, FITS files). None uses a temporary folder that is removed.
    echo : callable | None
        Called with each line of the narrative and the final table; None is silent.

    Returns
    -------
    dict
        ``archive_url``, ``pages_url`` (the archive's web pages while it ran),
        ``serve_command`` (with ``keep``: serves the kept archive and its pages again,
        else None), ``published``, ``synced``, ``selections`` (one dict
        per frame and calibration type: ``chosen``, ``version``,
        ``time_distance_days``, ``reason``, ``verified``), ``verified_files``,
        ``seconds`` and ``kept`` (the folder, or None).

    Raises
    ------
    KOAError
        If a step fails (the archive does not start, a selection finds
        nothing, a file does not verify); the archive is stopped either way.
    ImportError
        If astropy (the ``[fits]`` extra) is not installed.
    """
    say = echo or (lambda _line: None)
    started = time.monotonic()
    if keep is not None:
        keep = Path(keep).expanduser().absolute()
        keep.mkdir(parents=True, exist_ok=True)
        return _run(keep, say, started, kept=keep)
    with tempfile.TemporaryDirectory(prefix="koa-cal-demo-") as scratch:
        return _run(Path(scratch), say, started, kept=None)


def next_commands(kept: Path) -> list[str]:
    """Three ``koa-cal`` commands to try on the cache a demo kept in ``kept``.

    The user's store settings that the demo hid (an archive URL, a database
    file name, ...) are unset for them (``env -u NAME``), so that they read
    the demo's cache as the demo wrote it.

    Examples
    --------
    >>> next_commands(Path("/tmp/koa_demo"))[0]  # doctest: +SKIP
    'koa-cal --instrument hispec --cache-dir /tmp/koa_demo/cache status'
    """
    unset = "".join(f"env -u {name} " for name in _ISOLATED_ENV if name in os.environ)
    base = (
        f"{unset}koa-cal --instrument {INSTRUMENT} --cache-dir {shlex.quote(str(kept / 'cache'))}"
    )
    frame = shlex.quote(str(kept / "science" / f"{SCIENCE_FRAMES[0][0]}.fits"))
    return [
        f"{base} status",
        f"{base} query --cal-type dark --columns filename,cal_version,spectrograph,datetime_obs",
        f"{base} explain --selector nearest --option cal_type=dark --input {frame}",
    ]


def pages_url(base_url: str) -> str:
    """The web pages of the archive whose API is at ``base_url``.

    Examples
    --------
    >>> pages_url("http://127.0.0.1:8750/api/calibrations")
    'http://127.0.0.1:8750/ui/hispec/'
    """
    return f"{base_url.split('/api/', 1)[0]}/ui/{INSTRUMENT}/"


def serve_command(kept: Path, port: int) -> str:
    """The command that serves the kept archive (and its web pages) on 127.0.0.1:``port``.

    Examples
    --------
    >>> serve_command(Path("/k"), 8750)
    'koa-archive serve --root /k/archive --instrument hispec --anonymous-read --port 8750'
    """
    root = shlex.quote(str(kept / "archive"))
    return (
        f"koa-archive serve --root {root} --instrument {INSTRUMENT} --anonymous-read --port {port}"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(work: Path, say: Callable[[str], None], started: float, kept: Path | None) -> dict:
    calibrations = write_calibrations(work / "incoming")
    frames = write_science_frames(work / "science")
    say(
        f"Wrote {len(calibrations)} synthetic HISPEC calibrations and {len(frames)} science frames."
    )
    archive = _start_archive(work / "archive")
    try:
        say(f"Started koa-archive at {archive.base_url}")
        say(f"Its web pages, open while the demo runs: {pages_url(archive.base_url)}")
        write_token = _create_token(work / "archive", "write")
        read_token = _create_token(work / "archive", "read")
        with _environment(KOA_PROGRESS="0"):
            publishing = {"url": archive.base_url, "token": write_token, "origin": "KECK"}
            with _demo_store(work / "publisher", **publishing) as publisher:
                for path, new_version in calibrations:
                    model = FITSCalibration(path, publisher.profile.header_map)
                    publisher.register_calibration(model, new_version=new_version)
                pushed = publisher.sync_records_to_remote()
        say(f"Published {len(pushed)} calibrations (files, then records) with a write token.")
        with _environment(KOA_PROGRESS="0"):
            with _demo_store(work / "cache", url=archive.base_url, token=read_token) as store:
                synced = store.sync_records_from_remote()
                say(f"Synced {len(synced)} records into a fresh cache with a read token.")
                rows = _select(store, frames)
                downloaded = len(os.listdir(store.layout.calibrations_dir))
    finally:
        _stop_archive(archive)
    say(f"Selected, downloaded and verified {downloaded} files; archive stopped.")
    say("")
    say(_table(rows))
    failed = [r for r in rows if not r["verified"]]
    if failed:
        raise KOAError(
            f"The demo's selection failed for {failed[0]['frame']} ({failed[0]['cal_type']}): "
            f"{failed[0]['reason']}"
        )
    seconds = round(time.monotonic() - started, 1)
    say("")
    say(f"Done in {seconds} s." + (f" Everything is kept in {kept}." if kept else ""))
    port = _free_port()
    serve = serve_command(kept, port) if kept else None
    if kept:
        say("")
        say("Try next, on the cache the demo kept:")
        for command in next_commands(kept):
            say(f"  {command}")
        say("")
        say("See the kept archive's web pages again (until Ctrl-C):")
        say(f"  {serve}")
        say(f"  then open http://127.0.0.1:{port}/ui/{INSTRUMENT}/")
    return {
        "archive_url": archive.base_url,
        "pages_url": pages_url(archive.base_url),
        "serve_command": serve,
        "published": len(pushed),
        "synced": len(synced),
        "selections": rows,
        "verified_files": downloaded,
        "seconds": seconds,
        "kept": str(kept) if kept else None,
    }
