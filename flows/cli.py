"""The `piper-etl` command line: load, demo and fake-api."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO, cast

import duckdb

from connector.client import HTTP_CLIENTS
from connector.errors import TOKEN_ENV, PiperConfigError
from flows.analytics_cli import add_analytics_commands, add_pricing_arguments
from flows.analytics_cli import run as run_analytics_command
from flows.pipeline import LoadSummary
from flows.settings import DEFAULT_BASE_URL, DEFAULT_OUT, FORMATS, LoadSettings, token_from_env
from warehouse.store import WarehouseLocked

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3
DEMO_TOKEN = "pat_fake_demo_token"


class UsageError(Exception):
    """A mistake in how the command was called: exit status 2."""


def read_session_ids(lines: Iterable[str]) -> list[str]:
    """Session ids from a file: one a line, stripped; blank lines and `#` comments ignored."""
    ids = []
    for line in lines:
        value = line.strip()
        if value and not value.startswith("#"):
            ids.append(value)
    return ids


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="piper-etl",
        description="Load Piper scenario-run results into Parquet files and a DuckDB database.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    load = commands.add_parser(
        "load",
        help="fetch the scenario runs of some sessions and load them",
        description=f"Fetch the scenario run of each session from the Piper API and load it. "
        f"The token is read from {TOKEN_ENV}.",
    )
    load.add_argument("session_ids", nargs="*", metavar="SESSION_ID", help="session ids to load")
    load.add_argument("--sessions-file", metavar="FILE", help="file of session ids, one a line ('-' for stdin)")
    load.add_argument("--org-id", help="Piper org id (default: env PIPER_ORG_ID)")
    load.add_argument("--base-url", help=f"API base URL (default: env PIPER_BASE_URL, else {DEFAULT_BASE_URL})")
    load.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default ./{DEFAULT_OUT})")
    load.add_argument("--concurrency", type=int, default=16, help="requests in flight at once (default 16)")
    load.add_argument("--max-retries", type=int, default=5, help="retries per session (default 5)")
    load.add_argument("--chunk-size", type=int, default=500, help="sessions per Parquet part, at most (default 500)")
    load.add_argument("--format", choices=FORMATS, default="both", help="what to write (default both)")
    load.add_argument("--refetch", action="store_true", help="fetch sessions whose stored run is final again")
    load.add_argument(
        "--http-client", choices=HTTP_CLIENTS, default="aiohttp",
        help="HTTP library for the requests (default aiohttp; httpx is slower at high concurrency)",
    )
    load.add_argument(
        "--lock-timeout", type=float, default=30.0, metavar="SECONDS",
        help="how long to wait for another process to release piper.duckdb (default 30)",
    )
    load.add_argument(
        "--max-consecutive-failures", type=int, default=50, metavar="N",
        help="stop the load after N requests in a row without a usable answer, over at least 30 s "
        "(default 50; 0 turns it off)",
    )
    load.add_argument(
        "--sessions-per-task", type=int, default=5000,
        help="sessions per fetch task of the Prefect engine (default 5000)",
    )
    load.add_argument(
        "--engine",
        choices=("auto", "local", "prefect"),
        default="auto",
        help="'prefect' runs the load_sessions flow (run history in your Prefect server); 'local' runs the same "
        "steps in this process with no Prefect; 'auto' (default) picks prefect when PREFECT_API_URL is set",
    )
    add_pricing_arguments(load)
    add_analytics_commands(commands)

    demo = commands.add_parser(
        "demo", help="run a load against a simulated Piper API", description="Start the simulated Piper API "
        "on a free loopback port, load its sessions over HTTP, and print what landed."
    )
    demo.add_argument("--sessions", type=int, default=200, help="sessions to simulate (default 200)")
    demo.add_argument("--out", default="piper-demo", metavar="DIR", help="output folder (default ./piper-demo)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the synthetic data (default 7)")

    fake = commands.add_parser(
        "fake-api",
        help="serve the simulated Piper API",
        description=f"Serve the simulated Piper API on 127.0.0.1. It accepts the token in {TOKEN_ENV} "
        "(or the demo token when that is unset).",
    )
    fake.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    fake.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    fake.add_argument("--sessions", type=int, default=100, help="number of sessions with a run")
    fake.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    fake.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500/502/503/504")
    fake.add_argument("--rate-limit-rate", type=float, default=0.0, help="share of requests answered 429")
    fake.add_argument("--retry-after", default="1", help="Retry-After value sent with 429 (seconds or HTTP date)")
    fake.add_argument("--truncate-rate", type=float, default=0.0, help="share of bodies cut short")
    fake.add_argument("--payload-kb", type=float, default=12.0, help="average payload size in KB")
    fake.add_argument("--sessions-out", metavar="FILE", help="write the known session ids to FILE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "load":
            return _load(args, sys.stdin)
        if args.command in ("report", "sql"):
            return run_analytics_command(args, sys.stdin)
        if args.command == "demo":
            from flows.demo import run_demo

            return run_demo(sessions=args.sessions, out_dir=Path(args.out), seed=args.seed)
        return _fake_api(args)
    except (UsageError, PiperConfigError) as exc:
        print(f"piper-etl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WarehouseLocked as exc:
        print(f"piper-etl {args.command}: error: {exc}", file=sys.stderr)
        print("  the fetched data is kept in the Parquet landing files; the next load merges it", file=sys.stderr)
        return EXIT_FAILED
    except (OSError, duckdb.Error) as exc:
        print(f"piper-etl {args.command}: error: {_describe_io_error(exc)}", file=sys.stderr)
        print("  earlier loads are intact; fix the cause and rerun", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("piper-etl: interrupted; committed loads are intact, rerun to finish", file=sys.stderr)
        return 130


def _describe_io_error(exc: OSError | duckdb.Error) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"cannot write the output ({exc.strerror}){where}"
    return f"cannot write the output: {exc}"


def _collect_ids(args: argparse.Namespace, stdin: TextIO) -> list[str]:
    ids = list(args.session_ids)
    if args.sessions_file == "-":
        ids += read_session_ids(stdin)
    elif args.sessions_file:
        try:
            with open(args.sessions_file, encoding="utf-8") as handle:
                ids += read_session_ids(handle)
        except OSError as exc:
            raise UsageError(f"cannot read sessions file {args.sessions_file!r}: {exc.strerror}") from None
    if not ids:
        raise UsageError("no session ids: pass them as arguments or with --sessions-file FILE")
    return ids


SETTINGS_FLAGS = {
    "org_id": "org_id", "base_url": "base_url", "out_dir": "out", "concurrency": "concurrency",
    "max_retries": "max_retries", "chunk_size": "chunk_size", "format": "format", "refetch": "refetch",
    "lock_timeout": "lock_timeout", "http_client": "http_client", "pricing_file": "pricing",
    "judge_model": "judge_model", "sessions_per_task": "sessions_per_task",
    "max_consecutive_failures": "max_consecutive_failures",
}
"""Each load setting and the `load` flag (argparse dest) that sets it: every flag reaches both engines."""


def _load(args: argparse.Namespace, stdin: TextIO) -> int:
    ids = _collect_ids(args, stdin)
    settings = LoadSettings.resolve({name: getattr(args, dest) for name, dest in SETTINGS_FLAGS.items()})
    engine = args.engine
    if engine == "auto":
        engine = "prefect" if os.environ.get("PREFECT_API_URL") else "local"
    if engine == "prefect":
        summary = _load_with_prefect(ids, settings)
    else:
        token = token_from_env()
        summary = _load_local(ids, settings, token)
    return report_summary(summary)


def report_summary(summary: LoadSummary, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print the summary line (stdout) and the first failures (stderr); return the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    for session_id, reason in summary.failures:
        print(f"  {session_id!r}: {reason}", file=err)
    for warning in summary.warnings:
        print(f"piper-etl load: warning: {warning}", file=err)
    if summary.stop_message:
        print(f"piper-etl load: {summary.stop_message}", file=err)
    print(summary.line(), file=out)
    if summary.token_refused:
        return EXIT_AUTH
    return EXIT_OK if summary.ok else EXIT_FAILED


def _load_local(ids: list[str], settings: LoadSettings, token: str) -> LoadSummary:
    from flows.pipeline import LoadPlan, run_load

    if not sys.stderr.isatty():
        return run_load(ids, settings, token)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("loading"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    ) as progress:
        bar = progress.add_task("sessions", total=None)

        def on_plan(plan: LoadPlan) -> None:
            progress.update(bar, total=len(plan.to_fetch))

        return run_load(ids, settings, token, on_plan=on_plan, on_session=lambda _: progress.advance(bar))


def _load_with_prefect(ids: list[str], settings: LoadSettings) -> LoadSummary:
    from flows.prefect_flow import LoadFailed, load_sessions

    try:
        flow_run: Any = load_sessions(session_ids=ids, **settings.as_parameters())  # type: ignore[call-overload]
        return cast(LoadSummary, asyncio.run(flow_run))
    except LoadFailed as exc:
        return exc.summary


def _fake_api(args: argparse.Namespace) -> int:
    from connector.fake_api import FakeDataset, FakePiper, run_forever

    dataset = FakeDataset.generate(seed=args.seed, sessions=args.sessions, payload_kb=args.payload_kb)
    token = os.environ.get(TOKEN_ENV) or DEMO_TOKEN
    state = FakePiper(
        dataset=dataset,
        token=token,
        latency_ms=args.latency_ms,
        error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        retry_after=args.retry_after,
        truncate_rate=args.truncate_rate,
        fault_seed=args.seed,
    )
    if args.sessions_out:
        Path(args.sessions_out).write_text("\n".join(dataset.session_ids) + "\n", encoding="utf-8")
    which = f"the value of {TOKEN_ENV}" if os.environ.get(TOKEN_ENV) else f"the demo token {DEMO_TOKEN}"
    print(
        f"simulated Piper API on http://127.0.0.1:{args.port} (org {dataset.org_id}, "
        f"{len(dataset.session_ids)} sessions); it accepts {which}. Ctrl-C stops it.",
        file=sys.stderr,
    )
    run_forever(state, port=args.port)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
