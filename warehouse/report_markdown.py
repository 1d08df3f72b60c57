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
        *_changes(data),
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


def _changes(data: ReportData) -> list[str]:
    """What changed in the week before the report, as a few lines and tables (empty without `changes`)."""
    changes = data.changes
    if changes is None:
        return []
    result = changes.check
    mark = "**REGRESSED:** " if result.regressed else ""
    lines = [f"### What changed in {_cell(changes.window_text)}", "", mark + _cell(changes.regression_line()), ""]
    if result.regressed:
        lines += ["| scenario | baseline runs | baseline pass | window runs | window pass | drop (points) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {_cell(s.scenario_name)} | {s.baseline_runs} | {pct(s.baseline_pass_rate)} | {s.window_runs} "
                  f"| {pct(s.window_pass_rate)} | {'–' if s.drop_points is None else f'{s.drop_points:.1f}'} |"
                  for s in result.regressions]
        lines.append("")
    lines += [_cell(changes.new_failures_line()), ""]
    if result.new_failures:
        lines += ["| criterion | scenario | fails in window | last failed (UTC) |", "| --- | --- | ---: | --- |"]
        lines += [f"| {_cell(f.criteria_question or f.criteria_id)} | {_cell(f.scenario_name)} "
                  f"| {f.window_fails} of {f.window_evaluations} | {f.last_failed_at:%Y-%m-%d %H:%M} |"
                  for f in result.new_failures[:CRITERIA_SHOWN]]
        lines += _more(len(result.new_failures), "`piper-etl check` lists them all")
    lines += [_cell(changes.flaky_line()), ""]
    if changes.newly_flaky:
        lines += ["| criterion | scenario | flips (last 10) | pass rate (last 10) | last flip (UTC) |",
                  "| --- | --- | ---: | ---: | --- |"]
        lines += [f"| {_cell(row['criteria_question'] or row['criteria_id'] or '')} | {_cell(scenario_label(row))} "
                  f"| {row['recent_flips']} | {pct(row['recent_pass_rate'])} | {row['last_flip_at']:%Y-%m-%d %H:%M} |"
                  for row in changes.newly_flaky[:CRITERIA_SHOWN]]
        lines += _more(len(changes.newly_flaky), "the `criteria_stability` view has them all")
    return lines


def _more(count: int, where: str) -> list[str]:
    return ["", f"({count - CRITERIA_SHOWN} more: {where}.)", ""] if count > CRITERIA_SHOWN else [""]


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell: one line, pipes and markup characters escaped."""
    flat = " ".join(text.split())
    for char in ("\\", "|", "*", "_", "`", "<", ">", "[", "]"):
        flat = flat.replace(char, "\\" + char)
    return flat
