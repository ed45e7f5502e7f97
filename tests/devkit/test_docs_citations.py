"""Code, template, SQL and docs cite the repository's own docs (README.md, docs/, BENCHMARKS.md),
never sections of a design document that is not in the repository."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = (".py", ".yaml", ".yml", ".md", ".sql", ".toml")
# Hidden folders (.git, .venv*, .aws-sam, .local, tool caches) hold nothing of ours.
SKIPPED_DIRS = {"node_modules", "__pycache__"}
# "design section 9", "design sections 3.1-3.3", "(design 3.2a)", "Design 3.2a."
CITATION = re.compile(r"\bdesign(?: sections?)? ?\d", re.IGNORECASE)
# Applied migrations keep their text: migrate.py refuses a migration whose checksum changed
# after it ran, so editing a comment would fail every deployed database's next migration.
FROZEN = {
    "layers/leadlookup/leadlookup/adapters/migrations/0001_schema.sql",
    "layers/leadlookup/leadlookup/adapters/migrations/0004_app_role.sql",
    "layers/leadlookup/leadlookup/adapters/migrations/0005_lead_write_seq.sql",
    "layers/leadlookup/leadlookup/adapters/migrations/0006_replies.sql",
}


def _sources() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
        found += [
            Path(folder, name) for name in files if name.endswith(SUFFIXES) or name == "Makefile"
        ]
    return sorted(found)


def _citing() -> set[str]:
    this_file = Path(__file__).resolve()  # its examples are citations on purpose
    return {
        str(path.relative_to(ROOT))
        for path in _sources()
        if path != this_file and CITATION.search(path.read_text(encoding="utf-8", errors="replace"))
    }


def test_citation_pattern_matches_the_forms_used() -> None:
    cited = ["(design section 9)", "(design sections 3.1-3.3, 7)", "(design 3.2a)", "Design 3.2a."]
    plain = ["by design", "a design change", "test_template_has_the_functions_of_the_design"]

    assert [bool(CITATION.search(text)) for text in cited] == [True] * 4
    assert [bool(CITATION.search(text)) for text in plain] == [False] * 3


def test_sources_cite_no_design_sections() -> None:
    citing = _citing()

    assert len(_sources()) > 100
    assert sorted(citing - FROZEN) == []
    # An entry whose file no longer cites is stale: remove it.
    assert sorted(FROZEN - citing) == []
