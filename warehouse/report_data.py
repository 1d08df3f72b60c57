"""What the report shows, read once from the analytics views; rendered by the terminal, HTML and markdown views."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import duckdb

from warehouse.objstore import Root
from warehouse.reader import Analytics

if TYPE_CHECKING:
    from warehouse.report_changes import Changes

Row = dict[str, Any]
NO_PRICE = (
    "No judge token price is set, so every cost is empty (NULL), not 0. Set one with --pricing FILE "
    "and --judge-model NAME (or PIPER_PRICING_FILE and PIPER_JUDGE_MODEL); see docs/pricing.example.toml."
)


@dataclass(frozen=True)
class PriceNote:
    """The judge price the costs use, if any."""

    judge_model: str | None
    input_usd_per_million: float | None
    output_usd_per_million: float | None
    from_setting: bool

    @property
    def is_set(self) -> bool:
        return self.input_usd_per_million is not None and self.output_usd_per_million is not None

    def line(self) -> str:
        if not self.is_set:
            if self.judge_model:
                return f"Judge model {self.judge_model!r} has no price in the pricing file. " + NO_PRICE
            return NO_PRICE
        where = "from the pricing setting" if self.from_setting else "as stored by the last load"
        return (
            f"Costs use judge model {self.judge_model!r} at ${self.input_usd_per_million:g} per million input "
            f"tokens and ${self.output_usd_per_million:g} per million output tokens ({where}); they are estimates."
        )


@dataclass(frozen=True)
class ReportData:
    """Every table the report draws, as plain rows."""

    generated_at: datetime
    source: Root  # the folder, snapshot or object-store URL read
    since: date | None
    scenario: str | None
    price: PriceNote
    totals: Row
    scenarios: list[Row]
    daily: list[Row]
    criteria: list[Row]
    loads: list[Row]
    agent: str | None = None
    tag: str | None = None
    include_test: bool = True
    trend: list[Row] = field(default_factory=list)
    """scenario_trend rows (scenario x ISO week) of the runs with a start time."""
    changes: Changes | None = None
    """What changed in the week before the report's time (warehouse/report_changes.py); `collect` always sets it."""

    @property
    def filters(self) -> str:
        parts = []
        if self.since is not None:
            parts.append(f"runs started on or after {self.since.isoformat()} (UTC)")
        if self.scenario is not None:
            parts.append(f"scenario {self.scenario!r}")
        if self.agent is not None:
            parts.append(f"agent {self.agent!r}")
        if self.tag is not None:
            parts.append(f"scenarios tagged {self.tag!r}")
        if not self.include_test:
            parts.append("test sessions left out (--include-test counts them)")
        return "; ".join(parts) or "all runs"


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> list[Row]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def collect(
    analytics: Analytics, *, since: date | None = None, scenario: str | None = None, top_criteria: int = 15,
    agent: str | None = None, tag: str | None = None, include_test: bool = True,
    as_of: datetime | None = None, history: Analytics | None = None, what_changed: bool = True,
) -> ReportData:
    """Read the report's tables from an open analytics connection (already filtered: the arguments name the filters).

    With test sessions included, a scenario with both test and other runs has two rows (`is_test`).
    What changed is judged in the week before `as_of` (default: now) over `history`: the same runs without
    the `since` cut, which would hide the baseline (default: `analytics` itself); `what_changed=False`
    leaves it out (`changes` None), for a summary of rows that hold no history to judge against.
    """
    from warehouse.report_changes import find_changes  # it reads rows with this module's helpers

    con = analytics.con
    generated_at = datetime.now(UTC)
    price = rows(
        con,
        "SELECT judge_model, input_usd_per_million, output_usd_per_million FROM token_prices WHERE selected LIMIT 1",
    )
    first = price[0] if price else {}
    totals = rows(
        con,
        "SELECT count(*) AS runs, count(*) FILTER (WHERE run_is_final) AS runs_final, "
        "count(*) FILTER (WHERE status = 'passed')::DOUBLE / nullif(count(*) FILTER (WHERE run_is_final), 0) "
        "AS run_pass_rate, sum(passed_criteria_count) FILTER (WHERE run_is_final)::DOUBLE / "
        "nullif(sum(passed_criteria_count + failed_criteria_count) FILTER (WHERE run_is_final), 0) "
        "AS criteria_pass_rate, TRY_CAST(sum(input_tokens) AS BIGINT) AS input_tokens, "
        "TRY_CAST(sum(output_tokens) AS BIGINT) AS output_tokens, "
        "sum(estimated_cost_usd) AS estimated_cost_usd FROM run_costs",
    )[0]
    return ReportData(
        generated_at=generated_at,
        source=analytics.source,
        since=since,
        scenario=scenario,
        price=PriceNote(
            first.get("judge_model"),
            first.get("input_usd_per_million"),
            first.get("output_usd_per_million"),
            analytics.prices_from_setting,
        ),
        totals=totals,
        scenarios=rows(con, "SELECT * FROM scenario_summary ORDER BY runs DESC, scenario_name NULLS LAST, is_test"),
        daily=rows(con, "SELECT * FROM daily_summary WHERE day IS NOT NULL "
                        "ORDER BY day, scenario_name NULLS LAST, is_test"),
        criteria=rows(
            con,
            "SELECT * FROM criteria_summary WHERE fails > 0 "
            "ORDER BY fails DESC, pass_rate NULLS LAST, scenario_name, criteria_question, is_test LIMIT ?",
            [top_criteria],
        ),
        loads=rows(con, "SELECT * FROM loads ORDER BY started_at, load_id"),
        agent=agent,
        tag=tag,
        include_test=include_test,
        trend=rows(con, "SELECT * FROM scenario_trend WHERE week IS NOT NULL "
                        "ORDER BY week, scenario_name NULLS LAST, scenario_id, is_test"),
        changes=find_changes((history or analytics).con, as_of=as_of or generated_at, include_test=include_test)
        if what_changed else None,
    )


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def tokens(value: int | None) -> str:
    if value is None:
        return "–"
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}{suffix}"
    return str(value)


def usd(value: float | None) -> str:
    if value is None:
        return "–"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.4f}"


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def excerpt(text: str | None, limit: int) -> str:
    """The start of a critique, on one line, cut at a word with an ellipsis."""
    if not text:
        return ""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1].rsplit(" ", 1)[0] if " " in flat[: limit - 1] else flat[: limit - 1]
    return cut + "…"


def scenario_label(row: Row) -> str:
    """The scenario's name, marked when the row holds test sessions' runs (kept apart from the others)."""
    name = str(row.get("scenario_name") or row.get("scenario_id") or "(no scenario)")
    return name + TEST_SESSIONS if row.get("is_test") else name


TEST_SESSIONS = " (test sessions)"
"""What a scenario label ends with when its row holds the runs of test sessions."""


def short_label(label: str, limit: int) -> str:
    """A scenario label cut to about `limit` characters that keeps its test sessions mark."""
    suffix = TEST_SESSIONS if label.endswith(TEST_SESSIONS) else ""
    return excerpt(label.removesuffix(suffix), max(8, limit - len(suffix))) + suffix
