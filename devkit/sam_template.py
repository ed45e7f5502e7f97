"""template.yaml as CloudFormation receives it: after the SAM transform, nested stacks included.

    python -m devkit.sam_template [--template template.yaml]

prints every resource the deployment creates, one ``logical-id type`` line each, sorted; a
nested application's resources follow it as ``Parent/logical-id`` (read from its local
``Location`` template). tests/infra/test_template_resources.py compares this list with the
committed one in tests/infra/expanded_resources.txt, so a refactoring of the template that
adds, drops or renames a resource shows up as a diff of that file.

The transform is samtranslator's, the library `sam validate` and CloudFormation's own
AWS::Serverless transform run; it works offline: code folders stand in as S3 objects, as
`sam validate` substitutes them too.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from pathlib import Path
from typing import Any

from devkit.lambda_env import TEMPLATE, load_template

NESTED_STACK = "AWS::CloudFormation::Stack"
LAMBDA_VERSION = "AWS::Lambda::Version"
_VERSION_HASH = re.compile(r"Version[0-9a-f]{10}$")
HEADER = (
    "# Every resource template.yaml deploys, after the SAM transform, nested stacks' as\n"
    "# Parent/logical-id. Written by `.venv/bin/python -m devkit.sam_template`; checked by\n"
    "# tests/infra/test_template_resources.py."
)
_CODE_KEYS = ("CodeUri", "ContentUri")


class _NoManagedPolicies:
    """SAM asks the account for managed-policy ARNs by name; offline, none are known."""

    def load(self) -> dict[str, str]:
        return {}


def expand(template: dict[str, Any], parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """``template`` (as :func:`devkit.lambda_env.load_template` reads it) after the transform."""
    # Imported here: only the template checks need it (it is in the dev lock, not the layer).
    from samtranslator.translator.transform import transform

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(template)
    if "Transform" not in template:
        return template
    for resource in template["Resources"].values():
        props = resource.get("Properties") or {}
        for key in _CODE_KEYS:
            if isinstance(props.get(key), str):
                props[key] = "s3://bucket/key"
    expanded: dict[str, Any] = transform(template, parameters or {}, _NoManagedPolicies())
    return expanded


def resources(path: Path = TEMPLATE) -> dict[str, str]:
    """Logical id -> type of every resource deployed from ``path``, nested stacks' as ``X/id``."""
    found: dict[str, str] = {}
    for logical_id, resource in expand(load_template(path))["Resources"].items():
        found[logical_id] = resource["Type"]
        url = (resource.get("Properties") or {}).get("TemplateURL")
        if resource["Type"] == NESTED_STACK and isinstance(url, str) and "://" not in url:
            for child_id, child_type in resources(path.parent / url).items():
                found[f"{logical_id}/{child_id}"] = child_type
    return found


def inventory(path: Path = TEMPLATE) -> list[str]:
    """``logical-id type`` lines of :func:`resources`, sorted.

    SAM names the version an AutoPublishAlias publishes ``<Function>Version<hash>``, the hash
    of the function's code and configuration; the hash is left out (``<Function>Version*``),
    or every change of an environment variable would look like a new resource.
    """
    lines = []
    for name, kind in resources(path).items():
        if kind == LAMBDA_VERSION:
            name = _VERSION_HASH.sub("Version*", name)
        lines.append(f"{name} {kind}")
    return sorted(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the inventory of a template."""
    parser = argparse.ArgumentParser(prog="python -m devkit.sam_template", description=__doc__)
    parser.add_argument("--template", type=Path, default=TEMPLATE)
    args = parser.parse_args(argv)
    print(HEADER)
    sys.stdout.write("".join(f"{line}\n" for line in inventory(args.template)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
