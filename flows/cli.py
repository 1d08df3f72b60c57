"""The `piper-etl` command line: load, compact, save-token, demo, fake-api (report, sql: `flows/analytics_cli.py`)."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shlex
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO, cast

from connector.client import HTTP_CLIENTS
from connector.errors import TOKEN_ENV
from connector.urls import printable_session_id, session_id_bytes
from flows.analytics_cli import add_analytics_commands, add_pricing_arguments
from flows.analytics_cli import run as run_analytics_command
from flows.errors import (
    PROG,
    LoadFailed,
    OutputClosed,
    PrefectUnavailable,
    SyncFailed,
    UsageError,
    translate,
    without_credentials,
)
from flows.pipeline import LoadSummary
from flows.settings import (
    DEFAULT_BASE_URL,
    ENVIRONMENT,
    FORMATS,
    TOKEN_BLOCK,
    LoadSettings,
    configured_out_dir,
    token_from_env,
)
from warehouse import objstore
from warehouse.report_text import terminal_safe
from warehouse.store import DEFAULT_STORAGE_VERSION

if TYPE_CHECKING:
    from flows.settings import SyncOptions
    from flows.sync import SyncSummary

EXIT_OK = 0
FLOWS = {"load": "load_sessions", "sync": "sync_sessions"}
DEMO_TOKEN = "pat_fake_demo_token"


def read_session_ids(lines: Iterable[str]) -> list[str]:
    """Session ids from a file: one a line, stripped; blank lines and `#` comments ignored."""
    ids = []
    for line in lines:
        value = line.strip()
        if value and not value.startswith("#"):
            ids.append(value)
    return ids


def read_id_file(binary: IO[bytes]) -> list[str]:
    """`read_session_ids` over bytes (a sessions file, stdin): what is not UTF-8 stays, escaped.

    Bytes that are not UTF-8 become lone surrogates (`surrogateescape`, as Python does for argv), so
    that one id is refused with its bytes shown while the others load; a UTF-8 byte order mark is dropped.
    """
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape")
    try:
        return read_session_ids(text)
    finally:
        text.detach()  # leaves `binary` open: stdin stays usable, a file is closed by its opener


class HelpWithDefaults(argparse.HelpFormatter):
    """Help that ends each option with its default, unless its text already names it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default is argparse.SUPPRESS
        if action.option_strings and not unset and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """An argument parser whose subcommands' help shows defaults too."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpWithDefaults)
        super().__init__(**kwargs)


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import version

        print(f"{PROG} {version('piper-etl')}")  # on stdout, as argparse's own version action
        parser.exit()


def output_folder(value: str) -> str:
    """`--out` of a command that writes, checked before any request: a folder, or one we may create.

    The nearest existing path (the folder itself, or the parent it would be created in) must be a
    folder we can write to, so that a load never fetches what it could not land. An object-store URL
    (`s3://bucket/prefix`) is checked by the load's settings and by the load itself, before any request.
    """
    if objstore.is_url(value):
        return value
    for path in (Path(value), *Path(value).parents):
        if path.exists():
            if not path.is_dir():
                raise argparse.ArgumentTypeError(f"{str(path)!r} is a file, not a folder")
            if not os.access(path, os.W_OK | os.X_OK):
                raise argparse.ArgumentTypeError(f"{str(path)!r} is not writable")
            break
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Load Piper scenario-run results into Parquet files and a DuckDB database.",
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    load = commands.add_parser(
        "load",
        help="fetch the scenario runs of some sessions and load them",
        description=f"Fetch the scenario run of each session from the Piper API and load it. "
        f"The token is read from {TOKEN_ENV}.",
    )
    load.add_argument("session_ids", nargs="*", metavar="SESSION_ID", help="session ids to load")
    load.add_argument("--sessions-file", metavar="FILE", help="file of session ids, one a line ('-' for stdin)")
    add_settings_arguments(load, "load")
    add_analytics_commands(commands)

    sync = commands.add_parser(
        "sync",
        help="list the org's sessions and load the new, unfinished and updated ones",
        description="List the sessions of the org, queue every session with a scenario run that is new, whose "
        "stored run is not final, or whose updated_at moved, and load them in one load with a sync_state row. "
        f"The token is read from {TOKEN_ENV}.",
    )
    sync.add_argument("--since", metavar="ISO", help="only sessions created at or after this UTC date or time")
    sync.add_argument("--until", metavar="ISO", help="only sessions created before this UTC date or time")
    sync.add_argument("--full-scan", action="store_true",
                      help="read the whole list instead of stopping below the watermark")
    sync.add_argument("--dry-run", action="store_true",
                      help="list and print what would be loaded; write nothing")
    add_settings_arguments(sync, "sync")

    compact = commands.add_parser(
        "compact", help="compact the Parquet files of an output folder",
        description="Merge the Parquet parts of the committed loads into few files, atomically for readers. "
        "Loads also do this by themselves every few loads (see --auto). The settings given are stored in the "
        "folder and apply to every later compaction.",
    )
    compact.add_argument("--out", type=output_folder, default=str(configured_out_dir()), metavar="DIR",
                         help="output folder (env PIPER_OUT_DIR)")
    compact.add_argument("--auto", choices=("on", "off"), help="whether loads compact by themselves (stored)")
    compact.add_argument(
        "--keep-superseded", choices=("on", "off"),
        help="keep the rows that are no longer current (replaced run versions and dimension rows), for full "
        "history (stored)",
    )
    compact.add_argument(
        "--grace-seconds", type=float, metavar="SECONDS",
        help="how long files replaced by a compaction stay for readers of an older current_state.sql (stored)",
    )
    compact.add_argument(
        "--database", metavar="PATH",
        help="with an object-store --out (s3://BUCKET/PREFIX): the --database its loads use; its folder holds their "
        "state and locks (docs/scale-out.md)",
    )

    commands.add_parser(
        "save-token", help="save the Piper API token as the Prefect Secret block the flows read",
        description=f"Read the Piper API token from a hidden prompt (or stdin) and save it in the Prefect server "
        f"at PREFECT_API_URL as the Secret block '{TOKEN_BLOCK}', replacing an earlier one. Flow runs read it "
        f"when their worker has no {TOKEN_ENV}.",
    )

    demo = commands.add_parser(
        "demo", help="run a load against a simulated Piper API", description="Start the simulated Piper API "
        "on a free loopback port, load its sessions over HTTP, and print what landed."
    )
    demo.add_argument("--sessions", type=int, default=200, help="sessions to simulate")
    demo.add_argument("--out", type=output_folder, default="piper-demo", metavar="DIR", help="output folder")
    demo.add_argument("--seed", type=int, default=7, help="seed of the synthetic data")

    fake = commands.add_parser(
        "fake-api",
        help="serve the simulated Piper API",
        description=f"Serve the simulated Piper API on 127.0.0.1. It accepts the token in {TOKEN_ENV} "
        "(or the demo token when that is unset).",
    )
    fake.add_argument("--port", type=int, default=8765, help="port")
    fake.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    fake.add_argument("--sessions", type=int, default=100, help="number of sessions with a run")
    fake.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request, in ms")
    fake.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500/502/503/504")
    fake.add_argument("--rate-limit-rate", type=float, default=0.0, help="share of requests answered 429")
    fake.add_argument("--retry-after", default="1", help="Retry-After value sent with 429 (seconds or HTTP date)")
    fake.add_argument("--truncate-rate", type=float, default=0.0, help="share of bodies cut short")
    fake.add_argument("--payload-kb", type=float, default=12.0, help="average payload size in KB")
    fake.add_argument("--runless-sessions", type=int, default=0,
                      help="more sessions listed without a scenario run (by-session 404)")
    fake.add_argument("--list-order", choices=("newest_first", "oldest_first", "unordered"), default="newest_first",
                      help="order of the sessions list")
    fake.add_argument("--sessions-out", metavar="FILE", help="write the known session ids to FILE")
    return parser


def add_settings_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """The load's settings flags (`SETTINGS_FLAGS`) and `--engine`, shared by `load` and `sync`."""
    parser.add_argument(
        "--org-id", default=os.environ.get(ENVIRONMENT["org_id"]), help="Piper org id (env PIPER_ORG_ID)"
    )
    parser.add_argument(
        "--base-url", default=os.environ.get(ENVIRONMENT["base_url"], DEFAULT_BASE_URL),
        help="API base URL (env PIPER_BASE_URL)",
    )
    parser.add_argument(
        "--out", type=output_folder, default=str(configured_out_dir()), metavar="DIR",
        help="output folder, or s3://BUCKET/PREFIX for the Parquet files (env PIPER_OUT_DIR; docs/scale-out.md)",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at once")
    parser.add_argument("--max-retries", type=int, default=5, help="retries per session")
    parser.add_argument("--chunk-size", type=int, default=500, help="sessions per Parquet part, at most")
    parser.add_argument("--format", choices=FORMATS,
                        help="what to write (default: both; parquet with an object-store --out)")
    parser.add_argument("--refetch", action="store_true", help="fetch sessions whose stored run is final again")
    parser.add_argument(
        "--http-client", choices=HTTP_CLIENTS, default="aiohttp",
        help="HTTP library for the requests (httpx is slower at high concurrency)",
    )
    parser.add_argument(
        "--lock-timeout", type=float, default=30.0, metavar="SECONDS",
        help="how long to wait for another process to release piper.duckdb",
    )
    parser.add_argument(
        "--max-consecutive-failures", type=int, default=50, metavar="N",
        help="stop the load after N requests in a row without a usable answer (0: never); see "
        "--circuit-breaker-seconds",
    )
    parser.add_argument(
        "--circuit-breaker-seconds", type=float, default=30.0, metavar="SECONDS",
        help="... and only once that long has passed without a usable answer",
    )
    parser.add_argument(
        "--sessions-per-task", type=int, default=5000,
        help="sessions per fetch task of the Prefect engine",
    )
    parser.add_argument(
        "--with-agent-usage", action="store_true",
        help="also fetch each session's events: the agent's own runs, tokens and cost, into agent_usage",
    )
    parser.add_argument(
        "--duckdb-storage-version", default=DEFAULT_STORAGE_VERSION, metavar="VERSION",
        help="DuckDB storage version of the DuckDB files a load creates, such as v1.4.0 or latest; the default "
        f"{DEFAULT_STORAGE_VERSION} opens in DuckDB {DEFAULT_STORAGE_VERSION[1:]} and later (docs/bi.md)",
    )
    parser.add_argument(
        "--dask-address", metavar="tcp://HOST:PORT",
        help="run the fetch tasks on this running Dask scheduler (the Prefect engine; docs/scale-out.md)",
    )
    parser.add_argument(
        "--dask-workers", type=int, metavar="N",
        help="run the fetch tasks on a local Dask cluster of N worker processes (the Prefect engine)",
    )
    parser.add_argument(
        "--database", metavar="PATH",
        help="with an object-store --out (s3://BUCKET/PREFIX): the local DuckDB file, needed for --format duckdb or "
        "both; its folder holds the load state (docs/scale-out.md)",
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "local", "prefect"),
        default="auto",
        help=f"'prefect' runs the {FLOWS[command]} flow (run history in your Prefect server); 'local' runs the same "
        "steps in this process with no Prefect; 'auto' picks prefect when PREFECT_API_URL is set",
    )
    add_pricing_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `piper-etl` command; every anticipated failure ends here as one message and its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except BaseException as exc:  # KeyboardInterrupt too; anything `translate` does not know propagates
        error = translate(exc)
        if error is None:
            raise
    if isinstance(error, OutputClosed):
        _silence_stdout()
    for line in error.lines(args.command):
        print(line, file=sys.stderr)
    return error.exit_status


