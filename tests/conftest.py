"""Shared fixtures. The canary token must never show up anywhere but in the Authorization header."""

from __future__ import annotations

from pathlib import Path

import pytest

CANARY_TOKEN = "pat_CANARY_7c1e5b0d9a2f4e6b8d3c"
ORG_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def assert_no_canary(*texts: str | bytes, folder: Path | None = None) -> None:
    """Fail if the canary token appears in any text or in any file under `folder`."""
    needle = CANARY_TOKEN.encode()
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        assert needle not in data, "the API token leaked into output"
    if folder is not None:
        for path in folder.rglob("*"):
            if path.is_file():
                assert needle not in path.read_bytes(), f"the API token leaked into {path}"


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "out"
