"""The admin's confirmation of a deletion, with what goes along counted instead of listed.

Django's confirmation page collects every object a deletion cascades to, as an instance, and
lists each one as a link: for an import with a month of minute runs (50,000) that page was 5 MB
and took 10 s to make, with a year of them it was killed by the worker timeout before it came,
and a dataset's page would have read its millions of records. Here the chosen objects are
listed (the first LISTED of them), what cascades from them is counted relation by relation
(one grouped count each), what protects them is listed as Django lists it, and the
permissions are checked model by model as Django checks them. One level deep: what cascades
from our models (runs, deliveries, tallies, records) cascades no further.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.db.models import CASCADE, PROTECT, RESTRICT, Count, Model, QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import capfirst

from . import rows

# The chosen objects listed by name; past it, how many more.
LISTED = 100


def counted_deletion(
    model_admin: admin.ModelAdmin, objs: Iterable[Model], request: HttpRequest
) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
    """What `ModelAdmin.get_deleted_objects` answers: the chosen objects as links, each followed
    by the counts of what cascades from it; the counts per kind; the kinds `request`'s user may
    not delete; and the objects that protect them from deletion."""
    opts = model_admin.model._meta
    chosen = (
        objs
        if isinstance(objs, QuerySet)
        else model_admin.model._default_manager.filter(pk__in=[obj.pk for obj in objs])
    )
    listed = list(chosen.order_by("pk")[:LISTED])
    total = len(listed) if len(listed) < LISTED else chosen.count()
    model_count = {opts.verbose_name_plural: total}
    perms_needed = {
        opts.verbose_name for obj in listed if not model_admin.has_delete_permission(request, obj)
    }
    per_object: dict[int, list[str]] = {obj.pk: [] for obj in listed}
    protected: list[Any] = []
    registry = model_admin.admin_site._registry
    for relation in _relations(model_admin.model):
        related, field = relation.related_model, relation.field
        references = related._default_manager.filter(**{f"{field.name}__in": chosen})
        if relation.on_delete in (PROTECT, RESTRICT):
            protected += [_link(obj, model_admin) for obj in references[:LISTED]]
            continue
        number = references.count()
        if not number:
            continue
        model_count[related._meta.verbose_name_plural] = number
        related_admin = registry.get(related)
        if related_admin is not None and not related_admin.has_delete_permission(request):
            perms_needed.add(related._meta.verbose_name)
        grouped = references.filter(**{f"{field.name}__in": list(per_object)}).values_list(
            field.attname
        )
        for pk, count in grouped.annotate(n=Count("pk")).order_by():
            per_object[pk].append(_counted(count, related._meta))
    to_delete: list[Any] = []
    for obj in listed:
        to_delete.append(_link(obj, model_admin))
        if per_object[obj.pk]:
            to_delete.append(per_object[obj.pk])
    if total > len(listed):
        to_delete.append(f"… and {total - len(listed):,} more {opts.verbose_name_plural}")
    return to_delete, model_count, perms_needed, protected


def _relations(model: type[Model]) -> list[Any]:
    """The relations a deletion of `model` cascades along or is stopped by."""
    return [
        relation
        for relation in rows.references_to(model)
        if relation.on_delete in (CASCADE, PROTECT, RESTRICT)
    ]


def _counted(number: int, opts: Any) -> str:
    return f"{number:,} {opts.verbose_name if number == 1 else opts.verbose_name_plural}"


def _link(obj: Model, model_admin: admin.ModelAdmin) -> str:
    opts = obj._meta
    try:
        url = reverse(
            f"{model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
            args=[obj.pk],
        )
    except NoReverseMatch:
        return f"{capfirst(opts.verbose_name)}: {obj}"
    return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, obj)
