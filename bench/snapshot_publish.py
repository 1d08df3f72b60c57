"""Bytes the BI snapshot publish writes per small load, at several warehouse sizes (issue 11).

A measurement to read, not a timed test. For each size N it loads N sessions of the simulated API
(20 KB payloads) into a fresh folder, then small loads of new sessions and one that refetches stored
ones, and prints for each publish whether it copied the database whole or updated the standby, its
wall time, and the bytes it wrote: `wchar` (bytes handed to write(2)) and `write_bytes` (bytes
dirtied for the disk) from /proc/self/io (Linux), beside the size of `piper.duckdb`.

    .venv/bin/python bench/snapshot_publish.py --sizes 2000 20000 --load 200
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connector.fake_api import FakeDataset, FakePiper, serve
from flows.cli import main
from warehouse import snapshot, store

TOKEN = "pat_bench_snapshot_publish_0000"
MB = 1e6


def proc_io() -> dict[str, int]:
    with open("/proc/self/io", encoding="ascii") as stats:
        return {key: int(value) for key, value in (line.split(": ") for line in stats)}


class Measured(logging.Handler):
    """Each publish's figures, and whether the snapshot module logged a whole copy during it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.copied: list[str] = []
        self.rows: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.copied.append(record.getMessage())

    def wrap(self, publish: Callable[..., Path | None]) -> Callable[..., Path | None]:
        def measuring(*args: Any) -> Path | None:
            self.copied.clear()
            before, started = proc_io(), time.perf_counter()
            try:
                return publish(*args)
            finally:
                after = proc_io()
                self.rows.append({
                    "seconds": time.perf_counter() - started,
                    "wchar": after["wchar"] - before["wchar"],
                    "write_bytes": after["write_bytes"] - before["write_bytes"],
                    "how": "whole copy" if self.copied else "standby updated",
                })
        return measuring


def run(size: int, load: int, work: Path, measured: Measured) -> list[tuple[str, dict[str, Any], int]]:
    dataset = FakeDataset.generate(seed=7, sessions=size + 4 * load, payload_kb=20.0)
    out = work / f"out-{size}"
    ids = dataset.session_ids
    batches = [(f"build: {size} sessions", ids[:size], [])]
    batches += [(f"{load} new sessions #{n}", ids[size + n * load: size + (n + 1) * load], []) for n in range(4)]
    batches.append((f"{load} stored sessions refetched", ids[:load], ["--refetch"]))
    results = []
    with serve(FakePiper(dataset=dataset, token=TOKEN)) as base_url:
        for label, batch, extra in batches:
            measured.rows.clear()
            code = main(["load", "--org-id", dataset.org_id, "--base-url", base_url, "--out", str(out),
                         *extra, *batch])
            if code != 0:
                raise SystemExit(f"load {label!r} failed with exit status {code}")
            database_size = (out / store.DATABASE_FILE).stat().st_size
            results.append((label, measured.rows[-1], database_size))
    return results


def report(size: int, results: list[tuple[str, dict[str, Any], int]]) -> None:
    print(f"\n### {size:,} sessions stored\n")
    print("| load | publish | seconds | wchar MB | write_bytes MB | piper.duckdb MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, row, database_size in results:
        print(f"| {label} | {row['how']} | {row['seconds']:.2f} | {row['wchar'] / MB:.1f} | "
              f"{row['write_bytes'] / MB:.1f} | {database_size / MB:.0f} |")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--load", type=int, default=200, help="sessions per small load")
    parser.add_argument("--work", type=Path, help="folder for the output folders, kept (default: a temporary one)")
    args = parser.parse_args()
    os.environ["PIPER_API_TOKEN"] = TOKEN
    measured = Measured()
    logging.getLogger(snapshot.__name__).addHandler(measured)
    logging.getLogger(snapshot.__name__).setLevel(logging.INFO)
    snapshot.publish = measured.wrap(snapshot.publish)  # type: ignore[method-assign]  # a measuring script
    with tempfile.TemporaryDirectory(prefix="piper-snapshot-bench-") as temporary:
        work = args.work or Path(temporary)
        for size in args.sizes:
            report(size, run(size, args.load, work, measured))


if __name__ == "__main__":
    cli()
