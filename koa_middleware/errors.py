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
