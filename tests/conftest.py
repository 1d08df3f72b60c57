"""Shared fixtures. The canary token must never show up anywhere but in the Authorization header."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from connector.fake_api import FakeDataset, FakePiper, serve
from flows.cli import main

CANARY_TOKEN = "pat_CANARY_7c1e5b0d9a2f4e6b8d3c"
ORG_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def assert_no_canary(*texts: str | bytes, folder: Path | None = None) -> None:
    """Fail if the canary token appears in any text or in any file under `folder`."""
    needle = CANARY_TOKEN.encode()
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        assert needle not in data, "the API token leaked into output"
    if folder is not None:
        for path in folder.rglob("*"):
            if path.is_file():
                assert needle not in path.read_bytes(), f"the API token leaked into {path}"


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "out"


@dataclass
class SimulatedPiper:
    """A simulated Piper API serving on loopback for one test."""

    state: FakePiper
    base_url: str

    @property
    def dataset(self) -> FakeDataset:
        return self.state.dataset

    @property
    def org_id(self) -> str:
        return self.state.dataset.org_id


@pytest.fixture
def piper() -> Iterator[SimulatedPiper]:
    dataset = FakeDataset.generate(seed=11, sessions=30, payload_kb=4.0)
    state = FakePiper(dataset=dataset, token=CANARY_TOKEN, retry_after="0")
    with serve(state) as base_url:
        yield SimulatedPiper(state, base_url)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


Cli = Callable[..., CliResult]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    """Run `piper-etl` in this process with the canary token in the environment.

    The default output folder is under a temporary XDG_DATA_HOME: a command given no `--out` never
    writes into the real home.
    """
    monkeypatch.setenv("PIPER_API_TOKEN", CANARY_TOKEN)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    for name in ("PIPER_ORG_ID", "PIPER_BASE_URL", "PIPER_OUT_DIR", "PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, stdin: str = "") -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def load_args(piper: SimulatedPiper, out_dir: Path, *extra: str) -> list[str]:
    return ["load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", str(out_dir), *extra]


def query(out_dir: Path, sql: str, params: list[object] | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(out_dir / "piper.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """The one Prefect test server of the session (defined here only: a fixture imported into a test module
    is a second definition, and a second session-scoped server that Prefect's process-wide services,
    such as the concurrency-slot service, would not follow)."""
    from prefect.testing.utilities import prefect_test_harness

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry writes racing the tests
    with prefect_test_harness(server_startup_timeout=120):
        yield


def flow_run_artifacts(state: Any, key: str) -> list[str]:
    """The markdown of the artifacts under `key` that the flow run ending in `state` published. The
    session's one server holds every earlier test's artifacts too, in no promised order."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    async def read() -> list[str]:
        async with get_client() as client:
            artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
        return [str(a.data) for a in artifacts]

    return asyncio.run(read())


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPER_API_TOKEN", CANARY_TOKEN)
