"""The docs' devkit commands: every `python -m devkit...` in README.md, BENCHMARKS.md and docs/
names a module in the tree, unless its paragraph says which commit to check out to run it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "BENCHMARKS.md", *(ROOT / "docs").glob("*.md")])
COMMAND = re.compile(r"python -m (devkit(?:\.\w+)*)")
# "at `d89c90f`", "at d89c90f": a script removed from the tree, run from that commit.
AT_COMMIT = re.compile(r"\bat\s+`?[0-9a-f]{7,40}\b")


def _runnable(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


def _commands(doc: Path) -> list[tuple[str, str]]:
    """(module, its paragraph) for every devkit command in ``doc``."""
    paragraphs = re.split(r"\n\s*\n", doc.read_text(encoding="utf-8"))
    return [(m, p) for p in paragraphs for m in COMMAND.findall(p)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_docs_devkit_commands_run_here_or_name_their_commit(doc: Path) -> None:
    missing = [
        module
        for module, paragraph in _commands(doc)
        if not _runnable(module) and not AT_COMMIT.search(paragraph)
    ]

    assert missing == []


def test_docs_commands_are_found() -> None:
    # The check above means something only if it sees the commands the docs do show.
    modules = {module for doc in DOCS for module, _ in _commands(doc)}

    assert {"devkit.bench", "devkit.cli", "devkit.dashboard", "devkit.rehearsal"} <= modules
