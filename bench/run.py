"""Benchmark piper-etl against its peers in one run and write docs/performance.md.

    python -m bench.run --quick      # under 15 minutes: smaller N, one repetition of the network legs
    python -m bench.run              # about an hour: 10 k / 200 k sessions, medians of repetitions
    python -m bench.run --only history --quick   # the history section alone (issue 11), a few minutes

Needs the bench extra (`pip install -e ".[test,bench]"`). Everything runs on 127.0.0.1: the simulated
Piper API (`bench.server`, one process per latency, pinned to the second core), an optional Prefect
server (pinned with it), and each leg in its own process pinned to the first core. Raw results go to
`bench/results/<mode>.json`, worker logs to `bench/results/logs/`, and the report to `--out`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import procs
from bench.payloads import TOKEN, PayloadSource

RESULTS = procs.REPO / "bench" / "results"
LOGS = RESULTS / "logs"
SEED = 0
PAYLOAD_KB = 26.0
LATENCIES = (0, 50, 200)
FETCH_CONFIGS = ((64, 50), (64, 200), (256, 200))  # (C, L ms)
# row key -> (client in bench.fetch, sessions per fetch_many call for the PiperClient rows)
FETCH_CLIENTS = {
    "httpx": ("httpx", 0),
    "httpx-aiohttp": ("httpx-aiohttp", 0),
    "aiohttp": ("aiohttp", 0),
    "piper": ("piper", 0),  # one fetch_many over the whole list, as run_load drives it
    "piper-chunk500": ("piper", 500),  # one fetch_many per 500 sessions: the cost of draining at every batch
    "piper-httpx": ("piper-httpx", 0),
    "piper+aiohttp-transport": ("piper+aiohttp-transport", 0),
}
MEMORY_CONCURRENCY = 16  # the CLI default: memory is about chunks, and plain httpx is fastest at L = 0 with it
RSS_GUARD_MB = 3000  # a leg past this is stopped: the machine is shared
E2E_CONCURRENCY = 64
SECTIONS = ("capacity", "fetch", "cpu", "e2e", "overhead", "startup", "memory", "history", "scale")
LOCK_FILE = Path(tempfile.gettempdir()) / "piper-bench.lock"
VERSIONED = ("piper-etl", "httpx", "httpcore", "h11", "aiohttp", "httpx-aiohttp", "requests", "orjson", "pyarrow",
             "duckdb", "pandas", "numpy", "dlt", "prefect", "uvicorn", "starlette")


@dataclass(frozen=True)
class Mode:
    name: str
    fetch_warmup: float
    fetch_seconds: float
    fetch_repeats: int
    cpu_sessions: int
    cpu_repeats: int
    e2e_sessions: int
    e2e_latencies: tuple[int, ...]
    e2e_repeats: int
    naive_budget_seconds: float
    overhead_sessions: int
    overhead_repeats: int
    startup_repeats: int
    memory_sessions: tuple[int, int]
    memory_timeout: float
    history_sizes: tuple[int, ...]  # sessions already stored in each output folder of the history section
    history_repeats: int
    history_query_repeats: int


QUICK = Mode("quick", 1.5, 4.0, 1, 2_000, 3, 2_000, (50,), 1, 12.0, 2_000, 1, 3, (2_000, 20_000), 300,
             (2_000, 10_000), 3, 3)
FULL = Mode("full", 1.5, 6.0, 3, 5_000, 5, 2_000, (0, 50, 200), 3, 20.0, 10_000, 2, 5, (10_000, 200_000), 1200,
            (2_000, 50_000, 250_000), 5, 5)


class Bench:
    def __init__(self, mode: Mode, work: Path, sections: tuple[str, ...], source: str) -> None:
        self.mode = mode
        self.source_description = source
        self.work = work
        self.sections = sections
        self.client_cpu, self.server_cpu = procs.cpu_split()
        largest = max(mode.memory_sessions[1] if "memory" in sections else 0, mode.overhead_sessions,
                      mode.e2e_sessions, 20_000)
        self.sessions = largest
        self.source = PayloadSource(seed=SEED, sessions=largest, payload_kb=PAYLOAD_KB)
        self.servers: dict[int, procs.Child] = {}
        self.prefect: procs.Child | None = None
        self.results: dict[str, Any] = {"mode": mode.name, "sections": list(sections)}
        self.env = dict(os.environ)
        self.env.update({
            "PYTHONPATH": str(procs.SOURCE),  # children import piper-etl from the measured source
            "PIPER_API_TOKEN": TOKEN,
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "DLT_DATA_DIR": str(work / "dlt-data"),
            "PREFECT_HOME": str(work / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        })
        self.env.pop("PREFECT_API_URL", None)
        self.counter = 0

    # -- helpers ---------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def ids(self, count: int) -> list[str]:
        return self.source.session_ids[:count]

    def leg(self, leg: str, params: dict[str, Any], *, timeout: float, latency: int | None = None,
            env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run one leg pinned to the client core; its result merged with the parent's accounting."""
        self.counter += 1
        out_dir = self.work / "out" / f"{self.counter:03d}-{leg}"
        params = {"cpu": self.client_cpu, "out_dir": str(out_dir), **params}
        server = self.servers.get(latency) if latency is not None else None
        server_cpu = server.cpu_seconds() if server else 0.0
        prefect_cpu = self.prefect.cpu_seconds() if self.prefect else 0.0
        load = os.getloadavg()[0]
        run = procs.run_leg(leg, params, work=self.work / "params", log=LOGS / f"{leg}.log", timeout=timeout,
                            env=env or self.env)
        shutil.rmtree(out_dir, ignore_errors=True)
        record: dict[str, Any] = dict(run.result or {})
        record.update({
            "process_wall_seconds": run.wall_seconds,
            "process_cpu_seconds": run.cpu_seconds,
            "peak_rss_mb": run.peak_rss_mb,
            "loadavg_1m_before": load,
        })
        if run.error:
            record["error"] = run.error
            self.log(f"  {leg}: {run.error}")
        if server:
            record["server_cpu_seconds"] = server.cpu_seconds() - server_cpu
        if self.prefect:
            record["prefect_server_cpu_seconds"] = self.prefect.cpu_seconds() - prefect_cpu
        return record

    # -- servers ---------------------------------------------------------------------------------

    def start_servers(self) -> None:
        for latency in LATENCIES:
            port = procs.free_port()
            argv = [sys.executable, "-m", "bench.server", "--port", str(port), "--latency-ms", str(latency),
                    "--sessions", str(self.sessions), "--seed", str(SEED), "--payload-kb", str(PAYLOAD_KB)]
            self.servers[latency] = procs.start_child(
                f"bench-server-L{latency}", argv, f"http://127.0.0.1:{port}/health", env=self.env,
                cpu=self.server_cpu, log=LOGS / f"server-L{latency}.log", timeout=60,
            )
        self.log(f"bench servers up: {', '.join(f'L={k} ms {v.url}' for k, v in self.servers.items())}")

    def base_url(self, latency: int) -> str:
        return self.servers[latency].url

    def start_prefect(self) -> None:
        port = procs.free_port()
        argv = [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host", "127.0.0.1",
                "--port", str(port), "--no-ui", "--analytics-off"]
        self.log("starting a Prefect server (pinned with the simulated API)")
        self.prefect = procs.start_child("prefect-server", argv, f"http://127.0.0.1:{port}/api/health",
                                         env=self.env, cpu=self.server_cpu, log=LOGS / "prefect-server.log",
                                         timeout=180)
        self.results["prefect_server_start_seconds"] = self.prefect.start_seconds
        self.log(f"Prefect server ready in {self.prefect.start_seconds:.1f} s")

    def prefect_env(self) -> dict[str, str]:
        assert self.prefect is not None
        return {**self.env, "PREFECT_API_URL": f"{self.prefect.url}/api"}

    def stop(self) -> None:
        for child in [*self.servers.values(), *([self.prefect] if self.prefect else [])]:
            child.stop()

    # -- sections --------------------------------------------------------------------------------

    def environment(self) -> dict[str, Any]:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
        versions = {}
        for name in VERSIONED:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = "not installed"
        commit = self.source_description
        return {
            "cpu_model": model,
            "cpus": os.cpu_count(),
            "client_cpu": self.client_cpu,
            "server_cpu": self.server_cpu,
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "versions": versions,
            "git_commit": commit,
            "payload_mean_kb": round(self.source.mean_body_bytes() / 1024, 1),
            "criteria_per_session": round(self.source.criteria_rows(10_000) / 10_000, 2),
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }

    def capacity(self) -> dict[str, Any]:
        """How many requests/s the simulated API can serve on its core: the ceiling of every leg."""
        out: dict[str, Any] = {}
        ids = self.ids(20_000)
        params = {"client": "aiohttp", "base_url": self.base_url(0), "org_id": self.source.org_id,
                  "session_ids": ids, "concurrency": 64, "warmup": 1.0, "duration": 4.0}
        out["bench.server"] = self.leg("fetch", params, timeout=60, latency=0)
        port = procs.free_port()
        argv = [str(Path(sys.executable).with_name("piper-etl")), "fake-api", "--port", str(port), "--sessions",
                "20000", "--seed", str(SEED), "--payload-kb", str(PAYLOAD_KB)]
        try:
            fake = procs.start_child("piper-etl fake-api", argv, f"http://127.0.0.1:{port}/v1/orgs", env=self.env,
                                     cpu=self.server_cpu, log=LOGS / "fake-api.log", timeout=60, any_status=True)
        except (RuntimeError, TimeoutError) as exc:
            out["piper-etl fake-api"] = {"error": str(exc)}
            return out
        try:
            before = fake.cpu_seconds()
            record = self.leg("fetch", {**params, "base_url": fake.url}, timeout=60)
            record["server_cpu_seconds"] = fake.cpu_seconds() - before
            out["piper-etl fake-api"] = record
        finally:
            fake.stop()
        return out

    def fetch(self) -> dict[str, Any]:
        mode = self.mode
        ids = self.ids(20_000)
        rows: dict[str, Any] = {}
        for concurrency, latency in FETCH_CONFIGS:
            for name, (client, chunk) in FETCH_CLIENTS.items():
                key = f"{name}|C={concurrency}|L={latency}"
                runs = []
                for _ in range(mode.fetch_repeats):
                    params = {"client": client, "base_url": self.base_url(latency), "org_id": self.source.org_id,
                              "session_ids": ids, "concurrency": concurrency, "warmup": mode.fetch_warmup,
                              "duration": mode.fetch_seconds, "chunk": chunk}
                    runs.append(self.leg("fetch", params, timeout=mode.fetch_warmup + mode.fetch_seconds + 90,
                                         latency=latency))
                bound = concurrency / (latency / 1000)
                ok = [r for r in runs if "per_second" in r]
                rows[key] = {
                    "client": name, "concurrency": concurrency, "latency_ms": latency, "bound": bound,
                    "runs": runs,
                    "per_second": _median([r["per_second"] for r in ok]),
                    "cpu_ms_per_request": _median([r["cpu_ms_per_request"] for r in ok if r["cpu_ms_per_request"]]),
                    "server_cpu_share": _median([r["server_cpu_seconds"] / r["process_wall_seconds"] for r in ok]),
                }
                rate = rows[key]["per_second"]
                self.log(f"  fetch {key}: {rate or 0:.0f}/s = {100 * (rate or 0) / bound:.0f} % of bound")
        profiles = {}
        for client in ("piper", "httpx"):
            params = {"client": client, "base_url": self.base_url(200), "org_id": self.source.org_id,
                      "session_ids": ids, "concurrency": 256, "warmup": 1.0, "duration": 5.0, "top": 14}
            profiles[f"{client}|C=256|L=200"] = self.leg("fetch-profile", params, timeout=120, latency=200)
        return {"rows": rows, "profiles": profiles}

    def cpu(self) -> dict[str, Any]:
        out = {}
        for leg in ("cpu-piper", "cpu-duckdb", "cpu-pandas"):
            params = {"seed": SEED, "sessions": self.mode.cpu_sessions, "payload_kb": PAYLOAD_KB,
                      "repeats": self.mode.cpu_repeats + 1}  # the first repetition warms up and is dropped
            record = self.leg(leg, params, timeout=600)
            measured = record.get("repeats", [])[1:]
            if measured:
                cpu_s = _median([r["cpu_seconds"] for r in measured])
                record["median_cpu_seconds"] = cpu_s
                record["median_seconds"] = _median([r["seconds"] for r in measured])
                record["sessions_per_cpu_second"] = self.mode.cpu_sessions / cpu_s if cpu_s else None
                self.log(f"  {leg}: {record['sessions_per_cpu_second']:.0f} sessions per CPU-second")
            out[leg] = record
        return out

    def e2e_legs(self, latency: int) -> list[tuple[str, str, dict[str, Any]]]:
        count = self.mode.e2e_sessions
        ids = self.ids(count)
        base = {"base_url": self.base_url(latency), "org_id": self.source.org_id, "session_ids": ids,
                "concurrency": E2E_CONCURRENCY}
        per_session = latency / 1000 + 0.004
        naive_count = max(50, min(count, int(self.mode.naive_budget_seconds / per_session)))
        legs = [
            ("piper-etl run_load, format both (CLI default)", "piper-local", {**base, "format": "both"}),
            ("piper-etl run_load, format duckdb", "piper-local", {**base, "format": "duckdb"}),
            ("piper-etl run_load, format parquet", "piper-local", {**base, "format": "parquet"}),
        ]
        if self.prefect is not None:
            legs.append(("piper-etl Prefect flow, format both", "piper-flow", {**base, "format": "both"}))
        legs += [
            ("dlt -> duckdb", "dlt", {**base, "destination": "duckdb"}),
            ("dlt -> parquet (filesystem)", "dlt", {**base, "destination": "parquet"}),
            (f"naive script (first {naive_count} sessions)", "naive", {**base, "session_ids": ids[:naive_count]}),
        ]
        return legs

    def e2e(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for latency in self.mode.e2e_latencies:
            legs = self.e2e_legs(latency)
            repeats = self.mode.e2e_repeats if latency == 50 else 1
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in legs}
            for _ in range(repeats):  # round robin, so that noise spreads over every leg alike
                for label, leg, params in legs:
                    env = self.prefect_env() if leg == "piper-flow" else None
                    runs[label].append(self.leg(leg, params, timeout=900, latency=latency, env=env))
            rows = {}
            for label, leg, params in legs:
                count = len(params["session_ids"])
                rows[label] = _summarise_load(runs[label], count, self.source.criteria_rows(count))
                rows[label]["leg"] = leg
                rate = rows[label].get("sessions_per_second") or 0
                self.log(f"  e2e L={latency}: {label}: {rate:.0f} sessions/s")
            out[f"L={latency}"] = rows
        label, leg, params = self.e2e_legs(50)[0]
        self.log("  profiling run_load (cProfile)")
        out["profile"] = {"label": label, **self.leg(leg, {**params, "profile": True}, timeout=600, latency=50)}
        return out

    def overhead(self) -> dict[str, Any]:
        """Wall time of the same load through the Prefect flow and through run_load, alternated."""
        count, latency = self.mode.overhead_sessions, 50
        ids = self.ids(count)
        base = {"base_url": self.base_url(latency), "org_id": self.source.org_id, "session_ids": ids,
                "concurrency": E2E_CONCURRENCY, "format": "both"}
        runs: dict[str, list[dict[str, Any]]] = {"run_load": [], "flow": []}
        for _ in range(self.mode.overhead_repeats):
            runs["run_load"].append(self.leg("piper-local", base, timeout=1200, latency=latency))
            runs["flow"].append(self.leg("piper-flow", base, timeout=1200, latency=latency, env=self.prefect_env()))
        out: dict[str, Any] = {"sessions": count, "latency_ms": latency, "concurrency": E2E_CONCURRENCY}
        for name, records in runs.items():
            out[name] = _summarise_load(records, count, self.source.criteria_rows(count))
        self.log("  profiling the flow (cProfile)")
        out["profile"] = self.leg("piper-flow", {**base, "profile": True}, timeout=1200, latency=latency,
                                  env=self.prefect_env())
        local, flow = out["run_load"].get("seconds"), out["flow"].get("seconds")
        out["ratio"] = flow / local if local and flow else None
        self.log(f"  overhead: flow {flow or 0:.1f} s vs run_load {local or 0:.1f} s")
        return out

    def startup(self) -> dict[str, Any]:
        session_id = self.ids(1)
        out_dir = self.work / "out" / "startup"
        cli = str(Path(sys.executable).with_name("piper-etl"))
        pinned = ["taskset", "-c", str(self.client_cpu)] if self.client_cpu is not None else []
        base_args = ["load", *session_id, "--org-id", self.source.org_id, "--base-url", self.base_url(0)]
        out: dict[str, Any] = {}

        def timed(label: str, argv: list[str], env: dict[str, str], repeats: int, timeout: float) -> None:
            walls, codes = [], []
            for repeat in range(repeats):
                target = out_dir / f"{len(out)}-{repeat}"
                command = [*argv, "--out", str(target)] if cli in argv else argv
                wall, code, tail = procs.run_command(command, env=env, timeout=timeout, log=LOGS / "startup.log")
                shutil.rmtree(target, ignore_errors=True)
                walls.append(wall)
                codes.append(code)
            out[label] = {"seconds": _median(walls), "runs": walls, "exit_codes": codes}
            if any(codes):
                out[label]["error"] = tail
            self.log(f"  startup {label}: {_median(walls):.2f} s (exit {codes})")

        python = [*pinned, sys.executable]
        timed("python -c pass (interpreter)", [*python, "-c", "pass"], self.env, self.mode.startup_repeats, 60)
        timed("piper-etl load, 1 session, --engine local", [*pinned, cli, *base_args, "--engine", "local"],
              self.env, self.mode.startup_repeats, 120)
        if self.prefect is not None:
            timed("piper-etl load, 1 session, --engine prefect (server running)",
                  [*pinned, cli, *base_args, "--engine", "prefect"], self.prefect_env(), self.mode.startup_repeats,
                  300)
        ephemeral_env = {**self.env, "PREFECT_HOME": str(self.work / "prefect-ephemeral")}
        timed("piper-etl load, 1 session, --engine prefect (no server: Prefect starts a temporary one)",
              [*pinned, cli, *base_args, "--engine", "prefect"], ephemeral_env, 1, 300)
        profiles = []
        for _ in range(self.mode.startup_repeats):
            profiles.append(self.leg("startup-profile", {"base_url": self.base_url(0), "org_id": self.source.org_id,
                                                         "session_ids": session_id}, timeout=120, latency=0))
        steps: dict[str, float] = {}
        good = [p for p in profiles if "steps" in p]
        for name in good[0]["steps"] if good else []:
            steps[name] = _median([p["steps"][name] for p in good]) or 0.0
        out["profile_steps"] = steps
        out["imports"] = _import_times(python, self.env)
        return out

    def memory(self) -> dict[str, Any]:
        out: dict[str, Any] = {"latency_ms": 0, "concurrency": MEMORY_CONCURRENCY, "chunk_size": 500,
                               "guard_mb": RSS_GUARD_MB}
        small, large = self.mode.memory_sessions
        runs = [(str(small), small, {}), (str(large), large, {}),
                (f"parquet {large}", large, {"format": "parquet"})]
        for key, count, extra in runs:
            params = {"base_url": self.base_url(0), "org_id": self.source.org_id, "session_ids": self.ids(count),
                      "concurrency": MEMORY_CONCURRENCY, "format": "both", "sample_rss": True,
                      "rss_guard_mb": RSS_GUARD_MB, **extra}
            record = self.leg("piper-local", params, timeout=self.mode.memory_timeout, latency=0)
            record["sessions"] = count
            record["format"] = extra.get("format", "both")
            if "exit status 86" in str(record.get("error")):
                record["error"] = f"stopped by the {RSS_GUARD_MB} MB RSS guard"
            out[key] = record
            self.log(f"  memory {key} sessions: peak RSS {record['peak_rss_mb']:.0f} MB "
                     f"({record.get('error') or record.get('status')})")
        return out

    def history(self) -> dict[str, Any]:
        from bench.history import History

        section = History(sizes=self.mode.history_sizes, repeats=self.mode.history_repeats,
                          query_repeats=self.mode.history_query_repeats, work=self.work, env=self.env,
                          server_cpu=self.server_cpu, logs=LOGS, log=self.log)
        return section.run()

    def scale(self) -> dict[str, Any]:
        """Issue 14's section (`bench/scale.py`): it starts its own server and writes docs/scale-out.md's table."""
        from bench import scale

        results = scale.run(scale.QUICK if self.mode.name == "quick" else scale.FULL, self.work / "scale", self.log)
        scale.write_doc(results)
        return results

    # -- the whole run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        results = self.results
        results["environment"] = self.environment()
        results["loadavg_start"] = os.getloadavg()
        started = time.perf_counter()
        steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("capacity", self.capacity), ("fetch", self.fetch), ("cpu", self.cpu), ("e2e", self.e2e),
            ("overhead", self.overhead), ("startup", self.startup), ("memory", self.memory),
            ("history", self.history), ("scale", self.scale),
        ]
        try:
            if set(self.sections) - {"history", "scale"}:  # these sections start their own servers
                self.start_servers()
            if {"e2e", "overhead", "startup"} & set(self.sections):
                try:
                    self.start_prefect()
                except (RuntimeError, TimeoutError) as exc:
                    results["prefect_server_error"] = str(exc)
                    self.log(f"Prefect server did not start: {exc}")
            for name, step in steps:
                if name not in self.sections or (name == "overhead" and self.prefect is None):
                    continue
                self.log(f"section {name}")
                section_started = time.perf_counter()
                results[name] = step()
                results[name + "_seconds"] = time.perf_counter() - section_started
                _save(results, self.mode)
        finally:
            self.stop()
        results["loadavg_end"] = os.getloadavg()
        results["total_seconds"] = time.perf_counter() - started
        _save(results, self.mode)
        return results


