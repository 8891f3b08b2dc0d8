"""Every writer of many imports' rows locks them in id order first, in a statement of its own.

Two writers that lock as their plans go (an UPDATE over unnest() in the order its ids came, a
scan by next tick, a join from runs) can each hold a row the other waits for: PostgreSQL then
ends one of them as a deadlock, its work lost until its next pass. Beat's dispatch skips
locked rows and waits for none; the others wait, and in one order they cannot cross.
"""

from django.db.models import QuerySet

from .models import ScheduledImport


def lock_in_id_order(imports: QuerySet[ScheduledImport]) -> list[int]:
    """Lock the rows of `imports` (FOR UPDATE, in id order) in the caller's transaction; their
    ids, in order. A row changed meanwhile is judged again as committed (PostgreSQL re-checks
    the filter on it), so the ids are those that match once locked."""
    return list(imports.select_for_update().order_by("pk").values_list("pk", flat=True))
