"""`sam build` installs the layer and the SMS responder from their locks, and nothing else."""

from __future__ import annotations

import email.parser
from pathlib import Path

import pytest

from devkit import toolchain

pytestmark = pytest.mark.infra


def _distributions(folder: Path) -> dict[str, str]:
    """{normalized name: version} of the distributions pip installed into `folder`."""
    found = {}
    for metadata in folder.glob("*.dist-info/METADATA"):
        headers = email.parser.Parser().parsestr(metadata.read_text(encoding="utf-8"))
        found[toolchain.normalize(headers["Name"])] = headers["Version"]
    return found


def test_built_layer_holds_exactly_its_lock(sam_build: Path) -> None:
    built = _distributions(sam_build / "LeadLookupLayer" / "python")

    assert built == toolchain.pins(toolchain.LOCKS["layer"].path)


def test_built_sms_responder_holds_exactly_its_lock(sam_build: Path) -> None:
    built = _distributions(sam_build / "SmsResponderFunction")

    assert built == toolchain.pins(toolchain.LOCKS["responder"].path)
    assert not (sam_build / "SmsResponderFunction" / "requirements.in").exists()