def _import_times(python: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Wall time of a few imports in fresh interpreters, and the heaviest imports under `flows.cli`."""
    import subprocess

    out: dict[str, Any] = {}
    for label, statement in (("flows.cli", "import flows.cli"), ("flows.prefect_flow", "import flows.prefect_flow"),
                             ("prefect", "import prefect")):
        code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
        walls = []
        for _ in range(3):
            done = subprocess.run([*python, "-c", code], cwd=procs.SOURCE, env=env, capture_output=True, text=True,
                                  timeout=120, check=False)
            if done.returncode == 0:
                walls.append(float(done.stdout.strip().splitlines()[-1]))
        out[label] = _median(walls)
    done = subprocess.run([*python, "-X", "importtime", "-c", "import flows.cli"], cwd=procs.SOURCE, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    top = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        _, cumulative, name = line.split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        if depth == 1:  # what flows.cli pulls in directly
            top.append((int(cumulative), depth, name.strip()))
    out["top_imports_ms"] = [(name, round(us / 1000, 1)) for us, depth, name in sorted(top, reverse=True)[:10]]
    return out


def _git(*args: str) -> str:
    import subprocess

    done = subprocess.run(["git", *args], cwd=procs.REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _summarise_load(runs: list[dict[str, Any]], count: int, criteria: int) -> dict[str, Any]:
    ok = [r for r in runs if "seconds" in r]
    seconds = _median([r["seconds"] for r in ok])
    cpu = _median([r["cpu_seconds"] for r in ok])
    errors = [r["error"] for r in runs if "error" in r]
    return {
        "runs": runs,
        "sessions": count,
        "seconds": seconds,
        "process_wall_seconds": _median([r["process_wall_seconds"] for r in ok]),
        "sessions_per_second": count / seconds if seconds else None,
        "criteria_rows_per_second": criteria / seconds if seconds else None,
        "cpu_seconds_per_1000": cpu / count * 1000 if cpu is not None else None,
        "peak_rss_mb": _median([r["peak_rss_mb"] for r in ok]),
        "errors": errors,
    }


def _save(results: dict[str, Any], mode: Mode) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    sections = results.get("sections") or list(SECTIONS)
    name = mode.name if list(sections) == list(SECTIONS) else f"{mode.name}-{'-'.join(sections)}"
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    return path


def merge_into_last_run(results: dict[str, Any], mode: Mode) -> dict[str, Any]:
    """The last whole run of `mode` with this run's sections in place of its own, each naming the run it is from.

    The merged results are saved as that mode's run again, so later partial runs merge into them too.
    """
    path = RESULTS / f"{mode.name}.json"
    if not path.exists():
        raise SystemExit(f"--merge: no earlier {mode.name} run in {path}; run `python -m bench.run"
                         f"{' --quick' if mode is QUICK else ''}` once first")
    base: dict[str, Any] = json.loads(path.read_text())
    run = {"date_utc": results["environment"]["date_utc"], "git_commit": results["environment"]["git_commit"],
           "loadavg_start": results["loadavg_start"], "loadavg_end": results["loadavg_end"]}
    for name in results.get("sections", []):
        if name in results:
            base[name] = results[name]
            base[f"{name}_seconds"] = results.get(f"{name}_seconds")
            base.setdefault("section_runs", {})[name] = {**run, "seconds": results.get(f"{name}_seconds")}
            if name not in base.setdefault("sections", []):
                base["sections"].append(name)
    path.write_text(json.dumps(base, indent=1, default=str))
    return base


def _wait_for_machine(minutes: float, log: Callable[[str], None]) -> Any:
    """Hold a machine-wide lock for the whole run: two benchmarks pinned to the same cores ruin each other."""
    import fcntl

    handle = open(LOCK_FILE, "a+")  # noqa: SIM115 (held open until the process exits)
    deadline = time.monotonic() + minutes * 60
    told = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise SystemExit(f"another benchmark holds {LOCK_FILE} after {minutes:g} min; giving up") from None
            if not told:
                handle.seek(0)
                log(f"another benchmark is running ({handle.read().strip() or 'unknown'}); waiting for it to finish")
                told = True
            time.sleep(5)
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}: {' '.join(sys.argv)}")
    handle.flush()
    return handle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller N and fewer repetitions (about 10 minutes)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})")
    parser.add_argument("--out", type=Path, default=procs.REPO / "docs" / "performance.md",
                        help="where to write the report (default docs/performance.md)")
    parser.add_argument("--ref", default="HEAD",
                        help="git revision whose product code is measured (exported to a temporary folder, so that "
                        "commits made while the bench runs cannot leak in); 'worktree' measures the working tree")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument("--wait-minutes", type=float, default=60,
                        help="how long to wait for another benchmark run on this machine to finish (default 60)")
    parser.add_argument("--merge", action="store_true",
                        help="put the sections measured now into the last run of the same mode that measured the "
                        "others (bench/results/MODE.json) and write the report from both; each merged section "
                        "names its own run")
    parser.add_argument("--history-sizes", help="comma-separated sessions per output folder of the history section "
                        "(default 2000,10000 quick, 2000,50000,250000 full)")
    args = parser.parse_args(argv)
    sections = tuple(s for s in args.only.split(",") if s)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    lock = _wait_for_machine(args.wait_minutes, lambda message: print(message, flush=True))
    client_cpu, _ = procs.cpu_split()
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})  # children inherit it; servers pin themselves to the other core
    work = Path(tempfile.mkdtemp(prefix="piper-bench-"))
    mode = QUICK if args.quick else FULL
    if args.history_sizes:
        mode = dataclasses.replace(mode, history_sizes=tuple(int(n) for n in args.history_sizes.split(",")))
    if args.ref == "worktree":
        source = f"the working tree (commit {_git('rev-parse', '--short', 'HEAD')} + uncommitted changes)"
    else:
        procs.SOURCE = work / "src"
        source = f"commit {procs.export_snapshot(args.ref, procs.SOURCE)}"
        if _git("status", "--porcelain", "--", "bench"):
            source += " (bench/ with uncommitted changes)"
    bench = Bench(mode, work, sections, source)
    bench.log(f"mode {mode.name}; work folder {work}; logs in {LOGS}")
    try:
        results = bench.run()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    from bench.report import render

    if args.merge:
        results = merge_into_last_run(results, mode)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results))
    bench.log(f"wrote {args.out} in {results['total_seconds'] / 60:.1f} min")
    lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
