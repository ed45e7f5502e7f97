"""Inbound SMS processor: stores each message from the FIFO queue once (partial batch failures)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from leadlookup.container import get_runtime
from leadlookup.observability import emf, logger, tracer
from leadlookup.usecases import inbound_sms

# The FIFO flavour of the batch processor: a failed message also fails the later messages of
# its group (To:From) in this batch, so a STOP that is retried cannot land after a START sent
# later; other groups carry on. A batch that fails entirely is reported record by record
# rather than raised: the queue retries exactly the same records either way, without an
# invocation error per outage.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
processor.raise_on_entire_batch_failure = False


def record_handler(record: SQSRecord) -> bool:
    runtime = get_runtime()
    return inbound_sms.process_record(
        runtime.service, runtime.replies, record.body, record.message_id
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@emf.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
