"""Metric names emitted by the layer: defined once, graphed by the dashboard in template.yaml.

EMF dimensions apply to a whole record, so each cache and outcome gets its own
metric name instead of a `cache`/`outcome` dimension pair.
"""

from __future__ import annotations

from enum import StrEnum


class Cache(StrEnum):
    """The read-through caches; the value prefixes their metric names."""

    LEAD = "Lead"
    ORG = "Org"


class Outcome(StrEnum):
    """What one cache lookup did. A hit is a database lookup avoided."""

    HIT = "Hit"
    MISS = "Miss"
    ERROR = "Error"
    BYPASS = "Bypass"
    # A miss whose load found the database unavailable, answered from the last known value.
    STALE_SERVED = "StaleServed"


def cache_metric(cache: Cache, outcome: Outcome) -> str:
    """The metric name for one cache and outcome, e.g. ``LeadCacheHit``."""
    return f"{cache.value}Cache{outcome.value}"


# Every (cache, outcome) name by table: counting one is a dict lookup, not a call.
CACHE_METRIC_NAMES: dict[tuple[Cache, Outcome], str] = {
    (c, o): cache_metric(c, o) for c in Cache for o in Outcome
}
CACHE_METRICS: tuple[str, ...] = tuple(CACHE_METRIC_NAMES.values())
CACHE_INVALIDATION_FAILED = "CacheInvalidationFailed"
INITIATION_DEGRADED = "InitiationDegraded"
# SMS replies: texts Twilio accepted, agent failures answered with the
# fixed text, sends that failed, jobs skipped for want of configuration, and the latency from
# the inbound text reaching the processor to Twilio accepting the reply (milliseconds).
SMS_REPLY_SENT = "SmsReplySent"
SMS_REPLY_FALLBACK = "SmsReplyFallback"
SMS_REPLY_FAILED = "SmsReplyFailed"
SMS_REPLY_NOT_CONFIGURED = "SmsReplyNotConfigured"
SMS_REPLY_LATENCY = "SmsReplyLatency"
# Texts without words (a photo alone), answered with the fixed text asking for words.
SMS_REPLY_NO_TEXT = "SmsReplyNoText"
# An agent answer over Twilio's 1,600 characters, cut on a sentence or word boundary.
SMS_REPLY_TRUNCATED = "SmsReplyTruncated"
# A text Twilio accepted that its status callback later reported undelivered or failed.
SMS_DELIVERY_FAILED = "SmsDeliveryFailed"
REPLY_METRICS: tuple[str, ...] = (
    SMS_REPLY_SENT,
    SMS_REPLY_FALLBACK,
    SMS_REPLY_FAILED,
    SMS_REPLY_NOT_CONFIGURED,
    SMS_REPLY_LATENCY,
    SMS_REPLY_NO_TEXT,
    SMS_REPLY_TRUNCATED,
    SMS_DELIVERY_FAILED,
)
ALL_METRICS: tuple[str, ...] = (
    *CACHE_METRICS,
    CACHE_INVALIDATION_FAILED,
    INITIATION_DEGRADED,
    *REPLY_METRICS,
)

# Powertools' cold-start metric (dimensions function_name and service): one per container,
# written by observability.emf; not on the dashboard.
COLD_START = "ColdStart"

# The defaults of POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE, which the
# template sets to these same values (tests/infra/test_template.py keeps them equal).
SERVICE_NAME = "bici-lookups"
NAMESPACE = "BiciLookups"
