"""The README, docs and docstrings point only at files a user of the repository has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = ("connector", "schemas", "warehouse", "flows", "bench")
CODE = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)
MD_PATH = re.compile(r"(?<![\w/.:-])((?:\.\./)?[\w./-]*[\w-]\.md)\b")  # a path to a .md file, linked or not
HEADING = re.compile(r"^#+\s+(.+?)\s*$", re.MULTILINE)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(heading) for heading in HEADING.findall(path.read_text(encoding="utf-8"))}


def exists(mentioned: str, source: Path) -> bool:
    """A path is fine relative to the file that mentions it or to the repository root."""
    return any((base / mentioned).resolve().is_file() for base in (source.parent, ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_md_file_a_doc_mentions_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    missing = [m for m in MD_PATH.findall(text) if not exists(m, doc)]
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_of_a_doc_resolves(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert broken == []


def test_every_md_file_a_docstring_or_comment_mentions_exists() -> None:
    missing = [
        f"{source.relative_to(ROOT)}: {m}"
        for source in CODE
        for m in MD_PATH.findall(source.read_text(encoding="utf-8"))
        if "/" in m and not exists(m, source)  # a path, not a file name joined in code
    ]
    assert missing == []


def test_the_api_contract_is_in_the_repository() -> None:
    assert "docs/piper-api.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "GET /v1/orgs/{org_id}/scenarios/runs/by-session/{session_id}" in (
        ROOT / "docs" / "piper-api.md"
    ).read_text(encoding="utf-8")
