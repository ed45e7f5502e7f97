"""One send per job key: Powertools idempotency on DynamoDB, or in memory for local runs."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

# A completed job's record outlives every redelivery: SQS keeps a job at most 4 days.
RECORD_TTL_SECONDS = 4 * 24 * 3600
STORE_TIMEOUT_S = 2


class MemoryPersistenceLayer(BasePersistenceLayer):
    """The DynamoDB layer's conditional put, in one process (local runs and the runner)."""

    def __init__(self) -> None:
        # Powertools leaves this __init__ unannotated (and mypy's untyped_calls_exclude does
        # not reach super() calls).
        super().__init__()  # type: ignore[no-untyped-call]
        self._records: dict[str, DataRecord] = {}
        self._lock = threading.Lock()

    def _get_record(self, idempotency_key: str) -> DataRecord:
        with self._lock:
            record = self._records.get(idempotency_key)
        if record is None:
            raise IdempotencyItemNotFoundError
        return record

    def _put_record(self, data_record: DataRecord) -> None:
        now = dt.datetime.now()
        with self._lock:
            old = self._records.get(data_record.idempotency_key)
            free = (
                old is None
                or (old.expiry_timestamp or 0) < int(now.timestamp())
                or (
                    old.status == "INPROGRESS"
                    and old.in_progress_expiry_timestamp is not None
                    and old.in_progress_expiry_timestamp < int(now.timestamp() * 1000)
                )
            )
            if not free:
                raise IdempotencyItemAlreadyExistsError(old_data_record=old)
            self._records[data_record.idempotency_key] = data_record

    def _update_record(self, data_record: DataRecord) -> None:
        with self._lock:
            self._records[data_record.idempotency_key] = data_record

    def _delete_record(self, data_record: DataRecord) -> None:
        with self._lock:
            self._records.pop(data_record.idempotency_key, None)


def persistence_store(table_name: str | None, **options: Any) -> BasePersistenceLayer:
    """The DynamoDB table's store (short timeouts), or an in-memory one without a table."""
    if not table_name:
        return MemoryPersistenceLayer()
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from botocore.config import Config

    config = Config(
        connect_timeout=STORE_TIMEOUT_S,
        read_timeout=STORE_TIMEOUT_S,
        retries={"total_max_attempts": 3, "mode": "standard"},
    )
    return DynamoDBPersistenceLayer(table_name=table_name, boto_config=config, **options)
