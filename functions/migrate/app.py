"""Runs the layer's migrations as a CloudFormation custom resource on deploy."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadlookup.adapters import custom_resource
from leadlookup.adapters.migrate import migrate
from leadlookup.container import get_runtime
from leadlookup.observability import logger


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return custom_resource.handle(
        event,
        context.get_remaining_time_in_millis,
        lambda: migrate(get_runtime().db),
    )
