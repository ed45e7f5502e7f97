"""A lead's status: the ladder calls move it up, and the SQL that applies it (its one home).

Staff set any status (PATCH); a call only ever moves a lead up the ladder, and ``closed`` is
off it: no call reopens or closes a lead. The upgrade is applied in the database, in the same
statement as the write it belongs to (a concurrent PATCH cannot be undone by a stale read), so
the rule also renders that SQL.
"""

from __future__ import annotations

NEW, CONTACTED, QUALIFIED, HOT, CUSTOMER, CLOSED = (
    "new", "contacted", "qualified", "hot", "customer", "closed",
)  # fmt: skip
# The statuses a call can move a lead along, lowest first.
LADDER = (NEW, CONTACTED, QUALIFIED, HOT, CUSTOMER)
STATUSES = (*LADDER, CLOSED)
# Where the agent has learnt enough to sell: `qualification_status` says "qualified".
QUALIFIED_STATUSES = frozenset({QUALIFIED, HOT, CUSTOMER})
# A phone call that reached someone is at least this far up the ladder.
REACHED = CONTACTED


def call_status(classification: str | None, reached: bool) -> str | None:
    """The status a call proposes: its classification when that names a rung, at least
    :data:`REACHED` when the call reached someone, else None (no change)."""
    proposed = classification.casefold() if classification else None
    if proposed not in LADDER:
        proposed = None  # sales, service, support, general: kept as the classification only
    if reached and proposed in (None, NEW):
        proposed = REACHED
    return proposed


def upgraded(current: str, proposed: str | None) -> str:
    """``current`` moved up to ``proposed`` if that is higher; ``closed`` never moves."""
    if proposed not in LADDER or current not in LADDER:
        return current
    return proposed if LADDER.index(proposed) > LADDER.index(current) else current


def sql_upgrade(column: str, proposed: str) -> str:
    """SQL for :func:`upgraded` of ``column`` by the SQL expression ``proposed`` (a parameter).

    ``array_position`` gives NULL for ``closed`` and for NULL, and NULL never compares
    greater, so such a row keeps its status.
    """
    ladder = "ARRAY[" + ", ".join(f"'{rung}'" for rung in LADDER) + "]"
    return (
        f"CASE WHEN array_position({ladder}, {proposed}::text)"
        f" > array_position({ladder}, {column}) THEN {proposed} ELSE {column} END"
    )
