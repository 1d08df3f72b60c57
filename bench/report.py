"""Render the results of `bench.run` as docs/performance.md: targets first, then every table behind them.

    python -m bench.report bench/results/full.json > docs/performance.md   # re-render without re-running
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MET, MISSED, UNKNOWN = "**met**", "**not met**", "not measured"


def _f(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _status(ok: bool | None) -> str:
    return UNKNOWN if ok is None else MET if ok else MISSED


class Report:
    def __init__(self, results: dict[str, Any]) -> None:
        self.r = results
        self.quick = results.get("mode") == "quick"
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    # -- targets -----------------------------------------------------------------------------------

    def fetch_row(self, client: str, concurrency: int, latency: int) -> dict[str, Any] | None:
        rows: dict[str, Any] = self.r.get("fetch", {}).get("rows", {})
        return rows.get(f"{client}|C={concurrency}|L={latency}")

    def fetch_share(self, client: str, concurrency: int, latency: int) -> float | None:
        row = self.fetch_row(client, concurrency, latency)
        if not row or row.get("per_second") is None:
            return None
        return float(row["per_second"]) / float(row["bound"])

    def cpu_rate(self, leg: str) -> float | None:
        rate = self.r.get("cpu", {}).get(leg, {}).get("sessions_per_cpu_second")
        return float(rate) if rate is not None else None

    def e2e_rate(self, label_start: str, latency: int = 50) -> float | None:
        rows = self.r.get("e2e", {}).get(f"L={latency}", {})
        for label, row in rows.items():
            if label.startswith(label_start):
                rate = row.get("sessions_per_second")
                return float(rate) if rate is not None else None
        return None

    def targets(self) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        for concurrency, latency, need in ((64, 200, 0.90), (256, 200, 0.85), (64, 50, 0.85)):
            share = self.fetch_share("piper", concurrency, latency)
            row = self.fetch_row("piper", concurrency, latency)
            cpu_ms = row.get("cpu_ms_per_request") if row else None
            out.append((
                f"Fetch: piper-etl sessions/s ≥ {need:.0%} of C/L at C = {concurrency}, L = {latency} ms",
                f"{_f(None if share is None else share * 100, 0, ' %')} of {_f(row['bound'] if row else None)}/s "
                f"({_f(row.get('per_second') if row else None)}/s; {_f(cpu_ms, 2)} CPU ms/request)",
                _status(None if share is None else share >= need),
            ))
        piper, duck, pandas = self.cpu_rate("cpu-piper"), self.cpu_rate("cpu-duckdb"), self.cpu_rate("cpu-pandas")
        for other, name, need in ((duck, "DuckDB-native", 1.5), (pandas, "pandas json_normalize", 4.0)):
            ratio = _ratio(piper, other)
            out.append((
                f"Flatten + write: ≥ {need:g} × the sessions per CPU-second of {name}",
                f"{_f(ratio, 2)} × ({_f(piper)} vs {_f(other)} sessions/CPU-s)",
                _status(None if ratio is None else ratio >= need),
            ))
        for piper_label, dlt_label, need in (("piper-etl run_load, format duckdb", "dlt -> duckdb", 5.0),
                                             ("piper-etl run_load, format parquet", "dlt -> parquet", 2.0)):
            mine, theirs = self.e2e_rate(piper_label), self.e2e_rate(dlt_label)
            ratio = _ratio(mine, theirs)
            out.append((
                f"End to end (L = 50 ms, C = 64): {piper_label.split(', ')[1]} ≥ {need:g} × {dlt_label}",
                f"{_f(ratio, 2)} × ({_f(mine)} vs {_f(theirs)} sessions/s)",
                _status(None if ratio is None else ratio >= need),
            ))
        memory = self.r.get("memory", {})
        sizes = sorted(int(k) for k in memory if k.isdigit())
        if len(sizes) == 2 and all(memory[str(s)].get("peak_rss_mb") for s in sizes):
            small, large = (memory[str(s)]["peak_rss_mb"] for s in sizes)
            growth = large / small - 1
            error = memory[str(sizes[1])].get("error") or ""
            failure = error.removeprefix("failed: ").split(":")[0]
            stopped = (" (stopped by the RSS guard: it needed more)" if "RSS guard" in error
                       else f", and the load **failed**: {failure}" if error else "")
            done = memory[str(sizes[1])].get("status") or error
            out.append((
                f"Memory: peak RSS grows < 20 % from {sizes[0]:,} to {sizes[1]:,} sessions, and stays < 500 MB",
                f"{_f(small)} MB → {_f(large)} MB ({growth:+.0%}){stopped}",
                _status(None if not done else growth < 0.20 and large < 500 and not error),
            ))
        else:
            out.append(("Memory: peak RSS grows < 20 % from 10 k to 200 k sessions, < 500 MB", "n/a", UNKNOWN))
        overhead = self.r.get("overhead", {})
        ratio = overhead.get("ratio")
        out.append((
            f"Overhead: the Prefect flow adds ≤ 5 % to the wall time of a {overhead.get('sessions', 10_000):,}-session "
            "load",
            f"{_f(None if ratio is None else (ratio - 1) * 100, 0, ' %')} "
            f"({_f(overhead.get('flow', {}).get('seconds'), 1)} s vs "
            f"{_f(overhead.get('run_load', {}).get('seconds'), 1)} s)",
            _status(None if ratio is None else ratio <= 1.05),
        ))
        startup = self.r.get("startup", {}).get("piper-etl load, 1 session, --engine local", {})
        seconds = startup.get("seconds")
        out.append((
            "Start-up: a one-session `piper-etl load` finishes in < 5 s",
            f"{_f(seconds, 2)} s (local engine)",
            _status(None if seconds is None or startup.get("error") else seconds < 5),
        ))
        out.extend(self.history_targets())
        return out

    def history_targets(self) -> list[tuple[str, str, str]]:
        """Issue 11's targets, as ratios between the smallest and the largest folder of the history section."""
        data = self.r.get("history")
        if not data or "summary" not in data:
            return []
        summary = data["summary"]
        rows, ratios = summary["rows"], summary["ratios"]
        small, large = summary["smallest"], summary["largest"]
        out = []
        for format in ("both", "parquet"):
            ratio = ratios.get(f"wall|{format}")
            a, b = rows.get(f"{small}|{format}", {}), rows.get(f"{large}|{format}", {})
            out.append((
                f"History (issue 11): a {data['load_sessions']}-session load (format {format}) into {large:,} "
                f"sessions takes ≤ 1.3 × its wall time into {small:,}",
                f"{_f(ratio, 2)} × ({_f(b.get('wall_seconds'), 2)} s vs {_f(a.get('wall_seconds'), 2)} s)",
                _status(None if ratio is None else ratio <= 1.3),
            ))
        for format in ("both", "parquet"):
            ratio = ratios.get(f"bytes|{format}")
            a, b = rows.get(f"{small}|{format}", {}), rows.get(f"{large}|{format}", {})
            out.append((
                f"History (issue 11): the bytes it writes (format {format}) follow the load, not the warehouse "
                f"(read here as ≤ 1.3 × from {small:,} to {large:,})",
                f"{_f(ratio, 2)} × ({_mb(b.get('bytes_written'))} vs {_mb(a.get('bytes_written'))} MB)",
                _status(None if ratio is None else ratio <= 1.3),
            ))
        ratio = ratios.get("parquet_over_snapshot")
        queries = data.get("queries", {}).get(str(large), {})
        out.append((
            f"History (issue 11): the fail-count query over the Parquet files at {large:,} sessions takes ≤ 2 × the "
            "same query on the snapshot (both cold)",
            f"{_f(ratio, 1)} × ({_f(queries.get('parquet', {}).get('seconds'), 3)} s vs "
            f"{_f(queries.get('snapshot', {}).get('seconds'), 3)} s)",
            _status(None if ratio is None else ratio <= 2),
        ))
        return out

    # -- sections ----------------------------------------------------------------------------------

    def head(self) -> None:
        env = self.r.get("environment", {})
        mode = self.r.get("mode")
        merged = [f"`{name}`" for name in self.r.get("section_runs", {})]
        self.add(
            "# Performance",
            "",
            "<!-- Generated by `python -m bench.run`; edit bench/report.py, not this file. -->",
            "",
            "piper-etl against what users would run instead, side by side in one run on the same simulated API "
            "(issue 5), and the same small load into warehouses of growing size (issue 11). Reproduce with:",
            "",
            "```bash",
            'pip install -e ".[test,bench]"',
            "python -m bench.run --quick    # under 15 min: smaller N, one repetition of the network legs",
            "python -m bench.run            # about an hour: 10 k / 200 k sessions, medians of repetitions, "
            "history at 250 k",
            "python -m bench.run --ref worktree --only fetch,cpu   # uncommitted code, some sections only",
            "python -m bench.run --only history --quick   # the history section alone: 2 k and 10 k, a few minutes",
            "```",
            "",
            f"This file comes from a **{mode}** run on {env.get('date_utc')} measuring {env.get('git_commit')} "
            f"(exported, so commits made during the run do not leak in); it took "
            f"{_f(self.r.get('total_seconds', 0) / 60, 1)} min. "
            f"1-minute load average {_f(self.r.get('loadavg_start', [0])[0], 2)} at the start and "
            f"{_f(self.r.get('loadavg_end', [0])[0], 2)} at the end: the machine is shared, so other work ran "
            "alongside. Compare ratios within this run, not absolute figures across runs."
            + (f" The section{'s' if len(merged) > 1 else ''} {', '.join(merged)} come{'' if len(merged) > 1 else 's'}"
               " from a later run (`--merge`), named in the section." if merged else ""),
            "",
        )
        if self.quick:
            self.add("> Quick mode: memory and Prefect overhead use smaller N than the targets name; the trend is "
                     "what counts. Run the full mode for the figures the targets ask for.", "")

    def targets_section(self) -> None:
        self.add("## Targets", "")
        self.add(*_table(("target (issue 5 unless named)", "measured", "status"), self.targets()))

    def machine(self) -> None:
        env = self.r.get("environment", {})
        client, server = env.get("client_cpu"), env.get("server_cpu")
        split = (f"every leg pinned to CPU {client}; the simulated API (and the Prefect server) pinned to CPU "
                 f"{server}" if client is not None else "single core: client and server share it")
        self.add("## Machine, versions and method", "")
        self.add(*_table(("", ""), [
            ("CPU", f"{env.get('cpu_model')}, {env.get('cpus')} cores (KVM guest), {env.get('memory_gb')} GB RAM"),
            ("core split", split),
            ("Python", f"{env.get('python')}, Linux {env.get('kernel')}"),
            ("payloads", f"the demo generator at payload_kb = 26: mean body {env.get('payload_mean_kb')} KB "
                         f"(pending and running runs are short), {env.get('criteria_per_session')} criteria results "
                         "per session"),
        ]))
        versions = env.get("versions", {})
        self.add(*_table(("library", "version"), sorted(versions.items())))
        self.add(
            "How it is measured:",
            "",
            "* The simulated API is `bench/server.py`: the by-session endpoint of `piper-etl fake-api` (same "
            "contract, same generator, 200 / 404 / 401, keep-alive, latency added before answering) on a lean "
            "asyncio server, so that one core serves far more than the fastest client asks for (see *Ceiling*).",
            "* Each leg runs in a fresh process (`python -m bench.worker`); wall and CPU seconds are measured in the "
            "leg around the work (imports excluded), peak RSS is the process's `ru_maxrss` (imports included).",
            "* Fetch legs keep C requests in flight for a warm-up and then a fixed window, and count what completes "
            "in the window: sessions/s, and the client's CPU ms per request over that window (all threads). "
            "The bound is C / L.",
            "* Figures are medians when a leg is repeated (the count is given); the first repetition of a CPU-only "
            "leg is a warm-up and is dropped.",
            "",
        )

    def capacity(self) -> None:
        data = self.r.get("capacity")
        if not data:
            return
        self.add("## Ceiling: what the simulated API serves on its core", "")
        rows = []
        for name, record in data.items():
            share = (record.get("server_cpu_seconds") or 0) / (record.get("process_wall_seconds") or 1)
            rows.append((name, _f(record.get("per_second")), _f(share * 100, 0, " %"),
                         ", ".join(f"{k}: {v}" for k, v in (record.get("statuses") or {}).items())
                         or record.get("error", "")))
        self.add(*_table(("server (L = 0, aiohttp client, C = 64)", "requests/s", "server CPU busy", "statuses"),
                         rows))
        self.add("The fastest leg below asks for at most 1,280 requests/s (C = 256 at L = 200 ms, or C = 64 at "
                 "L = 50 ms).", "")

    def fetch(self) -> None:
        data = self.r.get("fetch")
        if not data:
            return
        self.add("## Fetch: sessions/s as a share of the bound C / L, and client CPU per request", "")
        labels = {
            "httpx": "plain `httpx.AsyncClient` (pool = C)",
            "httpx-aiohttp": "httpx over `httpx-aiohttp`'s transport (pool = C)",
            "aiohttp": "aiohttp (`TCPConnector(limit=C)`)",
            "piper": "**piper-etl** `PiperClient` as shipped, one `fetch_many` stream (as `run_load`)",
            "piper-chunk500": "`PiperClient` as shipped, one `fetch_many` per 500 sessions (a drain every 500)",
            "piper-httpx": "`PiperClient(http_client=\"httpx\")` (`--http-client httpx`)",
            "piper+aiohttp-transport": "`PiperClient` with httpx-aiohttp's transport injected (httpx interface)",
        }
        rows = []
        configs = ((64, 50), (64, 200), (256, 200))
        for client, label in labels.items():
            cells: list[str] = [label]
            cpu = []
            for concurrency, latency in configs:
                row = self.fetch_row(client, concurrency, latency)
                if not row or row.get("per_second") is None:
                    cells.append("n/a")
                    continue
                cells.append(f"{_f(row['per_second'])}/s = **{row['per_second'] / row['bound']:.0%}**")
                cpu.append(_f(row.get("cpu_ms_per_request"), 2))
            cells.insert(1, " / ".join(cpu))
            rows.append(cells)
        header = ["client", "CPU ms / request (per column)"]
        header += [f"L = {latency}, C = {concurrency} (bound {concurrency * 1000 // latency}/s)"
                   for concurrency, latency in configs]
        self.add(*_table(header, rows))
        repeats = len(next(iter(data["rows"].values()))["runs"]) if data["rows"] else 0
        busy = [row.get("server_cpu_share") or 0 for row in data["rows"].values()]
        self.add(f"Medians of {repeats} run(s) per cell. The server core was at most {max(busy, default=0):.0%} busy "
                 "in any cell, so the client is what limits every row. piper-etl's CPU per request includes "
                 "orjson-parsing the body.", "")
        for key, record in data.get("profiles", {}).items():
            text = record.get("profile_tottime")
            if text:
                self.add(f"<details><summary>cProfile of the fetch leg {key} (top functions by own time; "
                         f"{_f(record.get('per_second'))}/s under the profiler)</summary>", "", "```",
                         *_trim_profile(text), "```", "</details>", "")

    def cpu(self) -> None:
        data = self.r.get("cpu")
        if not data:
            return
        piper = self.cpu_rate("cpu-piper")
        self.add("## Flatten + write, CPU only (same in-memory payloads)", "")
        names = {
            "cpu-piper": "**piper-etl**: orjson + `flatten_run` + `build_tables` + Parquet parts (zstd), 500 a chunk",
            "cpu-duckdb": "DuckDB native: `read_json` + `UNNEST`, `COPY` to Parquet (zstd), 1 thread",
            "cpu-pandas": "pandas: orjson + `json_normalize` per table + `to_parquet` (zstd)",
        }
        rows = []
        for leg, label in names.items():
            record = data.get(leg, {})
            rate = self.cpu_rate(leg)
            rows.append((label, _f(rate), _f(record.get("median_cpu_seconds"), 2), _f(record.get("median_seconds"), 2),
                         _f(record.get("peak_rss_mb")), "1.00" if leg == "cpu-piper" else _f(_ratio(piper, rate), 2)))
        sessions = data.get("cpu-piper", {}).get("sessions")
        repeats = max(len(data.get("cpu-piper", {}).get("repeats", [])) - 1, 0)
        self.add(*_table((f"engine ({_f(sessions)} sessions, median of {repeats})", "sessions / CPU-s",
                          "CPU s", "wall s", "peak RSS MB", "piper-etl ÷ this"), rows))
        measured = data.get("cpu-piper", {}).get("repeats", [])[1:]
        if measured:
            stages = measured[len(measured) // 2].get("stage_cpu_seconds", {})
            total = sum(stages.values()) or 1
            self.add("Where piper-etl's CPU goes (one median repetition): " + ", ".join(
                f"{name} {value:.3f} s ({value / total:.0%})" for name, value in stages.items()) + ".", "")

    def e2e(self) -> None:
        data = self.r.get("e2e")
        if not data:
            return
        self.add("## End to end: the same sessions fetched over loopback and landed", "")
        for key, rows in data.items():
            if not key.startswith("L="):
                continue
            base = None
            for label, row in rows.items():
                if label.startswith("piper-etl run_load, format both"):
                    base = row.get("sessions_per_second")
            first = next(iter(rows.values()), {})
            repeats = len(first.get("runs", []))
            self.add(f"### {key.replace('L=', 'L = ')} ms, C = 64, {_f(first.get('sessions'))} sessions, "
                     f"median of {repeats}", "")
            table = []
            for label, row in rows.items():
                rate = row.get("sessions_per_second")
                table.append((
                    label, _f(row.get("seconds"), 1), _f(rate, 0), _f(row.get("criteria_rows_per_second")),
                    _f(row.get("cpu_seconds_per_1000"), 2), _f(row.get("peak_rss_mb")),
                    _f(_ratio(base, rate), 2),
                    "; ".join(row.get("errors") or []) or _dlt_steps(row),
                ))
            self.add(*_table(("loader", "wall s", "sessions/s", "criteria rows/s", "CPU s / 1,000 sessions",
                              "peak RSS MB", "piper-etl (both) ÷ this", "notes"), table))
        profile = data.get("profile", {})
        if profile.get("profile_tottime"):
            self.add(f"<details><summary>cProfile of \"{profile.get('label')}\" at L = 50 ms "
                     f"({_f(profile.get('seconds'), 1)} s under the profiler): top functions by own time, then by "
                     "cumulative time</summary>", "", "```", *_trim_profile(profile["profile_tottime"]), "",
                     *_trim_profile(profile.get("profile_cumulative", "")), "```", "</details>", "")
        self.add("dlt runs with its defaults (append; one normalize worker) and fetches with a pool of C threads "
                 "sharing one `requests` session; its wall time is extract + normalize + load, split in the notes. "
                 "The naive script is sequential, so it runs on the first sessions only; its rate is per session.",
                 "")

    def overhead(self) -> None:
        data = self.r.get("overhead")
        if not data:
            return
        self.add("## Prefect overhead", "")
        rows = []
        for label, key in (("`run_load` (no orchestration)", "run_load"), ("Prefect flow `load_sessions`", "flow")):
            row = data.get(key, {})
            if not row.get("runs"):
                continue
            prefect_cpu = _median([r.get("prefect_server_cpu_seconds") for r in row["runs"] if "seconds" in r])
            rows.append((label, len(row["runs"]), _f(row.get("seconds"), 1), _f(row.get("sessions_per_second")),
                         _f(row.get("cpu_seconds_per_1000"), 2), _f(row.get("peak_rss_mb")),
                         _f(prefect_cpu, 1) if key.endswith("flow") else ""))
        self.add(*_table(("", "runs", "median wall s", "sessions/s", "CPU s / 1,000 sessions", "peak RSS MB",
                          "Prefect server CPU s"), rows))
        flow_runs = [r for r in data.get("flow", {}).get("runs", []) if "seconds" in r]
        imports = _median([r.get("prefect_import_seconds") for r in flow_runs])
        sessions = int(data.get("sessions", 0))
        self.add(
            f"{_f(sessions)} sessions at L = {data.get('latency_ms')} ms, C = {data.get('concurrency')}, format both, "
            f"chunks of 500 landed by {-(-sessions // 5000)} fetch tasks of up to 5,000 sessions, "
            "then the flow commits, "
            "the two engines run alternately. "
            f"Flow ÷ run_load = **{_f(data.get('ratio'), 3)}**. Not in the flow's wall time: "
            f"`import flows.prefect_flow` ({_f(imports, 2)} s), the Prefect server's own CPU (last column, on the "
            "other core), and starting the server "
            f"({_f(self.r.get('prefect_server_start_seconds'), 1)} s for `prefect server start --no-ui`, once).",
            "",
        )
        profile = data.get("profile", {})
        if profile.get("profile_cumulative"):
            self.add(f"<details><summary>cProfile of the flow ({_f(profile.get('seconds'), 1)} s under the "
                     "profiler): top functions by cumulative time, then by own time</summary>", "", "```",
                     *_trim_profile(profile["profile_cumulative"]), "",
                     *_trim_profile(profile.get("profile_tottime", "")), "```", "</details>", "")

    def startup(self) -> None:
        data = self.r.get("startup")
        if not data:
            return
        self.add("## Start-up: a one-session load", "")
        rows = [(label, _f(record.get("seconds"), 2), " ".join(_f(w, 2) for w in record.get("runs", [])),
                 record.get("error", ""))
                for label, record in data.items() if isinstance(record, dict) and "runs" in record]
        self.add(*_table(("command (wall time from outside, L = 0)", "median s", "runs", "error"), rows))
        steps = data.get("profile_steps", {})
        if steps:
            self.add("Where the local command's time goes (the steps of `run_load` timed one by one in a fresh "
                     "process, medians):", "")
            self.add(*_table(("step", "seconds"), [(name, _f(value, 3)) for name, value in steps.items()]))
        imports = data.get("imports", {})
        if imports:
            self.add(*_table(("import in a fresh interpreter", "seconds"), [
                (f"`import {name}`", _f(imports.get(name), 2)) for name in ("flows.cli", "flows.prefect_flow",
                                                                             "prefect")]))
            top = imports.get("top_imports_ms", [])
            if top:
                self.add("Heaviest imports under `flows.cli` (`python -X importtime`, cumulative ms): " + ", ".join(
                    f"{name} {ms:g}" for name, ms in top) + ".", "")

    def memory(self) -> None:
        data = self.r.get("memory")
        if not data:
            return
        self.add("## Memory: peak RSS of a load as it grows", "")
        rows = []
        for record in data.values():
            if not isinstance(record, dict):
                continue
            count = record.get("sessions", 0)
            rate = count / record["seconds"] if record.get("seconds") else None
            seconds = record.get("seconds") or record.get("failed_after_seconds")
            label = f"{_f(count)}, format {record.get('format', 'both')}"
            rows.append((label, _f(record.get("peak_rss_mb")), _f(record.get("rss_peak_while_fetching_mb")),
                         _f(record.get("rss_peak_after_last_fetch_mb")), _f(seconds, 1), _f(rate),
                         _f(record.get("tail_seconds"), 1), record.get("error") or record.get("status", "")))
        self.add(*_table(("sessions", "peak RSS MB", "peak while fetching", "peak after the last response "
                          "(last chunk + merge)", "wall s", "sessions/s", "seconds after the last response",
                          "status"), rows))
        self.add(f"`run_load`, L = {data.get('latency_ms')} ms, C = {data.get('concurrency')} (the CLI "
                 f"default), chunks of {data.get('chunk_size')}. RSS is sampled every 50 ms inside the leg; the peak "
                 f"is the process's `ru_maxrss`. A leg passing {_f(data.get('guard_mb'))} MB is stopped (shared "
                 "machine). Loads of up to 20,000 sessions insert each chunk into the load's DuckDB transaction while "
                 "fetching, so their peak while fetching includes DuckDB's; larger loads merge after their fetch "
                 "(`MERGE_WHILE_FETCHING_UP_TO` in `warehouse/load.py`), hence their seconds after the last "
                 "response.", "")

    def history_finding(self, data: dict[str, Any]) -> str:
        """What the history section's own figures say about the misses: the snapshot, the Parquet views."""
        summary = data["summary"]
        large = summary["largest"]
        both = summary["rows"].get(f"{large}|both", {})
        queries = data.get("queries", {}).get(str(large), {}).get("parquet", {})
        profile = data.get("profile", {})
        text = profile.get("profile_cumulative", "")
        snapshot, total = _profile_cumtime(text, "(publish_snapshot)"), _profile_total(text)
        written, snapshot_size = both.get("bytes_written") or 0, both.get("snapshot_bytes") or 0
        whole = snapshot_size and written >= 0.9 * snapshot_size
        parts = [f"* **History.** At {large:,} sessions a format both load writes {_mb(written)} MB and "
                 f"`piper-bi.duckdb` is {_mb(snapshot_size)} MB"
                 + (": as much as a whole copy of the snapshot" if whole else "")]
        if snapshot and total:
            parts.append(f"; under the profiler the copy (`publish_snapshot`) takes {_f(snapshot, 2)} s of the "
                         f"load's {_f(total, 2)} s")
        steps = {name: _profile_cumtime(text, f"({function})") for name, function in (
            ("the commit", "commit_load"), ("the BI standby's update", "_update_standby"),
            ("the views' install and the database's CHECKPOINT", "install"), ("compaction", "compact_after_load"))}
        if total and steps["the commit"]:
            said = ", ".join(f"{name} {_f(seconds, 2)} s" for name, seconds in steps.items() if seconds is not None)
            parts.append(f"; under the profiler ({_f(total, 2)} s in `run_load`): {said}")
        analytics = queries.get("analytics_seconds")
        parts.append(f". Over the Parquet files the fail-count query spends {_f(queries.get('open_seconds'), 3)} s "
                     "creating the views of `current_state.sql`"
                     + (f" (of which {_f(analytics, 3)} s the analytics views: DuckDB binds a view when it is "
                        "created, each of them again over the tables' views it reads, while the snapshot's views "
                        "are stored in the file)" if analytics is not None else "")
                     + f" and {_f(queries.get('query_seconds'), 3)} s in the "
                     f"query itself, over {_f(summary['rows'].get(f'{large}|both', {}).get('parquet_files'))} files "
                     "under `parquet/` (compacted files included, and those a compaction replaced while their grace "
                     "period lasts).")
        small = str(summary["smallest"])
        at_small = {kind: data.get("queries", {}).get(small, {}).get(kind, {}).get("seconds")
                    for kind in ("parquet", "snapshot")}
        over = _ratio(at_small["parquet"], at_small["snapshot"])
        if over is not None and at_small["parquet"] is not None:
            parts.append(f" At {int(small):,} sessions the same query takes {_f(at_small['parquet'], 3)} s over the "
                         f"Parquet files, {_f(over, 1)} × the snapshot's: the difference is what opening the views "
                         "costs, whatever the size, not what the query reads.")
        return "".join(parts)

    def provenance(self, section: str) -> None:
        """For a section merged in from a later run (`--merge`): which run measured it."""
        run = self.r.get("section_runs", {}).get(section)
        if run:
            self.add(f"Measured in its own run on {run['date_utc']}, {run['git_commit']}, in "
                     f"{_f((run.get('seconds') or 0) / 60, 1)} min (1-minute load average "
                     f"{_f(run['loadavg_start'][0], 2)} at the start, {_f(run['loadavg_end'][0], 2)} at the end); "
                     "the sections without such a line come from the run named at the top.", "")

    def history(self) -> None:
        data = self.r.get("history")
        if not data or "summary" not in data:
            return
        summary = data["summary"]
        self.add("## History: the same small load into warehouses of growing size", "")
        self.provenance("history")
        rows = []
        for size in data["sizes"]:
            queries = data.get("queries", {}).get(str(size), {})
            snap, parq = queries.get("snapshot", {}), queries.get("parquet", {})
            for format in ("both", "parquet"):
                row = summary["rows"].get(f"{size}|{format}", {})
                query_cells = ((_f(snap.get("seconds"), 3), f"{_f(parq.get('seconds'), 3)} "
                                f"({_f(parq.get('open_seconds'), 3)} + {_f(parq.get('query_seconds'), 3)})",
                                _f(_ratio(parq.get("seconds"), snap.get("seconds")), 1))
                               if format == "both" else ("", "", ""))
                rows.append((f"{size:,}", format, _f(row.get("wall_seconds"), 2),
                             _mb(row.get("bytes_written")),
                             _f(row.get("cpu_seconds"), 2), _f(row.get("peak_rss_mb")), _f(row.get("parquet_files")),
                             _mb(row.get("snapshot_bytes")), *query_cells,
                             f"{row.get('failed')} of {row.get('runs')} failed" if row.get("failed") else ""))
        self.add(*_table(("N stored", "format", "load wall s", "MB written", "CPU s", "peak RSS MB",
                          "files under parquet/", "piper-bi.duckdb MB", "fail count: snapshot s",
                          "Parquet s (views + query)", "Parquet ÷ snapshot", "notes"), rows))
        ratios = summary["ratios"]
        self.add(
            f"Ratios, {summary['largest']:,} ÷ {summary['smallest']:,} sessions: wall time "
            f"{_f(ratios.get('wall|both'), 2)} × (format both), {_f(ratios.get('wall|parquet'), 2)} × (parquet); "
            f"bytes written {_f(ratios.get('bytes|both'), 2)} × (both), {_f(ratios.get('bytes|parquet'), 2)} × "
            f"(parquet). Targets (issue 11): wall ≤ 1.3 ×; Parquet query ≤ 2 × the snapshot's at the largest N "
            f"(here {_f(ratios.get('parquet_over_snapshot'), 1)} ×).",
            "",
            f"Each row: the median of {data['repeats']} `piper-etl load` runs of {data['load_sessions']} new sessions "
            f"(the real CLI in a child process, its defaults: C = 16, chunks of 500) against `bench/server.py` at "
            f"L = 0 ms with {data.get('payload_mean_kb')} KB bodies, into a copy of a folder already holding N "
            "sessions; new session ids every run, round robin over the folders, the format both runs first, then "
            "the parquet ones"
            + ("; before them one untimed format both load into each copy (a built folder's second standby "
               "lacks the build's last big load, which the first load catches up: "
               + ", ".join(f"{_f(r.get('wall_seconds'), 2)} s and {_mb(r.get('bytes_written'))} MB at {int(n):,}"
                           for n, r in data["warm_up"].items()) + ")"
               if data.get("warm_up") else "")
            + ". Wall time is the child's from outside (start-up included, about a second of imports); "
            "MB written is its "
            "`ru_oublock` × 512 from `os.wait4` (pages it dirtied, whether or not they reached the disk before "
            "exit); files and snapshot size are measured after the last run. The fail-count query "
            f"(`{FAIL_QUERY_TEXT}`) runs after the format both runs (both stores then hold the same state), "
            f"each time in a new process, median of {data['query_repeats']}: on `piper-bi.duckdb` it is a new "
            "read-only connection plus the query; over the Parquet files it is an in-memory DuckDB executing "
            "`current_state.sql` (what `.read current_state.sql` does; its time in parentheses, then the query's). "
            "The files were in the page cache: cold means a new process and connection, not a cold disk.",
            "",
        )
        built = []
        for size in data["sizes"]:
            folder = data["folders"].get(str(size), {})
            how = "from the cache" if folder.get("cached") else "built in this run"
            built.append((f"{size:,}", folder.get("plan", ""), f"{_f(folder.get('build_seconds'))} s ({how})",
                          _f(folder.get("before", {}).get("parquet_files")),
                          _mb(folder.get("before", {}).get("database_bytes"))))
        self.add("How each folder was built (`bench/history.py`, `build_plan`): the sessions in order, each load by "
                 "`run_load` in one process at C = 64, chunks of 500, with the folder's default settings (so the "
                 "loads compact the Parquet files by themselves, as the product does); a parquet load is merged into "
                 "DuckDB by the next format both load (catching up, one transaction per load). Files a compaction "
                 "replaced stay for its grace period (an hour): a cached folder older than that has its leftovers "
                 "deleted by the first load into it. Folders are cached by N and a hash "
                 f"of the product source (`{data.get('source_key')}` here), so a rerun of the same code reuses them.",
                 "")
        self.add(*_table(("N", "loads", "build", "files under parquet/", "piper.duckdb MB"), built))
        profile = data.get("profile", {})
        if profile.get("profile_cumulative"):
            self.add(f"<details><summary>cProfile of one more format both load of {data['load_sessions']} sessions "
                     f"into {_f(profile.get('sessions'))} (`run_load` in a leg, {_f(profile.get('seconds'), 2)} s "
                     "under the profiler): top functions by cumulative time</summary>", "", "```",
                     *_trim_profile(profile["profile_cumulative"]), "```", "</details>", "")

    def findings(self) -> None:
        """For each missed target, what the measurements say limits it (only figures from this run)."""
        missed = {target.split(":")[0] for target, _, status in self.targets() if status == MISSED}
        if not missed:
            return
        self.add("## What limits the missed targets (in the measured revision)", "")
        fetch = self.r.get("fetch", {})
        if "Fetch" in missed and fetch:
            profile = fetch.get("profiles", {}).get("piper|C=256|L=200", {})
            cumulative = profile.get("profile_cumulative", "")
            total = _profile_total(cumulative)
            pool = _profile_cumtime(cumulative, "_assign_requests_to_connections")
            configs = ((64, 50), (64, 200), (256, 200))
            shares = {client: "/".join(_f(100 * (self.fetch_share(client, c, lat) or 0), 0) for c, lat in configs)
                      for client in ("piper", "piper-chunk500", "httpx", "aiohttp")}
            text = (f"* **Fetch.** As shipped, `PiperClient` reaches {shares['piper']} % of C / L at (C, L) = "
                    f"(64, 50) / (64, 200) / (256, 200) in one stream, and {shares['piper-chunk500']} % when called "
                    "per 500 sessions (every request of a batch must end before the next starts: what the flow's tasks "
                    "paid when each covered one chunk; each now streams up to 5,000 sessions). ")
            if pool and total and pool > 0.3 * total:
                text += (f"Profiled at C = 256, L = 200 ms, httpcore's `_assign_requests_to_connections` takes "
                         f"{_f(pool, 1)} s of {_f(total, 1)} s: httpx's pool walks every connection for every queued "
                         "request (encode/httpx#3215), so CPU per request grows with C. ")
            text += (f"For reference, bare httpx reaches {shares['httpx']} % and bare aiohttp {shares['aiohttp']} % "
                     "on the same server.")
            self.add(text)
        cpu = self.r.get("cpu", {})
        if "Flatten + write" in missed and cpu:
            measured = cpu.get("cpu-piper", {}).get("repeats", [])[1:]
            stages = measured[len(measured) // 2].get("stage_cpu_seconds", {}) if measured else {}
            total = sum(stages.values()) or 1
            self.add(
                "* **Flatten + write.** piper-etl's CPU per session splits "
                + ", ".join(f"{name} {value / total:.0%}" for name, value in stages.items())
                + f". The per-field validation in `flatten_run` (every value read, checked and appended to its "
                f"column in Python) plus the Arrow arrays `build_tables` makes from those Python lists "
                f"({(stages.get('flatten', 0) + stages.get('build_tables', 0)) / total:.0%}) is Python "
                f"work that DuckDB does in C++ ({_f(self.cpu_rate('cpu-duckdb'))} sessions per CPU-second with one "
                "thread). pandas' `json_normalize` walks the records in Python too, so the two Python approaches are "
                f"only {_f(_ratio(self.cpu_rate('cpu-piper'), self.cpu_rate('cpu-pandas')), 1)} × apart.",
            )
            duck = self.cpu_rate("cpu-duckdb")
            sessions = cpu.get("cpu-piper", {}).get("sessions") or 0
            if duck and sessions and stages.get("parse"):
                parse_us = stages["parse"] / sessions * 1e6
                write_us = stages.get("write_parquet", 0) / sessions * 1e6
                self.add(
                    f"  The floor: orjson alone spends {parse_us:.0f} µs per session and the Parquet write "
                    f"{write_us:.0f} µs, while 1.5 × DuckDB-native leaves {1e6 / duck / 1.5:.0f} µs per session for "
                    f"everything (DuckDB-native spends {1e6 / duck:.0f} µs in all). Any flatten that parses the JSON "
                    "in Python-land and writes zstd Parquet is close to that budget before it flattens anything.",
                )
        e2e = self.r.get("e2e", {}).get("L=50", {})
        if "End to end (L = 50 ms, C = 64)" in missed and e2e:
            rows = {label.split(", format ")[-1].split(" ")[0]: row for label, row in e2e.items()
                    if label.startswith("piper-etl run_load")}
            fetch = self.fetch_row("piper", 64, 50)
            parts = []
            for fmt in ("duckdb", "parquet"):
                row = rows.get(fmt, {})
                cpu_k = row.get("cpu_seconds_per_1000")
                tails = [r.get("tail_seconds") for r in row.get("runs", []) if r.get("tail_seconds") is not None]
                parts.append(f"format {fmt} {_f(row.get('sessions_per_second'))}/s with {_f(cpu_k, 2)} CPU s per "
                             f"1,000 sessions (a one-core ceiling of {_f(1000 / cpu_k if cpu_k else None)}/s) and "
                             f"{_f(_median(tails), 1)} s after the last response")
            profile = self.r.get("e2e", {}).get("profile", {}).get("profile_cumulative", "")
            finish, merge = _profile_cumtime(profile, "(commit_load)"), _profile_cumtime(profile, "(commit)")
            total = _profile_total(profile)
            if finish and total:
                parts.append(f"under the profiler (format both), `commit_load` takes {_f(finish, 2)} s of "
                             f"{_f(total, 2)} s" + (f", the DuckDB COMMIT {_f(merge, 2)} s of it" if merge else ""))
            self.add(
                f"* **End to end.** The fetch alone reaches {_f(fetch.get('per_second') if fetch else None)}/s at "
                f"the same C and L; the load reaches {'; '.join(parts)}. CPU per session on the one client core "
                "(flattening, building and writing Parquet, and DuckDB inserting each chunk into the load's "
                "transaction while the fetch goes on) and the work after the last response (the last third of the last "
                "chunk, which is split so that the rest lands while the last responses arrive, then the COMMIT, views "
                "and publishing the snapshot) are what separate the load from its fetch; the cProfile "
                "under the end-to-end tables shows where that CPU goes.",
            )
            sessions = int(next(iter(e2e.values()), {}).get("sessions") or 0)
            need, mine = self.e2e_rate("dlt -> duckdb"), self.e2e_rate("piper-etl run_load, format duckdb")
            if sessions and need and mine:
                rounds = -(-sessions // 64)
                floor = rounds * 0.05
                need *= 5
                self.add(
                    f"  The bound: {sessions:,} sessions at C = 64 need {rounds} rounds of 50 ms, {floor:.2f} s "
                    f"({sessions / floor:,.0f}/s) before anything is parsed or written. 5 × dlt -> duckdb is "
                    f"{need:,.0f}/s ({need / (sessions / floor):.0%} of that), which leaves "
                    f"{sessions / need - floor:.2f} s for connecting, flattening, landing, the DuckDB inserts and the "
                    f"COMMIT; format duckdb spends {sessions / mine - floor:.2f} s on them, on the same core as the "
                    "fetch.",
                )
        memory = self.r.get("memory", {})
        sizes = sorted(int(k) for k in memory if k.isdigit())
        if "Memory" in missed and len(sizes) == 2:
            small, large = memory[str(sizes[0])], memory[str(sizes[1])]
            parquet = memory.get(f"parquet {sizes[1]}", {})
            outcome = (f"and the {sizes[1]:,}-session load **fails** there ({large['error'].removeprefix('failed: ')})"
                       if large.get("error")
                       else f"peaking at {_f(large.get('peak_rss_mb'))} MB")
            self.add(
                f"* **Memory.** RSS while fetching stays flat ({_f(small.get('rss_peak_while_fetching_mb'))} → "
                f"{_f(large.get('rss_peak_while_fetching_mb'))} MB from {sizes[0]:,} to {sizes[1]:,} sessions): the "
                "chunks stream. What follows the last response is the DuckDB merge of the whole load "
                f"({_f(small.get('rss_peak_after_last_fetch_mb'))} MB at {sizes[0]:,} sessions), {outcome}. "
                f"Without DuckDB (format parquet) the {sizes[1]:,}-session load peaks at "
                f"{_f(parquet.get('peak_rss_mb'))} MB ({parquet.get('error') or parquet.get('status', 'n/a')}).",
            )
        history = self.r.get("history", {})
        if "History (issue 11)" in missed and history.get("summary"):
            self.add(self.history_finding(history))
        overhead = self.r.get("overhead", {})
        if "Overhead" in missed and overhead:
            local, flow = overhead.get("run_load", {}), overhead.get("flow", {})
            extra = (flow.get("seconds") or 0) - (local.get("seconds") or 0)
            tasks = -(-int(overhead.get("sessions", 0)) // 5000)
            profile = overhead.get("profile", {})
            text = profile.get("profile_cumulative", "") + "\n" + profile.get("profile_tottime", "")
            artifact = _profile_field(text, "(analytics_markdown)", 3) or _profile_field(text, "(rows)", 3)
            flow_phases, local_phases = _phases(flow.get("runs", [])), _phases(local.get("runs", []))
            if flow_phases and local_phases:
                self.add(
                    f"* **Prefect overhead.** The flow takes {_f(extra, 1)} s longer than `run_load` for the same "
                    f"{_f(overhead.get('sessions'))} sessions ({tasks} fetch task(s) of up to 5,000 sessions, each "
                    "streaming its requests and landing its chunks, which the load transaction inserts as they land, "
                    "then the flow commits). By phase, flow vs `run_load` (medians, seconds): "
                    + "; ".join(f"{label} {flow_phases[key]:.2f} vs {local_phases[key]:.2f}"
                                for key, label in PHASES)
                    + ". " + _prefect_steps_text(flow.get("runs", []), artifact)
                    + " " + _fixed_cost_text(flow_phases, local_phases, local, float(overhead.get("sessions") or 0),
                                             tasks),
                )
                self.add("")
                return
            self.add(
                f"* **Prefect overhead.** The flow takes {_f(extra, 1)} s longer than `run_load` for the same "
                f"{_f(overhead.get('sessions'))} sessions, with {tasks} fetch task(s) of up to 5,000 sessions (each "
                "streams its requests and lands chunk by chunk as `run_load` does), then the flow's commit. "
                "Where the rest goes: the summary artifact's analytics read, which `run_load` does not do "
                f"({_f(artifact, 2)} s under the profiler); Prefect's own work on the same core, "
                f"{_f(flow.get('cpu_seconds_per_1000'), 2)} CPU s per 1,000 sessions against "
                f"{_f(local.get('cpu_seconds_per_1000'), 2)} for `run_load` (flow and task run bookkeeping over its "
                "API, its log and event workers); and at each task boundary the requests in flight drain and a new "
                "client connects. Most of it is fixed per run, so it weighs more the smaller the load.",
            )
        self.add("")

    def render(self) -> str:
        self.head()
        self.targets_section()
        self.findings()
        self.machine()
        for section in (self.capacity, self.fetch, self.cpu, self.e2e, self.overhead, self.startup, self.memory,
                        self.history):
            section()
        return "\n".join(self.lines).rstrip() + "\n"


PHASES = (("before_plan", "before the plan"), ("fetch", "plan to merge (fetching)"),
          ("merge", "the merge step"), ("after", "after the merge"))


FAIL_QUERY_TEXT = "SELECT count(*) FROM criteria_results WHERE verdict = 'FAIL'"


def _mb(value: float | None) -> str:
    return _f(None if value is None else value / 2**20, 1)


def _phases(runs: list[dict[str, Any]]) -> dict[str, float] | None:
    """Median seconds of each phase of `PHASES` over the runs that recorded `bench.e2e.PhaseMarks`."""
    keys = ("plan_load_start", "plan_load_end", "finish_load_start", "finish_load_end")
    marked = [r for r in runs if "seconds" in r and all(k in r.get("phases", {}) for k in keys)]
    if not marked:
        return None
    split = {
        "before_plan": [r["phases"]["plan_load_start"] for r in marked],
        "fetch": [r["phases"]["finish_load_start"] - r["phases"]["plan_load_end"] for r in marked],
        "merge": [r["phases"]["finish_load_end"] - r["phases"]["finish_load_start"] for r in marked],
        "after": [r["seconds"] - r["phases"]["finish_load_end"] for r in marked],
    }
    return {key: float(_median(values) or 0.0) for key, values in split.items()}


BEFORE_PLAN_STEPS = (  # (label, from mark, to mark), consecutive: they add up to the time before the plan
    ("Prefect's engine set-up", None, "create_flow_run_start"),
    ("creating the flow run over the API, the session ids serialized into its parameters", "create_flow_run_start",
     "create_flow_run_end"),
    ("walking the parameters for futures", "resolve_parameters_start", "resolve_parameters_end"),
    ("validating them", "validate_parameters_start", "validate_parameters_end"),
    ("setting the Running state", "set_state_start", "set_state_end"),
    ("the run context until the flow's body starts", "set_state_end", "resolve_token_start"),
    ("the body's token check and settings", "resolve_token_start", "plan_load_start"),
)
AFTER_MERGE_STEPS = (
    ("creating the artifact", "artifact_create_start", "artifact_create_end"),
    ("setting the Completed state", "handle_success_start", "handle_success_end"),
)


def _prefect_steps_text(runs: list[dict[str, Any]], profiled_artifact: float | None) -> str:
    """Where the flow's time before its plan and after its merge goes, from `bench.e2e.PREFECT_STEPS` marks."""

    def split(steps: tuple[tuple[str, str | None, str], ...]) -> list[str] | None:
        needed = {mark for _, first, last in steps for mark in (first, last) if mark is not None}
        marked = [r["phases"] for r in runs if "seconds" in r and needed <= set(r.get("phases", {}))]
        if not marked:
            return None
        return [
            f"{label} {_median([m[last] - (m[first] if first else 0.0) for m in marked]) or 0.0:.2f} s"
            for label, first, last in steps
        ]

    before, after = split(BEFORE_PLAN_STEPS), split(AFTER_MERGE_STEPS)
    read = split((("", "verdicts_read_start", "verdicts_read_end"),))
    if before is None or after is None:
        return (
            "Before the plan is Prefect's start of a flow run in a fresh process (creating it over the API with the "
            "session ids as a parameter, its first-run imports); after the merge, the summary artifact's analytics "
            f"read ({_f(profiled_artifact, 2)} s under the profiler) and Prefect finishing the run."
        )
    return (
        "Before the plan, step by step (medians; the first flow run in a fresh process, as a worker runs it, "
        "so Prefect's deferred imports and its first API connection fall here): " + "; ".join(before)
        + ". After the merge: " + "; ".join(after) + "; the rest is Prefect closing the run."
        + (f" The artifact's verdict tables are read in the merge step ({read[0].strip()}), through the writer "
           "connection while the snapshot is being copied." if read else "")
    )


def _fixed_cost_text(
    flow: dict[str, float], local: dict[str, float], run_load: dict[str, Any], sessions: float, tasks: int
) -> str:
    """What the flow's fixed costs mean for the 5 % target: the smallest load that could meet it."""
    fixed = flow["before_plan"] + flow["after"] - local["before_plan"] - local["after"]
    fetching = flow["fetch"] - local["fetch"]
    wall = run_load.get("seconds") or 0.0
    if fixed <= 0 or not wall or not sessions:
        return "Both are fixed per run, so they weigh less the larger the load."
    smallest = fixed / 0.05
    return (
        f"The time before the plan and after the merge is fixed per run ({fixed:.2f} s): with nothing else added, "
        f"5 % needs a load of at least {smallest:.0f} s, about {round(smallest * sessions / wall, -3):,.0f} sessions "
        "at `run_load`'s speed here. "
        f"Fetching takes {fetching:.2f} s longer in the flow ({fetching / wall * 100:.0f} % of `run_load`'s wall "
        "time): " + ("the task boundary, where the first task's requests drain before the second task connects, "
                     "and " if tasks > 1 else "")
        + "Prefect's log and event workers on the same core."
    )


def _median(values: list[Any]) -> float | None:
    import statistics

    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def _profile_total(text: str) -> float | None:
    match = re.search(r"in ([\d.]+) seconds", text)
    return float(match.group(1)) if match else None


def _profile_cumtime(text: str, function: str) -> float | None:
    for line in text.splitlines():
        if function in line:
            fields = line.split()
            return float(fields[3])
    return None


def _profile_field(text: str, function: str, index: int) -> float | None:
    """Column `index` (0 ncalls, 1 tottime, 3 cumtime) of the first profile line naming `function`."""
    for line in text.splitlines():
        if function in line:
            try:
                return float(line.split()[index].split("/")[0])
            except (IndexError, ValueError):
                return None
    return None


def _dlt_steps(row: dict[str, Any]) -> str:
    runs = [r for r in row.get("runs", []) if r.get("steps")]
    if not runs:
        return ""
    steps = runs[len(runs) // 2]["steps"]
    return "dlt " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in steps.items() if name != "run")


def _trim_profile(text: str, width: int = 150) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return [line[:width] for line in lines[start:] if line.strip()]


def render(results: dict[str, Any]) -> str:
    return Report(results).render()


if __name__ == "__main__":
    sys.stdout.write(render(json.loads(Path(sys.argv[1]).read_text())))
