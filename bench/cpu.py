"""CPU-only legs: flatten + write the same in-memory payloads into runs / turns / criteria_results Parquet.

No network: the bodies are the bench server's, built in memory before the clock starts. Each leg runs
`repeats` times in one process (fresh output folder each time) and reports every repetition's wall and
CPU seconds; the parent takes medians. Sessions per CPU-second is the figure the targets compare.

* `piper`: orjson + `flatten_run` + `build_tables` + `warehouse.landing.write_chunk` (zstd, fsync), in
  chunks of 500, with the cycle-collector setting of a load (`flows.pipeline.fewer_gc_passes`) and the
  UTF-8 check orjson makes redundant skipped, as a load does.
* `duckdb_native`: `read_json` (explicit columns) + `UNNEST` into the three tables, `COPY ... TO` Parquet
  (zstd), from an NDJSON file of the same bodies written before the clock starts; DuckDB limited to one
  thread, since the process is pinned to one core.
* `pandas_normalize`: orjson (not `json`: only the normalisation differs from piper-etl) + pandas
  `json_normalize` per table + `to_parquet` (zstd).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.payloads import PayloadSource

CHUNK = 500


def _inputs(params: dict[str, Any]) -> tuple[PayloadSource, list[str], list[bytes]]:
    source = PayloadSource(seed=params["seed"], sessions=params["sessions"], payload_kb=params["payload_kb"])
    count = params["sessions"]
    return source, source.session_ids[:count], source.bodies(count)


def _repeat(params: dict[str, Any], once: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    root = Path(params["out_dir"])
    runs: list[dict[str, Any]] = []
    for repeat in range(params["repeats"]):
        out = root / f"rep{repeat}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        wall, cpu = time.perf_counter(), time.process_time()
        extra = once(out)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        runs.append({"seconds": wall, "cpu_seconds": cpu, **extra})
        shutil.rmtree(out, ignore_errors=True)
    return {"sessions": params["sessions"], "repeats": runs}


def piper(params: dict[str, Any]) -> dict[str, Any]:
    from flows import pipeline
    from schemas.flatten import build_tables, flatten_run
    from warehouse import landing

    source, ids, bodies = _inputs(params)
    org_id = source.org_id

    def once(out: Path) -> dict[str, Any]:
        with pipeline.fewer_gc_passes():  # as run_load and the flow's fetch tasks do
            return _piper_once(out)

    def _piper_once(out: Path) -> dict[str, Any]:
        stages: Counter[str] = Counter()
        rows: Counter[str] = Counter()
        load_id = landing.new_load_id(datetime.now(UTC))
        loaded_at = datetime.now(UTC)
        for index, start in enumerate(range(0, len(bodies), CHUNK)):
            t0 = time.process_time()
            payloads = [orjson.loads(body) for body in bodies[start : start + CHUNK]]
            t1 = time.process_time()
            flat = [
                flatten_run(payload, session_id=session_id, org_id=org_id, utf8_checked=True)  # as a load does
                for payload, session_id in zip(payloads, ids[start : start + CHUNK], strict=True)
            ]
            t2 = time.process_time()
            tables = build_tables(flat, load_id=load_id, loaded_at=loaded_at)
            t3 = time.process_time()
            landing.write_chunk(out, load_id, f"main-{index + 1:04d}", dict(tables))
            t4 = time.process_time()
            stages.update({"parse": t1 - t0, "flatten": t2 - t1, "build_tables": t3 - t2, "write_parquet": t4 - t3})
            rows.update({name: table.num_rows for name, table in tables.items()})
        return {"stage_cpu_seconds": dict(stages), "rows": dict(rows)}

    return _repeat(params, once)


_RUN_COLUMNS = (
    "{session_id: 'VARCHAR', id: 'VARCHAR', scenario_id: 'VARCHAR', scenario_name: 'VARCHAR', "
    "status: 'VARCHAR', started_at: 'TIMESTAMPTZ', completed_at: 'TIMESTAMPTZ', turn_results: "
    "'STRUCT(id VARCHAR, turn_index INTEGER, stopped_early BOOLEAN, passed BOOLEAN, response_content VARCHAR, "
    "criteria_results STRUCT(id VARCHAR, criteria_id VARCHAR, verdict VARCHAR, criteria_question VARCHAR, "
    "criteria_type VARCHAR, critique VARCHAR, evidence VARCHAR, input_tokens BIGINT, output_tokens BIGINT)[])[]'}"
)

_RUNS_SQL = """
SELECT id AS run_id, session_id, $org AS org_id, scenario_id, scenario_name, status, started_at, completed_at,
       epoch(completed_at) - epoch(started_at) AS duration_seconds,
       len(turn_results)::INTEGER AS turn_count,
       len(list_filter(turn_results, lambda tr: tr.passed))::INTEGER AS passed_turn_count,
       len(crs)::INTEGER AS criteria_count,
       len(list_filter(crs, lambda cr: cr.verdict = 'PASS'))::INTEGER AS passed_criteria_count,
       len(list_filter(crs, lambda cr: cr.verdict = 'FAIL'))::INTEGER AS failed_criteria_count,
       list_sum(list_transform(crs, lambda cr: cr.input_tokens)) AS input_tokens,
       list_sum(list_transform(crs, lambda cr: cr.output_tokens)) AS output_tokens,
       $load_id AS _load_id, $loaded_at::TIMESTAMPTZ AS _loaded_at
