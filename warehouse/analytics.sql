-- piper-etl analytics views, defined once over the tables runs, turns, criteria_results, token_prices and
-- the dimensions sessions, scenario_criteria and agent_usage.
-- The same statements run inside OUT/piper.duckdb and over the Parquet files (OUT/current_state.sql).
-- Every column is described in docs/analytics.md.
--
-- Rules shared by every view:
-- * A run is final when its status is passed, failed or error. Pass rates count final runs only.
-- * Criteria pass rates count the verdicts PASS and FAIL only; any other verdict (SKIPPED, ERROR, a new
--   one, or none) is counted apart in *_other_verdicts, never as a pass and never as a fail.
-- * Tokens count every run, final or not: the judge was paid for them either way. Token arithmetic is done
--   in HUGEINT and a result that does not fit BIGINT is NULL (unknown), so no count can make a view fail.
--   (The flatten already stores a count outside 0..10^12 as NULL: schemas/coerce.py MAX_TOKEN_COUNT.)
-- * A duration is NULL when the run completed before it started; it never enters a mean or percentile.
-- * Children join their run by run_id, and criteria their turn by (run_id, turn_result_id): a child id
--   alone is unique only within its run, so joining by it could multiply rows when ids collide across runs.
-- * Cost is tokens times the USD-per-million price of the token_prices row marked selected. With no
--   such row, or no price on it, every cost is NULL (unknown), never 0.
-- * A day is the UTC calendar day of the run's start, whatever the session's TimeZone setting.
-- * is_test is true for the runs of sessions the sessions list marks as test sessions, and false for every
--   other run (a session never listed counts as a real one). The summaries keep test and other runs in
--   separate rows (is_test is part of their key), so that `WHERE NOT is_test` leaves one row per key.
-- * The agent and is_test of a run are the run's own columns (filled when it was loaded), else those of its
--   current sessions row; a criterion's required flag and user message come from its scenario's current
--   definition in scenario_criteria (NULL when that scenario was never fetched).

CREATE OR REPLACE VIEW run_costs AS
WITH price AS (
    SELECT max(judge_model) AS judge_model,
           max(input_usd_per_million) AS input_usd,
           max(output_usd_per_million) AS output_usd
    FROM token_prices
    WHERE selected
)
SELECT
    r.run_id,
    r.session_id,
    r.scenario_id,
    r.scenario_name,
    r.status,
    coalesce(r.status IN ('passed', 'failed', 'error'), false) AS run_is_final,
    r.started_at,
    CASE WHEN r.duration_seconds >= 0 THEN r.duration_seconds END AS duration_seconds,  -- also for older rows
    r.criteria_count,
    r.passed_criteria_count,
    r.failed_criteria_count,
    r.input_tokens,
    r.output_tokens,
    CASE WHEN r.input_tokens IS NULL AND r.output_tokens IS NULL THEN NULL
         ELSE TRY_CAST(coalesce(r.input_tokens::HUGEINT, 0) + coalesce(r.output_tokens, 0) AS BIGINT)
    END AS total_tokens,
    price.judge_model,
    r.input_tokens * price.input_usd / 1e6 AS input_cost_usd,
    r.output_tokens * price.output_usd / 1e6 AS output_cost_usd,
    CASE WHEN price.input_usd IS NULL OR price.output_usd IS NULL
              OR (r.input_tokens IS NULL AND r.output_tokens IS NULL) THEN NULL
         ELSE (coalesce(r.input_tokens * price.input_usd, 0) + coalesce(r.output_tokens * price.output_usd, 0)) / 1e6
    END AS estimated_cost_usd,
    coalesce(r.agent_id, s.agent_id) AS agent_id,
    coalesce(r.agent_name, s.agent_name) AS agent_name,
    coalesce(r.is_test, s.is_test, false) AS is_test,
    -- The agent's own usage in the run's session (agent_usage): NULL when it was never fetched, 0 when it
    -- was fetched and the session has no agent run. A session has one current run, so it is counted once.
    u.agent_input_tokens,
    u.agent_output_tokens,
    u.agent_cost_usd,
    u.agent_requests,
    u.agent_runs
