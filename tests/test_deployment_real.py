"""The README's deployment steps, run for real: a Prefect server, the pool, the secret, deploy, a worker, a run.

Every step is the command the README gives ("As a Prefect deployment"), run as a subprocess in a
fresh PREFECT_HOME (a sqlite database of its own) against a Prefect server on loopback; the worker
runs in a folder that is not the checkout, with no PIPER_API_TOKEN, so the flow run finds its code in
the installed package and its token in the Secret block. The run loads from the simulated Piper API,
and the data and the artifact are checked through the output folder and the Prefect API.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.conftest import CANARY_TOKEN, SimulatedPiper, assert_no_canary

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the environment piper-etl is installed in: prefect and piper-etl live here
POOL = "piper-etl"
# Until sync_sessions lands (branch sync), `deploy --all` cannot import the sync deployments' flow; the
# ad-hoc deployment alone is what can be deployed now. Once it lands this is exactly the README's --all.
DEPLOY = ["--all"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Prefect:
    """A Prefect server on loopback and the environment every README command runs in."""

    api_url: str
    env: dict[str, str]
    home: Path
    outputs: list[str] = field(default_factory=list)  # every command's stdout and stderr, checked for the token

    def run(self, *command: str, stdin: str | None = None, cwd: Path = ROOT, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BIN / command[0]), *command[1:]], input=stdin, capture_output=True, text=True, cwd=cwd,
            env=env or self.env, timeout=timeout, check=False,
        )
        self.outputs += [done.stdout, done.stderr]
        assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    def api(self, method: str, path: str, body: object | None = None) -> object:
        response = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()


def stop(process: subprocess.Popen[str]) -> None:
    """End a process we started and its children (the worker's flow runs), by its process group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_healthy(api_url: str, server: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"prefect server exited {server.returncode}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"prefect server did not answer at {api_url} within {timeout} s")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prefect]:
    """Step 1: `prefect server start`, in a fresh PREFECT_HOME, on a free loopback port."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PIPER_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        # No scheduled runs of the hourly and daily deployments racing the runs this test triggers;
        # that their schedules are on is read from the API instead.
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
    )
    log = (home / "server.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        wait_healthy(api_url, server)
        yield Prefect(api_url, env, home)
    finally:
        stop(server)
        log.close()


@dataclass
class Deployed:
    prefect: Prefect
    piper: SimulatedPiper
    out_dir: Path
    worker_log: Path


@pytest.fixture(scope="module")
def simulated_piper() -> Iterator[SimulatedPiper]:
    from connector.fake_api import FakeDataset, FakePiper, serve

    state = FakePiper(dataset=FakeDataset.generate(seed=5, sessions=12, payload_kb=2.0), token=CANARY_TOKEN)
    with serve(state) as base_url:
        yield SimulatedPiper(state, base_url)


@pytest.fixture(scope="module")
def deployed(prefect_server: Prefect, simulated_piper: SimulatedPiper,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """Steps 2 to 5: the pool, the secret (twice: it must not fail again), deploy, a worker."""
    prefect = prefect_server
    prefect.run("prefect", "work-pool", "create", POOL, "--type", "process", "--overwrite")
    prefect.run("piper-etl", "save-token", stdin="pat_an_old_token\n")
    prefect.run("piper-etl", "save-token", stdin=CANARY_TOKEN + "\n")  # rotated: overwrites the block
    prefect.run("prefect", "--no-prompt", "deploy", *DEPLOY)

    elsewhere = tmp_path_factory.mktemp("worker-cwd")  # not the checkout: the code is the installed package
    data_home = tmp_path_factory.mktemp("xdg-data")
    worker_env = {
        **prefect.env,
        "PIPER_ORG_ID": simulated_piper.org_id,
        "PIPER_BASE_URL": simulated_piper.base_url,
        "XDG_DATA_HOME": str(data_home),  # the default output folder, without touching the real home
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    worker_log = prefect.home / "worker.log"
    with worker_log.open("w") as log:
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--limit", "2"],
            env=worker_env, cwd=elsewhere, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
    try:
        yield Deployed(prefect, simulated_piper, data_home / "piper-etl" / "warehouse", worker_log)
    finally:
        stop(worker)
        prefect.outputs.append(worker_log.read_text(encoding="utf-8", errors="replace"))


def trigger(deployed: Deployed, name: str, *params: str) -> str:
    """Step 6: `prefect deployment run NAME --watch`; returns the flow run id after it Completed."""
    done = deployed.prefect.run("prefect", "deployment", "run", name, *params, "--watch", "--watch-timeout", "150",
                                timeout=180)
    match = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
    assert match, done.stdout
    flow_run = deployed.prefect.api("GET", f"/flow_runs/{match.group(1)}")
    assert isinstance(flow_run, dict)
    assert flow_run["state"]["type"] == "COMPLETED", (flow_run["state"], deployed.worker_log.read_text())
    return match.group(1)


def count(out_dir: Path, sql: str) -> int:
    con = duckdb.connect(str(out_dir / "piper.duckdb"), read_only=True)
    try:
        row = con.execute(sql).fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0])


def artifact_markdown(deployed: Deployed, flow_run_id: str) -> str:
    """Step 7: the run's summary artifact, as `prefect artifact inspect` shows it and the API serves it."""
    shown = deployed.prefect.run("prefect", "artifact", "inspect", "piper-load-summary")
    artifacts = deployed.prefect.api("POST", "/artifacts/filter", {
        "artifacts": {"key": {"any_": ["piper-load-summary"]}, "flow_run_id": {"any_": [flow_run_id]}},
    })
    assert isinstance(artifacts, list) and len(artifacts) == 1
    markdown = str(artifacts[0]["data"])
    assert markdown.splitlines()[0] in shown.stdout
    return markdown


def assert_token_nowhere(deployed: Deployed) -> None:
    """The token in no command's output, no flow run's parameters, no log, no artifact, no output file."""
    prefect = deployed.prefect
    runs = prefect.api("POST", "/flow_runs/filter", {})
    logs = prefect.api("POST", "/logs/filter", {})
    artifacts = prefect.api("POST", "/artifacts/filter", {})
    deployments = prefect.api("POST", "/deployments/filter", {})
    assert_no_canary(*prefect.outputs, deployed.worker_log.read_text(encoding="utf-8", errors="replace"),
                     json.dumps([runs, logs, artifacts, deployments]), folder=deployed.out_dir)


def test_the_ad_hoc_deployment_loads_given_sessions_on_a_worker(deployed: Deployed) -> None:
    ids = deployed.piper.dataset.session_ids[:5]
    flow_run_id = trigger(deployed, "load_sessions/ad-hoc", "--param", f"session_ids={json.dumps(ids)}")
    assert count(deployed.out_dir, "SELECT count(*) FROM runs") == len(ids)
    assert count(deployed.out_dir, "SELECT count(*) FROM fetch_log WHERE outcome = 'loaded'") == len(ids)
    markdown = artifact_markdown(deployed, flow_run_id)
    assert "| loaded | 5 |" in markdown
    assert {r.session_id for r in deployed.piper.state.requests} >= set(ids)
    assert_token_nowhere(deployed)


def test_a_run_of_the_ad_hoc_deployment_without_session_ids_is_refused(deployed: Deployed) -> None:
    done = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", "load_sessions/ad-hoc"], capture_output=True, text=True,
        env=deployed.prefect.env, timeout=60, check=False,
    )
    assert done.returncode == 1 and "session_ids" in done.stdout + done.stderr


def test_the_hourly_sync_runs_on_a_worker_and_its_schedules_are_on(deployed: Deployed) -> None:
    for name in ("hourly", "daily-full-scan"):
        deployment = deployed.prefect.api("GET", f"/deployments/name/sync_sessions/{name}")
        assert isinstance(deployment, dict)
        assert [s["active"] for s in deployment["schedules"]] == [True], name
    flow_run_id = trigger(deployed, "sync_sessions/hourly")
    assert count(deployed.out_dir, "SELECT count(*) FROM runs") == len(deployed.piper.dataset.session_ids)
    assert count(deployed.out_dir, "SELECT count(*) FROM sync_state") >= 1
    assert artifact_markdown(deployed, flow_run_id)
    assert_token_nowhere(deployed)
