"""The 429 back-off that holds for every request of a load, not only for the request that got the 429.

A `BackoffGate` is what the client asks before it sends any request (`remaining`) and tells when the API
answers 429 (`pause`). Every request of the client waits at the gate, so a 429 with `Retry-After: 5` holds
back the client's other requests for those 5 s too, not only the retry of the one that got it.

`LocalGate` (the client's default) holds one client's requests: a load in one process. A gate shared
further (the Dask tasks of one load, `flows/backoff.py`) keeps a `LocalGate` of its own and tells the
other processes through a shared store; the client sees no difference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol


class BackoffGate(Protocol):
    """When new requests may start: the API's last 429 holds them all back for its wait."""

    def remaining(self) -> float:
        """Seconds until new requests may start; 0 when no back-off is in force."""
        ...

    def pause(self, seconds: float) -> None:
        """Hold back every new request for `seconds` from now; a pause that lasts longer stays as it is."""
        ...


class LocalGate:
    """A back-off deadline in this process, on `clock` (the client's clock, monotonic by default)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = -math.inf

    def remaining(self) -> float:
        return max(0.0, self._until - self._clock())

    def pause(self, seconds: float) -> None:
        self.hold_until(self._clock() + max(0.0, seconds))

    def hold_until(self, deadline: float) -> bool:
        """Hold back new requests until `deadline` on the gate's clock, unless already held longer; True if moved."""
        if deadline <= self._until:
            return False
        self._until = deadline
        return True
