"""Judge token prices: read from a TOML pricing file, kept in the `token_prices` table.

A pricing file maps judge models to USD per million input and output tokens (see
`docs/pricing.example.toml`, whose numbers are placeholders, not prices):

    [models."judge-model-name"]
    input_usd_per_million = 1.25
    output_usd_per_million = 5.0

Which model judged the runs is a setting (`--judge-model`, `PIPER_JUDGE_MODEL`); when it is unset and
the file lists exactly one model, that one is used. No price in the code is ever taken as a fact: with
no pricing configured, `token_prices` has no selected row and every cost column is NULL, never 0.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from schemas.tables import TOKEN_PRICES
from warehouse import landing
from warehouse.objstore import Root

TABLE = "token_prices"
PRICE_KEYS = ("input_usd_per_million", "output_usd_per_million")
CREATE_TABLE_SQL = """CREATE TABLE IF NOT EXISTS token_prices (
    judge_model VARCHAR NOT NULL,
    input_usd_per_million DOUBLE,
    output_usd_per_million DOUBLE,
    selected BOOLEAN NOT NULL,
    pricing_file VARCHAR,
    priced_at TIMESTAMPTZ NOT NULL
)"""


class PricingError(ValueError):
    """The pricing file or the judge model setting cannot be used; the message says why and where."""


@dataclass(frozen=True)
class ModelPrice:
    """USD per million judge tokens for one model; None when the model has no price."""

    judge_model: str
    input_usd_per_million: float | None
    output_usd_per_million: float | None

    @property
    def priced(self) -> bool:
        return self.input_usd_per_million is not None and self.output_usd_per_million is not None


@dataclass(frozen=True)
class PriceList:
    """Every model of a pricing file and the one selected to cost the runs (None: costs are NULL)."""

    models: tuple[ModelPrice, ...]
    selected: str | None
    pricing_file: str | None

    @property
    def selected_price(self) -> ModelPrice | None:
        return next((m for m in self.models if m.judge_model == self.selected), None)

    def table(self, priced_at: datetime) -> pa.Table:
        return pa.Table.from_pylist(self.rows(priced_at), schema=TOKEN_PRICES)

    def rows(self, priced_at: datetime) -> list[dict[str, object]]:
        """The `token_prices` rows, one per model."""
        return [
            {
                "judge_model": model.judge_model,
                "input_usd_per_million": model.input_usd_per_million,
                "output_usd_per_million": model.output_usd_per_million,
                "selected": model.judge_model == self.selected,
                "pricing_file": self.pricing_file,
                "priced_at": priced_at,
            }
            for model in self.models
        ]


def read_pricing(pricing_file: str | None, judge_model: str | None) -> PriceList | None:
    """The price list a setting asks for; None when neither a file nor a model is set.

    Raises :class:`PricingError` for an unreadable or malformed file, a judge model the file does
    not list, or a file of several models and no judge model (costs would all be empty). A judge
    model with no file gives that model with no price (costs stay NULL).
    """
    model = (judge_model or "").strip() or None
    if not pricing_file:
        if model is None:
            return None
        return PriceList((ModelPrice(model, None, None),), model, None)
    models = _parse(Path(pricing_file))
    names = [m.judge_model for m in models]
    if model is not None and model not in names:
        listed = ", ".join(repr(n) for n in names) or "none"
        raise PricingError(f"judge model {model!r} is not in pricing file {pricing_file} (it lists {listed})")
    if model is None and len(models) == 1:
        model = models[0].judge_model
    if model is None and models:  # several prices and none chosen would leave every cost silently empty
        listed = ", ".join(repr(n) for n in names)
        raise PricingError(
            f"pricing file {pricing_file} lists {len(models)} models ({listed}) and no judge model is set: choose "
            "the one that judged your runs (--judge-model, PIPER_JUDGE_MODEL, or the flow parameter judge_model)"
        )
    return PriceList(tuple(models), model, str(pricing_file))


def _parse(path: Path) -> list[ModelPrice]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PricingError(f"cannot read pricing file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PricingError(f"pricing file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {"models"})
    if unknown:
        raise PricingError(f"pricing file {path}: unknown key {unknown[0]!r} (expected [models.\"NAME\"] tables)")
    models = document.get("models", {})
    if not isinstance(models, dict):
        raise PricingError(f"pricing file {path}: 'models' must be a table of [models.\"NAME\"] tables")
    return [_model(path, name, entry) for name, entry in models.items()]


def _model(path: Path, name: str, entry: object) -> ModelPrice:
    where = f"pricing file {path}: models.{name!r}"
    if not name.strip():
        raise PricingError(f"pricing file {path}: a model name is empty")
    if not isinstance(entry, dict):
        raise PricingError(f"{where} must be a table with {' and '.join(PRICE_KEYS)}")
    unknown = sorted(set(entry) - set(PRICE_KEYS))
    if unknown:
        raise PricingError(f"{where}: unknown key {unknown[0]!r} (expected {' and '.join(PRICE_KEYS)})")
    prices: list[float] = []
    for key in PRICE_KEYS:
        value = entry.get(key)
        if value is None:
            raise PricingError(f"{where}: {key} is missing")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise PricingError(f"{where}: {key} must be a number of USD, 0 or more, not {value!r}")
        prices.append(float(value))
    return ModelPrice(name, prices[0], prices[1])


def replace_prices(con: duckdb.DuckDBPyConnection, prices: PriceList, priced_at: datetime) -> None:
    """Replace the rows of `token_prices` (the caller owns the transaction)."""
    con.execute(CREATE_TABLE_SQL)
    con.execute("DELETE FROM token_prices")
    rows = prices.rows(priced_at)  # as parameters: DuckDB's `register` of an Arrow table imports pandas (0.25 s)
    if rows:
        columns = list(rows[0])  # our own fixed names (schemas.tables.TOKEN_PRICES)
        con.executemany(
            f"INSERT INTO token_prices ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [[row[c] for c in columns] for row in rows],
        )


def prices_part(parquet_root: Root) -> Root:
    return parquet_root / TABLE / f"{TABLE}.parquet"


def write_prices_parquet(parquet_root: Root, prices: PriceList, priced_at: datetime) -> Root:
    """Write the price list next to the landing files (atomically), for users of the Parquet files."""
    return landing.write_part(prices.table(priced_at), prices_part(parquet_root))
