"""A/B of the single-machine load path: `flows.pipeline.run_load` of one commit against the working tree.

`python -m bench.ab_local --ref COMMIT`: exports COMMIT's code to a temporary folder, starts one
`bench.server` (loopback), then runs the same load of `--sessions` sessions alternately with the old
code and with this tree (A B B A A B ...), each in a fresh process with a fresh output folder, and prints
the wall seconds of every run, the medians and their ratio. Quick sizes: the machine is shared.
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
settings = LoadSettings(org_id=p["org_id"], base_url=p["base_url"], out_dir=Path(p["out_dir"]),
                        concurrency=p["concurrency"], chunk_size=p["chunk_size"])
started = time.perf_counter()
summary = run_load(p["session_ids"], settings, p["token"])
print(json.dumps({"seconds": time.perf_counter() - started, "status": summary.status,
                  "code": str(Path(connector.__file__).parent.parent)}))
"""


def export(ref: str, into: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def one_run(code: Path, params: dict[str, object]) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(code)}
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
    args = parser.parse_args()

    from bench.payloads import TOKEN, PayloadSource

    source = PayloadSource(seed=0, sessions=args.sessions, payload_kb=args.payload_kb)
    work = Path(tempfile.mkdtemp(prefix="piper-ab-"))
    server = None
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
                    "chunk_size": args.chunk_size})
                shutil.rmtree(out_dir, ignore_errors=True)
                assert result["code"] == str(sides[side]), f"ran the wrong code: {result['code']}"
                seconds[side].append(float(str(result["seconds"])))
                print(f"round {round_number + 1} {side:6} {result['seconds']:.2f} s ({result['status']})", flush=True)
        before, now = statistics.median(seconds["before"]), statistics.median(seconds["now"])
        print(f"{args.sessions} sessions, L = {args.latency_ms:g} ms, concurrency {args.concurrency}, "
              f"{args.rounds} runs each, alternating; load average {load:.1f} at the start, "
              f"{os.getloadavg()[0]:.1f} at the end")
        print(f"median wall seconds: before ({args.ref}) {before:.2f}, now {now:.2f}: now / before = "
              f"{now / before:.3f}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
