"""The Prefect flows `load_sessions` and `sync_sessions`: the load and the sync of `flows.pipeline` and `flows.sync`.

With run history and artifacts.

Tasks are coarse: one task per `sessions_per_task` sessions (thousands), each streaming its requests
with asyncio concurrency and landing its chunks as Parquet parts of the load itself. Task inputs and
outputs are plain values (session ids, settings, the load's `LoadTarget`, chunk reports): no
connection, lock or open file crosses a task boundary. The flow holds the load transaction: it plans,
runs the tasks (the transaction inserts their chunks into DuckDB as they land), then commits. The
token is never a parameter: tasks read `PIPER_API_TOKEN` or, failing that, the Prefect Secret block
`piper-api-token`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from connector.backoff import BackoffGate
from connector.errors import TOKEN_ENV, PiperConfigError
from flows import backoff, dimensions, pipeline, scale, sync
from flows.budget import TaskLeases, keeping
from flows.chunks import ChunkReport
from flows.dimensions import ScenarioReport
from flows.errors import LoadFailed, SyncFailed
from flows.report import load_summary_markdown, sync_summary_markdown
from flows.settings import TOKEN_BLOCK, HttpClient, LoadSettings, OutputFormat, SyncOptions
from schemas.flatten import SessionInfo
from warehouse.load import LoadTarget, LoadTransaction, land_chunk, open_load
from warehouse.objstore import landing_root
from warehouse.store import DEFAULT_STORAGE_VERSION
from warehouse.streams import resume_stream

if TYPE_CHECKING:
    from prefect_dask.task_runners import PrefectDaskFuture

T = TypeVar("T")
SYNC_PARAMETERS = frozenset({"full_scan", "since", "until"})
"""The parameters of `sync_sessions` that are not load settings."""


def unwalked(value: T) -> T:
    """`value` wrapped in Prefect's `quote`: the task receives it as is, and Prefect does not walk it.

    Prefect otherwise visits every element of a task's parameters looking for futures to wait on; our
    parameters hold none, and walking thousands of session ids per task costs real time.
    """
    return cast(T, quote(value))


def load_failed(summary: pipeline.LoadSummary) -> LoadFailed:
    """The flow's error after everything was committed, when sessions failed or the token was refused."""
    stopped = f"; {summary.stop_message}" if summary.stop_message else ""
    error = LoadFailed.of(summary)
    error.message = summary.line() + stopped
    error.args = (error.message,)
    return error


