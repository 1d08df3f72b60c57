"""A/B of the single-machine load paths: one commit's code against the working tree's.

`python -m bench.ab_local --ref COMMIT [--engine local|prefect]`: exports COMMIT's code to a temporary
folder, starts one `bench.server` (loopback), then runs the same load of `--sessions` sessions alternately
with the old code and with this tree (A B B A A B ...), each in a fresh process with a fresh output folder,
and prints the wall seconds of every run, the medians and their ratio. `--engine local` times
`flows.pipeline.run_load`; `--engine prefect` times the Prefect flow `load_sessions` without Dask, against
one `prefect server start` (its own PREFECT_HOME) that both sides use, from the flow call to its end
(imports and the server's start-up are outside). Quick sizes: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, time
from pathlib import Path
import connector
from flows.pipeline import run_load
from flows.settings import LoadSettings
p = json.loads(sys.argv[1])
if p["engine"] == "prefect":
    import asyncio
    from flows.prefect_flow import load_sessions
    started = time.perf_counter()
    state = asyncio.run(load_sessions(session_ids=p["session_ids"], org_id=p["org_id"], base_url=p["base_url"],
                                      out_dir=p["out_dir"], concurrency=p["concurrency"], chunk_size=p["chunk_size"],
                                      return_state=True))
    status = state.type.value
else:
    settings = LoadSettings(org_id=p["org_id"], base_url=p["base_url"], out_dir=Path(p["out_dir"]),
                            concurrency=p["concurrency"], chunk_size=p["chunk_size"])
    started = time.perf_counter()
    status = run_load(p["session_ids"], settings, p["token"]).status
print(json.dumps({"seconds": time.perf_counter() - started, "status": status,
                  "code": str(Path(connector.__file__).parent.parent)}))
"""


def export(ref: str, into: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def one_run(code: Path, params: dict[str, object], env_extra: dict[str, str]) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(code), **env_extra}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(params)], cwd=code, env=env, check=True,
                          capture_output=True, text=True, timeout=900)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab_local", description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="the commit to compare with (e.g. 1295238^1)")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--payload-kb", type=float, default=26.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each side")
    parser.add_argument("--engine", choices=("local", "prefect"), default="local",
                        help="time run_load (local) or the Prefect flow without Dask (prefect)")
    args = parser.parse_args()

    from bench.payloads import TOKEN, PayloadSource

    source = PayloadSource(seed=0, sessions=args.sessions, payload_kb=args.payload_kb)
    work = Path(tempfile.mkdtemp(prefix="piper-ab-"))
    server = prefect_server = None
    try:
        old = work / "old"
        old.mkdir()
        export(args.ref, old)
        port_file = work / "port"
        server = subprocess.Popen([sys.executable, "-m", "bench.server", "--port-file", str(port_file),
                                   "--latency-ms", str(args.latency_ms), "--sessions", str(args.sessions),
                                   "--payload-kb", str(args.payload_kb)], cwd=ROOT)
        deadline = time.monotonic() + 120
        while not port_file.exists():
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("bench.server did not start")
            time.sleep(0.1)
        base_url = f"http://127.0.0.1:{port_file.read_text()}"
        env_extra = {"PIPER_API_TOKEN": TOKEN}
        if args.engine == "prefect":
            prefect_server, api_url = start_prefect_server(work / "prefect-home")
            env_extra.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(work / "prefect-home"))
        sides = {"before": old, "now": ROOT}
        seconds: dict[str, list[float]] = {"before": [], "now": []}
        load = os.getloadavg()[0]
        for round_number in range(args.rounds):
            order = ["before", "now"] if round_number % 2 == 0 else ["now", "before"]
            for side in order:
                out_dir = work / f"out-{side}-{round_number}"
                result = one_run(sides[side], {
                    "org_id": source.org_id, "base_url": base_url, "out_dir": str(out_dir), "token": TOKEN,
                    "session_ids": source.session_ids, "concurrency": args.concurrency,
                    "chunk_size": args.chunk_size, "engine": args.engine}, env_extra)
                shutil.rmtree(out_dir, ignore_errors=True)
                assert result["code"] == str(sides[side]), f"ran the wrong code: {result['code']}"
                seconds[side].append(float(str(result["seconds"])))
                print(f"round {round_number + 1} {side:6} {result['seconds']:.2f} s ({result['status']})", flush=True)
        before, now = statistics.median(seconds["before"]), statistics.median(seconds["now"])
        print(f"engine {args.engine}: {args.sessions} sessions, L = {args.latency_ms:g} ms, "
              f"concurrency {args.concurrency}, "
              f"{args.rounds} runs each, alternating; load average {load:.1f} at the start, "
              f"{os.getloadavg()[0]:.1f} at the end")
        print(f"median wall seconds: before ({args.ref}) {before:.2f}, now {now:.2f}: now / before = "
              f"{now / before:.3f}")
    finally:
        for child in (server, prefect_server):
            if child is not None:
                child.terminate()
                child.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def start_prefect_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME; its API URL once it answers."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    child = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                              "--port", str(port), "--no-ui"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    api_url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2):
                return child, api_url
        except OSError:
            if child.poll() is not None:
                raise SystemExit("prefect server start exited") from None
            time.sleep(0.5)
    child.terminate()
    raise SystemExit("the Prefect server did not answer within 180 s")


if __name__ == "__main__":
    main()
