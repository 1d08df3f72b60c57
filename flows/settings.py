"""Load settings: plain values that are safe to log and to pass as Prefect parameters (never the token)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from connector.client import HTTP_CLIENTS, HttpClient
from connector.errors import TOKEN_ENV, PiperConfigError
from warehouse.pricing import PriceList, PricingError, read_pricing

DEFAULT_BASE_URL = "https://api.letpiper.com"
DEFAULT_OUT = "warehouse"
TOKEN_BLOCK = "piper-api-token"
OutputFormat = Literal["duckdb", "parquet", "both"]
FORMATS: tuple[OutputFormat, ...] = ("duckdb", "parquet", "both")


@dataclass(frozen=True)
class LoadSettings:
    """Where to load from and to, and how hard to push. Holds no secret."""

    org_id: str
    base_url: str = DEFAULT_BASE_URL
    out_dir: Path = field(default_factory=lambda: Path(DEFAULT_OUT))
    concurrency: int = 16
    max_retries: int = 5
    chunk_size: int = 500
    format: OutputFormat = "both"
    refetch: bool = False
    lock_timeout: float = 30.0
    http_client: HttpClient = "aiohttp"
    pricing_file: str | None = None  # TOML of judge token prices; None keeps the prices stored earlier
    judge_model: str | None = None  # the judge model whose price costs the runs

    def __post_init__(self) -> None:
        if not self.org_id:
            raise PiperConfigError("no org id: pass --org-id or set PIPER_ORG_ID")
        if self.format not in FORMATS:
            raise PiperConfigError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.concurrency < 1 or self.concurrency > 1024:
            raise PiperConfigError("concurrency must be between 1 and 1024")
        if self.max_retries < 0:
            raise PiperConfigError("max retries must be 0 or more")
        if self.http_client not in HTTP_CLIENTS:
            raise PiperConfigError(f"http client must be one of {', '.join(HTTP_CLIENTS)}, not {self.http_client!r}")
        if self.lock_timeout < 0:
            raise PiperConfigError("lock timeout must be 0 or more seconds")
        if self.chunk_size < 1:
            raise PiperConfigError("chunk size must be at least 1")
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        self.price_list()  # a bad pricing file is a usage error before any request, not after the fetch

    @property
    def writes_parquet(self) -> bool:
        return self.format in ("parquet", "both")

    @property
    def writes_duckdb(self) -> bool:
        return self.format in ("duckdb", "both")

    def price_list(self) -> PriceList | None:
        """The judge prices this load stores, or None to keep those stored by an earlier load."""
        return price_list(self.pricing_file, self.judge_model)

    def as_parameters(self) -> dict[str, object]:
        """The settings as JSON-safe values, for the `loads` table and artifacts."""
        values = asdict(self)
        values["out_dir"] = str(self.out_dir)
        return values


def price_list(pricing_file: str | None, judge_model: str | None) -> PriceList | None:
    """The judge prices a pricing setting asks for; a config error (exit status 2) when it is unusable."""
    try:
        return read_pricing(pricing_file, judge_model)
    except PricingError as exc:
        raise PiperConfigError(str(exc)) from None


def token_from_env() -> str:
    """The API token from `PIPER_API_TOKEN`; a config error naming the variable when it is unset."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise PiperConfigError(f"no API token: set the {TOKEN_ENV} environment variable")
    return token