def _run(args: argparse.Namespace) -> int:
    if args.command == "load":
        return _load(args, sys.stdin)
    if args.command == "sync":
        return _sync(args)
    if args.command in ("report", "sql"):
        return run_analytics_command(args, sys.stdin)
    if args.command == "check":
        from flows.check_cli import run_check

        return run_check(args)
    if args.command == "compact":
        return _compact(args)
    if args.command == "save-token":
        return _save_token(sys.stdin)
    if args.command == "demo":
        from flows.demo import run_demo

        return run_demo(sessions=args.sessions, out_dir=Path(args.out), seed=args.seed)
    return _fake_api(args)


def _silence_stdout() -> None:
    """Point stdout at /dev/null: its reader is gone, and the flush at exit must not fail again.

    What the Python documentation advises for BrokenPipeError (the signal module, "Note on SIGPIPE").
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):  # replaced by a test's capture
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _collect_ids(args: argparse.Namespace, stdin: TextIO) -> list[str]:
    ids = [session_id.strip() for session_id in args.session_ids]  # stripped as the lines of a file are
    if args.sessions_file == "-":
        buffer = getattr(stdin, "buffer", None)  # None: a test's StringIO, already text
        ids += read_session_ids(stdin) if buffer is None else read_id_file(buffer)
    elif args.sessions_file:
        try:
            with open(args.sessions_file, "rb") as handle:
                ids += read_id_file(handle)
        except OSError as exc:
            raise UsageError(f"cannot read sessions file {args.sessions_file!r}: {exc.strerror}") from None
    if not ids:
        raise UsageError("no session ids: pass them as arguments or with --sessions-file FILE")
    return ids


def _save_token(stdin: TextIO) -> int:
    from flows import token_block

    api_url = token_block.prefect_api_url()
    require_prefect_server()  # before the prompt: nobody types a token for a server that is down
    token_block.save_token(token_block.read_token(stdin))
    print(f"{PROG} save-token: saved the Secret block '{TOKEN_BLOCK}' at {without_credentials(api_url)}",
          file=sys.stderr)
    return EXIT_OK


SETTINGS_FLAGS = {
    "org_id": "org_id", "base_url": "base_url", "out_dir": "out", "concurrency": "concurrency",
    "max_retries": "max_retries", "chunk_size": "chunk_size", "format": "format", "refetch": "refetch",
    "lock_timeout": "lock_timeout", "http_client": "http_client", "pricing_file": "pricing",
    "judge_model": "judge_model", "sessions_per_task": "sessions_per_task",
    "max_consecutive_failures": "max_consecutive_failures", "circuit_breaker_seconds": "circuit_breaker_seconds",
    "with_agent_usage": "with_agent_usage",
    "duckdb_storage_version": "duckdb_storage_version",
    "dask_address": "dask_address", "dask_workers": "dask_workers", "database": "database",
}
"""Each load setting and the `load` flag (argparse dest) that sets it: every flag reaches both engines."""
LOAD_FLAGS = {name: "--" + dest.replace("_", "-") for name, dest in SETTINGS_FLAGS.items()}
"""Each load setting as the command line spells it, for the errors that name a setting."""


def _load(args: argparse.Namespace, stdin: TextIO) -> int:
    ids = _collect_ids(args, stdin)
    settings = LoadSettings.resolve(
        {name: getattr(args, dest) for name, dest in SETTINGS_FLAGS.items()}, names=LOAD_FLAGS
    )
    engine = choose_engine(args.engine, settings)
    if engine == "prefect":
        require_text_ids(ids)
        require_prefect_server()
        summary = _load_with_prefect(ids, settings)
    else:
        token = token_from_env()
        summary = _load_local(ids, settings, token)
    return report_summary(summary)


def choose_engine(engine: str, settings: LoadSettings) -> str:
    """`--engine` made definite: `auto` is `prefect` with PREFECT_API_URL set or a Dask setting given, else `local`.

    The Dask settings place the Prefect flow's fetch tasks, so they need that engine: with `local` they are
    a usage error rather than silently ignored.
    """
    dask_flag = "--dask-address" if settings.dask_address is not None else "--dask-workers"
    if engine == "local" and settings.on_dask:
        raise UsageError(f"{dask_flag} runs the fetch tasks on Dask through the Prefect flow: drop --engine local, "
                         f"or drop {dask_flag} to load in this process")
    if engine == "auto":
        return "prefect" if os.environ.get("PREFECT_API_URL") or settings.on_dask else "local"
    return engine


def _sync(args: argparse.Namespace) -> int:
    from flows.settings import SyncOptions

    settings = LoadSettings.resolve({name: getattr(args, dest) for name, dest in SETTINGS_FLAGS.items()},
                                    names=LOAD_FLAGS)
    options = SyncOptions.parse(full_scan=args.full_scan, since=args.since, until=args.until,
                                names=("--since", "--until"))
    engine = "local" if args.dry_run and args.engine == "auto" else choose_engine(args.engine, settings)
    if args.dry_run:
        from flows.sync import dry_run_async, dry_run_lines

        plan = asyncio.run(dry_run_async(settings, options, token_from_env()))
        for line in dry_run_lines(plan):
            print(line)
        return EXIT_OK
    if engine == "prefect":
        require_prefect_server()
        summary = _sync_with_prefect(settings, options)
    else:
        from flows.sync import run_sync

        summary = run_sync(settings, options, token_from_env())
    for problem in summary.plan.problems:
        print(f"{PROG} sync: warning: {terminal_safe(problem)}", file=sys.stderr)
    print(summary.line())
    code = report_summary(summary.load, command="sync")
    if not summary.ok:
        raise LoadFailed(
            f"the sessions list kept changing while it was read ({summary.plan.discovery.passes} passes); what was "
            "found is loaded, the watermark stays; rerun the sync"
        )
    return code


def _sync_with_prefect(settings: LoadSettings, options: SyncOptions) -> SyncSummary:
    from flows.prefect_flow import sync_sessions

    try:
        flow_run: Any = sync_sessions(**settings.as_parameters(), **options.as_parameters())  # type: ignore[call-overload]
        return cast("SyncSummary", asyncio.run(flow_run))
    except SyncFailed as exc:
        return exc.sync_summary


def report_summary(
    summary: LoadSummary, out: TextIO | None = None, err: TextIO | None = None, *, command: str = "load"
) -> int:
    """Print the first failures and the warnings (stderr), then the summary line (stdout).

    Returns 0 for a load that succeeded; raises `LoadFailed` (or `TokenRefused`) for one that did not,
    once everything is printed.
    """
    out, err = out or sys.stdout, err or sys.stderr
    for session_id, reason in summary.failures:
        print(f"  {session_id!r}: {terminal_safe(reason)}", file=err)  # a reason may quote what the API sent
    more = more_failures(summary)
    if more:
        print(more, file=err)
    for warning in summary.warnings:
        print(f"{PROG} {command}: warning: {warning}", file=err)
    if summary.stop_message:
        print(f"{PROG} {command}: {summary.stop_message}", file=err)
    try:
        print(summary.line(), file=out)
    except BrokenPipeError:  # `load | head -0`: the exit status must still say how the load went
        _silence_stdout()
    if not summary.ok:
        raise LoadFailed.of(summary)
    return EXIT_OK


def more_failures(summary: LoadSummary) -> str | None:
    """The line after the listed failures: how many more there are, and the query that lists them all.

    Sessions never sent because the load stopped are not listed (they share one reason) but are
    counted, as `failed` rows of `fetch_log`.
    """
    shown = len(summary.failures)  # the first few, as the load kept them
    rest = summary.outcomes["failed"] + summary.outcomes["rejected"] - shown
    if rest <= 0:
        return None
    what = f"{rest} more failed or rejected session" if shown else f"{rest} failed or rejected session"
    plural = "" if rest == 1 else "s"
    unsent = " (including those never sent after the load stopped)" if summary.stop_message else ""
    query = (
        f"SELECT session_id, outcome, error FROM fetch_log WHERE load_id = '{summary.load_id}' "
        "AND outcome IN ('failed', 'rejected')"
    )
    lead = "  ... and " if shown else "  "
    return f"{lead}{what}{plural}{unsent}: {PROG} sql --out {shlex.quote(str(summary.out_dir))} \"{query}\""


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
    from flows.prefect_flow import load_sessions

    try:
        flow_run: Any = load_sessions(session_ids=ids, **settings.as_parameters())  # type: ignore[call-overload]
        return cast(LoadSummary, asyncio.run(flow_run))
    except LoadFailed as exc:
        if exc.summary is None:
            raise
        return exc.summary


def require_text_ids(ids: list[str]) -> None:
    """A usage error for an id that is not UTF-8: a Prefect flow's parameters travel as JSON text.

    The local engine records such an id `rejected` and loads the rest; a flow run cannot even be created.
    """
    for session_id in ids:
        if printable_session_id(session_id) != session_id:
            raise UsageError(
                f"session id {session_id_bytes(session_id)!r} is not valid UTF-8, and a Prefect flow takes only "
                "text parameters: fix or drop it, or load with --engine local, which records it rejected and "
                "loads the rest"
            )


def require_prefect_server() -> None:
    """Raise `PrefectUnavailable` when PREFECT_API_URL is set and no server answers there.

    Without a URL, Prefect starts a temporary server of its own, so there is nothing to check. Any
    HTTP answer counts as reachable: only a failure to connect at all is reported here.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if not api_url:
        return

    async def problem() -> BaseException | None:
        async with get_client() as client:
            return await client.api_healthcheck()

    found = asyncio.run(problem())
    if isinstance(found, httpx.TransportError):
        raise PrefectUnavailable(api_url, str(found) or type(found).__name__)