FROM runs AS r
LEFT JOIN (
    SELECT session_id, any_value(agent_id) AS agent_id, any_value(agent_name) AS agent_name,
           bool_or(is_test) AS is_test
    FROM sessions GROUP BY session_id
) AS s ON s.session_id = r.session_id
LEFT JOIN (
    SELECT session_id,
           CASE WHEN count(agent_run_id) = 0 THEN 0 ELSE TRY_CAST(sum(input_tokens) AS BIGINT) END
               AS agent_input_tokens,
           CASE WHEN count(agent_run_id) = 0 THEN 0 ELSE TRY_CAST(sum(output_tokens) AS BIGINT) END
               AS agent_output_tokens,
           CASE WHEN count(agent_run_id) = 0 THEN 0.0 ELSE sum(cost_usd) END AS agent_cost_usd,
           CASE WHEN count(agent_run_id) = 0 THEN 0 ELSE TRY_CAST(sum(requests) AS BIGINT) END AS agent_requests,
           count(agent_run_id) AS agent_runs  -- the row of a session with no agent run has no agent_run_id
    FROM agent_usage GROUP BY session_id
) AS u ON u.session_id = r.session_id
CROSS JOIN price;

CREATE OR REPLACE VIEW scenario_summary AS
SELECT
    scenario_id,
    scenario_name,
    count(*) AS runs,
    count(*) FILTER (WHERE status = 'passed') AS runs_passed,
    count(*) FILTER (WHERE status = 'failed') AS runs_failed,
    count(*) FILTER (WHERE status = 'error') AS runs_error,
    count(*) FILTER (WHERE NOT run_is_final) AS runs_not_final,
    (count(*) FILTER (WHERE status = 'passed'))::DOUBLE / nullif(count(*) FILTER (WHERE run_is_final), 0)
        AS run_pass_rate,
    coalesce(sum(criteria_count) FILTER (WHERE run_is_final), 0)::BIGINT AS criteria_evaluated,
    coalesce(sum(passed_criteria_count) FILTER (WHERE run_is_final), 0)::BIGINT AS criteria_passed,
    coalesce(sum(failed_criteria_count) FILTER (WHERE run_is_final), 0)::BIGINT AS criteria_failed,
    coalesce(sum(criteria_count - passed_criteria_count - failed_criteria_count) FILTER (WHERE run_is_final), 0)::BIGINT
        AS criteria_other_verdicts,
    (sum(passed_criteria_count) FILTER (WHERE run_is_final))::DOUBLE
        / nullif(sum(passed_criteria_count + failed_criteria_count) FILTER (WHERE run_is_final), 0)
        AS criteria_pass_rate,
    avg(duration_seconds) FILTER (WHERE run_is_final) AS mean_duration_seconds,
    quantile_cont(duration_seconds, 0.95) FILTER (WHERE run_is_final) AS p95_duration_seconds,
    TRY_CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
    TRY_CAST(sum(output_tokens) AS BIGINT) AS output_tokens,
    sum(estimated_cost_usd) AS estimated_cost_usd,
    min(started_at) AS first_run_at,
    max(started_at) AS last_run_at,
    is_test,
    -- The agent's own usage beside the judge's estimate: NULL when no run of the row had it fetched.
    TRY_CAST(sum(agent_input_tokens) AS BIGINT) AS agent_input_tokens,
    TRY_CAST(sum(agent_output_tokens) AS BIGINT) AS agent_output_tokens,
    sum(agent_cost_usd) AS agent_cost_usd,
    TRY_CAST(sum(agent_requests) AS BIGINT) AS agent_requests,
    TRY_CAST(sum(agent_runs) AS BIGINT) AS agent_runs
FROM run_costs
GROUP BY scenario_id, scenario_name, is_test;

