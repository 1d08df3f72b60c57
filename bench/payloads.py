"""Bench data: the demo generator's session ids and run payloads, made cheap to serve for 200 k sessions.

The simulated API's generator (`connector.fake_api.FakeDataset`) draws a ~26 KB run in about 0.35 ms of
CPU, which would make a one-core server the bottleneck of the benchmark. So a pool of real generated
payloads is drawn once and each session gets one of them with its run, turn and criteria-result ids
rewritten (the first 8 hex digits of every id become the session's index): every session has distinct
ids, the text, shapes and sizes are the generator's, and serving a body costs one `bytes.replace`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

TOKEN = "pat_bench_token"
POOL_SIZE = 512
_MARK = b"@@@@@@@@"  # never produced by the generator: replaced by the session's index in hex


def _template(body: bytes) -> bytes:
    """The payload with the first 8 characters of each of its own ids replaced by the mark."""
    run = orjson.loads(body)
    ids = [run["id"]]
    for turn in run.get("turn_results") or []:
        ids.append(turn["id"])
        ids.extend(criterion["id"] for criterion in turn.get("criteria_results") or [])
    for value in ids:
        quoted = b'"' + value.encode() + b'"'
        if body.count(quoted) != 1:
            raise ValueError(f"id {value!r} does not occur exactly once in its payload")
        body = body.replace(quoted, b'"' + _MARK + value[8:].encode() + b'"')
    return body


def _criteria_count(body: bytes) -> int:
    run = orjson.loads(body)
    return sum(len(turn.get("criteria_results") or []) for turn in run.get("turn_results") or [])


@dataclass
class PayloadSource:
    """Session ids and the body served for each; the same arguments always give the same bytes."""

    seed: int
    sessions: int
    payload_kb: float
    session_ids: list[str] = field(init=False)
    org_id: str = field(init=False)
    templates: list[bytes] = field(init=False)
    criteria_per_template: list[int] = field(init=False)

    def __post_init__(self) -> None:
        from connector.fake_api import FakeDataset  # here, not at the top: it imports starlette and uvicorn

        ids = FakeDataset.generate(seed=self.seed, sessions=self.sessions, payload_kb=self.payload_kb)
        self.session_ids = ids.session_ids
        self.org_id = ids.org_id
        pool = FakeDataset.generate(seed=self.seed + 1_000_003, sessions=POOL_SIZE, payload_kb=self.payload_kb)
        bodies = [pool.payload_bytes(session_id) or b"" for session_id in pool.session_ids]
        self.templates = [_template(body) for body in bodies]
        self.criteria_per_template = [_criteria_count(body) for body in bodies]

    def body(self, index: int) -> bytes:
        """The JSON body served for the session at `index`."""
        return self.templates[index % POOL_SIZE].replace(_MARK, b"%08x" % index)

    def bodies(self, count: int) -> list[bytes]:
        return [self.body(index) for index in range(count)]

    def criteria_rows(self, count: int) -> int:
        """How many criteria_results rows the first `count` sessions hold."""
        full, rest = divmod(count, POOL_SIZE)
        return full * sum(self.criteria_per_template) + sum(self.criteria_per_template[:rest])

    def mean_body_bytes(self) -> float:
        return sum(len(self.body(index)) for index in range(POOL_SIZE)) / POOL_SIZE
