"""Cache administration by direct invoke (status, flushes, upsert_org) and the daily purge."""

from leadlookup.admin import run_action
from leadlookup.observability import emf, logger, tracer
from leadlookup.runtime import get_runtime


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@emf.log_metrics
def lambda_handler(event: dict, context: object) -> dict:
    return run_action(get_runtime().service, event)