async def resolve_token() -> str:
    """`PIPER_API_TOKEN`, else the Prefect Secret block `piper-api-token`."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    from prefect.blocks.system import Secret

    try:
        secret = cast("Secret[str]", await Secret.aload(TOKEN_BLOCK))
    except ValueError:
        raise PiperConfigError(
            f"no API token: set {TOKEN_ENV} or create the Prefect Secret block '{TOKEN_BLOCK}'"
        ) from None
    return str(secret.get())


@task(name="fetch-and-land", cache_policy=NO_CACHE, persist_result=False)
async def fetch_and_land(
    session_ids: list[str], settings: LoadSettings, target: LoadTarget, stream: str,
    session_info: dict[str, SessionInfo] | None = None, budget: scale.ApiBudget | None = None,
) -> list[ChunkReport]:
    """Fetch up to `sessions_per_task` sessions in one stream and land them as parts of the load, chunk by chunk.

    `session_info`: what the sessions list says about these sessions (the runs' agent columns).
    `budget`: on a Dask cluster, the task's share of the API budget, held while it fetches (the flow's lease
    on it, which the task renews: `flows/budget.py`); the task then keeps what an earlier run of it landed
    and fetches only the rest (`flows/scale.py`).
    """
    if budget is None:
        reports = await fetch_stream(session_ids, settings, target, stream, session_info)
    else:
        landed = resume_stream(landing_root(target.landing_root), target.load_id, stream)
        rest = [session_id for session_id in session_ids if session_id not in landed.session_ids]
        reports = scale.reports_of(landed)
        if landed.chunks:
            get_run_logger().info("run again: %d sessions landed by an earlier run of this task are kept, %d to fetch "
                                  "as %s", len(landed.session_ids), len(rest), landed.next_stream)
        if rest:
            started = time.monotonic()
            holding = scale.occupying(budget) if budget.lease_id is None else keeping(budget.lease_id)
            async with holding, backoff.shared_gate(settings.org_id) as gate:
                reports += await fetch_stream(rest, settings, target, landed.next_stream, session_info,
                                              concurrency=budget.slots, gate=gate)
            get_run_logger().info("the org's API pause %s: %d reads and %d writes of it in %.1f s", gate.name,
                                  gate.reads, gate.writes, time.monotonic() - started)
    outcomes: Counter[str] = Counter()
    for report in reports:
        outcomes.update(report.outcomes)
    get_run_logger().info("%d sessions in %d chunks: %s", len(session_ids), len(reports), dict(outcomes))
    return reports


async def fetch_stream(
    session_ids: list[str], settings: LoadSettings, target: LoadTarget, stream: str,
    session_info: dict[str, SessionInfo] | None, *, concurrency: int | None = None, gate: BackoffGate | None = None,
) -> list[ChunkReport]:
    """The task's fetch: one stream of requests over one client, its chunks landed as parts `<stream>-0001`, ..."""
    sink = functools.partial(land_chunk, target)
    async with pipeline.make_client(settings, await resolve_token(), concurrency=concurrency, gate=gate) as client:
        with pipeline.fewer_gc_passes():
            return await pipeline.fetch_and_land(client, session_ids, settings, sink=sink, stream=stream,
                                                 load_id=target.load_id, loaded_at=target.loaded_at,
                                                 session_info=session_info)


@task(name="refresh-scenarios", cache_policy=NO_CACHE, persist_result=False)
async def refresh_scenarios(
    referenced: list[str], stored: dict[str, datetime | None], settings: LoadSettings, target: LoadTarget,
    budget: scale.ApiBudget | None = None, wait_seconds: float = scale.REFRESH_WAIT_SECONDS,
) -> ScenarioReport:
    """Land the definitions of the new and moved scenarios among `referenced` as a part of the load.

    `budget`: on a Dask load, the refresh's slots of the org's API budget, held while it sends, and waited
    for at most `wait_seconds` (a dead task's slots come back when their lease lapses); when they do not
    come, nothing is sent and the scenarios wait for the next load.
    """
    sink = functools.partial(land_chunk, target)
    token = await resolve_token()
    if budget is None:
        async with pipeline.make_client(settings, token) as client:
            report = await dimensions.refresh_scenarios(client, referenced, stored, sink, load_id=target.load_id,
                                                        loaded_at=target.loaded_at)
    else:
        from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError

        try:
            async with scale.occupying(budget, wait_seconds), backoff.shared_gate(settings.org_id) as gate, \
                    pipeline.make_client(settings, token, concurrency=budget.slots, gate=gate) as client:
                report = await dimensions.refresh_scenarios(client, referenced, stored, sink,
                                                            load_id=target.load_id, loaded_at=target.loaded_at)
        except AcquireConcurrencySlotTimeoutError:
            report = ScenarioReport.skipped(referenced, f"{budget.slots} slots of the API budget {budget.name} "
                                                        f"stayed taken for {wait_seconds:g} s")
    get_run_logger().info(report.line())
    return report


async def land_scenarios(
    load: LoadTransaction, settings: LoadSettings, reports: list[ChunkReport], slots: int | None = None
) -> ScenarioReport:
    """The flow's side of `pipeline.land_scenarios`: the stored state read here, the requests in a task.

    `slots`: on a Dask load, the share of the org's API budget the refresh takes (a fetch task's share, so
    that the slots a dead task's lease still holds do not keep it waiting).
    """
    referenced = pipeline.referenced_scenarios(reports)
    if any(report.stop_message for report in reports):
        return ScenarioReport.skipped(referenced, "the load stopped")
    if not referenced:
        return ScenarioReport()
    stored = dimensions.stored_scenarios(load, referenced)
    budget = scale.ApiBudget(scale.budget_name(settings.org_id), min(slots, len(referenced))) \
        if slots is not None else None
    return await refresh_scenarios(unwalked(referenced), unwalked(stored), settings, load.target, budget)

