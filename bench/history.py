"""History: the same small load into output folders that already hold N sessions (issue 11).

The cost of a scheduled load must follow the load, not the warehouse it lands in. For each N the
section builds (or takes from the cache) an output folder holding N sessions, copies it, and times the
same 200-session `piper-etl load` (the real CLI, a child process, against `bench.server` at L = 0)
into the copy, format both and then format parquet, with new session ids each repetition. Per load:
wall seconds, bytes the child wrote (`ru_oublock` x 512 from `os.wait4`), files under `parquet/` and
the size of `piper-bi.duckdb` after it; per folder, the fail-count query on the snapshot and over the
Parquet files, each in a new process.

How a folder of N sessions is built (`build_plan`): SMALL_SHARE of the sessions in loads of
SMALL_LOAD (format parquet, as hourly loads landing while another process held the database would;
the next format-both load merges each in its own transaction), the rest in loads of up to BIG_LOAD
(format both, chunks of 500), the small loads spread before each big load, so the folder ends with a
format-both load: DuckDB holds every load and the snapshot is published.

Built folders are cached under `CACHE_ROOT`, keyed by N, the build plan and a hash of the product
source that built them (`source_key`), so a rerun of the same revision reuses them and any change to
the code that writes a warehouse builds afresh. A cached folder's files are read-only; each run works
on a copy whose Parquet parts are hard links (a load that wrote a landed part in place would fail
loudly instead of spoiling the cache) and whose other files are copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import procs
from bench.payloads import TOKEN, PayloadSource

SEED = 0
PAYLOAD_KB = 23.5  # the demo generator's setting whose bodies average 20 KB
TOTAL_SESSIONS = 260_000  # the history server's sessions: folders take the first N, timed loads the tail
TIMED_FROM = 250_000
LOAD_SESSIONS = 200  # the timed load
SMALL_LOAD = 200
SMALL_SHARE = 0.10
BIG_LOAD = 25_000
CHUNK_SIZE = 500
BUILD_CONCURRENCY = 64
PLAN_VERSION = 1  # bump when the way a folder is built changes
FAIL_QUERY = "SELECT count(*) FROM criteria_results WHERE verdict = 'FAIL'"
FORMATS = ("both", "parquet")
CACHE_ROOT = Path(os.environ.get("PIPER_BENCH_CACHE") or Path.home() / ".cache" / "piper-bench") / "history"
CACHE_KEEP = 4  # cached folders kept (most recently used first); the others are deleted
BUILT_FILE = "bench-built.json"  # written last into a cached folder: it is complete
PRODUCT = ("connector", "schemas", "warehouse", "flows")


@dataclass(frozen=True)
class Step:
    """One load of a folder's build: the sessions `first` .. `first + count` of the id list, in `format`."""

    first: int
    count: int
    format: str


