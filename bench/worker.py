"""Run one bench leg in a fresh process: `python -m bench.worker LEG PARAMS.json RESULT.json`.

Every leg runs in its own process so that its peak RSS (read by the parent from `wait4`) and its imports
are its own. Heavy modules are imported inside the legs, never here.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path

# leg name -> "module:function"; each function takes the params dict and returns a JSON-able dict
LEGS = {
    "fetch": "bench.fetch:run",
    "fetch-profile": "bench.fetch:profile",
    "piper-local": "bench.e2e:piper_local",
    "piper-flow": "bench.e2e:piper_flow",
    "naive": "bench.e2e:naive",
    "dlt": "bench.e2e:dlt_load",
    "cpu-piper": "bench.cpu:piper",
    "cpu-duckdb": "bench.cpu:duckdb_native",
    "cpu-pandas": "bench.cpu:pandas_normalize",
    "startup-profile": "bench.startup:profile",
    "history-build": "bench.history:build",
    "history-query": "bench.history:query",
}


def main(argv: list[str]) -> int:
    leg, params_path, result_path = argv
    params = json.loads(Path(params_path).read_text())
    if params.get("cpu") is not None:
        os.sched_setaffinity(0, {params["cpu"]})
    module_name, _, function_name = LEGS[leg].partition(":")
    started = time.perf_counter()
    function = getattr(importlib.import_module(module_name), function_name)
    import_seconds = time.perf_counter() - started
    try:
        result = function(params)
    except Exception as exc:  # the parent reports the first line; the traceback goes to the leg's log
        _write(result_path, {"exception": f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"})
        raise
    result.setdefault("leg_import_seconds", import_seconds)
    _write(result_path, result)
    return 0


def _write(path: str, result: dict[str, object]) -> None:
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=str))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