CREATE OR REPLACE VIEW daily_summary AS
SELECT
    -- epoch() is an instant, so this is the UTC day under any TimeZone setting and needs no ICU.
    DATE '1970-01-01' + CAST(floor(epoch(started_at) / 86400) AS INTEGER) AS day,
    scenario_id,
    scenario_name,
    count(*) AS runs,
    count(*) FILTER (WHERE status = 'passed') AS runs_passed,
    count(*) FILTER (WHERE status = 'failed') AS runs_failed,
    count(*) FILTER (WHERE status = 'error') AS runs_error,
    count(*) FILTER (WHERE NOT run_is_final) AS runs_not_final,
    (count(*) FILTER (WHERE status = 'passed'))::DOUBLE / nullif(count(*) FILTER (WHERE run_is_final), 0)
        AS run_pass_rate,
    coalesce(sum(criteria_count) FILTER (WHERE run_is_final), 0)::BIGINT AS criteria_evaluated,
    coalesce(sum(passed_criteria_count) FILTER (WHERE run_is_final), 0)::BIGINT AS criteria_passed,
    coalesce(sum(failed_criteria_count) FILTER (WHERE run_is_final), 0)::BIGINT AS criteria_failed,
    coalesce(sum(criteria_count - passed_criteria_count - failed_criteria_count) FILTER (WHERE run_is_final), 0)::BIGINT
        AS criteria_other_verdicts,
    (sum(passed_criteria_count) FILTER (WHERE run_is_final))::DOUBLE
        / nullif(sum(passed_criteria_count + failed_criteria_count) FILTER (WHERE run_is_final), 0)
        AS criteria_pass_rate,
    TRY_CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
    TRY_CAST(sum(output_tokens) AS BIGINT) AS output_tokens,
    sum(estimated_cost_usd) AS estimated_cost_usd,
    is_test
FROM run_costs
GROUP BY day, scenario_id, scenario_name, is_test;

CREATE OR REPLACE VIEW criteria_summary AS
WITH price AS (
    SELECT max(input_usd_per_million) AS input_usd, max(output_usd_per_million) AS output_usd
    FROM token_prices
    WHERE selected
),
definitions AS (  -- one per criterion of a scenario, so that the join below never multiplies rows
    SELECT scenario_id, criteria_id, any_value(required) AS required, any_value(user_message) AS user_message
    FROM scenario_criteria
    GROUP BY scenario_id, criteria_id
),
judged AS (
    SELECT
        c.criteria_result_id, c.run_id, c.criteria_id, c.criteria_question, c.criteria_type, c.verdict,
        c.critique, c.input_tokens, c.output_tokens,
        r.scenario_id, r.scenario_name, r.started_at AS run_started_at, r.run_is_final, r.is_test,
        d.required, d.user_message
    FROM criteria_results AS c
    JOIN run_costs AS r ON c.run_id = r.run_id
    LEFT JOIN definitions AS d ON d.scenario_id = r.scenario_id AND d.criteria_id = c.criteria_id
),
counted AS (
    SELECT
        scenario_id,
        scenario_name,
        criteria_id,
        criteria_question,
        criteria_type,
        required,
        user_message,
        is_test,
        count(*) FILTER (WHERE run_is_final) AS evaluations,
        count(*) FILTER (WHERE run_is_final AND verdict = 'PASS') AS passes,
        count(*) FILTER (WHERE run_is_final AND verdict = 'FAIL') AS fails,
        count(*) FILTER (WHERE run_is_final AND verdict IS DISTINCT FROM 'PASS' AND verdict IS DISTINCT FROM 'FAIL')
            AS other_verdicts,
        sum(input_tokens) AS input_tokens,  -- HUGEINT: the cost below is priced before any overflow
        sum(output_tokens) AS output_tokens,
        max(run_started_at) FILTER (WHERE run_is_final AND verdict = 'FAIL') AS last_failed_at,
        arg_max(critique, (run_started_at, run_id, criteria_result_id))
            FILTER (WHERE run_is_final AND verdict = 'FAIL' AND run_started_at IS NOT NULL) AS latest_failing_critique,
        arg_max(run_id, (run_started_at, run_id, criteria_result_id))
            FILTER (WHERE run_is_final AND verdict = 'FAIL' AND run_started_at IS NOT NULL) AS latest_failing_run_id
    FROM judged
    GROUP BY scenario_id, scenario_name, criteria_id, criteria_question, criteria_type, required, user_message, is_test
)
SELECT
    scenario_id,
    scenario_name,
    criteria_id,
    criteria_question,
    criteria_type,
    evaluations,
    passes,
    fails,
    other_verdicts,
    passes::DOUBLE / nullif(passes + fails, 0) AS pass_rate,
    TRY_CAST(input_tokens AS BIGINT) AS input_tokens,
    TRY_CAST(output_tokens AS BIGINT) AS output_tokens,
    CASE WHEN price.input_usd IS NULL OR price.output_usd IS NULL
              OR (input_tokens IS NULL AND output_tokens IS NULL) THEN NULL
         ELSE (coalesce(input_tokens * price.input_usd, 0) + coalesce(output_tokens * price.output_usd, 0)) / 1e6
    END AS estimated_cost_usd,
    last_failed_at,
    latest_failing_critique,
    latest_failing_run_id,
    required,
    user_message,
    is_test