def _compact(args: argparse.Namespace) -> int:
    """`piper-etl compact`: store the settings given, compact, print what was done (stdout) and the settings."""
    from warehouse import compact, compacted, landing, leases

    out_dir, root = _compaction_target(args.out, args.database)
    if not (root / "loads").is_dir() and not (root / compacted.COMPACTED_DIR / compacted.MANIFEST_FILE).exists():
        raise UsageError(f"nothing to compact in {args.out}: no Parquet loads under {root}; "
                         "run piper-etl load (with --format parquet or both) first")
    if isinstance(root, objstore.ObjectPath) and not leases.loads_dir(out_dir).is_dir():
        raise UsageError(f"no load into {args.out} kept its state in {out_dir}: pass the --database its loads use "
                         "(or none, if they use none), so that the compaction takes their locks")
    if args.grace_seconds is not None and not args.grace_seconds >= 0:
        raise UsageError("--grace-seconds must be 0 or more")
    settings = current = landing.read_manifest(root).settings
    if args.auto is not None:
        settings = replace(settings, auto=args.auto == "on")
    if args.keep_superseded is not None:
        settings = replace(settings, keep_superseded=args.keep_superseded == "on")
    if args.grace_seconds is not None:
        settings = replace(settings, grace_seconds=args.grace_seconds)
    if settings != current:
        compact.change_settings(out_dir, settings, root=root)
    done = compact.compact(out_dir, root=root)
    print(done.line())
    on_off = {True: "on", False: "off"}
    where = root.parent if isinstance(root, objstore.ObjectPath) else out_dir
    print(f"{PROG} compact: settings of {where}: auto {on_off[settings.auto]}, keep superseded "
          f"{on_off[settings.keep_superseded]}, grace {settings.grace_seconds:g} s", file=sys.stderr)
    return EXIT_OK


