"""The lookup service: read-through cached organizations and leads, and writes that write through.

Every write commits first; then a lead's cached value is replaced by the committed row
(ordered by its write_seq, so an older value never wins), an organization's is invalidated,
and an erased lead's is deleted. Every write to a store's leads (their texts, calls and
notes included) also bumps that store's change counter, the staff inbox's ETag.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from leadlookup.adapters.cache import CacheKeys, CacheRegion, ReadThroughCache
from leadlookup.adapters.repository import Repository
from leadlookup.config import Settings
from leadlookup.domain.delivery import FAILED_STATUSES
from leadlookup.domain.inbox import LeadFilter
from leadlookup.domain.models import (
    InboundMessage,
    Lead,
    Organization,
    PostCall,
    default_organization_snapshot,
    parse_uuid,
)
from leadlookup.domain.patch import apply_patch, is_noop, patch_notes, validate_patch
from leadlookup.domain.phones import mask_phone, national_digits, normalize_phone, normalize_phones
from leadlookup.errors import InvalidInput, NotFound, PreconditionFailed, Unavailable
from leadlookup.metrics import INITIATION_DEGRADED, Cache, Outcome
from leadlookup.observability import logger

# Key suffix for "no usable number dialled": the default organization.
DEFAULT_ORG_KEY = "default"
# An optimistic PATCH without If-Match retries this often when another writer wins the race.
_PATCH_ATTEMPTS = 3
# How long a store's change counter lives after its last bump (or its creation by a reader).
# The inbox's ETag is made of these counters, and it must never match after the data
# changed. A lost counter (Redis restarted, evicted or flushed) is created again at a random
# start, so it takes none of its old values: every ETag made before no longer matches. A bump
# that fails (Redis unreachable from the writer only; the write is committed) leaves the
# counter as it was: the TTL bounds how long an ETag can then keep matching changed data,
# because readers never renew it. The cost: a quiet store's counter is made anew this often,
# and each inbox poll after that reads the database once.
CHANGES_TTL_S = 120


@dataclass(frozen=True)
class StoredInbound:
    """An inbound text after storage: its store, its lead (None for a short code), and
    whether this delivery stored it (False: a redelivery of a text already stored)."""

    organization: Organization
    lead: Lead | None
    inserted: bool


class LookupService:
    """Organization and lead lookups, cached in Redis (and organizations in-process too)."""

    def __init__(
        self,
        repo: Repository,
        cache: ReadThroughCache,
        settings: Settings,
    ) -> None:
        self.repo = repo
        self.cache = cache
        self.settings = settings
        self.keys = CacheKeys(settings.cache_key_prefix)
        self.orgs: CacheRegion[Organization] = cache.region(
            Cache.ORG,
            Organization,
            settings.org_cache_ttl_seconds,
            self.keys.org,
            self.keys.lease,
            stale=(self.keys.stale, settings.org_stale_ttl_seconds),
        )
        self.leads: CacheRegion[Lead] = cache.region(
            Cache.LEAD,
            Lead,
            settings.lead_cache_ttl_seconds,
            self.keys.lead,
            self.keys.lease,
            seq=lambda lead: lead.write_seq,
            stale=(self.keys.stale, settings.lead_stale_ttl_seconds),
        )
        self._org_l1: dict[str, tuple[float, Organization]] = {}
        self._change_keys: dict[str, tuple[str, str]] = {}
        self._l1_lock = threading.Lock()

    # -- organizations ------------------------------------------------------------------

    def normalize(self, phone: object) -> str | None:
        """E.164 digits of ``phone`` in the configured default region, or None."""
        return normalize_phone(phone, self.settings.default_phone_region)

    def get_organization_by_phone(
        self, phone: object, deadline: float | None = None
    ) -> Organization:
        """The organization reached at ``phone``, else the default one."""
        return self._organization(self.normalize(phone), deadline)

    def _organization(self, normalized: str | None, deadline: float | None = None) -> Organization:
        # The in-process copy is keyed by the number itself, the Redis copy by its cache key.
        number = normalized or DEFAULT_ORG_KEY
        cached = self._l1_get(number)
        if cached is not None:
            self.orgs.record(Outcome.HIT)
            return cached

        def load() -> Organization:
            if normalized is None:
                org = self.repo.organization(self.settings.default_organization_id, deadline)
            else:
                org = self.repo.organization_for_phone(
                    normalized,
                    national_digits(normalized),
                    self.settings.default_organization_id,
                    deadline,
                )
            return org or self.default_organization()

        org = self.orgs.get_or_create_for((number,), load, deadline)
        assert org is not None
        self._l1_put(number, org)
        return org

    def cached_organization(self, phone: object, in_process: bool = False) -> Organization | None:
        """The organization from the in-process or Redis cache only (degraded answers);
        ``in_process`` when no time is left for a Redis round trip."""
        number = self.normalize(phone) or DEFAULT_ORG_KEY
        cached = self._l1_get(number)
        return cached or (None if in_process else self.orgs.peek(self.orgs.key(number)))

    def is_number_of(self, org: Organization, phone: object) -> bool:
        """Whether ``phone`` is ``org``'s own number (not a fallback to the default store)."""
        normalized = self.normalize(phone)
        if normalized is None:
            return False
        forms = {normalized, national_digits(normalized)}
        if org.phone_number_normalized in forms:
            return True
        # Rows written before normalization may hold the number in another format.
        return "".join(ch for ch in org.phone_number if ch.isdigit()) in forms

    def default_organization(self) -> Organization:
        """The layer's snapshot of the seeded default organization."""
        return Organization.from_json(default_organization_snapshot())

    def upsert_org(self, data: object) -> Organization:
        """Create or update an organization, then invalidate its keys (old and new number)."""
        if not isinstance(data, dict):
            raise InvalidInput("organization must be a JSON object")
        normalized = self.normalize(data.get("phone_number"))
        if normalized is None:
            raise InvalidInput("field 'phone_number' is not a phone number")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("field 'name' is required")
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            raise InvalidInput("field 'settings' must be a JSON object")
        spoken = settings.get("spoken_name")
        if spoken is not None and (not isinstance(spoken, str) or not spoken.strip()):
            # The name the agent says aloud; absent means the store's name.
            raise InvalidInput("field 'settings.spoken_name' must be a non-empty string")
        org_id = parse_uuid(data.get("id") or str(uuid.uuid4()), "field 'id'")
        org, previous = self.repo.upsert_organization(
            Organization(org_id, name.strip(), str(data["phone_number"]), normalized, settings)
        )
        if org.id == self.settings.default_organization_id:
            self._flush_default_organization()
            return org
        numbers = [str(n) for n in {normalized, previous} - {None}]
        with self._l1_lock:
            for number in numbers:
                self._org_l1.pop(number, None)
        for number in numbers:
            self.orgs.invalidate_for((number,))
        return org

    def _flush_default_organization(self) -> None:
        # Every number that is no store's is cached as the default organization under its own
        # key, so an edit of the default drops every organization entry and lease (other
        # stores refill with one lookup each): a rare admin action, visible at once.
        with self._l1_lock:
            self._org_l1.clear()
        values, leases = self.keys.org_prefixes()
        try:
            # Leases first: a reader that loaded the old row before the commit then fails its
            # fill; one that leases afterwards loads the new row.
            self.cache.flush_prefix(leases)
            self.cache.flush_prefix(values)
        except Unavailable:
            raise Unavailable(
                "organization saved, but its cached copies could not be flushed; retry"
            ) from None

    def _l1_get(self, number: str) -> Organization | None:
        if self.settings.org_l1_ttl_seconds <= 0:
            return None
        with self._l1_lock:
            item = self._org_l1.get(number)
        if item is None or item[0] <= time.monotonic():
            return None
        return item[1]

    def _l1_put(self, number: str, org: Organization) -> None:
        if self.settings.org_l1_ttl_seconds > 0:
            with self._l1_lock:
                self._org_l1[number] = (time.monotonic() + self.settings.org_l1_ttl_seconds, org)

    # -- leads --------------------------------------------------------------------------

    def find_or_create_lead(
        self, phone: object, organization_id: str, deadline: float | None = None
    ) -> Lead:
        """The lead for this caller and organization, created on first contact.

        On a miss: SELECT, then INSERT ... ON CONFLICT DO NOTHING RETURNING, then SELECT again
        if a concurrent first contact won the insert - all in one round trip (a SQL function).
        """
        normalized = self.normalize(phone)
        if normalized is None:
            raise InvalidInput("caller is not a phone number")
        return self._lead(str(phone).strip(), normalized, organization_id, deadline)

    def _lead(
        self, raw: str, normalized: str, organization_id: str, deadline: float | None = None
    ) -> Lead:
        def load() -> Lead:
            found = self.repo.find_or_create_lead(organization_id, raw, normalized, deadline)
            if found is None:
                raise Unavailable("lead could not be created")
            lead, created = found
            if created:
                # A new lead in the store's inbox. Not while Redis is failing: a caller is
                # waiting (the counter's TTL bounds what the skipped bump costs).
                self.store_changed(lead.organization_id, urgent=True)
            return lead

        lead = self.leads.get_or_create_for((normalized, organization_id), load, deadline)
        assert lead is not None
        return lead

    def find_lead_by_phone(self, phone: object, organization_id: object) -> Lead | None:
        """The lead for this number and organization, if it exists (never creates one)."""
        normalized = self.normalize(phone)
        if normalized is None:
            raise InvalidInput("phone is not a phone number")
        organization_id = parse_uuid(organization_id, "organization_id")
        return self.leads.get_or_create_for(
            (normalized, organization_id),
            lambda: self.repo.find_lead(organization_id, normalized),
        )

    def get_lead(self, lead_id: object) -> Lead:
        """The lead with this id (from the database: staff tools need the current row)."""
        lead = self.repo.get_lead(parse_uuid(lead_id))
        if lead is None:
            raise NotFound("lead not found")
        return lead

    def update_lead(
        self,
        lead_id: object,
        body: Any,
        if_match: int | None = None,
        *,
        require_store: Callable[[str], None] | None = None,
        actor: Mapping[str, str | None] | None = None,
    ) -> Lead:
        """Merge-patch a lead (optimistic concurrency), commit once, then write it through.

        ``require_store`` is called with the lead's store before anything is written (staff
        authorization raises there); ``actor`` ({sub, email}) signs the notes of what changed.
        A patch that changes nothing of ``human_control`` and the callback request changes
        nothing (no new version, no note).
        """
        lead_id = parse_uuid(lead_id)
        patch = validate_patch(body)
        for _ in range(_PATCH_ATTEMPTS):
            current = self.get_lead(lead_id)
            if require_store is not None:
                require_store(current.organization_id)
            if if_match is not None and current.version != if_match:
                raise PreconditionFailed(
                    f"lead changed: it is at version {current.version}, not {if_match}",
                    details={"current_version": current.version},
                )
            patched = apply_patch(current, patch)
            if is_noop(patch, current, patched):
                return current
            notes = patch_notes(patch, current, patched)
            saved = self.repo.update_lead(patched, current.version, notes, actor)
            if saved is not None:
                self.lead_written(saved)
                return saved
            if if_match is not None:
                raise PreconditionFailed("lead was changed by another request; read it again")
        raise Unavailable("lead is being changed by other requests; retry")

    def delete_lead(
        self,
        lead_id: object,
        *,
        organization_id: str | None = None,
        actor: Mapping[str, str | None] | None = None,
    ) -> None:
        """Erase a lead (of ``organization_id``, when given), its messages and call summaries,
        and its cache entries; ``actor``'s erasure is recorded without the customer's data."""
        identity = self.repo.delete_lead(parse_uuid(lead_id), organization_id, actor)
        if identity is None:
            raise NotFound("lead not found")
        organization_id, normalized = identity
        self.invalidate_lead(normalized, organization_id)

    def lead_written(self, lead: Lead) -> bool:
        """Give the cache a lead's committed row (every lead write calls this after commit).

        It replaces an older cached value and drops any lease; False (counted) when Redis could
        not be told, and the old value then lives until its TTL.
        """
        ok = self.leads.put_for((lead.phone_number_normalized, lead.organization_id), lead)
        if not ok:
            logger.warning(
                "lead stays cached until its TTL",
                phone=mask_phone("+" + lead.phone_number_normalized),
            )
        self.store_changed(lead.organization_id)
        return ok

    def invalidate_lead(self, phone_normalized: str, organization_id: str) -> bool:
        """Delete a lead's cache entry and lease (after its write committed)."""
        ok = self.leads.invalidate_for((phone_normalized, organization_id))
        if not ok:
            logger.warning(
                "lead stays cached until its TTL", phone=mask_phone("+" + phone_normalized)
            )
        self.store_changed(organization_id)
        return ok

    def store_changed(self, organization_id: str, urgent: bool = False) -> bool:
        """Bump the change counters of a store and of all stores (after a commit that wrote
        to its leads); False (counted) when Redis could not be told (see CHANGES_TTL_S).
        ``urgent``: a caller waits, so a Redis that just failed is not tried again."""
        keys = self._change_keys.get(organization_id)
        if keys is None:  # a few stores per container: their keys are made once
            keys = (self.keys.changes(organization_id), self.keys.changes(None))
            self._change_keys[organization_id] = keys
        return self.cache.bump_counters(keys, CHANGES_TTL_S, even_if_open=not urgent)

    def change_counters(self, stores: frozenset[str] | None) -> list[str] | None:
        """The change counters of ``stores`` (None: of every store), one Redis round trip;
        None when Redis cannot say (then nothing can be told unchanged)."""
        if stores is None:
            keys = [self.keys.changes(None)]
        else:
            keys = [self.keys.changes(store) for store in sorted(stores)]
        return self.cache.read_counters(keys, CHANGES_TTL_S)

    def store_inbound(self, message: InboundMessage) -> StoredInbound:
        """Store an inbound text once: its store (by ``To``), its lead (by ``From``, created on
        first contact; none for a short code or alphanumeric sender, which is nobody's lead),
        the message row; then write the touched lead through. Each number is read once."""
        to_number, sender = normalize_phones(
            (message.to_number, message.from_number), self.settings.default_phone_region
        )
        org = self._organization(to_number)
        lead = None
        if sender is not None:
            lead = self._lead(str(message.from_number).strip(), sender, org.id)
        inserted = self.record_inbound_message(message, org.id, lead)
        return StoredInbound(org, lead, inserted)

    def record_inbound_message(
        self, message: InboundMessage, organization_id: str, lead: Lead | None
    ) -> bool:
        """Store an inbound SMS exactly once, touch its lead, write it through; whether new."""
        inserted, touched = self.repo.insert_inbound_message(
            message, organization_id, lead.id if lead else None
        )
        if touched is not None:
            self.lead_written(touched)
        return inserted

    def record_call_summary(
        self, call: PostCall, organization_id: str | None, lead: Lead | None
    ) -> bool:
        """Store a post-call summary once and merge it into its lead; whether it was new."""
        inserted, merged = self.repo.insert_call_summary(
            call, organization_id, lead.id if lead else None
        )
        if merged is not None:
            self.lead_written(merged)
        elif inserted and lead is not None:
            self.store_changed(lead.organization_id)  # a call in its timeline and inbox
        return inserted

    # -- replies, outcomes and staff: every write is written through here ---------------

    def organization(self, organization_id: str) -> Organization | None:
        """The organization with this id, if any (from the database)."""
        return self.repo.organization(organization_id)

    def reply_context(
        self, lead_id: str, message_sid: str, reply_key: str, history: int
    ) -> dict[str, Any] | None:
        """The lead's opt-out and control flags, whether the text was answered, the texts
        before it (one round trip); None when the lead is gone."""
        return self.repo.reply_context(lead_id, message_sid, reply_key, history)

    def claim_automation(self, lead_id: str, key: str, window_seconds: int) -> Lead | None:
        """Claim the lead's follow-up window for ``key``; the lead when it may go out now."""
        claimed = self.repo.claim_automation(lead_id, key, window_seconds)
        if claimed is not None:
            self.lead_written(claimed)
        return claimed

    def record_outbound_message(self, **fields: Any) -> bool:
        """Store an outbound text once (keyed by its job key); whether it was new. The lead's
        cached conversation_context then shows it."""
        inserted, lead = self.repo.insert_outbound_message(**fields)
        if lead is not None:
            self.lead_written(lead)
        return inserted

    def mark_opted_out(self, lead_id: str) -> bool:
        """Mark the lead opted out (Twilio refused a text with 21610); whether it changed."""
        marked = self.repo.mark_opted_out(lead_id)
        if marked is not None:
            self.lead_written(marked)
        return marked is not None

    def update_delivery_status(
        self, twilio_sid: str, status: str, error_code: int | None, ranks: Mapping[str, int]
    ) -> tuple[bool, str | None] | None:
        """Raise an outbound text's delivery status (the lead's cached state holds none); the
        store's inbox changes only when the text failed (its attention reason); (changed,
        lead id), None when no text has that SID."""
        result = self.repo.update_delivery_status(twilio_sid, status, error_code, ranks)
        if result is None:
            return None
        changed, lead_id, organization_id = result
        if changed and organization_id is not None and status in FAILED_STATUSES:
            self.store_changed(organization_id)
        return changed, lead_id

    def messages_page(
        self, lead_id: str, limit: int, before: tuple[Any, ...] | None
    ) -> list[dict[str, Any]]:
        """One page of a lead's history, newest first."""
        return self.repo.messages_page(lead_id, limit, before)

    def list_leads(
        self,
        stores: frozenset[str] | None,
        where: LeadFilter,
        limit: int,
        after: tuple[Any, ...] | None,
    ) -> list[dict[str, Any]]:
        """One page of the inbox of ``stores`` (None: every store), one round trip."""
        return self.repo.list_leads(stores, where, limit, after)

    def timeline_page(
        self, lead_id: str, limit: int, before: tuple[Any, ...] | None, transcripts: bool
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """The lead's store (None: no such lead) and a page of its timeline, one round trip."""
        return self.repo.timeline_page(lead_id, limit, before, transcripts)

    # -- administration -----------------------------------------------------------------

    def flush_lead(self, phone: object, organization_id: object) -> bool:
        """Drop one lead's cache entry."""
        normalized = self.normalize(phone)
        if normalized is None:
            raise InvalidInput("phone is not a phone number")
        return self.invalidate_lead(normalized, parse_uuid(organization_id, "organization_id"))

    def flush_org(self, phone: object) -> bool:
        """Drop the cache entry of the organization reached at ``phone``."""
        normalized = self.normalize(phone)
        if normalized is None:
            raise InvalidInput("phone is not a phone number")
        with self._l1_lock:
            self._org_l1.pop(normalized, None)
        return self.orgs.invalidate_for((normalized,))

    def flush_all(self) -> int:
        """Drop every key under the prefix (on every cluster node); the number removed."""
        with self._l1_lock:
            self._org_l1.clear()
        return self.cache.flush_prefix(self.settings.cache_key_prefix)

    def cache_status(self) -> dict[str, Any]:
        """Whether caching is on, this container's breaker state, and Redis server facts."""
        status = self.cache.status()
        status.update(key_prefix=self.settings.cache_key_prefix, org_l1_entries=len(self._org_l1))
        return status

    def record_degraded(self) -> None:
        """Count one initiation answered as for an anonymous caller."""
        self.cache.count(INITIATION_DEGRADED)

    def purge(self) -> dict[str, int]:
        """The daily retention run: messages and summaries older than ``RETENTION_DAYS``.

        Old rows leave the inboxes' activity, so every change counter goes (a reader makes
        it anew at another value); a failed flush leaves them to their TTL."""
        removed = self.repo.purge(self.settings.retention_days)
        try:
            self.cache.flush_prefix(self.keys.changes_prefix())
        except Unavailable:
            logger.warning("change counters stay until their TTL")
        return removed
