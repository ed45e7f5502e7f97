"""Runs the layer's migrations as a CloudFormation custom resource on deploy."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadlookup import custom_resource
from leadlookup.migrate import migrate
from leadlookup.observability import logger
from leadlookup.runtime import get_runtime


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return custom_resource.handle(
        event,
        context.get_remaining_time_in_millis,
        lambda: migrate(get_runtime().db),
    )
