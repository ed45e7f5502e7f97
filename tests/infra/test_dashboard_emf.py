"""The dashboard graphs exactly what the handlers emit, captured from their real EMF output."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from devkit.lambda_env import MONITORING_TEMPLATE, load_template
from leadlookup import metrics
from leadlookup.adapters.cache import CacheKeys
from leadlookup.config import DEFAULT_ORGANIZATION_ID
from leadlookup.container import set_runtime
from leadlookup.domain.phones import normalize_phone
from tests.conftest import EVENTS
from tests.infra.test_template import _custom_metrics_graphed, _dashboard
from tests.support.faults import new_phone
from tests.support.redis_servers import free_port
from tests.support.replies import exercise_delivery_metrics, exercise_reply_metrics

pytestmark = pytest.mark.infra

Invoke = Callable[[str, dict[str, Any]], dict[str, Any]]


def _event(function_dir: str, name: str) -> dict[str, Any]:
    return json.loads((EVENTS / function_dir / f"{name}.json").read_text())


def _emitted(output: str) -> set[tuple[str, tuple[str, ...]]]:
    """(metric name, dimension set) for every EMF record printed."""
    found = set()
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == metrics.NAMESPACE
            for dimension_set in directive["Dimensions"]:
                dims = tuple(x for d in dimension_set for x in (d, str(record[d])))
                for metric in directive["Metrics"]:
                    found.add((metric["Name"], dims))
    return found


def _expire_fresh_entries(env: dict[str, str], request: dict[str, Any]) -> None:
    """Delete the fresh lead and store entries of a call, as their TTLs would; stale copies stay."""
    keys = CacheKeys(env["CACHE_KEY_PREFIX"])
    caller, store = (normalize_phone(request[k]) or "" for k in ("caller_id", "called_number"))
    client = redis.Redis.from_url(env["REDIS_URL"])
    client.delete(keys.lead(caller, DEFAULT_ORGANIZATION_ID), keys.org(store))
    client.close()


def _fresh_container(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    set_runtime(None)


def test_every_metric_graphed_is_emitted_by_a_handler_and_every_emitted_one_is_graphed(
    app_env: dict[str, str],
    invoke: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    closed_redis = f"redis://127.0.0.1:{free_port()}"
    lead = json.loads(
        invoke("conversation_initiation", _event("conversation_initiation", "new_caller"))["body"]
    )
    lead_id = lead["dynamic_variables"]["lead_id"]
    patch = _event("lead_update", "patch_valid")
    patch["pathParameters"] = {"lead_id": lead_id}
    patch["rawPath"] = patch["requestContext"]["http"]["path"] = f"/leads/{lead_id}"
    patch["headers"].pop("if-match", None)
    # Hits and misses: a new container sees the same caller twice.
    _fresh_container(monkeypatch)
    invoke("conversation_initiation", _event("conversation_initiation", "new_caller"))
    invoke("conversation_initiation", _event("conversation_initiation", "new_caller"))
    # Bypasses: caching switched off.
    _fresh_container(monkeypatch, REDIS_ENABLED="false")
    invoke("conversation_initiation", _event("conversation_initiation", "new_caller"))
    # Errors: Redis gone. The organization lookup fails first (and opens the breaker)...
    _fresh_container(monkeypatch, REDIS_ENABLED="true", REDIS_URL=closed_redis)
    invoke("conversation_initiation", _event("conversation_initiation", "new_caller"))
    # ...in another container, whose breaker lets the next call try Redis at once, the lead
    # lookup fails too; then a write cannot invalidate.
    _fresh_container(monkeypatch, REDIS_BREAKER_COOLDOWN_MS="0")
    stranger_call = _event("conversation_initiation", "new_caller")
    stranger_call["body"] = json.dumps(
        {**json.loads(stranger_call["body"]), "caller_id": new_phone()}
    )
    assert invoke("conversation_initiation", stranger_call)["statusCode"] == 200
    assert invoke("lead_update", patch)["statusCode"] == 200
    # Stale answers: the database is gone and the fresh entries of a known caller expired.
    known = _event("conversation_initiation", "known_caller")
    _fresh_container(monkeypatch, REDIS_URL=app_env["REDIS_URL"])
    invoke("conversation_initiation", known)
    _expire_fresh_entries(app_env, json.loads(known["body"]))
    down = "postgresql://postgres@127.0.0.1:1/none"
    _fresh_container(monkeypatch, DATABASE_URL=down)
    invoke("conversation_initiation", known)
    # Degraded: the database is gone and a caller the cache never saw calls.
    stranger = copy.deepcopy(known)
    stranger["body"] = json.dumps({**json.loads(known["body"]), "caller_id": new_phone()})
    invoke("conversation_initiation", stranger)
    # SMS replies: sent, fallback, failed, no words, not configured (the responder handler).
    exercise_reply_metrics(invoke, monkeypatch, _event("sms_responder", "sqs_job"))
    # Delivery failures: a status callback, stored by the outcome handler (database back).
    exercise_delivery_metrics(
        invoke, monkeypatch, app_env["DATABASE_URL"], _event("sms_outcome", "sqs_outcome")
    )

    emitted = _emitted(capsys.readouterr().out)
    graphed = set(_custom_metrics_graphed(_dashboard(load_template(MONITORING_TEMPLATE))))

    assert graphed <= emitted, f"graphed but never emitted: {sorted(graphed - emitted)}"
    custom = {m for m in emitted if m[0] in metrics.ALL_METRICS}
    assert custom <= graphed, f"emitted but not graphed: {sorted(custom - graphed)}"
    # Besides the layer's metrics only Powertools' ColdStart, under its own dimensions (one
    # per function name), which the dashboard leaves out.
    assert {name for name, _ in emitted} == {*metrics.ALL_METRICS, metrics.COLD_START}
    cold_dimensions = {dims[::2] for name, dims in emitted if name == metrics.COLD_START}
    assert cold_dimensions == {("function_name", "service")}
