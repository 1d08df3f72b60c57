"""The object store's credentials appear nowhere, and a bad URL, a missing bucket or database is a clear error.

Canary credentials (`tests/object_store_support.py`) are in the environment of every load here: none of
them may show up in an output, a log line, a Prefect parameter, log or artifact, an object on the store,
or a file in the local folders (the load state, the database, the snapshot).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, flow_run_artifacts
from tests.object_store_support import CANARY_KEY_ID, CANARY_SECRET, S3Server, s3

__all__ = ["s3"]
SECRETS = (CANARY_SECRET, CANARY_KEY_ID, CANARY_TOKEN)


def assert_nowhere(
    *texts: str | bytes, folders: tuple[Path, ...] = (), objects: dict[str, bytes] | None = None
) -> None:
    for secret in SECRETS:
        needle = secret.encode()
        for text in texts:
            assert needle not in (text.encode() if isinstance(text, str) else text), f"{secret[:10]}... leaked"
        for folder in folders:
            for path in folder.rglob("*"):
                if path.is_file():
                    assert needle not in path.read_bytes(), f"{secret[:10]}... leaked into {path}"
        for key, data in (objects or {}).items():
            assert needle not in data, f"{secret[:10]}... leaked into the object {key}"


def load(piper: SimulatedPiper, url: str, *extra: str) -> list[str]:
    return ["load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", url, *extra]


def test_the_credentials_are_in_no_output_log_object_or_file(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url, database = s3.prefix(), tmp_path / "db" / "piper.duckdb"
    ids = piper.dataset.session_ids
    done = cli(*load(piper, url, "--format", "both", "--database", str(database), *ids))
    assert done.code == 0, done.stderr
    again = cli(*load(piper, url, "--database", str(database), "--refetch", *ids[:3]))  # parquet, then caught up
    assert again.code == 0, again.stderr
    report = cli("report", "--out", str(database.parent))
    objects = s3.objects(url)
    assert any(key.endswith("current_state.sql") for key in objects)
    ours = "\n".join(record.getMessage() for record in caplog.records if record.levelno >= logging.INFO)
    assert CANARY_SECRET not in caplog.text, "not even in botocore's own DEBUG lines"
    assert_nowhere(done.stdout, done.stderr, again.stdout, again.stderr, report.stdout, report.stderr, ours,
                   folders=(tmp_path,), objects=objects)


def test_the_credentials_are_in_no_prefect_parameter_log_or_artifact(
    prefect_harness: None, token_env: None, piper: SimulatedPiper, s3: S3Server, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client

    from flows.prefect_flow import load_sessions

    url, database = s3.prefix(), tmp_path / "db" / "piper.duckdb"
    state = asyncio.run(load_sessions(session_ids=piper.dataset.session_ids[:6], org_id=piper.org_id,
                                      base_url=piper.base_url, out_dir=url, format="both", database=str(database),
                                      sessions_per_task=3, return_state=True))
    assert state.is_completed(), state.message

    async def recorded() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs()
            tasks = await client.read_task_runs()
            logs = await client.read_logs()
        return [repr(r.parameters) for r in runs] + [repr(t.task_inputs) for t in tasks] + [log.message for log in logs]

    texts = asyncio.run(recorded())
    artifacts = flow_run_artifacts(state, "piper-load-summary")
    assert artifacts and any(url in text for text in texts), "the URL is a parameter; its credentials are not"
    assert_nowhere(*texts, *artifacts, state.message or "", folders=(tmp_path,), objects=s3.objects(url))


@pytest.mark.parametrize(("extra", "code", "message"), [
    (("--format", "both"), 2, "--format both needs a local DuckDB file with an object-store output: name it"),
    (("--format", "duckdb"), 2, "--format duckdb needs a local DuckDB file"),
    (("--database", "x/other.duckdb"), 2, "--database must name a file called piper.duckdb"),
])
def test_a_missing_or_unusable_database_is_a_usage_error(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, extra: tuple[str, ...], code: int, message: str
) -> None:
    done = cli(*load(piper, s3.prefix(), *extra, *piper.dataset.session_ids[:2]))
    assert (done.code, message in done.stderr) == (code, True), done.stderr
    assert piper.state.requests == [], "nothing was sent"


@pytest.mark.parametrize(("url", "message"), [
    ("s3://", "'s3://' names no bucket or folder"),
    ("s3://AKIAEXAMPLE:hunter2@bucket/prefix", "must not carry credentials"),
    ("nosuchscheme://bucket/prefix", "cannot use nosuchscheme:// URLs"),
])
def test_a_bad_url_is_a_usage_error(piper: SimulatedPiper, cli: Cli, s3: S3Server, url: str, message: str) -> None:
    done = cli(*load(piper, url, *piper.dataset.session_ids[:2]))
    assert (done.code, message in done.stderr) == (2, True), done.stderr
    assert "hunter2" not in done.stderr + done.stdout
    assert piper.state.requests == []


def test_a_missing_bucket_is_a_runtime_error_before_any_request(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    done = cli(*load(piper, "s3://no-such-bucket/prefix", *piper.dataset.session_ids[:2]))
    assert done.code == 1, done.stderr
    assert "cannot write the output (no such bucket): s3://no-such-bucket" in done.stderr
    assert piper.state.requests == []
    assert_nowhere(done.stdout, done.stderr)


def test_a_local_database_flag_and_compacting_an_empty_store_are_usage_errors(
    piper: SimulatedPiper, cli: Cli, s3: S3Server, tmp_path: Path
) -> None:
    done = cli("load", "--org-id", piper.org_id, "--base-url", piper.base_url, "--out", str(tmp_path / "out"),
               "--database", str(tmp_path / "piper.duckdb"), "s1")
    assert done.code == 2 and "--database is for an object-store output" in done.stderr, done.stderr
    compacted = cli("compact", "--out", s3.prefix())  # compacting a store works: tests/test_object_store_compaction.py
    assert compacted.code == 2 and "nothing to compact in s3://" in compacted.stderr, compacted.stderr
    # (sync --dry-run reads a store now: tests/test_object_store_readers.py)
    assert piper.state.requests == []
