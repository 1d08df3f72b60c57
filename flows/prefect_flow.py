"""The Prefect flow `load_sessions`: the same load as `flows.pipeline`, with run history and artifacts.

Tasks are coarse: one task per `sessions_per_task` sessions (thousands), each streaming its requests
with asyncio concurrency and landing Parquet parts chunk by chunk as `run_load` does (inserting them into
the load's DuckDB transaction, opened by the flow before the first task), and one final task that
commits the load into DuckDB and publishes. The token is never a parameter: tasks read `PIPER_API_TOKEN`
or, failing that, the Prefect Secret block `piper-api-token`.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TypeVar, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from connector.errors import TOKEN_ENV, PiperConfigError
from flows import pipeline
from flows.chunks import ChunkReport
from flows.publish import analytics_markdown
from flows.report import load_summary_markdown
from flows.settings import DEFAULT_BASE_URL, DEFAULT_OUT, TOKEN_BLOCK, LoadSettings, OutputFormat
from warehouse.merge import LoadMerge

T = TypeVar("T")


def unwalked(value: T) -> T:
    """`value` wrapped in Prefect's `quote`: the task receives it as is, and Prefect does not walk it.

    Prefect otherwise visits every element of a task's parameters looking for futures to wait on; our
    parameters hold none, and walking thousands of session ids per task costs real time.
    """
    return cast(T, quote(value))


class LoadFailed(Exception):
    """Raised after everything was committed, when sessions failed or the token was refused."""

    def __init__(self, summary: pipeline.LoadSummary) -> None:
        self.summary = summary
        stopped = f"; {summary.stop_message}" if summary.stop_message else ""
        super().__init__(summary.line() + stopped)


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
    session_ids: list[str],
    settings: LoadSettings,
    load_id: str,
    loaded_at: datetime,
    first_chunk: int,
    merge: LoadMerge | None = None,
) -> list[ChunkReport]:
    """Fetch up to `sessions_per_task` sessions in one stream and land them as Parquet parts, chunk by chunk.

    With `merge` (the load's open DuckDB transaction), each landed chunk is inserted into it as well.
    """
    async with pipeline.make_client(settings, await resolve_token()) as client:
        with pipeline.fewer_gc_passes():
            reports = await pipeline.fetch_and_land(client, session_ids, settings, load_id=load_id,
                                                    loaded_at=loaded_at, first_chunk=first_chunk, merge=merge)
    outcomes: Counter[str] = Counter()
    for report in reports:
        outcomes.update(report.outcomes)
    get_run_logger().info("%d sessions in %d chunks: %s", len(session_ids), len(reports), dict(outcomes))
    return reports


@task(name="merge-load", cache_policy=NO_CACHE, persist_result=False)
def merge_load(
    plan: pipeline.LoadPlan, settings: LoadSettings, reports: list[ChunkReport], merge: LoadMerge | None = None
) -> pipeline.LoadSummary:
    """Commit the load into DuckDB with its `loads` row, then publish: nothing of it is visible before.

    `merge`: the load's transaction, opened by the flow before the fetch tasks inserted their chunks;
    without one (a large load, or the file was locked), the whole load is merged here. The summary
    carries the artifact's verdict tables when the load writes DuckDB.
    """
    return pipeline.finish_load(plan, settings, reports, merge, summarize=True)


@flow(name="load_sessions", log_prints=False)
async def load_sessions(
    session_ids: list[str],
    org_id: str | None = None,
    base_url: str | None = None,
    out_dir: str = DEFAULT_OUT,
    concurrency: int = 16,
    max_retries: int = 5,
    chunk_size: int = 500,
    sessions_per_task: int = 5000,
    format: OutputFormat = "both",
    refetch: bool = False,
    pricing_file: str | None = None,
    judge_model: str | None = None,
) -> pipeline.LoadSummary:
    """Load Piper scenario runs for these session ids into Parquet and DuckDB.

    Args:
        session_ids: Piper session ids; duplicates are loaded once.
        org_id: Piper organisation id; defaults to the PIPER_ORG_ID environment variable.
        base_url: Piper API base URL; defaults to PIPER_BASE_URL, then https://api.letpiper.com.
        out_dir: output folder for piper.duckdb and parquet/.
        concurrency: requests in flight at once.
        max_retries: retries per session after the first attempt.
        chunk_size: sessions per Parquet part; a chunk is landed while the next one is fetched.
        sessions_per_task: sessions per fetch task; each task streams its sessions over one connection
            pool, so a task boundary is the only point where requests drain.
        format: duckdb, parquet or both.
        refetch: fetch sessions whose stored run is already final again.
        pricing_file: TOML file of judge token prices (USD per million tokens) on the worker; defaults to
            PIPER_PRICING_FILE. Unset with no judge model: the prices stored by an earlier load stay.
        judge_model: the judge model whose price costs the runs; defaults to PIPER_JUDGE_MODEL, then to
            the only model of the pricing file.
    """
    settings = LoadSettings(
        org_id=org_id or os.environ.get("PIPER_ORG_ID", ""),
        base_url=base_url or os.environ.get("PIPER_BASE_URL", DEFAULT_BASE_URL),
        out_dir=Path(out_dir),
        concurrency=concurrency,
        max_retries=max_retries,
        chunk_size=chunk_size,
        format=format,
        refetch=refetch,
        pricing_file=pricing_file or os.environ.get("PIPER_PRICING_FILE") or None,
        judge_model=judge_model or os.environ.get("PIPER_JUDGE_MODEL") or None,
    )
    if sessions_per_task < 1:
        raise PiperConfigError("sessions_per_task must be at least 1")
    await resolve_token()  # fail before any work when no token can be found
    logger = get_run_logger()
    plan = pipeline.plan_load(session_ids, settings)
    logger.info(
        "load %s: %d sessions requested, %d to fetch, %d skipped (already final)",
        plan.load_id, len(plan.requested), len(plan.to_fetch), len(plan.skipped),
    )
    reports = [pipeline.land_skipped(plan, settings)]
    slices = plan.chunks(sessions_per_task)
    chunks_per_task = pipeline.chunks_for(sessions_per_task, settings.chunk_size)
    merge = pipeline.open_merge_before_fetching(plan, settings)  # one writer, one transaction, as run_load
    try:
        for index, sessions in enumerate(slices):
            task_reports = await fetch_and_land(
                unwalked(sessions), settings, plan.load_id, plan.started_at, 1 + index * chunks_per_task,
                unwalked(merge),
            )
            reports.extend(task_reports)
            stop_reason = next((r.stop_reason for r in task_reports if r.stop_reason is not None), None)
            if stop_reason is not None:
                reports.append(pipeline.land_unfetched(plan, settings, slices[index + 1 :], stop_reason))
                break
        summary = merge_load(unwalked(plan), settings, unwalked(reports), unwalked(merge))
    finally:
        if merge is not None:
            pipeline.close_merge(merge)  # after a commit only closes; else rolls back

    verdicts = summary.verdicts_markdown  # read by the merge task while it copied the snapshot
    if verdicts is None:  # a Parquet-only load
        verdicts = analytics_markdown(settings.out_dir)
    await acreate_markdown_artifact(
        key="piper-load-summary",
        markdown=load_summary_markdown(summary) + "\n" + verdicts,
        description=summary.line(),
    )
    logger.info(summary.line())
    for warning in summary.warnings:
        logger.warning(warning)
    if not summary.ok:
        raise LoadFailed(summary)
    return summary
