"""Judge prices: the pricing file, the judge model setting, `token_prices`, and costs that are NULL without a price."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.analytics_golden import golden_connection
from tests.conftest import Cli, SimulatedPiper, load_args, query
from warehouse import pricing

ROOT = Path(__file__).resolve().parents[1]
COST_COLUMNS = {
    "scenario_summary": ["estimated_cost_usd"],
    "criteria_summary": ["estimated_cost_usd"],
    "daily_summary": ["estimated_cost_usd"],
    "agent_summary": ["estimated_cost_usd"],
    "scenario_trend": ["estimated_cost_usd"],
    "run_costs": ["input_cost_usd", "output_cost_usd", "estimated_cost_usd"],
}
TWO_MODELS = """
[models."judge-a"]
input_usd_per_million = 1.5
output_usd_per_million = 6

[models."judge-b"]
input_usd_per_million = 0.25
output_usd_per_million = 1.0
"""


def write(tmp_path: Path, text: str, name: str = "prices.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_no_setting_keeps_what_is_stored() -> None:
    assert pricing.read_pricing(None, None) is None
    assert pricing.read_pricing("", "  ") is None


def test_the_setting_picks_the_judge_model(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_MODELS)
    chosen = pricing.read_pricing(path, "judge-b")
    assert chosen is not None and chosen.selected_price == pricing.ModelPrice("judge-b", 0.25, 1.0)
    assert [m.judge_model for m in chosen.models] == ["judge-a", "judge-b"]
    single = pricing.read_pricing(write(tmp_path, TWO_MODELS.split('[models."judge-b"]')[0], "one.toml"), None)
    assert single is not None and single.selected == "judge-a"  # the only model needs no flag
    no_file = pricing.read_pricing(None, "judge-x")
    assert no_file is not None and no_file.selected_price == pricing.ModelPrice("judge-x", None, None)


def test_a_model_the_file_does_not_list_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, TWO_MODELS)
    with pytest.raises(pricing.PricingError) as caught:
        pricing.read_pricing(path, "judge-z")
    assert str(caught.value) == f"judge model 'judge-z' is not in pricing file {path} (it lists 'judge-a', 'judge-b')"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.x\n", "is not valid TOML"),
        ('[models."x"]\ninput_usd_per_million = -1\noutput_usd_per_million = 1\n',
         "models.'x': input_usd_per_million must be a number of USD, 0 or more, not -1"),
        ('[models."x"]\ninput_usd_per_million = "3"\noutput_usd_per_million = 1\n', "not '3'"),
        ('[models."x"]\ninput_usd_per_million = true\noutput_usd_per_million = 1\n', "not True"),
        ('[models."x"]\ninput_usd_per_million = nan\noutput_usd_per_million = 1\n', "not nan"),
        ('[models."x"]\ninput_usd_per_million = 1\n', "models.'x': output_usd_per_million is missing"),
        ('[models."x"]\ninput_usd_per_million = 1\noutput_usd_per_milion = 1\n', "unknown key 'output_usd_per_milion'"),
        ('currency = "EUR"\n', "unknown key 'currency'"),
        ('models = 3\n', "'models' must be a table"),
        ('[models]\nx = 3\n', "models.'x' must be a table"),
    ],
)
def test_malformed_files_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(pricing.PricingError, match="pricing file") as caught:
        pricing.read_pricing(write(tmp_path, text), None)
    assert message in str(caught.value)


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(pricing.PricingError, match=r"cannot read pricing file .*missing\.toml: No such file"):
        pricing.read_pricing(str(tmp_path / "missing.toml"), None)


def test_the_example_file_parses_and_says_it_is_an_example() -> None:
    example = ROOT / "docs" / "pricing.example.toml"
    assert "EXAMPLE" in example.read_text(encoding="utf-8").splitlines()[0]
    prices = pricing.read_pricing(str(example), "example-judge-small")
    assert prices is not None and prices.selected_price is not None and prices.selected_price.priced


@pytest.mark.parametrize("prices", [None, pricing.PriceList((pricing.ModelPrice("judge-x", None, None),), "judge-x",
                                                            None)])
def test_costs_are_null_not_zero_without_a_price(prices: pricing.PriceList | None) -> None:
    con = golden_connection(prices)
    for view, columns in COST_COLUMNS.items():
        for column in columns:
            assert con.execute(f"SELECT count({column}) FROM {view}").fetchone() == (0,), f"{view}.{column}"
    assert con.execute("SELECT sum(input_tokens) FROM run_costs").fetchone() == (2060,)  # tokens are still there


def test_two_models_and_none_chosen_is_an_error_that_lists_them(tmp_path: Path) -> None:
    with pytest.raises(pricing.PricingError, match=r"lists 2 models \('judge-a', 'judge-b'\) and no judge model"):
        pricing.read_pricing(write(tmp_path, TWO_MODELS), None)


def test_two_models_and_no_judge_model_is_a_usage_error_before_any_request(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    for command in (load_args(piper, out_dir, "s-1", "--pricing", write(tmp_path, TWO_MODELS)),
                    ["report", "--out", str(out_dir), "--pricing", write(tmp_path, TWO_MODELS)]):
        result = cli(*command)
        assert result.code == 2, result.stderr
        assert "'judge-a', 'judge-b'" in result.stderr and "--judge-model" in result.stderr
    assert not piper.state.requests, "refused before any request"


def test_a_load_stores_the_prices_and_a_later_load_without_a_setting_keeps_them(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    path = write(tmp_path, TWO_MODELS)
    first, second = piper.dataset.session_ids[:2]
    assert cli(*load_args(piper, out_dir, first, "--pricing", path, "--judge-model", "judge-b")).code == 0
    stored = "SELECT judge_model, input_usd_per_million, output_usd_per_million, selected FROM token_prices ORDER BY 1"
    expected = [("judge-a", 1.5, 6.0, False), ("judge-b", 0.25, 1.0, True)]
    assert query(out_dir, stored) == expected
    assert cli(*load_args(piper, out_dir, second)).code == 0
    assert query(out_dir, stored) == expected
    cost = query(out_dir, "SELECT sum(input_tokens) * 0.25e-6 + sum(output_tokens) * 1e-6, "
                          "sum(estimated_cost_usd) FROM run_costs")[0]
    assert cost[1] == pytest.approx(cost[0])
    parquet = duckdb.connect()
    prices_file = str(out_dir / "parquet" / "token_prices" / "token_prices.parquet")
    assert parquet.execute("SELECT count(*) FROM read_parquet(?)", [prices_file]).fetchone() == (2,)


def test_the_environment_gives_the_default_setting(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPER_PRICING_FILE", write(tmp_path, TWO_MODELS))
    monkeypatch.setenv("PIPER_JUDGE_MODEL", "judge-a")
    assert cli(*load_args(piper, out_dir, piper.dataset.session_ids[0])).code == 0
    assert query(out_dir, "SELECT judge_model FROM token_prices WHERE selected") == [("judge-a",)]


def test_a_bad_pricing_file_stops_the_load_before_any_request(
    piper: SimulatedPiper, out_dir: Path, cli: Cli, tmp_path: Path
) -> None:
    path = write(tmp_path, TWO_MODELS)
    result = cli(*load_args(piper, out_dir, piper.dataset.session_ids[0], "--pricing", path, "--judge-model", "nope"))
    assert result.code == 2
    assert result.stderr == (
        f"piper-etl load: error: judge model 'nope' is not in pricing file {path} (it lists 'judge-a', 'judge-b')\n"
    )
    requests = len(piper.state.requests)
    assert cli(*load_args(piper, out_dir, "another", "--pricing", str(tmp_path / "none.toml"))).code == 2
    assert len(piper.state.requests) == requests
