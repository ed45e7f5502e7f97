"""SMS reply outcomes and delivery statuses: stores what the responder sent (or failed to send)
as outbound messages, and Twilio's later status callbacks on them."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadlookup.container import get_runtime
from leadlookup.observability import emf, logger, tracer

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> bool:
    # The receive count lets a status callback that overtook its send's outcome wait for it.
    receives = int(record.attributes.approximate_receive_count or 1)
    return get_runtime().outcomes.store_record(record.body, receives)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@emf.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
