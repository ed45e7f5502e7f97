"""Cache administration actions for direct invocation (and the daily retention purge).

A client mistake (unknown action, bad argument, a phone number another organization has)
answers ``{"ok": false, "status": 4xx, "message": ...}``. Anything else - Redis or the
database down, a bug - raises, so Lambda counts an ``Errors`` datapoint and the scheduled
purge's alarm fires.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leadlookup.api.http import error_message, error_status
from leadlookup.errors import InvalidInput, LookupServiceError, Unavailable
from leadlookup.observability import logger
from leadlookup.usecases.lookups import LookupService


def _status(service: LookupService, _event: dict[str, Any]) -> Any:
    return service.cache_status()


def _flushed(done: bool) -> dict[str, bool]:
    # A serving path may shrug off a failed delete (the TTL bounds it); an operator who asked
    # for the flush must learn that it did not happen, as flush_all tells them.
    if not done:
        raise Unavailable("redis is unavailable; nothing was flushed")
    return {"flushed": True}


def _flush_lead(service: LookupService, event: dict[str, Any]) -> Any:
    return _flushed(service.flush_lead(event.get("phone"), event.get("organization_id")))


def _flush_org(service: LookupService, event: dict[str, Any]) -> Any:
    return _flushed(service.flush_org(event.get("phone")))


def _flush_all(service: LookupService, _event: dict[str, Any]) -> Any:
    return {"deleted_keys": service.flush_all()}


def _upsert_org(service: LookupService, event: dict[str, Any]) -> Any:
    return service.upsert_org(event.get("organization")).to_json()


def _purge(service: LookupService, _event: dict[str, Any]) -> Any:
    return {"deleted": service.purge(), "retention_days": service.settings.retention_days}


ACTIONS: dict[str, Callable[[LookupService, dict[str, Any]], Any]] = {
    "status": _status,
    "flush_lead": _flush_lead,
    "flush_org": _flush_org,
    "flush_all": _flush_all,
    "upsert_org": _upsert_org,
    "purge": _purge,
}


def run_action(service: LookupService, event: Any) -> dict[str, Any]:
    """Run ``event["action"]``: ``ok`` with its result, ``ok: false`` for a client mistake.

    Any other failure is logged once (type only: database messages can quote rows) and raised.
    """
    action = event.get("action") if isinstance(event, dict) else None
    handler = ACTIONS.get(action) if isinstance(action, str) else None
    try:
        if handler is None:
            raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}")
        result = handler(service, event)
    except LookupServiceError as exc:
        status = error_status(exc)
        if status >= 500:
            logger.error(
                "cache admin action failed",
                action=action,
                status=status,
                error_type=type(exc).__name__,
                reason=error_message(exc),
            )
            raise
        return {"ok": False, "action": action, "status": status, "message": str(exc)}
    except Exception as exc:
        logger.error("cache admin action failed", action=action, error_type=type(exc).__name__)
        raise
    logger.info("cache admin action done", action=action)
    return {"ok": True, "action": action, "result": result}
