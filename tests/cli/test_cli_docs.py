"""The README and ``--help`` match the code: the README's selector example runs as
written, every option and environment variable is documented, every command has examples."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import astropy  # noqa: F401  (a dependency: missing, it must fail, not skip)
import click
import pytest

from koa_middleware.cli.commands import cli
from support.koa_cal import cli_env, koa_cal, write_cal

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIG_SOURCE = (ROOT / "koa_middleware" / "config.py").read_text()


def readme_block(containing: str) -> str:
    """The README's Python code block that contains ``containing``."""
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    return next(block for block in blocks if containing in block)


def koa_cal_outside_path(*args: str, env: dict[str, str], cwd: Path):
    """Run koa-cal as the console script does: the current folder is not on sys.path."""
    return subprocess.run(
        [sys.executable, "-P", "-m", "koa_middleware.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_readme_first_lines_are_the_two_commands():
    assert README.splitlines()[2:6] == [
        "```bash",
        "python3 -m pip install -e '.[all]' && koa-cal demo",
        "python3 -m pip install -e '.[dev]' && python3 -m pytest",
        "```",
    ]


def test_readme_selector_example_runs_as_written_on_a_fits_path(tmp_path):
    env = cli_env(tmp_path)
    darks = [
        write_cal(tmp_path / "in" / f"dark_{spec}_{day}.fits", IMAGETYP="DARK",
                  DATE_OBS=f"2025-03-0{day}T02:00:00", SPECTROG=spec, INSTERA="era1",
                  MASTRCAL=True)
        for spec, day in (("yJ", 1), ("yJ", 4), ("HK", 2))
    ]  # fmt: skip
    assert koa_cal("register", *map(str, darks), env=env).returncode == 0
    work = tmp_path / "work"
    work.mkdir()
    (work / "myselectors.py").write_text(readme_block("class DarkSelector"))
    write_cal(work / "sci_0042.fits", IMAGETYP="OBJECT", DATE_OBS="2025-03-02T06:00:00",
              SPECTROG="yJ", INSTERA="era1")  # fmt: skip
    command = "koa-cal explain --selector myselectors:DarkSelector --input sci_0042.fits"
    assert f"`{command}`" in README
    result = koa_cal_outside_path(*command.split()[1:], env=env, cwd=work)
    assert result.returncode == 0, result.stderr
    assert "chosen:   dark_yJ_1.fits" in result.stdout


def all_commands() -> dict[str, click.Command]:
    return dict(cli.commands)


def option_names(command: click.Command) -> list[str]:
    return [
        name
        for param in command.params
        if isinstance(param, click.Option)
        for name in param.opts + param.secondary_opts
        if name not in ("-h", "--help")
    ]


@pytest.mark.parametrize("name", sorted(all_commands()))
def test_each_command_help_lists_its_options_and_examples(tmp_path, name):
    result = koa_cal(name, "--help", env=cli_env(tmp_path))
    assert result.returncode == 0
    shown = " ".join(result.stdout.split())
    assert "Examples:" in shown and f"koa-cal {name}" in shown
    for option in option_names(all_commands()[name]):
        assert option in shown
        assert re.search(rf"(?<![\w-]){option}(?![\w-])", README), f"{name} {option}"
    assert "--instrument, --cache-dir, --url, --json, --retries, -v/--verbose, --debug" in shown


def test_global_options_and_environment_variables_are_documented(tmp_path):
    result = koa_cal("--help", env=cli_env(tmp_path))
    for option in option_names(cli):
        assert option in result.stdout and option in README, option
    variables = set(re.findall(r"``((?:KOA|KECK)_[A-Z_]+)``", CONFIG_SOURCE)) | {"KECK_LOGIN_URL"}
    variables -= {"KOA_NO_SUCH_FLAG"}
    assert len(variables) >= 12
    for variable in sorted(variables):
        assert variable in result.stdout, variable
        assert f"`{variable}`" in README, variable
