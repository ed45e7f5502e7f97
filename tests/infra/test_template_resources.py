"""What CloudFormation creates from template.yaml, nested stacks included, is the committed list.

The template is expanded as `sam validate` and CloudFormation expand it (samtranslator), and a
nested application's resources are counted from its own template (devkit.sam_template). A
change that adds, drops, renames or retypes a resource fails here until the list is
regenerated, so such a change is always a visible diff of tests/infra/expanded_resources.txt;
a refactoring of the template that should create the same resources leaves it unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit import sam_template

pytestmark = pytest.mark.infra

INVENTORY = Path(__file__).with_name("expanded_resources.txt")
REGENERATE = ".venv/bin/python -m devkit.sam_template > tests/infra/expanded_resources.txt"


def _committed() -> list[str]:
    lines = INVENTORY.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def test_template_expands_to_exactly_the_committed_resources() -> None:
    committed = _committed()

    expanded = sam_template.inventory()

    added = sorted(set(expanded) - set(committed))
    dropped = sorted(set(committed) - set(expanded))
    assert expanded == committed, (
        f"added: {added}\ndropped: {dropped}\nif intended, regenerate the list: {REGENERATE}"
    )


def test_nested_stack_resources_are_counted_from_their_own_template() -> None:
    resources = sam_template.resources()

    assert resources["Monitoring"] == sam_template.NESTED_STACK
    assert resources["Monitoring/Dashboard"] == "AWS::CloudWatch::Dashboard"
    assert sum(kind == "AWS::CloudWatch::Alarm" for kind in resources.values()) == 14
    assert not [name for name in resources if "/" not in name and "Alarm" in resources[name]]
