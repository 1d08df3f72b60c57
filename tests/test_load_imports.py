"""Planning a load and storing its prices import no pandas (a quarter of a second of CPU).

DuckDB's Python `register` imports pandas to check what it was given. Planning used it to match the
requested ids against the stored runs, so every load against an existing output paid 0.25 s before its
first request (docs/performance.md, end to end); storing prices paid it again after the merge.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CANARY_TOKEN, Cli, SimulatedPiper, load_args

SCRIPT = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from flows.pipeline import plan_load
from flows.settings import LoadSettings
from warehouse import pricing, store
from warehouse.load import open_load

out_dir, org_id, prices_file, *ids = sys.argv[1:]
settings = LoadSettings(org_id=org_id, out_dir=Path(out_dir), format={format!r})
with open_load(settings.out_dir, format=settings.format) as load:
    plan = plan_load(load, ids, settings)
assert plan.skipped, "the stored state was not read"
if settings.format != "parquet":
    con = store.connect(Path(out_dir) / store.DATABASE_FILE)
    pricing.replace_prices(con, pricing.read_pricing(Path(prices_file), None), datetime.now(UTC))
    con.close()
print("pandas imported" if "pandas" in sys.modules else "pandas not imported")
"""


@pytest.mark.parametrize("format", ["duckdb", "parquet"])
def test_planning_against_stored_runs_and_storing_prices_import_no_pandas(
    piper: SimulatedPiper, out_dir: Path, tmp_path: Path, cli: Cli, format: str
) -> None:
    ids = piper.dataset.session_ids[:3]
    assert cli(*load_args(piper, out_dir, "--format", format, *ids)).code == 0
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."judge-a"]\ninput_usd_per_million = 1.0\noutput_usd_per_million = 2.0\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPER_", "PREFECT_API"))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(format=format), str(out_dir), piper.org_id, str(prices), *ids],
        capture_output=True, text=True, timeout=120,
        env={**env, "PIPER_API_TOKEN": CANARY_TOKEN, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "pandas not imported"
