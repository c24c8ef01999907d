"""The protocol a calibration data model implements to be stored.

Any object with ``save(output_dir=None, output_path=None) -> str`` and
``to_record() -> dict`` can be registered with
:meth:`koa_middleware.store.CalibrationStore.register_calibration`; see
:class:`koa_middleware.fits.FITSCalibration` for one built on FITS files.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

from .errors import InvalidRecordError

logger = logging.getLogger(__name__)

__all__ = ["SupportsCalibrationModelIO", "record_of"]


@runtime_checkable
class SupportsCalibrationModelIO(Protocol):
    """A calibration data model that can write its file and describe itself.

    Examples
    --------
    >>> class Dark:
    ...     def save(self, output_dir=None, output_path=None): ...
    ...     def to_record(self): return {}
    >>> isinstance(Dark(), SupportsCalibrationModelIO)
    True
    """

    def save(self, output_dir: str | None = None, output_path: str | None = None) -> str:
        """Write the calibration file and return its path.

        Parameters
        ----------
        output_dir : str | None
            Folder to write into, under the model's own file name.
        output_path : str | None
            Full path to write to; takes precedence over ``output_dir``.

        Returns
        -------
        str
            The path of the written file.
        """
        ...

    def to_record(self) -> dict:
        """Return the calibration's metadata record (a flat dict)."""
        ...


def record_of(cal: dict | SupportsCalibrationModelIO | Any) -> dict:
    """Return the record of ``cal``: the dict itself, or a model's ``to_record()``.

    Raises
    ------
    InvalidRecordError
        (a ``ValueError``) if ``cal`` is neither a dict nor a model, or its
        ``to_record()`` does not return a dict.

    Examples
    --------
    >>> record_of({"cal_type": "dark"})
    {'cal_type': 'dark'}
    """
    if isinstance(cal, dict):
        return cal
    if hasattr(cal, "to_record"):
        record = cal.to_record()
        if not isinstance(record, dict):
            raise InvalidRecordError(
                f"{type(cal).__name__}.to_record() returned {type(record).__name__}; "
                "it must return a dict."
            )
        return record
    raise InvalidRecordError(
        f"Expected a calibration record (dict) or a model with to_record(), "
        f"got {type(cal).__name__}."
    )
