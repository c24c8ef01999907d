"""The exception hierarchy of koa_middleware.

Every error the package raises on purpose derives from :class:`KOAError`, so a
pipeline can catch them all at once. Errors that callers of the reference API
expect as ``ValueError`` (bad records, bad configuration) also subclass
``ValueError``. Messages say what went wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "KOAError",
    "ConfigurationError",
    "InvalidRecordError",
    "VersionLimitError",
    "CalibrationNotFoundError",
    "CalibrationSaveError",
    "ChecksumMismatchError",
    "ArchiveError",
    "RemoteUnavailableError",
    "AuthenticationError",
    "KOADownloadError",
    "CacheFullError",
    "UnsafeCachePathError",
    "ManifestError",
    "RetractedCalibrationError",
    "LockTimeoutError",
]


class KOAError(Exception):
    """Base class of every error raised by koa_middleware."""


class ConfigurationError(KOAError, ValueError):
    """A required setting is missing or invalid (argument or environment variable)."""


class InvalidRecordError(KOAError, ValueError):
    """A calibration record, file name, column name or value breaks the record rules."""


class VersionLimitError(InvalidRecordError):
    """A version family already holds version 999; versions never wrap."""


class CalibrationNotFoundError(KOAError, LookupError):
    """No calibration matches, neither in the local cache nor on the archive."""


class ChecksumMismatchError(KOAError, ValueError):
    """A file's size or MD5 does not match its record."""


class ArchiveError(KOAError):
    """The archive answered with an error.

    Parameters
    ----------
    message : str
        What went wrong and what to do.
    url : str | None
        The URL that was requested.
    status : int | None
        The HTTP status code, when there was an answer.
    """

    def __init__(self, message: str, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status


class RemoteUnavailableError(ArchiveError, ConnectionError):
    """The archive is not configured or cannot be reached."""


class AuthenticationError(ArchiveError, PermissionError):
    """The archive refused the credentials (401) or their scope (403)."""


class KOADownloadError(ArchiveError, RuntimeError):
    """A download from the Keck Observatory Archive failed (an answer other than 200, or a
    broken connection); a ``RuntimeError`` too, as callers of ``download_koa`` expect."""


class CalibrationSaveError(KOAError):
    """A calibration model's ``save()`` failed or wrote no file."""


class CacheFullError(KOAError, OSError):
    """A file system of the calibration cache has no room for a file being written.

    Raised for ENOSPC (no space left), EDQUOT (quota exceeded) and EFBIG (the
    file-size limit of the process); the partial file is removed first, so the
    space it took is free again.

    Parameters
    ----------
    message : str
        Which folder is full, how much was needed, and what to do.
    folder : str | None
        The cache folder that is full.
    needed : int | None
        Bytes the write needed, when known.
    code : int | None
        The ``errno`` of the failed write.
    """

    def __init__(
        self,
        message: str,
        folder: str | None = None,
        needed: int | None = None,
        code: int | None = None,
    ):
        super().__init__(message)
        self.errno = code
        self.folder = folder
        self.needed = needed


class UnsafeCachePathError(KOAError, OSError):
    """A path of the calibration cache is a link leading out of it, or not what the store made.

    The store never writes through such a path; the message says which path to
    remove.
    """


class ManifestError(KOAError, LookupError):
    """A run manifest cannot be read, or does not pin what a replayed run asks for.

    The message names the manifest and the input, and says how to fall back to
    selecting (``manifest_fallback=True``).
    """


class RetractedCalibrationError(KOAError, LookupError):
    """A calibration asked for by id was retracted; the message gives when and why.

    Set ``KOA_ALLOW_RETRACTED=1`` (or pass ``allow_retracted=True``) to get it
    anyway, with a warning, e.g. to reproduce an old reduction.
    """

    def __init__(self, message: str, cal_id: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.cal_id = cal_id
        self.reason = reason


class LockTimeoutError(KOAError, TimeoutError):
    """A calibration's lock stayed held by another process for longer than ``KOA_LOCK_TIMEOUT``.

    The message names the lock file and, where the system tells, the process
    holding it, and says what to do.

    Attributes
    ----------
    path : str
        The lock file.
    holder : int | None
        The process id of the holder, when known.
    """

    def __init__(self, message: str, path: str, holder: int | None = None):
        super().__init__(message)
        self.path = path
        self.holder = holder
