"""Least privilege, read from the template as SAM expands it (issue 10): who can read which
secret, who can log in as whom, the SMS processor's queue rights, endpoint policies, egress."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from samtranslator.translator.transform import transform

from devkit.lambda_env import load_template

SERVING = [
    "ConversationInitiationFunction",
    "SmsProcessorFunction",
    "LeadUpdateFunction",
    "CacheAdminFunction",
    "SmsOutcomeFunction",
    "PostCallProcessorFunction",
]


class _NoManagedPolicies:
    """SAM asks for the account's managed-policy ARNs by name; none are needed offline."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def expanded(monkeypatch_module: pytest.MonkeyPatch) -> dict[str, Any]:
    """template.yaml after the SAM transform (code locations replaced by dummy S3 URIs)."""
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(load_template())
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in props:
                props[key] = "s3://bucket/key.zip"
    return transform(template, {}, _NoManagedPolicies())


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


def _role_of(expanded: dict[str, Any], function: str) -> dict[str, Any]:
    role = expanded["Resources"][function]["Properties"]["Role"]
    name = role["Fn::GetAtt"][0]
    return expanded["Resources"][name]["Properties"]


def _statements(expanded: dict[str, Any], role: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in role.get("Policies", []):
        yield from policy["PolicyDocument"]["Statement"]
    for arn in role.get("ManagedPolicyArns", []):
        if isinstance(arn, dict) and "Ref" in arn:
            managed = expanded["Resources"][arn["Ref"]]["Properties"]
            yield from managed["PolicyDocument"]["Statement"]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_iam_template_no_function_can_read_a_database_or_cache_secret(expanded):
    functions = [
        k for k, v in expanded["Resources"].items() if v["Type"] == "AWS::Lambda::Function"
    ]
    for function in functions:
        role = _role_of(expanded, function)
        for statement in _statements(expanded, role):
            if any(a.startswith("secretsmanager:") for a in _actions(statement)):
                text = json.dumps(statement["Resource"])
                assert "MasterUserSecret" not in text, function
                assert "CacheAuthSecret" not in text, function
        env = expanded["Resources"][function]["Properties"].get("Environment", {})
        assert "DB_SECRET_ARN" not in env.get("Variables", {}), function
        assert "REDIS_AUTH_ARN" not in env.get("Variables", {}), function


def test_iam_template_serving_functions_log_in_as_bici_app_only(expanded):
    for function in SERVING:
        role = _role_of(expanded, function)
        connects = [
            json.dumps(s["Resource"])
            for s in _statements(expanded, role)
            if "rds-db:connect" in _actions(s)
        ]
        env = expanded["Resources"][function]["Properties"]["Environment"]["Variables"]

        assert len(connects) == 1 and connects[0].count("dbuser:") == 1, function
        assert "/bici_app" in connects[0] and "bici_admin" not in connects[0], function
        assert env["DB_USER"] == "bici_app" and env["DB_IAM_AUTH"] == "true", function


def test_iam_template_migrate_logs_in_as_the_owner_and_reaches_no_cache(expanded):
    role = _role_of(expanded, "MigrateFunction")
    statements = list(_statements(expanded, role))
    connects = [json.dumps(s["Resource"]) for s in statements if "rds-db:connect" in _actions(s)]
    groups = expanded["Resources"]["MigrateFunction"]["Properties"]["VpcConfig"]["SecurityGroupIds"]

    assert len(connects) == 1 and "/bici_admin" in connects[0]
    assert not [s for s in statements if "elasticache:Connect" in _actions(s)]
    assert groups == [{"Ref": "MigrateSecurityGroup"}]


def test_iam_template_cache_connect_names_the_cache_and_one_user(expanded):
    expected = {"CacheAdminFunction": "CacheAdminUser"}
    for function in SERVING:
        role = _role_of(expanded, function)
        [statement] = [
            s for s in _statements(expanded, role) if "elasticache:Connect" in _actions(s)
        ]
        user = expected.get(function, "CacheAppUser")

        assert statement["Resource"] == [
            {"Fn::GetAtt": ["Cache", "ARN"]},
            {"Fn::GetAtt": [user, "Arn"]},
        ], function


@pytest.mark.parametrize(
    ("function", "queue"),
    [
        ("SmsProcessorFunction", "InboundSmsQueue"),
        ("SmsOutcomeFunction", "ReplyOutcomeQueue"),
        ("PostCallProcessorFunction", "PostCallQueue"),
        ("SmsResponderFunction", "ReplyQueue"),
        ("OutboundCallFunction", "OutboundCallQueue"),
    ],
)
def test_iam_template_queue_consumers_may_only_consume_their_own_queue(expanded, function, queue):
    role = _role_of(expanded, function)
    statements = list(_statements(expanded, role))
    consume = [s for s in statements if "sqs:ReceiveMessage" in _actions(s)]
    other_sqs = [
        s for s in statements if s not in consume and any(a.startswith("sqs:") for a in _actions(s))
    ]

    assert not [a for a in role.get("ManagedPolicyArns", []) if "SQSQueue" in json.dumps(a)]
    assert [s["Resource"] for s in consume] == [{"Fn::GetAtt": [queue, "Arn"]}]
    assert sorted(_actions(consume[0])) == [
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ]
    assert all(_actions(s) == ["sqs:SendMessage"] for s in other_sqs)


def test_iam_template_endpoint_policies_allow_only_what_the_stack_needs(expanded):
    s3 = expanded["Resources"]["S3GatewayEndpoint"]["Properties"]["PolicyDocument"]
    secrets = expanded["Resources"]["SecretsManagerEndpoint"]["Properties"]["PolicyDocument"]

    assert [_actions(s) for s in s3["Statement"]] == [["s3:PutObject"]]
    assert "cloudformation-custom-resource-response-" in json.dumps(s3["Statement"][0]["Resource"])
    assert [_actions(s) for s in secrets["Statement"]] == [["secretsmanager:GetSecretValue"]]
    assert "*" not in json.dumps(secrets["Statement"][0]["Resource"])


def test_iam_template_serving_functions_reach_no_address_range(expanded):
    resources = expanded["Resources"]
    rules = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupEgress"
        and r["Properties"]["GroupId"] == {"Ref": "FunctionSecurityGroup"}
    ]
    inline = resources["FunctionSecurityGroup"]["Properties"]["SecurityGroupEgress"]

    assert all("DestinationSecurityGroupId" in rule for rule in rules)
    assert [rule["CidrIp"] for rule in inline] == ["127.0.0.1/32"]
    assert sorted(rule["FromPort"] for rule in rules) == [443, 5432, 6379]


