"""Who may change what. Ownership of reads is enforced by the querysets (another user's id is
a 404); this adds the one case a queryset cannot say: staff see every import but change only
their own through the API (the admin is where staff manage other users' imports)."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission


class OwnerMayChange(BasePermission):
    message = (
        "staff can read other users' imports, runs and datasets but change only their own "
        "(use the admin)"
    )

    def has_object_permission(self, request, view, obj) -> bool:
        if request.method in SAFE_METHODS:
            return True
        # A run belongs to its import's owner.
        owner_id = obj.owner_id if hasattr(obj, "owner_id") else obj.scheduled_import.owner_id
        return owner_id == request.user.pk
