"""Every parameter we add to a method of the reference's CalibrationStore is keyword-only.

A later version of the reference may add a positional parameter to one of
these methods; a call written for it must fail loudly on us, not bind to a
parameter of ours. The reference's parameters (names and order) are recorded
here as data, from its documentation.
"""

from __future__ import annotations

import inspect

import pytest

from koa_middleware import CalibrationStore

#: Method -> the reference's parameters, in order (``self`` left out).
REFERENCE = {
    "__init__": ["instrument_name", "cache_dir", "local_database_filename", "connect_remote",
                 "use_cached", "origin", "sync_on_init"],
    "calibration_file_in_cache": ["cal", "filename"],
    "calibration_record_in_cache": ["cal", "mode"],
    "close": [],
    "detect_version_issues": [],
    "download_calibration_file": ["calibration"],
    "generate_calibration_version": ["cal", "origin"],
    "get_calibration": ["cal"],
    "get_last_updated": ["source", "kwargs"],
    "get_missing_local_files": [],
    "get_missing_records": ["source", "mode"],
    "get_version_family_column_names": ["cal_type"],
    "get_version_family_values": ["cal"],
    "query": ["source", "kwargs"],
    "record_from": ["cal"],
    "register_calibration": ["cal", "origin", "new_version"],
    "save_calibration_file": ["cal", "cal_record"],
    "select_and_get_calibration": ["input", "selector"],
    "sync_records_from_cached_files": ["cals"],
    "sync_records_from_remote": ["cals", "mode"],
    "sync_records_to_remote": ["mode"],
}  # fmt: skip


@pytest.mark.parametrize("method", sorted(REFERENCE))
def test_the_reference_parameters_come_first_and_ours_are_keyword_only(method):
    parameters = list(inspect.signature(getattr(CalibrationStore, method)).parameters.values())
    parameters = parameters[1:]  # self
    reference = REFERENCE[method]
    assert [p.name for p in parameters[: len(reference)]] == reference
    for extra in parameters[len(reference) :]:
        assert extra.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD), (
            f"{method}({extra.name}) is not in the reference and can be given by position"
        )


def test_a_positional_argument_beyond_the_reference_is_refused(tmp_path):
    with pytest.raises(TypeError):
        CalibrationStore("hispec", str(tmp_path), None, False, None, None, False, "http://x")
    with CalibrationStore("hispec", str(tmp_path), connect_remote=False) as store:
        with pytest.raises(TypeError):
            store.get_calibration("1b4e28ba-2fa1-4d2b-883f-0016d3cca427", True)