async def land_in_tasks(
    load: LoadTransaction, plan: pipeline.LoadPlan, settings: LoadSettings,
    session_info: Mapping[str, SessionInfo] | None = None,
) -> tuple[list[ChunkReport], ScenarioReport]:
    """The flow's fetch: the skipped sessions recorded, one `fetch-and-land` task per `sessions_per_task`,
    then the scenario definitions of the runs landed (`session_info`: see `pipeline.run_load_async`).

    A stop (a refused token, ...) in one task records the sessions of the later tasks as `failed`, unsent.
    """
    reports = [pipeline.land_skipped(load.land, plan)]
    info = dimensions.session_info_for(load, plan.to_fetch, session_info)
    load.watch()  # the tasks' chunks go into the load's DuckDB transaction as they land
    if settings.on_dask:
        dask_reports, slots = await land_on_dask(load, plan, settings, info)
        return reports + dask_reports, await land_scenarios(load, settings, reports + dask_reports, slots)
    slices = plan.slices(settings.sessions_per_task)
    for index, sessions in enumerate(slices):
        task_info = {session_id: info[session_id] for session_id in sessions if session_id in info}
        task_reports = await fetch_and_land(unwalked(sessions), settings, load.target, f"task-{index + 1:04d}",
                                            unwalked(task_info))
        reports.extend(task_reports)
        stop_reason = next((r.stop_reason for r in task_reports if r.stop_reason is not None), None)
        if stop_reason is not None:
            reports.append(pipeline.land_unsent(load.land, plan, slices[index + 1 :], stop_reason))
            break
    return reports, await land_scenarios(load, settings, reports)


async def land_on_dask(
    load: LoadTransaction, plan: pipeline.LoadPlan, settings: LoadSettings, info: Mapping[str, SessionInfo]
) -> tuple[list[ChunkReport], int]:
    """The fetch tasks on the settings' Dask cluster, within the org's API budget (`flows/scale.py`).

    Every session to fetch ends in a report: landed by a task, or recorded `failed` when its task failed
    twice or was never started after a stop. Returns the reports and a task's share of the budget.
    """
    name = scale.budget_name(settings.org_id)
    await scale.set_budget(name, settings.concurrency)
    if not plan.to_fetch:
        return [], settings.concurrency
    runner = scale.task_runner(settings)

    def on_cluster() -> tuple[list[list[str]], scale.Outcome, int]:
        with runner:
            parallel = scale.cluster_threads(runner)
            slices = scale.task_slices(plan.to_fetch, settings.sessions_per_task, parallel)
            slots = scale.share(settings.concurrency, min(parallel, len(slices)))
            logger = get_run_logger()
            logger.info("%d fetch tasks on %d Dask worker threads, %d requests in flight each, %d at most in all "
                        "(global concurrency limit %s)", len(slices), parallel, slots, settings.concurrency, name)
            with TaskLeases(name, slots, settings.concurrency, log=logger) as leases:

                def submit(index: int, attempt: int) -> PrefectDaskFuture[list[ChunkReport]]:
                    sessions = slices[index]
                    task_info = {session_id: info[session_id] for session_id in sessions if session_id in info}
                    return runner.submit(fetch_and_land, {  # plain values: `runner.submit` does not unwrap `quote`
                        "session_ids": sessions, "settings": settings, "target": load.target,
                        "stream": scale.stream_name(index), "session_info": task_info,
                        "budget": scale.ApiBudget(name, slots, leases.lease_of(index)),
                    })

                outcome = scale.run_tasks(submit, len(slices), scale.WINDOW_PER_SLOT * parallel, leases)
            return slices, outcome, slots

    slices, outcome, slots = await asyncio.to_thread(on_cluster)
    reports = outcome.reports
    for index, why in sorted(outcome.failed.items()):
        stream = scale.stream_name(index)
        landed = resume_stream(landing_root(load.target.landing_root), load.load_id, stream)
        reports += scale.reports_of(landed)
        lost = [session_id for session_id in slices[index] if session_id not in landed.session_ids]
        reports.append(scale.land_lost(load.land, plan.load_id, lost, f"lost-{stream}",
                                       f"its fetch task failed {scale.ATTEMPTS} times ({why}); rerun the load"))
    if outcome.unsent:
        reports.append(pipeline.land_unsent(load.land, plan, [slices[i] for i in outcome.unsent],
                                            outcome.stop_reason or "the load stopped"))
    return reports, slots


