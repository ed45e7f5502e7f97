"""The SMS reply path in template.yaml: no NAT, the responder outside the VPC, narrow grants."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.infra


def _role_statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    # The responder has an explicit role (SAM's for an SQS event source reaches every queue).
    role_name = template["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    role = template["Resources"][role_name]["Properties"]
    return [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]


def _secret_refs(statements: list[dict[str, Any]]) -> set[str]:
    return {
        resource["Ref"]
        for statement in statements
        if statement["Action"] == "secretsmanager:GetSecretValue"
        for resource in statement["Resource"]
    }


def test_replies_responder_runs_outside_the_vpc_with_only_its_two_secrets(
    template: dict[str, Any],
) -> None:
    responder = template["Resources"]["SmsResponderFunction"]
    env = responder["Properties"]["Environment"]["Variables"]
    statements = _role_statements(template, "SmsResponderFunction")

    assert "VpcConfig" not in responder["Properties"]
    assert _secret_refs(statements) == {"ElevenLabsApiKeySecret", "TwilioAuthTokenSecret"}
    assert env["ELEVENLABS_API_KEY_ARN"] == {"Ref": "ElevenLabsApiKeySecret"}
    assert env["TWILIO_AUTH_TOKEN_ARN"] == {"Ref": "TwilioAuthTokenSecret"}
    assert env["REPLY_OUTCOME_QUEUE_URL"] == {"Ref": "ReplyOutcomeQueue"}
    assert env["IDEMPOTENCY_TABLE"] == {"Ref": "IdempotencyTable"}
    dynamodb = [s for s in statements if "dynamodb:GetItem" in s["Action"]]
    assert [(s["Action"], s["Resource"]) for s in dynamodb] == [
        (
            [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
            ],
            {"Fn::GetAtt": ["IdempotencyTable", "Arn"]},
        )
    ]


def test_replies_no_nat_gateway_and_sqs_reached_through_a_send_only_endpoint(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    types = {r["Type"] for r in resources.values()}
    endpoint = resources["SqsEndpoint"]["Properties"]

    assert "AWS::EC2::NatGateway" not in types
    assert "AWS::EC2::InternetGateway" not in types
    assert endpoint["VpcEndpointType"] == "Interface"
    [statement] = endpoint["PolicyDocument"]["Statement"]
    assert statement["Action"] == "sqs:SendMessage"
    # The reply queue only (the webhooks are outside the VPC): nothing else can be sent to.
    assert statement["Resource"] == [{"Fn::GetAtt": ["ReplyQueue", "Arn"]}]
    for name in ("SmsProcessorFunction", "LeadUpdateFunction"):
        env = resources[name]["Properties"]["Environment"]["Variables"]
        assert env["REPLY_QUEUE_URL"] == {"Ref": "ReplyQueue"}, name


def test_replies_queues_have_dead_letter_queues_and_the_functions_consume_them(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    jobs = resources["ReplyQueue"]["Properties"]
    outcomes = resources["ReplyOutcomeQueue"]["Properties"]
    responder_event = resources["SmsResponderFunction"]["Properties"]["Events"]["ReplyJobs"]
    outcome_event = resources["SmsOutcomeFunction"]["Properties"]["Events"]["ReplyOutcomes"]

    assert jobs["FifoQueue"] is True
    for queue, dlq in ((jobs, "ReplyDeadLetterQueue"), (outcomes, "ReplyOutcomeDeadLetterQueue")):
        assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq, "Arn"]}
        assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    assert responder_event["Properties"]["Queue"] == {"Fn::GetAtt": ["ReplyQueue", "Arn"]}
    assert outcome_event["Properties"]["Queue"] == {"Fn::GetAtt": ["ReplyOutcomeQueue", "Arn"]}
    for event in (responder_event, outcome_event):
        assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    responder_timeout = resources["SmsResponderFunction"]["Properties"]["Timeout"]
    assert jobs["VisibilityTimeout"] >= 6 * responder_timeout
    assert "VpcConfig" in resources["SmsOutcomeFunction"]["Properties"]


def test_replies_idempotency_table_expires_records(template: dict[str, Any]) -> None:
    table = template["Resources"]["IdempotencyTable"]["Properties"]

    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}


# -- delivery status ---------------------------------------------------------------------------


def test_replies_status_route_is_the_sms_webhooks_and_sends_only_to_the_outcome_queue(
    template: dict[str, Any],
) -> None:
    webhook = template["Resources"]["SmsWebhookFunction"]["Properties"]
    routes = {
        (e["Properties"]["Method"], e["Properties"]["Path"])
        for e in webhook["Events"].values()
        if e["Type"] == "HttpApi"
    }
    statements = [s for p in webhook["Policies"] if "Statement" in p for s in p["Statement"]]

    assert ("POST", "/webhooks/twilio/status") in routes
    assert "VpcConfig" not in webhook  # storage first: it never needs the database
    assert webhook["Environment"]["Variables"]["REPLY_OUTCOME_QUEUE_URL"] == {
        "Ref": "ReplyOutcomeQueue"
    }
    assert statements == [
        {
            "Sid": "DeliveryStatusesOnly",
            "Effect": "Allow",
            "Action": "sqs:SendMessage",
            "Resource": {"Fn::GetAtt": ["ReplyOutcomeQueue", "Arn"]},
        }
    ]


def test_replies_every_send_names_the_status_route_at_the_url_twilio_signs(
    template: dict[str, Any],
) -> None:
    env = template["Resources"]["SmsResponderFunction"]["Properties"]["Environment"]["Variables"]
    output = template["Outputs"]["TwilioStatusCallbackUrl"]["Value"]

    condition, custom, default = env["TWILIO_STATUS_CALLBACK_URL"]["Fn::If"]

    assert condition == "HasPublicBaseUrl"
    # The status webhook rebuilds the URL from PUBLIC_BASE_URL, else the execute-api domain.
    assert custom == {"Fn::Sub": "${PublicBaseUrl}/webhooks/twilio/status"}
    assert default["Fn::Sub"].startswith("https://${HttpApi}.execute-api.")
    assert default["Fn::Sub"].endswith("/webhooks/twilio/status")
    assert output == env["TWILIO_STATUS_CALLBACK_URL"]


def test_replies_failed_deliveries_are_alarmed(monitoring: dict[str, Any]) -> None:
    alarm = monitoring["Resources"]["SmsDeliveryFailedAlarm"]["Properties"]

    assert (alarm["Namespace"], alarm["MetricName"]) == ("BiciLookups", "SmsDeliveryFailed")
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
