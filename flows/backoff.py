"""The 429 back-off for every Dask task of an org: a `BackoffGate` shared through a Prefect Variable.

A task's gate is its client's `LocalGate` (its own requests pause at once) plus the Variable
`pause_variable(org_id)`, the UTC time (seconds since the epoch) until which the org's requests pause. A
429 in any task raises the Variable to the later of its value and now + the 429's wait; every task reads it
every `POLL_SECONDS` and holds its own requests until then. So no task starts a request later than about
`POLL_SECONDS` (plus one read of the Variable) after another task's 429, until that 429's wait has passed.

Cost: one read of the Variable per task every `POLL_SECONDS` while the task fetches, plus a read and a
write per 429 that moves the pause by more than `PUBLISH_SLACK` (a burst of 429s in one task is one write).
Clocks: the deadline is UTC; a host whose clock is off by `d` seconds pauses `d` seconds too short or
too long, nothing worse (a pause never moves a deadline earlier). The Variable is not compare-and-set:
two tasks raising it at the same instant may leave the shorter of their two pauses, never none.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from connector.backoff import LocalGate

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient

POLL_SECONDS = 0.5
"""How often a task reads the org's pause."""
PUBLISH_SLACK = 0.25
"""Seconds a 429 must move this task's pause past what it last wrote for it to write again."""

logger = logging.getLogger(__name__)


def pause_variable(org_id: str) -> str:
    """The Prefect Variable of an org's pause (Variable names take lowercase letters, digits, - and _ only)."""
    safe = re.sub(r"[^a-z0-9_-]", "_", org_id.lower())
    if safe != org_id:  # two org ids that differ only where they were replaced keep apart
        safe += "-" + hashlib.blake2b(org_id.encode(), digest_size=4).hexdigest()
    return f"piper-api-{safe}-paused-until"


class SharedGate:
    """A `BackoffGate` that this task's 429s raise for every task of the org, and theirs for this one.

    Run `poll()` alongside the client (`shared_gate` does); `reads` and `writes` count the requests it
    sent to the Prefect server.
    """

    def __init__(self, name: str, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.name = name
        self.reads = 0
        self.writes = 0
        self._clock = clock
        self._wall = wall
        self._local = LocalGate(clock)
        self._published = 0.0  # the UTC deadline this task last wrote or read
        self._to_publish = 0.0  # the UTC deadline this task's 429s ask for, not yet written
        self._wake = asyncio.Event()

    def remaining(self) -> float:
        return self._local.remaining()

    def pause(self, seconds: float) -> None:
        self._local.pause(seconds)
        until = self._wall() + max(0.0, seconds)
        if until > max(self._published, self._to_publish) + PUBLISH_SLACK:
            self._to_publish = until
            self._wake.set()

    def unpublished(self) -> bool:
        """Whether a 429 of this task asks for a longer pause than the org's was when last read or written."""
        return self._to_publish > self._published

    def adopt(self, until: float) -> None:
        """Hold this task's requests until the UTC time `until` (another task's 429)."""
        self._published = max(self._published, until)
        self._local.hold_until(self._clock() + (until - self._wall()))

    async def poll(self, client: PrefectClient, poll_seconds: float = POLL_SECONDS) -> None:
        """Read the org's pause every `poll_seconds` and write this task's 429s to it, until cancelled."""
        while True:
            try:
                await self.sync(client)
            except Exception as exc:  # a Prefect hiccup must not end the fetch: the next poll tries again
                logger.warning("could not read or write the API pause %s: %s", self.name, type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_seconds):
                    await self._wake.wait()
            self._wake.clear()

    async def sync(self, client: PrefectClient) -> None:
        """One round: read the pause, adopt it, and raise it to this task's 429s when they ask for longer."""
        from prefect.client.schemas.actions import VariableCreate, VariableUpdate
        from prefect.exceptions import ObjectAlreadyExists

        variable = await client.read_variable_by_name(self.name)
        self.reads += 1
        stored = float(variable.value) if variable is not None and isinstance(variable.value, int | float) else 0.0
        self.adopt(stored)
        wanted = self._to_publish
        if wanted <= stored:
            self._to_publish = 0.0
            return
        self.writes += 1
        if variable is None:
            try:
                await client.create_variable(VariableCreate(name=self.name, value=wanted))
            except ObjectAlreadyExists:  # another task created it meanwhile
                await client.update_variable(VariableUpdate(name=self.name, value=wanted))
        else:
            await client.update_variable(VariableUpdate(name=self.name, value=wanted))
        self._published = max(self._published, wanted)
        if self._to_publish == wanted:
            self._to_publish = 0.0


@contextlib.asynccontextmanager
async def shared_gate(org_id: str, poll_seconds: float = POLL_SECONDS) -> AsyncIterator[SharedGate]:
    """The org's shared gate, read and written in the background for the block's duration."""
    from prefect.client.orchestration import get_client

    gate = SharedGate(pause_variable(org_id))
    async with get_client() as client:
        poller = asyncio.create_task(gate.poll(client, poll_seconds))
        try:
            await asyncio.sleep(0)
            yield gate
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            if gate.unpublished():  # a 429 at the very end still pauses the others
                with contextlib.suppress(Exception):
                    await gate.sync(client)
