"""For the object-store tests: an S3 server on loopback (moto in server mode), and tables read back to compare.

The credentials are canaries: they must appear nowhere but in the requests' signatures (never in an
output, a log, an artifact or a written file: `tests/test_object_store_secrets.py`).
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from tests.dask_support import tables_of
from warehouse import views

CANARY_KEY_ID = "canary-key-id-5d1f0c"
CANARY_SECRET = "canary-secret-9b7e4a2c61d84f03"
BUCKET = "piper-test"


@dataclass(frozen=True)
class S3Server:
    """A moto S3 server on loopback with one bucket; `prefix()` names a fresh folder URL in it."""

    endpoint: str
    bucket: str

    def prefix(self) -> str:
        return f"s3://{self.bucket}/{uuid.uuid4().hex[:12]}"

    def objects(self, url: str) -> dict[str, bytes]:
        """Every object under `url`, by key."""
        import boto3

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        client = boto3.client("s3")
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """The S3 server for the whole session; its endpoint and the canary credentials in the environment
    (as a deployment sets them), so that this process, its subprocesses and Dask workers all see them."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ACCESS_KEY_ID": CANARY_KEY_ID, "AWS_SECRET_ACCESS_KEY": CANARY_SECRET,
                            "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1"}.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        try:
            yield S3Server(endpoint, BUCKET)
        finally:
            server.stop()


def parquet_tables(parquet_root: str | Path) -> dict[str, list[tuple[object, ...]]]:
    """Every landed table's current rows over the Parquet files (local or on the store), without the
    columns that name the load or the time, sorted."""
    con = views.open_current_state(parquet_root if isinstance(parquet_root, str) else Path(parquet_root))
    return tables_of(con)


def database_tables(database: Path) -> dict[str, list[tuple[object, ...]]]:
    return tables_of(duckdb.connect(str(database), read_only=True))