FROM counted
CROSS JOIN price;

CREATE OR REPLACE VIEW failures AS
SELECT
    r.started_at AS run_started_at,
    r.scenario_id,
    r.scenario_name,
    r.status AS run_status,
    c.run_id,
    c.session_id,
    c.turn_index,
    c.criteria_id,
    c.criteria_type,
    c.criteria_question,
    c.critique,
    c.evidence,
    t.response_content,
    c.turn_result_id,
    c.criteria_result_id,
    r.agent_id,
    r.agent_name,
    r.is_test,
    d.required,
    d.user_message
FROM criteria_results AS c
JOIN run_costs AS r ON c.run_id = r.run_id
LEFT JOIN turns AS t ON c.run_id = t.run_id AND c.turn_result_id = t.turn_result_id
LEFT JOIN (
    SELECT scenario_id, criteria_id, any_value(required) AS required, any_value(user_message) AS user_message
    FROM scenario_criteria
    GROUP BY scenario_id, criteria_id
) AS d ON d.scenario_id = r.scenario_id AND d.criteria_id = c.criteria_id
WHERE c.verdict = 'FAIL'
ORDER BY r.started_at DESC NULLS LAST, c.run_id, c.turn_index, c.criteria_result_id;

CREATE OR REPLACE VIEW agent_summary AS
SELECT
    agent_id,
    agent_name,
    scenario_id,
    scenario_name,
    is_test,
    count(*) AS runs,
    count(*) FILTER (WHERE run_is_final) AS runs_final,
    count(*) FILTER (WHERE status = 'passed') AS runs_passed,
    count(*) FILTER (WHERE status = 'failed') AS runs_failed,
    count(*) FILTER (WHERE status = 'error') AS runs_error,
    (count(*) FILTER (WHERE status = 'passed'))::DOUBLE / nullif(count(*) FILTER (WHERE run_is_final), 0)
        AS run_pass_rate,
    coalesce(sum(passed_criteria_count) FILTER (WHERE run_is_final), 0)::BIGINT AS criteria_passed,
    coalesce(sum(failed_criteria_count) FILTER (WHERE run_is_final), 0)::BIGINT AS criteria_failed,
    (sum(passed_criteria_count) FILTER (WHERE run_is_final))::DOUBLE
        / nullif(sum(passed_criteria_count + failed_criteria_count) FILTER (WHERE run_is_final), 0)
        AS criteria_pass_rate,
    TRY_CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
    TRY_CAST(sum(output_tokens) AS BIGINT) AS output_tokens,
    sum(estimated_cost_usd) AS estimated_cost_usd,
    min(started_at) AS first_run_at,
    max(started_at) AS last_run_at
FROM run_costs
GROUP BY agent_id, agent_name, scenario_id, scenario_name, is_test;

