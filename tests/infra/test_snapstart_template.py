"""The InitiationSnapStart parameter, rendered the way `sam validate`/`sam deploy` render it.

The SAM transform (samtranslator, what `sam validate` runs) turns template.yaml into plain
CloudFormation; the conditions are then resolved for given parameter values, as
CloudFormation would, so each test looks at what a deployment with those values creates.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

pytestmark = pytest.mark.infra

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
FUNCTION = "ConversationInitiationFunction"
ALIAS = f"{FUNCTION}Aliaslive"
INITIATION_PATH = "/webhooks/elevenlabs/conversation-initiation"


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def transformed(monkeypatch_module: pytest.MonkeyPatch) -> dict[str, Any]:
    """template.yaml after the SAM transform (local code folders stand in as S3 objects)."""
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    template = yaml_parse(TEMPLATE.read_text(encoding="utf-8"))
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = "s3://bucket/key"  # what `sam validate` substitutes too
    return transform(template, {}, _NoManagedPolicies())


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def _parameters(template: dict[str, Any], **values: str) -> dict[str, str]:
    params = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    params.update(values)
    return params


def _evaluate(node: Any, params: dict[str, str], conditions: dict[str, Any]) -> Any:
    """The value of a condition expression or a property for these parameter values."""
    if isinstance(node, list):
        return [_evaluate(item, params, conditions) for item in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        [(key, arg)] = node.items()
        if key == "Ref" and arg in params:
            return params[arg]
        if key == "Fn::Equals":
            left, right = (_evaluate(a, params, conditions) for a in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not _evaluate(arg[0], params, conditions)
        if key == "Fn::And":
            return all(_evaluate(a, params, conditions) for a in arg)
        if key == "Fn::Or":
            return any(_evaluate(a, params, conditions) for a in arg)
        if key == "Condition":
            return _evaluate(conditions[arg], params, conditions)
        if key == "Fn::If":
            name, then, otherwise = arg
            chosen = then if _evaluate(conditions[name], params, conditions) else otherwise
            return _evaluate(chosen, params, conditions)
    resolved = {k: _evaluate(v, params, conditions) for k, v in node.items()}
    return {k: v for k, v in resolved.items() if v != {"Ref": "AWS::NoValue"}}


def _render(transformed: dict[str, Any], **values: str) -> dict[str, Any]:
    """Resources and rule outcomes of a deployment with these parameter values."""
    template = copy.deepcopy(transformed)
    params = _parameters(template, **values)
    conditions = template.get("Conditions", {})
    resources = {
        name: _evaluate(resource, params, conditions)
        for name, resource in template["Resources"].items()
        if "Condition" not in resource
        or _evaluate(conditions[resource["Condition"]], params, conditions)
    }
    failed = [
        assertion["AssertDescription"]
        for rule in template.get("Rules", {}).values()
        if _evaluate(rule.get("RuleCondition", True), params, conditions)
        for assertion in rule["Assertions"]
        if not _evaluate(assertion["Assert"], params, conditions)
    ]
    return {"resources": resources, "failed_rules": failed}


def _initiation_integration_uri(resources: dict[str, Any]) -> str:
    body = resources["HttpApi"]["Properties"]["Body"]
    return json.dumps(body["paths"][INITIATION_PATH]["post"]["x-amazon-apigateway-integration"])


def test_snapstart_on_applies_to_published_versions_behind_the_alias(
    transformed: dict[str, Any],
) -> None:
    rendered = _render(transformed, InitiationSnapStart="true")

    resources = rendered["resources"]
    function = resources[FUNCTION]["Properties"]
    assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert function["Runtime"] in {"python3.12", "python3.13"}  # SnapStart: Python 3.12+
    versions = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Version"]
    assert any(v["Properties"]["FunctionName"] == {"Ref": FUNCTION} for v in versions)
    assert "ProvisionedConcurrencyConfig" not in resources[ALIAS]["Properties"]
    # API Gateway calls the alias (a published, snapshotted version), never $LATEST.
    assert f"${{{ALIAS}}}" in _initiation_integration_uri(resources)
    permissions = [
        r["Properties"]["FunctionName"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Permission"
        and r["Properties"]["Principal"] == "apigateway.amazonaws.com"
        and INITIATION_PATH in json.dumps(r["Properties"]["SourceArn"])
    ]
    assert permissions == [{"Ref": ALIAS}]
    assert rendered["failed_rules"] == []


def test_snapstart_off_by_default_leaves_the_function_unsnapshotted(
    transformed: dict[str, Any],
) -> None:
    rendered = _render(transformed)

    function = rendered["resources"][FUNCTION]["Properties"]
    assert function["SnapStart"] == {"ApplyOn": "None"}
    assert rendered["failed_rules"] == []


def test_provisioned_concurrency_alone_attaches_to_the_alias(
    transformed: dict[str, Any],
) -> None:
    rendered = _render(transformed, InitiationProvisionedConcurrency="2")

    resources = rendered["resources"]
    assert resources[ALIAS]["Properties"]["ProvisionedConcurrencyConfig"] == {
        "ProvisionedConcurrentExecutions": "2"
    }
    assert resources[FUNCTION]["Properties"]["SnapStart"] == {"ApplyOn": "None"}
    assert rendered["failed_rules"] == []


def test_snapstart_with_provisioned_concurrency_is_rejected(
    transformed: dict[str, Any],
) -> None:
    rendered = _render(
        transformed, InitiationSnapStart="true", InitiationProvisionedConcurrency="2"
    )

    [reason] = rendered["failed_rules"]
    assert "InitiationProvisionedConcurrency=0" in reason


def test_snapstart_parameter_takes_only_true_or_false(transformed: dict[str, Any]) -> None:
    parameter = transformed["Parameters"]["InitiationSnapStart"]

    assert parameter["AllowedValues"] == ["true", "false"]
    assert parameter["Default"] == "false"
