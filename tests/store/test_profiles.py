"""Instrument profiles: built-ins, TOML files, entry points, precedence, the store's families."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest

import koa_middleware.profiles
from koa_middleware import CalibrationStore
from koa_middleware.errors import ConfigurationError, InvalidRecordError
from koa_middleware.profiles import (
    GENERIC,
    HISPEC,
    LIGER,
    PROFILE_ENV,
    InstrumentProfile,
    load_profile,
    profile_from_toml,
)
from support.models import FileModel, dark

KPF_TOML = """\
instrument = "kpf"
cal_types = ["bias", "dark", "flat"]

[families]
default = ["cal_type", "ccd", "datetime_obs"]
bias = ["cal_type", "ccd", "readspeed", "datetime_obs"]

[header_map]
ccd = { keywords = ["CCDNAME", "CCD"], type = "str" }
readspeed = "RDSPEED"
exptime = { keywords = ["EXPTIME"], type = "float" }

[required]
dark = ["ccd"]
"""


@pytest.fixture(autouse=True)
def no_profile_file(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)


def write_distribution(folder: Path, dist: str, module: str, source: str, entries: str) -> None:
    """A real installed distribution: a module and its ``.dist-info`` with entry points."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    info = folder / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[koa_middleware.instruments]\n" + textwrap.dedent(entries)
    )


