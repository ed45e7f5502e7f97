"""Status codes (as README.md's "Layout" states them): a unique violation is 409, any other
failure 500 "internal error" logged once with its type, 503 only for a dependency that is
down; a failing migration fails the deploy at once with its cause."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from leadlookup.adapters import custom_resource
from leadlookup.adapters.db import Database
from leadlookup.adapters.migrate import MIGRATIONS_DIR, migrate
from leadlookup.config import DEFAULT_ORGANIZATION_ID, Settings
from leadlookup.errors import MigrationError
from leadlookup.usecases.lookups import LookupService
from tests.support.db import execute
from tests.support.faults import insert_lead, new_phone, patch_event, sample, with_lead_id

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


def _internal_error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "internal error"]


def test_status_codes_taken_phone_number_is_a_409_client_mistake(
    app_env: dict[str, str], invoke: Invoke
) -> None:
    taken = {"name": "BICI Copy", "phone_number": "+17786528784"}  # the default store's

    answer = invoke("cache_admin", {"action": "upsert_org", "organization": taken})

    assert answer == {
        "ok": False,
        "action": "upsert_org",
        "status": 409,
        "message": "field 'phone_number' belongs to another organization",
    }


def test_status_codes_refused_statement_is_500_logged_once_with_its_type(
    app_env: dict[str, str], invoke: Invoke, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    lead_id = insert_lead(database_url, new_phone(), DEFAULT_ORGANIZATION_ID)
    execute(
        database_url,
        "ALTER TABLE leads ADD CONSTRAINT status_codes_probe"
        " CHECK (customer_name <> 'Refuse Me') NOT VALID",
    )
    caplog.set_level(logging.INFO)
    try:
        response = invoke("lead_update", patch_event(lead_id, {"customer_name": "Refuse Me"}))
    finally:
        execute(database_url, "ALTER TABLE leads DROP CONSTRAINT status_codes_probe")

    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {"message": "internal error"}
    [record] = _internal_error_records(caplog)
    assert (record.error_type, record.sqlstate) == ("DatabaseError", "23514")  # type: ignore[attr-defined]
    assert "Refuse Me" not in caplog.text and "Failing row" not in caplog.text


def test_status_codes_bug_is_json_500_logged_once_without_its_text(
    app_env: dict[str, str],
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(_self: LookupService, _lead_id: object) -> Any:
        raise KeyError("+16045550142")

    monkeypatch.setattr(LookupService, "get_lead", broken)
    event = with_lead_id(sample("lead_update/get"), "5e1f0000-0000-4000-8000-000000000009")
    caplog.set_level(logging.INFO)

    response = invoke("lead_update", event)

    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {"message": "internal error"}
    [record] = _internal_error_records(caplog)
    assert record.error_type == "KeyError"  # type: ignore[attr-defined]
    assert record.raised_at.startswith("test_status_codes.py:")  # type: ignore[attr-defined]
    assert "6045550142" not in caplog.text


def test_status_codes_broken_migration_fails_the_deploy_at_once_with_its_cause(
    database_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    (directory / "0999_broken.sql").write_text("CREATE TABLE status_codes_probe (id int,,);")
    db = Database(Settings(database_url=database_url))
    sleeps: list[float] = []

    try:
        with pytest.raises(MigrationError) as raised:
            custom_resource.migrate_with_retry(
                lambda: migrate(db, directory), lambda: 600_000, sleeps.append
            )
        answer = custom_resource.handle(
            {"RequestType": "Create"}, lambda: 600_000, lambda: migrate(db, directory)
        )
    finally:
        db.close()

    assert sleeps == []
    assert str(raised.value) == "migration 0999_broken failed: database error 42601"
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("migration 0999_broken failed: database error 42601")