def test_iam_template_database_deletion_protection_is_on_by_default(expanded):
    database = expanded["Resources"]["Database"]["Properties"]
    parameter = load_template()["Parameters"]["DatabaseDeletionProtection"]

    assert database["DeletionProtection"] == {"Ref": "DatabaseDeletionProtection"}
    assert parameter["Default"] == "true"
    assert database["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in database


def test_iam_template_proxy_requires_iam_from_every_client(expanded):
    proxy = expanded["Resources"]["DbProxy"]["Properties"]

    assert proxy["DefaultAuthScheme"] == "IAM_AUTH"
    assert [auth["IAMAuth"] for auth in proxy["Auth"]] == ["REQUIRED"]
    assert proxy["RequireTLS"] is True


@pytest.mark.parametrize("name", ["SmsResponderFunction", "OutboundCallFunction"])
def test_iam_template_functions_outside_the_vpc_have_no_data_access(expanded, name):
    function = expanded["Resources"][name]["Properties"]
    role = _role_of(expanded, name)
    actions = [a for s in _statements(expanded, role) for a in _actions(s)]

    assert "VpcConfig" not in function
    assert not [a for a in actions if a.startswith(("rds-db:", "elasticache:", "ec2:"))]


def test_iam_template_default_cache_user_is_off():
    users = {
        name: r["Properties"]
        for name, r in load_template()["Resources"].items()
        if r["Type"] == "AWS::ElastiCache::User"
    }

    assert users["CacheDefaultUser"]["UserName"] == "default"
    assert users["CacheDefaultUser"]["AccessString"].startswith("off ")
    for name in ("CacheAppUser", "CacheAdminUser"):
        assert users[name]["AuthenticationMode"] == {"Type": "iam"}
        assert users[name]["UserName"] == users[name]["UserId"]
        assert "+@all" not in users[name]["AccessString"]


def test_iam_template_only_the_responder_caller_and_status_webhook_send_outcomes(expanded):
    senders = set()
    for name, resource in expanded["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        role = resource["Properties"]
        for statement in _statements(expanded, role):
            resources = statement.get("Resource")
            listed = resources if isinstance(resources, list) else [resources]
            if {"Fn::GetAtt": ["ReplyOutcomeQueue", "Arn"]} in listed and any(
                a.startswith("sqs:Send") for a in _actions(statement)
            ):
                assert _actions(statement) == ["sqs:SendMessage"], name
                senders.add(name)

    assert senders == {"SmsResponderRole", "OutboundCallRole", "SmsWebhookFunctionRole"}