@pytest.fixture
def instrument_package(tmp_path, monkeypatch):
    """An instrument package on sys.path shipping profiles for kpf, hispec and two bad ones."""
    write_distribution(
        tmp_path / "site",
        "kpf_pipeline",
        "kpf_profiles",
        """
        from koa_middleware.profiles import InstrumentProfile

        def make_kpf():
            return InstrumentProfile("kpf", default_family=("cal_type", "ccd", "datetime_obs"))

        HISPEC_OWN = InstrumentProfile("hispec", default_family=("cal_type", "detector"))
        NOT_A_PROFILE = {"instrument": "broken"}
        MISNAMED = InstrumentProfile("other")
        """,
        """
        kpf = kpf_profiles:make_kpf
        hispec = kpf_profiles:HISPEC_OWN
        broken = kpf_profiles:NOT_A_PROFILE
        misnamed = kpf_profiles:MISNAMED
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    yield
    sys.modules.pop("kpf_profiles", None)


def test_built_in_profiles_come_from_the_package_entry_points():
    hispec = load_profile("HISPEC")
    assert hispec.source == "entry point koa_middleware.profiles:HISPEC"
    assert hispec.family_columns_for("dark") == [
        "cal_type",
        "spectrograph",
        "instrument_era",
        "datetime_obs",
    ]
    liger = load_profile("liger")
    assert liger.source == "entry point koa_middleware.profiles:LIGER"
    assert {"detector", "mode"} <= set(liger.family_columns_for("flat"))
    generic = load_profile("nirspec")
    assert (generic.instrument, generic.source) == ("nirspec", "built-in default")
    assert generic.family_columns_for("dark") == ["cal_type", "datetime_obs"]
    assert GENERIC.family_columns_for("arc") == ["cal_type", "datetime_obs"]


def test_profile_from_a_toml_file(tmp_path, monkeypatch):
    path = tmp_path / "kpf.toml"
    path.write_text(KPF_TOML)
    monkeypatch.setenv(PROFILE_ENV, str(path))
    profile = load_profile("kpf")
    assert profile.source == f"KOA_INSTRUMENT_PROFILE={path}"
    assert profile.family_columns_for("dark") == ["cal_type", "ccd", "datetime_obs"]
    assert profile.family_columns_for("BIAS") == ["cal_type", "ccd", "readspeed", "datetime_obs"]
    assert dict(profile.header_map) == {
        "ccd": ("CCDNAME", "CCD"),
        "readspeed": ("RDSPEED",),
        "exptime": ("EXPTIME",),
    }
    assert dict(profile.column_types) == {"ccd": "str", "exptime": "float"}
    assert profile.cal_types == ("bias", "dark", "flat")
    assert profile.required_for("dark") == ["ccd"] and profile.required_for("flat") == []
    # The file describes kpf: other instruments look further.
    assert load_profile("hispec").source == "entry point koa_middleware.profiles:HISPEC"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("instrument = 'kpf'\n[families\n", "not valid TOML"),
        ("cal_types = ['dark']\n", "no instrument"),
        ("instrument = 'kpf'\n[families]\ndefault = ['ccd', 'datetime_obs']\n", "cal_type"),
        ("instrument = 'kpf'\n[families]\ndark = 'cal_type'\n", "families.dark"),
        ("instrument = 'kpf'\n[families]\ndark = ['cal_type', 'bad name']\n", "families.dark"),
        ("instrument = 'kpf'\n[header_map]\nccd = {keywords = ['C'], type = 'date'}\n", "date"),
        ("instrument = 'kpf'\n[header_map]\nccd = {keyword = 'C'}\n", "header_map.ccd"),
        ("instrument = 'kpf'\n[header_map]\nccd = 3\n", "header_map.ccd"),
        ("instrument = 'kpf'\nfamily = ['cal_type']\n", "unknown key(s) family"),
        ("instrument = 'kpf'\ncal_types = 'dark'\n", "cal_types"),
    ],
)
def test_a_bad_toml_file_names_the_file_and_the_problem(tmp_path, monkeypatch, text, problem):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    monkeypatch.setenv(PROFILE_ENV, str(path))
    with pytest.raises(ConfigurationError) as caught:
        load_profile("kpf")
    assert str(path) in str(caught.value) and problem in str(caught.value)
    with pytest.raises(ConfigurationError, match="bad.toml"):
        CalibrationStore("kpf", str(tmp_path / "cache"), connect_remote=False)


def test_a_missing_toml_file_says_to_fix_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigurationError, match=r"absent\.toml.*KOA_INSTRUMENT_PROFILE"):
        load_profile("kpf")
    with pytest.raises(ConfigurationError, match="bad.toml"):
        profile_from_toml(tmp_path / "bad.toml")


def test_profiles_from_an_installed_package(instrument_package):
    kpf = load_profile("kpf")  # a callable returning the profile
    assert kpf.source == "entry point kpf_profiles:make_kpf"
    assert kpf.family_columns_for("dark") == ["cal_type", "ccd", "datetime_obs"]
    # An instrument package's own profile wins over the example shipped here.
    hispec = load_profile("hispec")
    assert hispec.source == "entry point kpf_profiles:HISPEC_OWN"
    assert hispec.family_columns_for("dark") == ["cal_type", "detector"]
    with pytest.raises(ConfigurationError, match=r"kpf_profiles:NOT_A_PROFILE.*dict"):
        load_profile("broken")
    with pytest.raises(ConfigurationError, match=r"describes 'other', not 'misnamed'"):
        load_profile("misnamed")


def test_precedence_toml_then_entry_point_then_default(tmp_path, monkeypatch, instrument_package):
    assert load_profile("kpf").source.startswith("entry point")
    path = tmp_path / "kpf.toml"
    path.write_text(KPF_TOML)
    monkeypatch.setenv(PROFILE_ENV, str(path))
    assert load_profile("kpf").source == f"KOA_INSTRUMENT_PROFILE={path}"
    assert load_profile("kpf").family_columns_for("bias")[2] == "readspeed"
    assert load_profile("nirspec").source == "built-in default"


def test_a_subclass_override_wins_over_the_profile(tmp_path):
    class OwnFamilies(CalibrationStore):
        def get_version_family_column_names(self, cal_type):
            return ["cal_type"]

    with OwnFamilies("hispec", str(tmp_path / "a"), connect_remote=False) as store:
        assert store.profile.source == "entry point koa_middleware.profiles:HISPEC"
        assert store.get_version_family_values(dark(1)) == {"cal_type": "dark"}
        store.register_calibration(FileModel(dark(1)))
        assert store.generate_calibration_version(dark(2, spectrograph="spec_b")) == "002"
    with CalibrationStore("hispec", str(tmp_path / "b"), connect_remote=False) as store:
        store.register_calibration(FileModel(dark(1)))
        assert store.generate_calibration_version(dark(1, spectrograph="spec_b")) == "001"


def test_the_store_loads_the_profile_once_at_construction(tmp_path, monkeypatch):
    path = tmp_path / "hispec.toml"
    path.write_text('instrument = "hispec"\n[families]\ndefault = ["cal_type"]\n')
    monkeypatch.setenv(PROFILE_ENV, str(path))
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        assert store.profile.source == f"KOA_INSTRUMENT_PROFILE={path}"
        path.write_text("not toml [")  # read at construction only
        assert store.get_version_family_column_names("dark") == ["cal_type"]
        store.register_calibration(FileModel(dark(1)))
        assert store.generate_calibration_version(dark(9)) == "002"


def test_sixteen_darks_of_two_spectrographs_are_sixteen_families(tmp_path):
    with CalibrationStore("hispec", str(tmp_path / "cache"), connect_remote=False) as store:
        assert store.profile.source == "entry point koa_middleware.profiles:HISPEC"
        records = []
        for night in range(1, 9):
            for spectrograph in ("yJ", "HK"):
                record = dark(
                    night,
                    filename=f"dark_{spectrograph}_{night}.fits",
                    spectrograph=spectrograph,
                    datetime_obs=f"2025-03-{night:02d}T02:00:00",
                )
                records.append(store.register_calibration(FileModel(record))[1])
        assert len({r["id"] for r in records}) == 16
        assert [r["cal_version"] for r in records] == ["001"] * 16
        assert len(store.query(cal_type="dark")) == 16
        assert store.detect_version_issues() == []


def test_check_record_converts_types_and_refuses_what_the_profile_forbids():
    record = {"cal_type": "dark", "detector": "imager", "mode": "img", "exptime": "30"}
    assert LIGER.check_record(record)["exptime"] == 30.0
    kpf = InstrumentProfile("kpf", required={"dark": ("ccd", "readspeed")}, source="here")
    with pytest.raises(InvalidRecordError, match=r"must have ccd, readspeed \(profile: here\)"):
        kpf.check_record({"cal_type": "dark", "readspeed": ""})
    assert kpf.check_record({"cal_type": "flat"}) == {"cal_type": "flat"}
    with pytest.raises(InvalidRecordError, match="not one the hispec profile knows"):
        HISPEC.check_record({"cal_type": "sky", "spectrograph": "yJ"})
    with pytest.raises(InvalidRecordError, match="exptime='long' is not a float"):
        HISPEC.check_record({"cal_type": "bias", "spectrograph": "yJ", "exptime": "long"})
    kind = InstrumentProfile("x", column_types={"master_cal": "bool", "n": "int"})
    assert kind.check_record({"master_cal": "yes", "n": "3"}) == {"master_cal": True, "n": 3}
    with pytest.raises(ConfigurationError, match="must include 'cal_type'"):
        InstrumentProfile("x", families={"dark": ("datetime_obs",)})


def test_profiles_module_imports_only_the_standard_library_and_record_rules():
    tree = ast.parse(Path(koa_middleware.profiles.__file__).read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            modules.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    ours = {m for m in modules if m.startswith(".") or m.startswith("koa_middleware")}
    assert ours <= {".bounded_read", ".errors", ".records"}, ours
    assert all(m.split(".")[0] in sys.stdlib_module_names for m in modules - ours), modules
