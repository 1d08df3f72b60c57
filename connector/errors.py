"""Errors of the Piper connector, grouped by what the caller should do.

    PiperError                      base class: anything the connector raises
    ├── PiperConfigError            fatal: a setting is wrong (org id, base URL, token missing); fix it and rerun
    └── PiperAuthError              fatal: the API refused the token (HTTP 401 or 403); stop the whole load

A session that cannot be fetched (404, retries exhausted, a bad id) is not an exception: it comes back
as a `FetchResult` with its outcome and reason, so one bad session never stops the others.
No message here ever contains the API token or request headers.
"""

from __future__ import annotations

TOKEN_ENV = "PIPER_API_TOKEN"


class PiperError(Exception):
    """Base class of every error the Piper connector raises."""


class PiperConfigError(PiperError):
    """A connector setting is missing or invalid."""


class PiperAuthError(PiperError):
    """The Piper API refused the token (401) or its permissions (403)."""

    def __init__(self, status: int, session_id: str | None = None) -> None:
        self.status = status
        self.session_id = session_id
        what = "refused the API token" if status == 401 else "denied access with this API token"
        super().__init__(
            f"the Piper API {what} (HTTP {status}); check the {TOKEN_ENV} environment variable "
            "(or the Prefect Secret block 'piper-api-token') and the token's access to this org"
        )
