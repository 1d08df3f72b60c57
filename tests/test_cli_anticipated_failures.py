"""Failures a person can cause or meet print one clear error, never a traceback, and a documented status."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, assert_no_canary, load_args

PIPER_ETL = str(Path(sys.executable).with_name("piper-etl"))  # the console script of this venv


def run_piper_etl(
    *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """The venv's `piper-etl` in a fresh process, with the canary token and no other Piper or Prefect setting."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PIPER_", "PREFECT_"))}
    return subprocess.run(
        [*prefix, PIPER_ETL, *args], env={**clean, "PIPER_API_TOKEN": CANARY_TOKEN, **(env or {})},
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_prefect_server_is_one_error_not_a_traceback(free_port: int, tmp_path: Path) -> None:
    api_url = f"http://127.0.0.1:{free_port}/api"  # nothing listens there
    done = run_piper_etl(
        "load", "SID", "--org-id", "X", "--engine", "prefect", "--out", str(tmp_path / "out"),
        env={"PREFECT_API_URL": api_url, "PREFECT_HOME": str(tmp_path / "prefect")},
    )
    assert done.returncode == 4
    assert done.stderr == (
        f"piper-etl load: error: cannot reach the Prefect server at {api_url} (PREFECT_API_URL): "
        "All connection attempts failed\n"
        "  start it (prefect server start), or load without it: unset PREFECT_API_URL or pass --engine local\n"
    )
    assert "Traceback" not in done.stderr
    assert_no_canary(done.stdout, done.stderr)
    assert not (tmp_path / "out").exists(), "nothing was written"


@pytest.mark.parametrize("command", ["load", "demo"])
@pytest.mark.parametrize("below", [False, True], ids=["the-file", "a-folder-below-it"])
def test_out_pointing_at_a_file_is_a_usage_error(cli: Cli, tmp_path: Path, command: str, below: bool) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x", encoding="utf-8")
    out = a_file / "sub" if below else a_file
    result = cli(command, "--out", str(out), *(["--org-id", "org", "s-1"] if command == "load" else []))
    assert result.code == 2
    assert result.stderr.endswith(
        f"piper-etl {command}: error: argument --out: {str(a_file)!r} is a file, not a folder\n"
    )


@pytest.mark.parametrize(("folder", "reason"), [(False, "No such file or directory"), (True, "Is a directory")])
def test_unreadable_sessions_file_names_the_file_and_the_reason(
    cli: Cli, tmp_path: Path, folder: bool, reason: str
) -> None:
    path = tmp_path / "ids.txt"
    if folder:
        path.mkdir()
    result = cli("load", "--org-id", "org", "--sessions-file", str(path))
    assert result.code == 2
    assert result.stderr == f"piper-etl load: error: cannot read sessions file {str(path)!r}: {reason}\n"


@pytest.mark.parametrize("command", ["load", "report", "sql"])
def test_a_pricing_file_that_is_not_text_is_a_usage_error(cli: Cli, tmp_path: Path, command: str) -> None:
    pricing = tmp_path / "prices.toml"
    pricing.write_bytes(b"\xff\xfe[models]\n")
    args = ["--org-id", "org", "s-1"] if command == "load" else []
    result = cli(command, "--out", str(tmp_path / "out"), *args, "--pricing", str(pricing))
    assert result.code == 2
    assert result.stderr == (
        f"piper-etl {command}: error: pricing file {pricing} is not valid TOML: "
        "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte\n"
    )


def test_a_pricing_folder_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("load", "--org-id", "org", "--out", str(tmp_path / "out"), "--pricing", str(tmp_path), "s-1")
    assert result.code == 2
    assert result.stderr == f"piper-etl load: error: cannot read pricing file {tmp_path}: Is a directory\n"


def _unprivileged() -> tuple[str, ...]:
    """A command prefix under which file permissions apply (root ignores them): none, or a user namespace."""
    if os.geteuid() != 0:
        return ()
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--user", "true"], check=False).returncode != 0:
        pytest.skip("running as root and no user namespace to drop the privilege in")
    return (unshare, "--user")


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


def test_an_unwritable_out_folder_is_refused_before_any_request(read_only: Path, piper: SimulatedPiper) -> None:
    done = run_piper_etl(*load_args(piper, read_only / "out", piper.dataset.session_ids[0]), prefix=_unprivileged())
    assert done.returncode == 2
    assert done.stderr.endswith(f"piper-etl load: error: argument --out: {str(read_only)!r} is not writable\n")
    assert "Traceback" not in done.stderr
    assert piper.state.requests == [], "no request was sent"


def test_an_unwritable_folder_inside_out_is_a_write_error(tmp_path: Path, piper: SimulatedPiper) -> None:
    out = tmp_path / "out"
    (out / "parquet").mkdir(parents=True)
    (out / "parquet").chmod(0o555)
    try:
        done = run_piper_etl(*load_args(piper, out, piper.dataset.session_ids[0]), prefix=_unprivileged())
    finally:
        (out / "parquet").chmod(0o755)
    assert done.returncode == 1
    error, hint = done.stderr.splitlines()
    # which table's folder is created first is the warehouse's business
    assert error.startswith(f"piper-etl load: error: cannot write the output (Permission denied): {out / 'parquet'}/")
    assert hint == "  earlier loads are intact; fix the cause and rerun"
    assert_no_canary(done.stdout, done.stderr)


@pytest.mark.parametrize("command", ["report", "sql"])
def test_reading_a_missing_folder_says_what_to_run(cli: Cli, tmp_path: Path, command: str) -> None:
    missing = tmp_path / "no-such-folder"
    result = cli(command, "--out", str(missing))
    assert result.code == 2
    assert result.stderr == (
        f"piper-etl {command}: error: nothing to read in {missing}: no Parquet files under {missing / 'parquet'} "
        "and no piper-bi.duckdb; run piper-etl load (or piper-etl demo) first\n"
    )


def test_report_html_under_a_file_is_a_write_error(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    assert cli(*load_args(piper, out_dir, piper.dataset.session_ids[0])).code == 0
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    result = cli("report", "--out", str(out_dir), "--html", str(a_file / "report.html"))
    assert result.code == 1
    assert result.stderr == (
        f"piper-etl report: reading {out_dir / 'parquet'} (current state of the Parquet files)\n"
        f"piper-etl report: error: cannot write the output (File exists): {a_file}\n"
        "  earlier loads are intact; fix the cause and rerun\n"
    )


def test_fake_api_on_a_busy_port_is_a_usage_error(cli: Cli) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("fake-api", "--port", str(port))
    assert result.code == 2
    assert result.stderr == (
        f"piper-etl fake-api: error: cannot serve on 127.0.0.1:{port} (Address already in use); "
        "pick another --port\n"
    )


def test_fake_api_sessions_out_in_a_missing_folder_is_a_usage_error(cli: Cli, tmp_path: Path, free_port: int) -> None:
    target = tmp_path / "missing" / "ids.txt"
    result = cli("fake-api", "--port", str(free_port), "--sessions", "2", "--sessions-out", str(target))
    assert result.code == 2
    assert result.stderr == (
        f"piper-etl fake-api: error: cannot write --sessions-out {str(target)!r}: No such file or directory\n"
    )
