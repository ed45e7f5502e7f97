"""Cache administration by direct invoke (status, flushes, upsert_org) and the daily purge."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from leadlookup.container import get_runtime
from leadlookup.observability import emf, logger, tracer
from leadlookup.usecases.admin import run_action


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@emf.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return run_action(get_runtime().service, event)
