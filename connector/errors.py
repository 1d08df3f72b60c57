"""Errors of the Piper connector, grouped by what the caller should do.

    PiperError                  base class: anything the connector raises
    ├── PiperConfigError        fatal: a setting is wrong (org id, base URL, token); fix it and rerun
    ├── PiperListFailed         a page of a list could not be read (retries exhausted, 4xx, a bad body); a
    │                           sync stops before loading anything, and the next sync starts again
    └── PiperStopLoad           fatal: no further request can succeed; stop the whole load
        ├── PiperAuthError      the API refused the token (HTTP 401 or 403)
        ├── PiperUnreachable    no connection to the API could be made at all (DNS, refused, timeouts)
        └── PiperCircuitOpen    the API gave no usable answer for too long (see `retry.CircuitBreaker`)

A session that cannot be fetched (404, retries exhausted, a bad id) is not an exception: it comes back
as a `FetchResult` with its outcome and reason, so one bad session never stops the others.
No message here ever contains the API token or request headers (the client redacts what servers send).
The command line turns these into its own errors and exit statuses in one place, `flows.errors.translate`
(a config error is a usage error, exit 2; a refused token exits 3; any other stop exits 1).
"""

from __future__ import annotations

TOKEN_ENV = "PIPER_API_TOKEN"


class PiperError(Exception):
    """Base class of every error the Piper connector raises."""


class PiperConfigError(PiperError):
    """A connector setting is missing or invalid."""


class PiperListFailed(PiperError):
    """A page of a list endpoint could not be read, so the list as a whole is unknown."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"cannot read the {what}: {reason}")


class PiperStopLoad(PiperError):
    """No further request can succeed: the load stops sending requests and commits what it has."""

    status: int | None = None

    @property
    def unfetched_reason(self) -> str:
        """What the sessions never sent are recorded with."""
        return f"not fetched: the load stopped: {self}"


class PiperAuthError(PiperStopLoad):
    """The Piper API refused the token (401) or its permissions (403)."""

    def __init__(self, status: int, session_id: str | None = None) -> None:
        self.status = status
        self.session_id = session_id
        what = "refused the API token" if status == 401 else "denied access with this API token"
        super().__init__(
            f"the Piper API {what} (HTTP {status}); check the {TOKEN_ENV} environment variable "
            "(or the Prefect Secret block 'piper-api-token') and the token's access to this org"
        )


class PiperUnreachable(PiperStopLoad):
    """Every attempt to connect to the API failed before any response: the host is wrong or down."""

    def __init__(self, base_url: str, reason: str) -> None:
        self.base_url = base_url
        self.reason = reason
        super().__init__(
            f"cannot connect to the Piper API at {base_url} ({reason}); check --base-url / PIPER_BASE_URL "
            "and the network, then rerun"
        )


class PiperCircuitOpen(PiperStopLoad):
    """The circuit breaker tripped: many attempts in a row, over many seconds, got no usable answer."""

    def __init__(self, failures: int, seconds: float, last_reason: str) -> None:
        self.failures = failures
        self.seconds = seconds
        self.last_reason = last_reason
        super().__init__(
            f"the Piper API gave no usable answer to the last {failures} requests in a row, over {seconds:.0f} s "
            f"(last: {last_reason}); stopped sending requests. Rerun when the API has recovered, or raise the "
            "threshold with --max-consecutive-failures"
        )
