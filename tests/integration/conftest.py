"""Fixtures shared by the LeadUpdateFunction tests (lead routes, post-call webhook)."""

from tests.support.lead_update import cache, frozen, lead

__all__ = ["cache", "frozen", "lead"]
