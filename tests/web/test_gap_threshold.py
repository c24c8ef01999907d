"""The coverage map's gap threshold is a profile setting; ``gap_nights`` overrides it."""

from __future__ import annotations

import pytest

from koa_middleware.errors import ConfigurationError
from koa_middleware.profiles import DEFAULT_GAP_NIGHTS, HISPEC, profile_from_mapping
from support.archive import make_record


def test_the_profile_sets_the_gap_threshold_and_the_page_parameter_overrides_it(
    site, tmp_path, monkeypatch
):
    nights = ["2024-01-01", "2024-01-02", "2024-01-20"]  # a 17-night gap
    site.add([make_record(filename=f"d{n}.fits", datetime_obs=night, spectrograph="yJ")
              for n, night in enumerate(nights)])  # fmt: skip
    default = site.get("/hispec/").text
    assert HISPEC.gap_nights == DEFAULT_GAP_NIGHTS == 7
    assert "1 gap(s) longer than 7 nights" in default
    profile = tmp_path / "hispec.toml"
    profile.write_text('instrument = "hispec"\ngap_nights = 20\n')
    monkeypatch.setenv("KOA_INSTRUMENT_PROFILE", str(profile))
    relaxed = site.get("/hispec/").text
    assert "No gap longer than 20 nights" in relaxed
    assert 'name="gap_nights" value="20"' in relaxed  # the form shows the threshold in force
    overridden = site.get("/hispec/", gap_nights="10").text
    assert "gap: dark without records from 2024-01-03 to 2024-01-19 (17 nights)" in overridden
    assert "1 gap(s) longer than 10 nights" in overridden


@pytest.mark.parametrize("value", [-1, 366, "7", 2.5, True])
def test_a_profile_with_an_impossible_gap_threshold_is_refused(value):
    with pytest.raises(ConfigurationError, match="gap_nights must be a whole number"):
        profile_from_mapping({"instrument": "kpf", "gap_nights": value}, "example.toml")