FROM (SELECT *, flatten(list_transform(turn_results, lambda tr: tr.criteria_results)) AS crs FROM raw)
"""

_TURNS_SQL = """
SELECT tr.id AS turn_result_id, run_id, session_id, tr.turn_index, tr.passed, tr.stopped_early,
       tr.response_content,
       len(tr.criteria_results)::INTEGER AS criteria_count,
       len(list_filter(tr.criteria_results, lambda cr: cr.verdict = 'PASS'))::INTEGER AS passed_criteria_count,
       list_sum(list_transform(tr.criteria_results, lambda cr: cr.input_tokens)) AS input_tokens,
       list_sum(list_transform(tr.criteria_results, lambda cr: cr.output_tokens)) AS output_tokens,
       $load_id AS _load_id, $loaded_at::TIMESTAMPTZ AS _loaded_at
FROM (SELECT id AS run_id, session_id, unnest(turn_results) AS tr FROM raw)
"""

_CRITERIA_SQL = """
SELECT cr.id AS criteria_result_id, turn_result_id, run_id, session_id, turn_index, cr.criteria_id,
       cr.criteria_type, cr.criteria_question, cr.verdict, cr.critique, cr.evidence, cr.input_tokens,
       cr.output_tokens, $load_id AS _load_id, $loaded_at::TIMESTAMPTZ AS _loaded_at
FROM (
    SELECT run_id, session_id, tr.id AS turn_result_id, tr.turn_index, unnest(tr.criteria_results) AS cr
    FROM (SELECT id AS run_id, session_id, unnest(turn_results) AS tr FROM raw)
)
"""


def duckdb_native(params: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    source, ids, bodies = _inputs(params)
    ndjson = Path(params["out_dir"]) / "payloads.ndjson"
    ndjson.parent.mkdir(parents=True, exist_ok=True)
    with open(ndjson, "wb") as sink:  # before the clock: the in-memory payloads, one JSON object a line
        for session_id, body in zip(ids, bodies, strict=True):
            sink.write(b'{"session_id":' + orjson.dumps(session_id) + b"," + body[1:] + b"\n")
    threads = params.get("duckdb_threads", 1)
    # COPY takes no prepared parameters: the three constants are inlined as SQL string literals
    values = {"org": source.org_id, "load_id": "bench", "loaded_at": datetime.now(UTC).isoformat()}
    literals = {name: "'" + value.replace("'", "''") + "'" for name, value in values.items()}

    def once(out: Path) -> dict[str, Any]:
        con = duckdb.connect()
        try:
            con.execute(f"SET threads = {int(threads)}")
            con.execute(
                f"CREATE TEMP TABLE raw AS SELECT * FROM read_json(?, format = 'newline_delimited', "
                f"columns = {_RUN_COLUMNS}, maximum_object_size = 67108864)",
                [str(ndjson)],
            )
            rows = {}
            for name, sql in (("runs", _RUNS_SQL), ("turns", _TURNS_SQL), ("criteria_results", _CRITERIA_SQL)):
                for placeholder, literal in literals.items():
                    sql = sql.replace(f"${placeholder}", literal)
                target = out / f"{name}.parquet"
                copied = con.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)").fetchone()
                rows[name] = copied[0] if copied else None
        finally:
            con.close()
        return {"rows": rows}

    result = _repeat(params, once)
    result["duckdb_threads"] = threads
    ndjson.unlink(missing_ok=True)
    return result


def pandas_normalize(params: dict[str, Any]) -> dict[str, Any]:
    import pandas as pd

    _source, ids, bodies = _inputs(params)

    def once(out: Path) -> dict[str, Any]:
        runs = []
        for session_id, body in zip(ids, bodies, strict=True):
            run = orjson.loads(body)
            run["session_id"] = session_id
            runs.append(run)
        run_rows = pd.json_normalize(runs).drop(columns=["turn_results"])
        for column in ("started_at", "completed_at"):
            run_rows[column] = pd.to_datetime(run_rows[column], utc=True, format="ISO8601")
        turns = pd.json_normalize(runs, record_path="turn_results", meta=["id", "session_id"], meta_prefix="run_")
        turns = turns.drop(columns=["criteria_results"])
        criteria = pd.json_normalize(
            runs,
            record_path=["turn_results", "criteria_results"],
            meta=["id", "session_id", ["turn_results", "id"], ["turn_results", "turn_index"]],
            meta_prefix="run_",
        )
        for name, frame in (("runs", run_rows), ("turns", turns), ("criteria_results", criteria)):
            frame.to_parquet(out / f"{name}.parquet", compression="zstd")
        return {"rows": {"runs": len(run_rows), "turns": len(turns), "criteria_results": len(criteria)}}

    return _repeat(params, once)