async def publish_summary(key: str, markdown: str, load: pipeline.LoadSummary, line: str) -> None:
    """The run's artifact (`markdown`, then the verdict summary of the load's own runs), summary line and warnings.

    The summary was read by the commit (`LoadTransaction.commit(summarize=True)`) from the load's rows
    alone, so its cost follows the load, not the warehouse.
    """
    verdicts = load.verdicts_markdown or ""
    await acreate_markdown_artifact(key=key, markdown=markdown + "\n" + verdicts, description=line)
    logger = get_run_logger()
    logger.info(line)
    for warning in load.warnings:
        logger.warning(warning)


@flow(name="load_sessions", log_prints=False)
async def load_sessions(
    session_ids: list[str],
    org_id: str | None = None,
    base_url: str | None = None,
    out_dir: str | None = None,
    concurrency: int = 16,
    max_retries: int = 5,
    chunk_size: int = 500,
    format: OutputFormat | None = None,
    refetch: bool = False,
    lock_timeout: float = 30.0,
    http_client: HttpClient = "aiohttp",
    pricing_file: str | None = None,
    judge_model: str | None = None,
    sessions_per_task: int = 5000,
    max_consecutive_failures: int = 50,
    circuit_breaker_seconds: float = 30.0,
    with_agent_usage: bool = False,
    duckdb_storage_version: str = DEFAULT_STORAGE_VERSION,
    dask_address: str | None = None,
    dask_workers: int | None = None,
    database: str | None = None,
) -> pipeline.LoadSummary:
    """Load Piper scenario runs for these session ids into Parquet and DuckDB.

    Args:
        session_ids: Piper session ids; duplicates are loaded once.
        org_id: Piper organisation id; defaults to the PIPER_ORG_ID environment variable.
        base_url: Piper API base URL; defaults to PIPER_BASE_URL, then https://api.letpiper.com.
        out_dir: output folder for piper.duckdb and parquet/ on the worker; defaults to PIPER_OUT_DIR, then
            ~/.local/share/piper-etl/warehouse (under XDG_DATA_HOME when that is set). Or an object-store
            URL (s3://bucket/prefix, credentials from the environment) for parquet/ and current_state.sql.
        concurrency: requests in flight at once.
        max_retries: retries per session after the first attempt.
        chunk_size: sessions per Parquet part, at most; a chunk is landed while the next one is fetched.
        format: duckdb, parquet or both; null: both, or parquet with an object-store out_dir.
        refetch: fetch sessions whose stored run is already final again.
        lock_timeout: seconds the commit waits for another process holding piper.duckdb.
        http_client: aiohttp (default) or httpx, the HTTP library of the requests.
        pricing_file: TOML file of judge token prices (USD per million tokens) on the worker; defaults to
            PIPER_PRICING_FILE. Unset with no judge model: the prices stored by an earlier load stay.
        judge_model: the judge model whose price costs the runs; defaults to PIPER_JUDGE_MODEL, then to
            the only model of the pricing file.
        sessions_per_task: sessions per fetch task; each task streams its sessions over one connection
            pool, so a task boundary is the only point where requests drain.
        max_consecutive_failures: stop the load after this many requests in a row without a usable answer,
            over at least `circuit_breaker_seconds` (the circuit breaker); 0 turns it off.
        circuit_breaker_seconds: the least time without a usable answer before the circuit breaker trips.
        with_agent_usage: also fetch each fetched session's events (the agent's own runs, tokens and cost)
            into the table agent_usage; a stored final run without them is fetched again.
        duckdb_storage_version: DuckDB storage version of the DuckDB files a load creates (piper.duckdb, the
            BI snapshot), such as v1.4.0 or latest; the default opens in DuckDB 1.1.3 and later (docs/bi.md).
        dask_address: run the fetch tasks on the Dask scheduler at this address (tcp://HOST:8786); the
            workers must see out_dir at the same path. concurrency then holds for the whole cluster.
        dask_workers: run the fetch tasks on a local Dask cluster of this many worker processes; not with
            dask_address.
        database: the local DuckDB file of an object-store out_dir (needed for format duckdb or both there);
            its folder holds the load state. Not with a local out_dir, which keeps piper.duckdb in it.
    """
    given = dict(locals())
    settings = LoadSettings.resolve({name: value for name, value in given.items() if name != "session_ids"})
    pipeline.make_client(settings, await resolve_token())  # a missing or unusable token fails before any work
    logger = get_run_logger()
    ids = pipeline.unique_session_ids(session_ids)
    with open_load(settings.state_dir, format=settings.output, lock_timeout=settings.lock_timeout,
                   landing_url=settings.out_url, database=settings.database,
                   storage_version=settings.duckdb_storage_version,
                   expected_sessions=len(ids)) as load:
        plan = pipeline.plan_load(load, ids, settings)
        logger.info(
            "load %s: %d sessions requested, %d to fetch, %d skipped (already final)",
            plan.load_id, len(plan.requested), len(plan.to_fetch), len(plan.skipped),
        )
        reports, scenarios = await land_in_tasks(load, plan, settings)
        summary = pipeline.commit_load(load, plan, settings, reports, summarize=True, scenarios=scenarios)

    await publish_summary("piper-load-summary", load_summary_markdown(summary), summary, summary.line())
    if not summary.ok:
        raise load_failed(summary)
    return summary


