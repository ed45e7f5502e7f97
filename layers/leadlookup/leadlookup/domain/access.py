"""Who may see which store's leads: the one home of staff authorization (docs/ARCHITECTURE.md).

A staff member staffs the stores whose sign-in groups they are in, ``org-<organization uuid>``;
the group ``owners`` sees every store. A machine client (no groups, an OAuth scope instead)
that holds :data:`ALL_STORES_SCOPE` is treated as an owner. A lead of a store the caller does
not staff is answered exactly as a lead that does not exist (404), so a caller cannot learn
that it exists; a caller who staffs no store at all is refused (403).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from leadlookup.errors import Forbidden, InvalidInput, NotFound

STORE_GROUP_PREFIX = "org-"
OWNERS_GROUP = "owners"
ALL_STORES_SCOPE = "leadlookup/all-stores"


@dataclass(frozen=True)
class StaffMember:
    """The signed-in caller: who they are (``sub``, ``email``) and which stores they staff."""

    sub: str
    email: str | None
    name: str | None
    stores: frozenset[uuid.UUID]
    owner: bool

    @classmethod
    def from_groups(
        cls,
        sub: str,
        groups: list[str],
        email: str | None = None,
        name: str | None = None,
        scopes: list[str] | None = None,
    ) -> StaffMember:
        """The member described by their groups; 403 when they staff no store at all."""
        stores: set[uuid.UUID] = set()
        for group in groups:
            if group.startswith(STORE_GROUP_PREFIX):
                try:
                    stores.add(uuid.UUID(group[len(STORE_GROUP_PREFIX) :]))
                except ValueError:
                    continue  # a group of another naming scheme is not a store
        owner = OWNERS_GROUP in groups or ALL_STORES_SCOPE in (scopes or [])
        if not owner and not stores:
            raise Forbidden("the signed-in user staffs no store")
        return cls(sub=sub, email=email, name=name, stores=frozenset(stores), owner=owner)

    def sees(self, organization_id: uuid.UUID | str) -> bool:
        """Whether this member may see leads of ``organization_id`` (a UUID or its text)."""
        if self.owner:
            return True
        if isinstance(organization_id, str):
            try:
                organization_id = uuid.UUID(organization_id)
            except ValueError:
                return False
        return organization_id in self.stores

    def require(self, organization_id: uuid.UUID | str) -> None:
        """404 (as for a lead that does not exist) unless this member sees the store."""
        if not self.sees(organization_id):
            raise NotFound("lead not found")

    def scope(self, requested: object = None) -> frozenset[uuid.UUID] | None:
        """The stores a list covers: ``requested`` alone if seen, else all of theirs.

        None means every store (an owner who asked for none). An ``organization_id`` that is
        not a UUID is 400; one the member does not staff is 404, as for a missing store.
        """
        if requested in (None, ""):
            return None if self.owner else self.stores
        try:
            wanted = uuid.UUID(str(requested))
        except ValueError:
            raise InvalidInput("query parameter 'organization_id' must be a UUID") from None
        if not self.sees(wanted):
            raise NotFound("organization not found")
        return frozenset({wanted})

    def actor(self) -> dict[str, str | None]:
        """What is stored with each staff action: who did it."""
        return {"sub": self.sub, "email": self.email}
