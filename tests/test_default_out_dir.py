"""The default output folder is the user's data folder, for the CLI and the flows, never the source tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.settings import LoadSettings, configured_out_dir, default_out_dir
from tests.conftest import Cli, SimulatedPiper

ROOT = Path(__file__).resolve().parents[1]


def test_the_default_is_under_xdg_data_home_else_the_home_data_folder() -> None:
    assert default_out_dir({"HOME": "/home/ada"}) == Path("/home/ada/.local/share/piper-etl/warehouse")
    assert default_out_dir({"HOME": "/home/ada", "XDG_DATA_HOME": "/data"}) == Path("/data/piper-etl/warehouse")
    relative = {"HOME": "/home/ada", "XDG_DATA_HOME": "data"}  # the XDG rule: a relative path is ignored
    assert default_out_dir(relative) == Path("/home/ada/.local/share/piper-etl/warehouse")


def test_piper_out_dir_names_another_folder() -> None:
    assert configured_out_dir({"HOME": "/home/ada", "PIPER_OUT_DIR": "/srv/piper"}) == Path("/srv/piper")
    assert configured_out_dir({"HOME": "/home/ada", "PIPER_OUT_DIR": " "}) == default_out_dir({"HOME": "/home/ada"})


def test_a_flow_resolves_the_default_from_the_workers_environment() -> None:
    env = {"PIPER_ORG_ID": "o", "PIPER_OUT_DIR": "/srv/piper"}
    assert LoadSettings.resolve({"out_dir": None}, env).out_dir == Path("/srv/piper")
    assert LoadSettings.resolve({"out_dir": "/given"}, env).out_dir == Path("/given"), "a parameter wins"
    assert LoadSettings.resolve({"out_dir": "~/piper"}, env).out_dir == Path.home() / "piper"


def test_a_load_without_out_from_the_checkout_lands_in_the_data_folder_not_the_package(
    piper: SimulatedPiper, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(ROOT)
    before = sorted(p.name for p in (ROOT / "warehouse").iterdir())
    result = cli("load", "--org-id", piper.org_id, "--base-url", piper.base_url, *piper.dataset.session_ids[:2])
    assert result.code == 0, result.stderr
    assert (tmp_path / "data" / "piper-etl" / "warehouse" / "piper.duckdb").is_file()
    assert sorted(p.name for p in (ROOT / "warehouse").iterdir()) == before, "nothing written into the package"
    report = cli("sql", "SELECT count(*) FROM runs")
    assert report.code == 0 and "2" in report.stdout, "sql reads the same default folder"
