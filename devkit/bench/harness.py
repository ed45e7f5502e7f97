"""The handlers as Lambda runs them, in this process: environment, runtime, invocation."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from devkit import lambda_env
from leadlookup import container as runtime_module
from leadlookup.config import Settings
from leadlookup.container import Runtime, build_runtime
from leadlookup.observability import RecordingMetricSink, emf

INITIATION = "ConversationInitiationFunction"
SMS_WEBHOOK = "SmsWebhookFunction"
SMS_PROCESSOR = "SmsProcessorFunction"
LEAD_UPDATE = "LeadUpdateFunction"
CACHE_ADMIN = "CacheAdminFunction"

# The documented test secrets (the sample events are signed with them).
TEST_SECRETS = {
    "INITIATION_WEBHOOK_SECRET": "test-initiation-secret",
    "TWILIO_AUTH_TOKEN": "test-twilio-auth-token",
    "ELEVENLABS_WEBHOOK_SECRET": "test-elevenlabs-secret",
}


def function_env(
    database_url: str, redis_url: str, key_prefix: str, queue_url: str
) -> dict[str, str]:
    """What a deployed function's environment holds, pointed at the local services.

    Tracing is off (there is no X-Ray daemon to send to); boto3 gets dummy credentials for
    the bench's fake SQS.
    """
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_ENABLED": "true",
        "CACHE_KEY_PREFIX": key_prefix,
        "INBOUND_SMS_QUEUE_URL": queue_url,
        "POWERTOOLS_SERVICE_NAME": "bici-lookups",
        "POWERTOOLS_METRICS_NAMESPACE": "BiciLookups",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench-access-key",
        "AWS_SECRET_ACCESS_KEY": "bench-secret-key",
        **TEST_SECRETS,
    }


class TeeSink:
    """Counts metrics for the bench and still writes them as EMF, as in Lambda."""

    def __init__(self) -> None:
        self.recorder = RecordingMetricSink()

    @property
    def counts(self) -> dict[str, int]:
        """Counts so far, by metric name."""
        return self.recorder.counts

    def count(self, name: str) -> None:
        """Add 1 to ``name`` (here and in this invocation's EMF record)."""
        self.recorder.count(name)
        emf.count(name)


def install_runtime(env: Mapping[str, str], **overrides: Any) -> tuple[Runtime, TeeSink]:
    """Build a runtime from ``env`` (plus field overrides) and make it this container's."""
    settings = dataclasses.replace(Settings.from_env(dict(env)), **overrides)
    sink = TeeSink()
    runtime = build_runtime(settings, metrics=sink)
    runtime_module.set_runtime(runtime)
    return runtime, sink


class Functions:
    """The template's functions, imported once like warm containers, invoked with a context."""

    def __init__(self) -> None:
        self.specs = lambda_env.functions()

    def load(self, *logical_ids: str) -> None:
        """Import the handlers now (their cold start is measured elsewhere)."""
        for logical_id in logical_ids:
            lambda_env.load_handler(self.specs[logical_id])

    def context(self, logical_id: str) -> lambda_env.LambdaContext:
        """A fresh context object, as Lambda passes one per invocation."""
        return lambda_env.LambdaContext(self.specs[logical_id])

    def handler(self, logical_id: str) -> Any:
        """The function's ``lambda_handler``."""
        return lambda_env.load_handler(self.specs[logical_id])


def succeeded(response: Any) -> bool:
    """Whether a handler's answer is a success (2xx, 304 for an unchanged inbox, or an SQS
    batch with no failures)."""
    if not isinstance(response, dict):
        return False
    if "statusCode" in response:
        return 200 <= int(response["statusCode"]) < 300 or int(response["statusCode"]) == 304
    if "batchItemFailures" in response:
        return not response["batchItemFailures"]
    return bool(response.get("ok"))


def apply_env(env: Mapping[str, str]) -> None:
    """Set ``env`` in ``os.environ`` (the handlers read Powertools settings from it)."""
    os.environ.update(env)