def _compaction_target(out: str, database: str | None) -> tuple[Path, objstore.Root]:
    """The local folder whose locks a compaction of `--out` takes, and the landing root it compacts.

    For an object-store `--out`, the loads' state folder: that of `--database`, else `objstore.state_folder`.
    """
    from warehouse.landing import PARQUET_DIR
    from warehouse.store import DATABASE_FILE

    if not objstore.is_url(out):
        if database is not None:
            raise UsageError("--database is for an object-store output (s3://BUCKET/PREFIX); a local output "
                             "folder keeps piper.duckdb in it")
        return Path(out), Path(out) / PARQUET_DIR
    url = out.rstrip("/")
    try:
        objstore.filesystem(url)  # the scheme is known and the URL carries no credentials
    except objstore.ObjectStoreError as exc:
        raise UsageError(f"--out: {exc}") from None
    if database is not None and Path(database).name != DATABASE_FILE:
        raise UsageError(f"--database must name a file called {DATABASE_FILE}, as for the loads, not {database!r}")
    state = Path(database).expanduser().parent if database is not None else objstore.state_folder(url)
    root = objstore.ObjectPath(url) / PARQUET_DIR
    objstore.check_reachable(root)
    return state, root


def _fake_api(args: argparse.Namespace) -> int:
    from connector.fake_api import FakeDataset, FakePiper, run_forever

    _require_free_port(args.port)
    dataset = FakeDataset.generate(seed=args.seed, sessions=args.sessions, payload_kb=args.payload_kb,
                                   runless_sessions=args.runless_sessions)
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
        list_order=args.list_order,
    )
    if args.sessions_out:
        try:
            Path(args.sessions_out).write_text("\n".join(dataset.session_ids) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write --sessions-out {args.sessions_out!r}: {exc.strerror}") from None
    which = f"the value of {TOKEN_ENV}" if os.environ.get(TOKEN_ENV) else f"the demo token {DEMO_TOKEN}"
    print(
        f"simulated Piper API on http://127.0.0.1:{args.port} (org {dataset.org_id}, "
        f"{len(dataset.session_ids)} sessions); it accepts {which}. Ctrl-C stops it.",
        file=sys.stderr,
    )
    run_forever(state, port=args.port)
    return EXIT_OK


def _require_free_port(port: int) -> None:
    """A usage error naming the port when another process listens on it (uvicorn would exit 3 after a log line)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        probe.bind(("127.0.0.1", port))
    except OSError as exc:
        raise UsageError(f"cannot serve on 127.0.0.1:{port} ({exc.strerror}); pick another --port") from None
    finally:
        probe.close()


if __name__ == "__main__":
    sys.exit(main())