@flow(name="sync_sessions", log_prints=False)
async def sync_sessions(
    org_id: str | None = None,
    base_url: str | None = None,
    out_dir: str | None = None,
    concurrency: int = 16,
    max_retries: int = 5,
    chunk_size: int = 500,
    format: OutputFormat | None = None,
    refetch: bool = False,
    lock_timeout: float = 30.0,
    http_client: HttpClient = "aiohttp",
    pricing_file: str | None = None,
    judge_model: str | None = None,
    sessions_per_task: int = 5000,
    max_consecutive_failures: int = 50,
    circuit_breaker_seconds: float = 30.0,
    with_agent_usage: bool = False,
    duckdb_storage_version: str = DEFAULT_STORAGE_VERSION,
    dask_address: str | None = None,
    dask_workers: int | None = None,
    database: str | None = None,
    full_scan: bool = False,
    since: str | None = None,
    until: str | None = None,
) -> sync.SyncSummary:
    """List the org's sessions and load the new, unfinished and updated ones, in one load with its sync_state row.

    Takes every parameter of `load_sessions` but `session_ids`, with the same meaning (written out below
    for the deployment's UI), and three of its own.

    Args:
        org_id: Piper organisation id; defaults to the PIPER_ORG_ID environment variable.
        base_url: Piper API base URL; defaults to PIPER_BASE_URL, then https://api.letpiper.com.
        out_dir: output folder for piper.duckdb and parquet/ on the worker; defaults to PIPER_OUT_DIR, then
            ~/.local/share/piper-etl/warehouse (under XDG_DATA_HOME when that is set). Or an object-store
            URL (s3://bucket/prefix, credentials from the environment) for parquet/ and current_state.sql.
        concurrency: requests in flight at once.
        max_retries: retries per session after the first attempt.
        chunk_size: sessions per Parquet part, at most; a chunk is landed while the next one is fetched.
        format: duckdb, parquet or both; null: both, or parquet with an object-store out_dir.
        refetch: fetch sessions whose stored run is already final again.
        lock_timeout: seconds the commit waits for another process holding piper.duckdb.
        http_client: aiohttp (default) or httpx, the HTTP library of the requests.
        pricing_file: TOML file of judge token prices (USD per million tokens) on the worker; defaults to
            PIPER_PRICING_FILE. Unset with no judge model: the prices stored by an earlier load stay.
        judge_model: the judge model whose price costs the runs; defaults to PIPER_JUDGE_MODEL, then to
            the only model of the pricing file.
        sessions_per_task: sessions per fetch task; each task streams its sessions over one connection
            pool, so a task boundary is the only point where requests drain.
        max_consecutive_failures: stop the load after this many requests in a row without a usable answer,
            over at least `circuit_breaker_seconds` (the circuit breaker); 0 turns it off.
        circuit_breaker_seconds: the least time without a usable answer before the circuit breaker trips.
        with_agent_usage: also fetch each fetched session's events (the agent's own runs, tokens and cost)
            into the table agent_usage; a stored final run without them is fetched again.
        duckdb_storage_version: DuckDB storage version of the DuckDB files a load creates (piper.duckdb, the
            BI snapshot), such as v1.4.0 or latest; the default opens in DuckDB 1.1.3 and later (docs/bi.md).
        dask_address: run the fetch tasks on the Dask scheduler at this address (tcp://HOST:8786); the
            workers must see out_dir at the same path. concurrency then holds for the whole cluster.
        dask_workers: run the fetch tasks on a local Dask cluster of this many worker processes; not with
            dask_address.
        database: the local DuckDB file of an object-store out_dir (needed for format duckdb or both there);
            its folder holds the load state. Not with a local out_dir, which keeps piper.duckdb in it.
        full_scan: read the whole sessions list instead of stopping below the watermark (the daily sync).
        since: only sessions created at or after this ISO 8601 date or time (UTC when it names no zone).
        until: only sessions created before this ISO 8601 date or time. A sync with since or until (a
            backfill) leaves the watermark where it was.
    """
    given = dict(locals())
    options = SyncOptions.parse(full_scan=full_scan, since=since, until=until)
    settings = LoadSettings.resolve({name: value for name, value in given.items() if name not in SYNC_PARAMETERS})
    token = await resolve_token()
    pipeline.make_client(settings, token)  # a missing or unusable token fails before any work
    logger = get_run_logger()
    with open_load(settings.state_dir, format=settings.output, lock_timeout=settings.lock_timeout,
                   landing_url=settings.out_url, database=settings.database,
                   storage_version=settings.duckdb_storage_version) as load:
        async with pipeline.make_client(settings, token) as client:
            sync_plan = await sync.begin_sync(load, client, options, with_agent_usage=settings.with_agent_usage)
        logger.info("sync %s: %s", load.load_id, sync_plan.describe())
        for problem in sync_plan.problems:
            logger.warning(problem)
        plan = pipeline.plan_load(load, sync_plan.queued, settings, refetch_ids=sync_plan.refetch)
        reports, scenarios = await land_in_tasks(load, plan, settings, sync_plan.session_info())
        summary = sync.finish_sync(load, sync_plan, plan, settings, reports, summarize=True, scenarios=scenarios)

    await publish_summary("piper-sync-summary",
                          sync_summary_markdown(summary) + "\n" + load_summary_markdown(summary.load),
                          summary.load, summary.line())
    if not summary.ok:
        failed = load_failed(summary.load) if not summary.load.ok else None
        message = failed.message if failed is not None else (
            "the sessions list kept changing while it was read: what was found is loaded, the watermark stays"
        )
        raise SyncFailed(message or summary.line(), sync_summary=summary)
    return summary
