"""Scale-out (issue 14): sessions/s of the Dask flow with 1 and 2 worker processes, and the merge's cost.

    python -m bench.scale --quick        # a few minutes: 2,000 sessions per leg
    python -m bench.scale                # 10,000 sessions per leg, merge of 20,000
    python -m bench.run --only scale     # the same, as a section of the whole bench (quick with --quick)

One run, one simulated API (`bench.server`, on the second core) at one latency, one Prefect server,
one request budget (`--concurrency`). Each leg is a child process that starts a
`distributed.LocalCluster` of N worker processes (one thread each), warms it with a small load (the
workers' imports), then times one `load_sessions` flow run with `dask_address` pointing at it into a
fresh folder (format both): wall seconds from the flow call to its return, so planning, the tasks, the
merge and the publishing are all in. The merge leg lands sessions as a Parquet-only load (no DuckDB),
then times `recovery.catch_up`, the step that merges a committed load into `piper.duckdb`, which is
what the flow's single merge does for the rows its tasks landed; the figure per 100,000 sessions is
that time scaled linearly. The results go to `bench/results/scale-<mode>.json` and, between the
markers below, into docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.payloads import TOKEN, PayloadSource

SEED = 0
PAYLOAD_KB = 26.0
DOC = procs.REPO / "docs" / "scale-out.md"
BEGIN, END = "<!-- bench.scale:begin -->", "<!-- bench.scale:end -->"
WARM_SESSIONS = 40


@dataclass(frozen=True)
class ScaleMode:
    name: str
    sessions: int
    latency_ms: int
    concurrency: int
    chunk_size: int
    sessions_per_task: int
    merge_sessions: int
    workers: tuple[int, ...] = (1, 2)


QUICK = ScaleMode("quick", 2_000, 50, 64, 250, 500, 2_000)
FULL = ScaleMode("full", 10_000, 50, 64, 500, 2_500, 20_000)


def leg_dask(base_url: str, org_id: str, ids: list[str], warm: list[str], out_dir: Path, workers: int,
             mode: ScaleMode) -> dict[str, Any]:
    """One timed flow run on a warmed local cluster of `workers` processes (in this child process)."""
    from distributed import LocalCluster

    from flows.prefect_flow import load_sessions

    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))  # the workers may use every core
    settings = {"org_id": org_id, "base_url": base_url, "concurrency": mode.concurrency,
                "chunk_size": mode.chunk_size, "sessions_per_task": mode.sessions_per_task, "format": "both"}
    with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster:
        address = cluster.scheduler_address
        asyncio.run(load_sessions(session_ids=warm, out_dir=str(out_dir / "warm"), dask_address=address,
                                  return_state=True, **settings))
        started = time.perf_counter()
        state = asyncio.run(load_sessions(session_ids=ids, out_dir=str(out_dir / "timed"), dask_address=address,
                                          return_state=True, **settings))
        seconds = time.perf_counter() - started
    return {"workers": workers, "sessions": len(ids), "seconds": seconds, "sessions_per_second": len(ids) / seconds,
            "completed": state.is_completed(), "message": state.message}


def leg_merge(base_url: str, org_id: str, ids: list[str], out_dir: Path, mode: ScaleMode) -> dict[str, Any]:
    """Land `ids` as a Parquet-only load, then time merging it into a new piper.duckdb."""
    from flows.pipeline import run_load
    from flows.settings import LoadSettings
    from warehouse import recovery, store

    settings = LoadSettings(org_id=org_id, base_url=base_url, out_dir=out_dir, format="parquet",
                            concurrency=mode.concurrency, chunk_size=mode.chunk_size)
    summary = run_load(ids, settings, TOKEN)
    con = store.connect(out_dir / store.DATABASE_FILE)
    try:
        started = time.perf_counter()
        merged = recovery.catch_up(con, out_dir / "parquet")
        seconds = time.perf_counter() - started
    finally:
        con.close()
    return {"sessions": len(ids), "loaded": summary.outcomes["loaded"], "merged_loads": merged,
            "seconds": seconds, "seconds_per_100k": seconds / len(ids) * 100_000}


def run(mode: ScaleMode, work: Path, log: Any = print) -> dict[str, Any]:
    """Every leg of the section, each in a child process, against one simulated API; the results."""
    source = PayloadSource(seed=SEED, sessions=WARM_SESSIONS + max(mode.sessions, mode.merge_sessions),
                           payload_kb=PAYLOAD_KB)
    _, server_cpu = procs.cpu_split()
    env = {**os.environ, "PYTHONPATH": str(procs.SOURCE), "PIPER_API_TOKEN": TOKEN,
           "PREFECT_HOME": str(work / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1"}
    env.pop("PREFECT_API_URL", None)
    logs = procs.REPO / "bench" / "results" / "logs"
    prefect_port = procs.free_port()
    prefect = procs.start_child(  # one server for every leg, as a deployment has: its start is not timed
        "prefect-server-scale", [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                                 "127.0.0.1", "--port", str(prefect_port), "--no-ui", "--analytics-off"],
        f"http://127.0.0.1:{prefect_port}/api/health", env=env, cpu=server_cpu, log=logs / "prefect-server-scale.log",
        timeout=300)
    env["PREFECT_API_URL"] = f"{prefect.url}/api"
    port = procs.free_port()
    server = procs.start_child(
        "bench-server-scale", [sys.executable, "-m", "bench.server", "--port", str(port), "--latency-ms",
                               str(mode.latency_ms), "--sessions", str(len(source.session_ids)), "--seed", str(SEED),
                               "--payload-kb", str(PAYLOAD_KB)],
        f"http://127.0.0.1:{port}/health", env=env, cpu=server_cpu, log=logs / "server-scale.log", timeout=60)
    results: dict[str, Any] = {"mode": asdict(mode), "loadavg_start": os.getloadavg(), "dask": [], "merge": None}
    try:
        for workers in mode.workers:
            log(f"  scale: {mode.sessions} sessions on {workers} Dask worker process(es)")
            results["dask"].append(_child(["dask", str(workers)], server.url, source, work, mode, env))
            log(f"    {results['dask'][-1]}")
        log(f"  scale: the merge of {mode.merge_sessions} sessions")
        results["merge"] = _child(["merge"], server.url, source, work, mode, env)
        log(f"    {results['merge']}")
    finally:
        server.stop()
        prefect.stop()
    results["loadavg_end"] = os.getloadavg()
    return results


def _child(leg: list[str], base_url: str, source: PayloadSource, work: Path, mode: ScaleMode,
           env: dict[str, str]) -> dict[str, Any]:
    out = work / "-".join(leg)
    done = subprocess.run([sys.executable, "-m", "bench.scale", "--leg", *leg, "--base-url", base_url,
                           "--mode", mode.name, "--work", str(out)], cwd=procs.SOURCE, env=env, capture_output=True,
                          text=True, timeout=3600, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-3:]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def markdown(results: dict[str, Any]) -> str:
    """The doc's table of one run."""
    mode = results["mode"]
    lines = [
        f"Measured by `python -m bench.scale{' --quick' if mode['name'] == 'quick' else ''}` on this machine "
        f"(2 cores shared with other work: load average {results['loadavg_start'][0]:.1f} at the start, "
        f"{results['loadavg_end'][0]:.1f} at the end), simulated API at L = {mode['latency_ms']} ms, "
        f"`--concurrency {mode['concurrency']}`, `--chunk-size {mode['chunk_size']}`, "
        f"`--sessions-per-task {mode['sessions_per_task']}`, format both:",
        "",
        "| Dask worker processes | sessions | wall seconds (flow call to return) | sessions/s |",
        "| --- | --- | --- | --- |",
    ]
    for leg in results["dask"]:
        if "error" in leg:
            lines.append(f"| ? | | failed: {' '.join(leg['error'])} | |")
            continue
        lines.append(f"| {leg['workers']} | {leg['sessions']:,} | {leg['seconds']:.1f} | "
                     f"{leg['sessions_per_second']:.0f} |")
    merge = results["merge"] or {}
    if "seconds" in merge:
        lines += ["", f"The merge into `piper.duckdb` of one load of {merge['sessions']:,} sessions took "
                  f"{merge['seconds']:.2f} s: {merge['seconds_per_100k']:.1f} s per 100,000 sessions, scaled "
                  "linearly (not measured at 100,000)."]
    return "\n".join(lines)


def write_doc(results: dict[str, Any], doc: Path = DOC) -> None:
    text = doc.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{BEGIN}\n{markdown(results)}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 sessions per leg")
    parser.add_argument("--leg", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.leg:
        mode = QUICK if args.mode == "quick" else FULL
        source = PayloadSource(seed=SEED, sessions=WARM_SESSIONS + max(mode.sessions, mode.merge_sessions),
                               payload_kb=PAYLOAD_KB)
        warm, rest = source.session_ids[:WARM_SESSIONS], source.session_ids[WARM_SESSIONS:]
        if args.leg[0] == "dask":
            result = leg_dask(args.base_url, source.org_id, rest[: mode.sessions], warm, args.work,
                              int(args.leg[1]), mode)
        else:
            result = leg_merge(args.base_url, source.org_id, rest[: mode.merge_sessions], args.work, mode)
        print(json.dumps(result))
        return 0
    from bench.run import _wait_for_machine

    lock = _wait_for_machine(60, lambda message: print(message, flush=True))  # no other bench meanwhile
    mode = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="piper-bench-scale-") as work:
        results = run(mode, Path(work))
    path = procs.REPO / "bench" / "results" / f"scale-{mode.name}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    write_doc(results)
    print(markdown(results))
    lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
