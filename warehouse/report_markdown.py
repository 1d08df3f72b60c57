"""The report's key tables as markdown, for the Prefect artifact published after every load."""

from __future__ import annotations

from warehouse.report_data import ReportData, excerpt, pct, scenario_label, tokens, usd

SCENARIOS_SHOWN = 20
CRITERIA_SHOWN = 10


ALL_LOADS = "current state, all loads"


def summary_markdown(data: ReportData, *, scope: str = ALL_LOADS) -> str:
    """Totals, the price note, scenarios and the most failing criteria, as markdown; `scope` says of which runs."""
    t = data.totals
    lines = [
        f"## Verdicts and judge cost ({scope})",
        "",
        f"{t['runs']} runs, {t['runs_final']} final: run pass rate **{pct(t['run_pass_rate'])}**, criteria pass rate "
        f"**{pct(t['criteria_pass_rate'])}**; judge tokens {tokens(t['input_tokens'])} in / "
        f"{tokens(t['output_tokens'])} out; estimated cost {usd(t['estimated_cost_usd'])}.",
        "",
        f"_{_cell(data.price.line())}_",
        "",
        "| scenario | runs | run pass | not final | criteria pass | other verdicts | tokens | cost |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in data.scenarios[:SCENARIOS_SHOWN]:
        total = None
        if row["input_tokens"] is not None or row["output_tokens"] is not None:
            total = (row["input_tokens"] or 0) + (row["output_tokens"] or 0)
        lines.append(
            f"| {_cell(scenario_label(row))} | {row['runs']} | {pct(row['run_pass_rate'])} | {row['runs_not_final']} "
            f"| {pct(row['criteria_pass_rate'])} | {row['criteria_other_verdicts']} | {tokens(total)} "
            f"| {usd(row['estimated_cost_usd'])} |"
        )
    if len(data.scenarios) > SCENARIOS_SHOWN:
        lines += ["", f"({len(data.scenarios) - SCENARIOS_SHOWN} more scenarios in the `scenario_summary` view.)"]
    if data.criteria:
        lines += [
            "",
            "| fails | pass rate | criterion | scenario | latest failing critique |",
            "| ---: | ---: | --- | --- | --- |",
        ]
        for row in data.criteria[:CRITERIA_SHOWN]:
            question = row["criteria_question"] or row["criteria_id"] or ""
            lines.append(
                f"| {row['fails']} | {pct(row['pass_rate'])} | {_cell(excerpt(question, 80))} "
                f"| {_cell(scenario_label(row))} | {_cell(excerpt(row['latest_failing_critique'], 160))} |"
            )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell: one line, pipes and markup characters escaped."""
    flat = " ".join(text.split())
    for char in ("\\", "|", "*", "_", "`", "<", ">", "[", "]"):
        flat = flat.replace(char, "\\" + char)
    return flat
