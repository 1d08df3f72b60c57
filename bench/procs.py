"""Child processes of the bench: pinned servers, legs run with `wait4` accounting, CPU of a process group."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO  # where children import piper-etl from: a snapshot of a git revision, or the working tree


def export_snapshot(ref: str, target: Path) -> str:
    """Export `ref` of this repository to `target`, with the running bench/ copied over it; returns the commit.

    Other engineers commit to the same working tree while the bench runs: measuring a snapshot means an
    edit made mid-run cannot leak into half of the legs. The bench itself (the instrument) comes from here.
    """
    commit = subprocess.run(["git", "rev-parse", "--short", f"{ref}^{{commit}}"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    shutil.rmtree(target / "bench", ignore_errors=True)
    shutil.copytree(REPO / "bench", target / "bench", ignore=shutil.ignore_patterns("results", "__pycache__"))
    return commit
_TICK = os.sysconf("SC_CLK_TCK")


_CORES = sorted(os.sched_getaffinity(0))  # read at import, before the orchestrator pins itself


def cpu_split() -> tuple[int | None, int | None]:
    """(client core, server core), or (None, None) when this machine has a single usable core."""
    if len(_CORES) < 2:
        return None, None
    return _CORES[0], _CORES[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in the process group `pgid`."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


@dataclass
class Child:
    """A long-running helper process (simulated API or Prefect server) in its own process group."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    start_seconds: float

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, any_status: bool) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError:
            if any_status:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout:g} s")


def start_child(name: str, argv: list[str], health_url: str, *, env: dict[str, str] | None = None,
                cpu: int | None, log: Path, timeout: float = 120, any_status: bool = False) -> Child:
    """Start `argv` pinned to `cpu` in a new process group; wait until `health_url` answers 200 (any status)."""
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "wb") as sink:
        proc = subprocess.Popen(argv, cwd=SOURCE, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    parts = urllib.parse.urlsplit(health_url)
    child = Child(name, proc, f"{parts.scheme}://{parts.netloc}", 0.0)
    try:
        _wait_http(health_url, proc, timeout, any_status)
    except BaseException:
        child.stop()
        raise
    child.start_seconds = time.perf_counter() - started
    return child


@dataclass
class LegRun:
    """A leg's own result plus what the parent saw: process wall time, CPU and peak RSS."""

    result: dict[str, Any] | None
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    returncode: int
    error: str | None = None


def run_leg(leg: str, params: dict[str, Any], *, work: Path, log: Path, timeout: float,
            env: dict[str, str] | None = None) -> LegRun:
    """Run `python -m bench.worker leg` in a new process group; kill the group after `timeout` seconds."""
    work.mkdir(parents=True, exist_ok=True)
    stamp = f"{leg}-{time.monotonic_ns()}"
    params_path, result_path = work / f"{stamp}.params.json", work / f"{stamp}.result.json"
    params_path.write_text(json.dumps(params))
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "ab") as sink:
        sink.write(f"\n=== {leg} {time.strftime('%H:%M:%S')}\n".encode())
        sink.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", leg, str(params_path), str(result_path)],
            cwd=SOURCE, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        waited: list[tuple[int, int, Any]] = []
        waiter = threading.Thread(target=lambda: waited.append(os.wait4(proc.pid, 0)), daemon=True)
        waiter.start()
        waiter.join(timeout)
        timed_out = waiter.is_alive()
        if timed_out:
            os.killpg(proc.pid, signal.SIGKILL)
            waiter.join(30)
    wall = time.perf_counter() - started
    proc.returncode = 0  # reaped by wait4 above; stop Popen from waiting again
    if not waited:
        return LegRun(None, wall, 0.0, 0.0, -9, f"no exit status after {timeout:g} s")
    _pid, status, usage = waited[0]
    code = os.waitstatus_to_exitcode(status)
    cpu, rss = usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
    for pid in _group_members(proc.pid):  # helpers a leg left behind (e.g. an ephemeral Prefect server)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    params_path.unlink(missing_ok=True)
    if timed_out:
        return LegRun(None, wall, cpu, rss, code, f"timed out after {timeout:g} s")
    if code != 0 and result_path.exists():
        failure = json.loads(result_path.read_text()).get("exception", "")
        result_path.unlink()
        return LegRun(None, wall, cpu, rss, code, f"failed: {failure} (traceback in {log.name})")
    if code != 0 or not result_path.exists():
        return LegRun(None, wall, cpu, rss, code, f"exit status {code}; see {log.name}: {_tail(log)}")
    result = json.loads(result_path.read_text())
    result_path.unlink()
    return LegRun(result, wall, cpu, rss, code)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[2]) == pgid:
                        members.append(int(entry))
            except OSError:
                continue
    return members


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])[:400]


@dataclass
class Measured:
    """A command run to completion, with what `wait4` reported about it."""

    wall_seconds: float
    returncode: int
    cpu_seconds: float
    peak_rss_mb: float
    bytes_written: int  # ru_oublock x 512: what the process (and its waited-for children) sent to the disk
    tail: str


def run_measured(argv: list[str], *, env: dict[str, str] | None, timeout: float, log: Path) -> Measured:
    """Run a command to completion (stdout+stderr to `log`), reaped with `os.wait4` for its resource usage."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "ab") as sink:
        sink.write(f"\n=== {' '.join(argv[:4])} {time.strftime('%H:%M:%S')}\n".encode())
        sink.flush()
        proc = subprocess.Popen(argv, cwd=SOURCE, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        waited: list[tuple[int, int, Any]] = []
        waiter = threading.Thread(target=lambda: waited.append(os.wait4(proc.pid, 0)), daemon=True)
        waiter.start()
        waiter.join(timeout)
        if waiter.is_alive():
            os.killpg(proc.pid, signal.SIGKILL)
            waiter.join(30)
    wall = time.perf_counter() - started
    proc.returncode = 0  # reaped by wait4 above; stop Popen from waiting again
    for pid in _group_members(proc.pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if not waited:
        return Measured(wall, -9, 0.0, 0.0, 0, _tail(log))
    _pid, status, usage = waited[0]
    return Measured(wall, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime,
                    usage.ru_maxrss / 1024, usage.ru_oublock * 512, _tail(log))


def run_command(argv: list[str], *, env: dict[str, str] | None, timeout: float, log: Path) -> tuple[float, int, str]:
    """Run a command to completion (stdout+stderr to `log`); (wall seconds, exit status, tail of the log)."""
    run = run_measured(argv, env=env, timeout=timeout, log=log)
    return run.wall_seconds, run.returncode, run.tail
