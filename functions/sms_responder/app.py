"""SMS responder, outside the VPC: asks the agent (or sends the fixed text), texts via Twilio.

It has no database: the job carries its context and the outcome goes back on a queue.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadlookup.container import responder
from leadlookup.observability import emf, logger, tracer

# FIFO: a failed job also holds back the later jobs of its group (one customer), so replies
# go out in order; other customers carry on.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
processor.raise_on_entire_batch_failure = False


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    responder().handle_record(record.body, lambda_context)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@emf.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
