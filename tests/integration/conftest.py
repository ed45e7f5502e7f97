"""Fixtures shared by the integration tests: counting proxies, LeadUpdateFunction's, the reply
stand-ins."""

from tests.support.counting import counted, pg_proxy, redis_proxy
from tests.support.lead_update import cache, frozen, lead
from tests.support.replies import (
    agent,
    agent_server,
    reply_metrics,
    twilio,
    twilio_server,
    wired,
)

__all__ = [
    "agent",
    "agent_server",
    "cache",
    "counted",
    "frozen",
    "lead",
    "pg_proxy",
    "redis_proxy",
    "reply_metrics",
    "twilio",
    "twilio_server",
    "wired",
]