-- Verdict stability: one row per criterion of a scenario, over its PASS and FAIL verdicts in final runs, in the
-- order of the run's start (ties by run_id, then criteria_result_id; a run without a start time sorts first).
-- A flip is a verdict that differs from the one before it. The recent_* columns look at the last 10
-- evaluations only (recent_flips counts the flips between two of them), and a criterion is flaky when, among
-- those, the verdict flipped at least twice and the pass rate lies between 0.2 and 0.8: it settled neither
-- into passing nor into failing. A criterion that broke once and stays broken has one flip: a regression,
-- not flakiness.
CREATE OR REPLACE VIEW criteria_stability AS
WITH judged AS (
    SELECT
        r.scenario_id, r.scenario_name, c.criteria_id, c.criteria_question, c.verdict, r.started_at, r.is_test,
        row_number() OVER history AS seq,
        count(*) OVER (PARTITION BY r.scenario_id, c.criteria_id, r.is_test) - row_number() OVER history
            AS newer_evaluations,
        lag(c.verdict) OVER history AS previous_verdict
    FROM criteria_results AS c
    JOIN run_costs AS r ON c.run_id = r.run_id
    WHERE r.run_is_final AND c.verdict IN ('PASS', 'FAIL')
    WINDOW history AS (PARTITION BY r.scenario_id, c.criteria_id, r.is_test
                       ORDER BY r.started_at NULLS FIRST, c.run_id, c.criteria_result_id)
),
counted AS (
    SELECT
        scenario_id,
        arg_max(scenario_name, seq) AS scenario_name,
        criteria_id,
        arg_max(criteria_question, seq) FILTER (WHERE criteria_question IS NOT NULL) AS criteria_question,
        count(*) AS evaluations,
        count(*) FILTER (WHERE verdict = 'PASS') AS passes,
        count(*) FILTER (WHERE verdict = 'FAIL') AS fails,
        count(*) FILTER (WHERE verdict <> previous_verdict) AS verdict_flips,
        arg_max(verdict, seq) AS last_verdict,
        arg_max(started_at, seq) AS last_evaluated_at,
        arg_max(started_at, seq) FILTER (WHERE verdict <> previous_verdict) AS last_flip_at,
        count(*) FILTER (WHERE newer_evaluations < 10) AS recent_evaluations,
        count(*) FILTER (WHERE newer_evaluations < 9 AND verdict <> previous_verdict) AS recent_flips,
        count(*) FILTER (WHERE newer_evaluations < 10 AND verdict = 'PASS') AS recent_passes,
        is_test
    FROM judged
    GROUP BY scenario_id, criteria_id, is_test
)
SELECT
    scenario_id,
    scenario_name,
    criteria_id,
    criteria_question,
    evaluations,
    passes,
    fails,
    passes::DOUBLE / evaluations AS pass_rate,
    verdict_flips,
    verdict_flips::DOUBLE / nullif(evaluations - 1, 0) AS flip_rate,
    last_verdict,
    last_evaluated_at,
    last_flip_at,
    recent_evaluations,
    recent_flips,
    recent_passes::DOUBLE / recent_evaluations AS recent_pass_rate,
    recent_flips >= 2 AND recent_passes::DOUBLE / recent_evaluations BETWEEN 0.2 AND 0.8 AS flaky,
    is_test
FROM counted;

-- Trends: one row per scenario and ISO week (UTC; a week starts on Monday) of the runs' start.
CREATE OR REPLACE VIEW scenario_trend AS
WITH dated AS (
    SELECT *, DATE '1970-01-01' + CAST(floor(epoch(started_at) / 86400) AS INTEGER) AS day
    FROM run_costs
)
SELECT
    day - CAST(isodow(day) - 1 AS INTEGER) AS week,
    strftime(day, '%G-W%V') AS iso_week,
    scenario_id,
    scenario_name,
    count(*) AS runs,
    count(*) FILTER (WHERE run_is_final) AS runs_final,
    count(*) FILTER (WHERE status = 'passed') AS runs_passed,
    (count(*) FILTER (WHERE status = 'passed'))::DOUBLE / nullif(count(*) FILTER (WHERE run_is_final), 0)
        AS run_pass_rate,
    coalesce(sum(passed_criteria_count) FILTER (WHERE run_is_final), 0)::BIGINT AS criteria_passed,
    coalesce(sum(failed_criteria_count) FILTER (WHERE run_is_final), 0)::BIGINT AS criteria_failed,
    (sum(passed_criteria_count) FILTER (WHERE run_is_final))::DOUBLE
        / nullif(sum(passed_criteria_count + failed_criteria_count) FILTER (WHERE run_is_final), 0)
        AS criteria_pass_rate,
    TRY_CAST(sum(input_tokens) AS BIGINT) AS input_tokens,
    TRY_CAST(sum(output_tokens) AS BIGINT) AS output_tokens,
    sum(estimated_cost_usd) AS estimated_cost_usd,
    is_test
FROM dated
GROUP BY week, iso_week, scenario_id, scenario_name, is_test;