def build_plan(sessions: int) -> list[Step]:
    """The loads that build a folder of `sessions` sessions (module docstring)."""
    small = round(sessions * SMALL_SHARE / SMALL_LOAD)
    big_total = sessions - small * SMALL_LOAD
    bigs = [BIG_LOAD] * (big_total // BIG_LOAD) + ([big_total % BIG_LOAD] if big_total % BIG_LOAD else [])
    steps: list[Step] = []
    first = 0
    for index, big in enumerate(bigs):
        before = small * (index + 1) // len(bigs) - small * index // len(bigs)
        for _ in range(before):
            steps.append(Step(first, SMALL_LOAD, "parquet"))
            first += SMALL_LOAD
        steps.append(Step(first, big, "both"))
        first += big
    return steps


def describe_plan(sessions: int) -> str:
    steps = build_plan(sessions)
    bigs = Counter(s.count for s in steps if s.format == "both")
    small = sum(1 for s in steps if s.format == "parquet")
    return (f"{small} load{'s' if small != 1 else ''} of {SMALL_LOAD} sessions (format parquet) and "
            + " and ".join(f"{n} of {size:,}" for size, n in sorted(bigs.items(), reverse=True))
            + " (format both), the small ones spread before each big one")


def source_key(source: Path) -> str:
    """A hash of what decides how a folder is built: the product source, the plan, the libraries."""
    digest = hashlib.sha256()
    for folder in PRODUCT:
        for path in sorted((source / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".sql") and "__pycache__" not in path.parts:
                digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    for path in ("bench/payloads.py", "bench/server.py"):
        digest.update((source / path).read_bytes())
    plan = (PLAN_VERSION, SEED, PAYLOAD_KB, TOTAL_SESSIONS, SMALL_LOAD, SMALL_SHARE, BIG_LOAD, CHUNK_SIZE,
            metadata.version("duckdb"), metadata.version("pyarrow"), sys.version_info[:2])
    digest.update(repr(plan).encode())
    return digest.hexdigest()[:16]


# -- legs (run in `bench.worker` processes) ---------------------------------------------------------


def build(params: dict[str, Any]) -> dict[str, Any]:
    """Run the loads of a build plan one after another with `run_load`, in this process."""
    from flows.pipeline import run_load
    from flows.settings import LoadSettings

    ids: list[str] = params["session_ids"]
    out = Path(params["out_dir"])
    done = []
    started = time.perf_counter()
    for first, count, format in params["steps"]:
        settings = LoadSettings(org_id=params["org_id"], base_url=params["base_url"], out_dir=out,
                                concurrency=BUILD_CONCURRENCY, chunk_size=CHUNK_SIZE, format=format)
        began = time.perf_counter()
        summary = run_load(ids[first : first + count], settings, TOKEN)
        if summary.status != "succeeded" or summary.outcomes["loaded"] != count:
            raise RuntimeError(f"build load of {count} sessions ended {summary.status}: {dict(summary.outcomes)}")
        done.append({"count": count, "format": format, "seconds": time.perf_counter() - began})
    return {"seconds": time.perf_counter() - started, "steps": done}


def query(params: dict[str, Any]) -> dict[str, Any]:
    """The fail-count query, cold: a new connection to the snapshot, or an in-memory one over the Parquet files."""
    import duckdb

    from warehouse.analytics import MARKER as ANALYTICS_MARKER

    out = Path(params["out_dir"])
    started = time.perf_counter()
    if params["kind"] == "snapshot":
        con = duckdb.connect(str(out / "piper-bi.duckdb"), read_only=True)
    else:
        os.chdir(out)  # current_state.sql names the Parquet files relative to its folder
        con = duckdb.connect()
        text = (out / "current_state.sql").read_text(encoding="utf-8")
        at = text.find(ANALYTICS_MARKER)  # the tables' views, then the analytics views over them
        con.execute(text[:at] if at >= 0 else text)  # together, what `.read current_state.sql` does
        tables = time.perf_counter()
        if at >= 0:
            con.execute(text[at:])
    opened = time.perf_counter()
    row = con.execute(FAIL_QUERY).fetchone()
    ended = time.perf_counter()
    con.close()
    return {"open_seconds": opened - started, "query_seconds": ended - opened, "seconds": ended - started,
            **({"analytics_seconds": opened - tables} if params["kind"] == "parquet" else {}),
            "fails": row[0] if row else None}


# -- the section --------------------------------------------------------------------------------


@dataclass
class History:
    """The history section of one bench run (`run()` returns its results)."""

    sizes: tuple[int, ...]
    repeats: int
    query_repeats: int
    work: Path
    env: dict[str, str]
    server_cpu: int | None
    logs: Path
    log: Callable[[str], None]

    def run(self) -> dict[str, Any]:
        self.source = PayloadSource(seed=SEED, sessions=TOTAL_SESSIONS, payload_kb=PAYLOAD_KB)
        self.key = source_key(procs.SOURCE)
        server = self._start_server()
        out: dict[str, Any] = {"sizes": list(self.sizes), "load_sessions": LOAD_SESSIONS, "repeats": self.repeats,
                               "query_repeats": self.query_repeats, "payload_mean_kb":
                               round(self.source.mean_body_bytes() / 1024, 1), "source_key": self.key,
                               "folders": {}, "loads": {}, "queries": {}}
        try:
            copies = {}
            for size in self.sizes:
                folder, built = self._cached(size, server.url)
                began = time.perf_counter()
                copies[size] = self._copy(folder, self.work / "history" / str(size))
                built["copy_seconds"] = time.perf_counter() - began
                built["before"] = folder_figures(copies[size])
                out["folders"][str(size)] = built
            cli = str(Path(sys.executable).with_name("piper-etl"))
            timed = TIMED_FROM
            # A built folder's other standby lacks the build's last big load, which the first load into it
            # catches up: one untimed load first, so the timed ones are what an hourly load finds.
            ids_file = self.work / "history" / "ids-warm-up.txt"
            ids_file.write_text("\n".join(self.source.session_ids[timed : timed + LOAD_SESSIONS]) + "\n")
            timed += LOAD_SESSIONS
            for size in self.sizes:
                record = self._load(cli, server.url, ids_file, copies[size], "both")
                out.setdefault("warm_up", {})[str(size)] = record
                self.log(f"  history N={size:,} warm-up (not timed): {record['wall_seconds']:.2f} s, "
                         f"{record['bytes_written'] / 2**20:,.1f} MB written, exit {record['exit_code']}")
            for format in FORMATS:
                for repeat in range(self.repeats):  # round robin over the sizes: noise spreads over all alike
                    ids = self.source.session_ids[timed : timed + LOAD_SESSIONS]
                    timed += LOAD_SESSIONS
                    ids_file = self.work / "history" / f"ids-{format}-{repeat}.txt"
                    ids_file.write_text("\n".join(ids) + "\n", encoding="utf-8")
                    for size in self.sizes:
                        record = self._load(cli, server.url, ids_file, copies[size], format)
                        out["loads"].setdefault(f"{size}|{format}", []).append(record)
                        self.log(f"  history N={size:,} {format} #{repeat + 1}: {record['wall_seconds']:.2f} s, "
                                 f"{record['bytes_written'] / 2**20:,.1f} MB written, exit {record['exit_code']}")
                if format == "both":  # DuckDB and the Parquet files hold the same state now: query both
                    largest = max(self.sizes)
                    out["profile"] = self._profile(server.url, copies[largest], timed, largest)
                    timed += LOAD_SESSIONS
                    for size in self.sizes:
                        out["queries"][str(size)] = self._queries(copies[size])
        finally:
            server.stop()
        out["summary"] = summarise(out)
        return out

    def _start_server(self) -> procs.Child:
        port = procs.free_port()
        argv = [sys.executable, "-m", "bench.server", "--port", str(port), "--latency-ms", "0",
                "--sessions", str(TOTAL_SESSIONS), "--seed", str(SEED), "--payload-kb", str(PAYLOAD_KB)]
        return procs.start_child("bench-server-history", argv, f"http://127.0.0.1:{port}/health", env=self.env,
                                 cpu=self.server_cpu, log=self.logs / "server-history.log", timeout=120)

    def _cached(self, size: int, base_url: str) -> tuple[Path, dict[str, Any]]:
        """The cached folder of `size` sessions for this source key, built now if missing."""
        folder = CACHE_ROOT / f"{size}-{self.key}"
        marker = folder / BUILT_FILE
        if marker.exists():
            built: dict[str, Any] = json.loads(marker.read_text())
            built["cached"] = True
            os.utime(marker)
            self.log(f"  history N={size:,}: cached folder {folder} (built in {built['build_seconds']:.0f} s)")
            return folder, built
        CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        _evict(keep=CACHE_KEEP - 1)
        shutil.rmtree(folder, ignore_errors=True)
        building = CACHE_ROOT / f".building-{size}-{self.key}-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        steps = build_plan(size)
        self.log(f"  history N={size:,}: building ({describe_plan(size)})")
        params = {"cpu": None, "out_dir": str(building), "base_url": base_url, "org_id": self.source.org_id,
                  "session_ids": self.source.session_ids[:size],
                  "steps": [(s.first, s.count, s.format) for s in steps]}
        run = procs.run_leg("history-build", params, work=self.work / "params", log=self.logs / "history-build.log",
                            timeout=7200, env=self.env)
        if run.error or not run.result:
            shutil.rmtree(building, ignore_errors=True)
            raise RuntimeError(f"building the {size:,}-session folder failed: {run.error}")
        built = {"sessions": size, "plan": describe_plan(size), "build_seconds": run.wall_seconds,
                 "steps": run.result["steps"], "source_key": self.key, "built_utc": time.strftime("%Y-%m-%d %H:%M")}
        _read_only(building)
        (building / BUILT_FILE).write_text(json.dumps(built, indent=1))
        building.rename(folder)
        built["cached"] = False
        self.log(f"  history N={size:,}: built in {run.wall_seconds:.0f} s")
        return folder, built

    def _copy(self, cached: Path, target: Path) -> Path:
        """A working copy: Parquet parts hard-linked (read-only), every other file copied (writable).

        Files that are hard links of one another in the cached folder (the snapshot and the standby
        copy it names) are hard links of one copy in the working one, as the load left them.
        """
        shutil.rmtree(target, ignore_errors=True)
        copied: dict[tuple[int, int], str] = {}

        def place(source: str, destination: str) -> object:
            if Path(source).name == BUILT_FILE:
                return destination
            if "/parquet/" in source and source.endswith(".parquet"):
                try:
                    os.link(source, destination)
                    return destination
                except OSError:  # another file system (a tmpfs /tmp): a copy, writable, is as good
                    pass
            found = os.stat(source)
            first = copied.get((found.st_dev, found.st_ino))
            if first is not None:
                os.link(first, destination)
                return destination
            shutil.copyfile(source, destination)
            copied[(found.st_dev, found.st_ino)] = destination
            return destination

        shutil.copytree(cached, target, copy_function=place)
        return target

    def _load(self, cli: str, base_url: str, ids_file: Path, out_dir: Path, format: str) -> dict[str, Any]:
        argv = [cli, "load", "--sessions-file", str(ids_file), "--org-id", self.source.org_id, "--base-url",
                base_url, "--out", str(out_dir), "--format", format]
        run = procs.run_measured(argv, env=self.env, timeout=900, log=self.logs / "history-load.log")
        return {"wall_seconds": run.wall_seconds, "exit_code": run.returncode, "cpu_seconds": run.cpu_seconds,
                "peak_rss_mb": run.peak_rss_mb, "bytes_written": run.bytes_written, **folder_figures(out_dir),
                **({"error": run.tail} if run.returncode else {})}

    def _profile(self, base_url: str, out_dir: Path, first: int, size: int) -> dict[str, Any]:
        """One more format-both load into the largest folder under cProfile (`run_load` in a leg)."""
        self.log(f"  history N={size:,}: profiling a {LOAD_SESSIONS}-session load (cProfile)")
        params = {"cpu": None, "out_dir": str(out_dir), "base_url": base_url, "org_id": self.source.org_id,
                  "session_ids": self.source.session_ids[first : first + LOAD_SESSIONS], "concurrency": 16,
                  "format": "both", "profile": True, "top": 30}
        run = procs.run_leg("piper-local", params, work=self.work / "params", log=self.logs / "history-profile.log",
                            timeout=900, env=self.env)
        return {"sessions": size, **(run.result or {}), **({"error": run.error} if run.error else {})}

    def _queries(self, out_dir: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for kind in ("snapshot", "parquet"):
            runs = []
            for _ in range(self.query_repeats):
                run = procs.run_leg("history-query", {"cpu": None, "out_dir": str(out_dir), "kind": kind},
                                    work=self.work / "params", log=self.logs / "history-query.log", timeout=600,
                                    env=self.env)
                runs.append(run.result or {"error": run.error})
            result[kind] = {"runs": runs, **{field: _median([r.get(field) for r in runs])
                                             for field in ("open_seconds", "query_seconds", "seconds",
                                                           "analytics_seconds")},
                            "fails": sorted({r.get("fails") for r in runs}, key=str)}
        self.log(f"  history queries {out_dir.name}: snapshot {result['snapshot']['seconds'] or 0:.3f} s, "
                 f"parquet {result['parquet']['seconds'] or 0:.3f} s")
        return result


def folder_figures(out_dir: Path) -> dict[str, Any]:
    """Files under `parquet/`, and the sizes of `piper-bi.duckdb` and `piper.duckdb`, in bytes."""
    parquet = out_dir / "parquet"
    files = sum(len(names) for _, _, names in os.walk(parquet)) if parquet.is_dir() else 0

    def size(name: str) -> int | None:
        path = out_dir / name
        return path.stat().st_size if path.exists() else None

    return {"parquet_files": files, "snapshot_bytes": size("piper-bi.duckdb"), "database_bytes": size("piper.duckdb")}


def summarise(out: dict[str, Any]) -> dict[str, Any]:
    """Medians per (N, format), and the ratios the issue's targets name."""
    rows: dict[str, Any] = {}
    for key, records in out["loads"].items():
        ok = [r for r in records if r["exit_code"] == 0]
        rows[key] = {"runs": len(records), "failed": len(records) - len(ok),
                     **{field: _median([r[field] for r in ok]) for field in
                        ("wall_seconds", "bytes_written", "cpu_seconds", "peak_rss_mb")},
                     "parquet_files": ok[-1]["parquet_files"] if ok else None,
                     "snapshot_bytes": ok[-1]["snapshot_bytes"] if ok else None}
    sizes = sorted(out["sizes"])
    small, large = str(sizes[0]), str(sizes[-1])
    ratios: dict[str, Any] = {}
    for format in FORMATS:
        a, b = rows.get(f"{small}|{format}", {}), rows.get(f"{large}|{format}", {})
        ratios[f"wall|{format}"] = _ratio(b.get("wall_seconds"), a.get("wall_seconds"))
        ratios[f"bytes|{format}"] = _ratio(b.get("bytes_written"), a.get("bytes_written"))
    queries = out["queries"].get(large, {})
    ratios["parquet_over_snapshot"] = _ratio(queries.get("parquet", {}).get("seconds"),
                                             queries.get("snapshot", {}).get("seconds"))
    return {"rows": rows, "ratios": ratios, "smallest": int(small), "largest": int(large)}


def _evict(keep: int) -> None:
    """Delete all but the `keep` most recently used cached folders (and builds left by killed runs)."""
    if not CACHE_ROOT.is_dir():
        return
    for stale in CACHE_ROOT.glob(".building-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    entries = [p for p in CACHE_ROOT.iterdir() if (p / BUILT_FILE).exists()]
    entries.sort(key=lambda p: (p / BUILT_FILE).stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def _read_only(folder: Path) -> None:
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _median(values: list[Any]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
