"""Runs the layer's migrations as a CloudFormation custom resource on deploy."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadlookup.adapters import custom_resource
from leadlookup.adapters.migrate import migrate
from leadlookup.container import get_runtime
from leadlookup.observability import logger


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return custom_resource.handle(
        event,
        context.get_remaining_time_in_millis,
        lambda: migrate(get_runtime().db),
    )
