"""Fixtures shared by the integration tests: LeadUpdateFunction's and the reply stand-ins."""

from tests.support.lead_update import cache, frozen, lead
from tests.support.replies import agent, agent_server, twilio, twilio_server

__all__ = ["agent", "agent_server", "cache", "frozen", "lead", "twilio", "twilio_server"]
