"""Cache key formats (README.md, "How the lookups behave").

The braces are a Redis Cluster hash tag, so a key and its lease always live in the same slot
and one script may touch both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CacheKeys:
    """Builds keys under one prefix, e.g. ``bici:lead:{17786528784}:<org id>``."""

    prefix: str = "bici:"

    def lead(self, phone_normalized: str, organization_id: str) -> str:
        """Key of a lead, by caller number and organization."""
        return f"{self.prefix}lead:{{{phone_normalized}}}:{organization_id}"

    def org(self, phone_normalized: str) -> str:
        """Key of the organization reached at a number (``default`` for no usable number)."""
        return f"{self.prefix}org:{{{phone_normalized}}}"

    def org_prefixes(self) -> tuple[str, str]:
        """What every organization key and every organization lease starts with."""
        return f"{self.prefix}org:", f"{self.prefix}lease:org:"

    def changes(self, organization_id: str | None) -> str:
        """The change counter of a store's leads (None: of every store). One hash tag for
        all of them, so the counters a list reads, or a write bumps, share a slot."""
        return f"{self.prefix}changes:{{stores}}:{organization_id or 'all'}"

    def changes_prefix(self) -> str:
        """What every change counter starts with."""
        return f"{self.prefix}changes:"

    def lease(self, key: str) -> str:
        """The lease guarding ``key``: ``bici:lead:{...}`` -> ``bici:lease:lead:{...}``."""
        return f"{self.prefix}lease:{key[len(self.prefix) :]}"

    def stale(self, key: str) -> str:
        """The last known value of ``key``: ``bici:lead:{...}`` -> ``bici:stale:lead:{...}``."""
        return f"{self.prefix}stale:{key[len(self.prefix) :]}"
