"""The admin's confirmation of a deletion, with what goes along counted instead of listed.

Django's confirmation page collects every object a deletion cascades to, as an instance, and
lists each one as a link: for an import with a month of minute runs (50,000) that page was 5 MB
and took 10 s to make, and with a year of them it was killed by the worker timeout before it
came. An import's runs, deliveries and tallies are counted here by the relations that cascade
from it (one count each), and the permissions checked model by model as Django checks them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.db.models import CASCADE, Model
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.text import capfirst


def counted_deletion(
    model_admin: admin.ModelAdmin, objs: Iterable[Model], request: HttpRequest
) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
    """What `ModelAdmin.get_deleted_objects` answers: each object as a link followed by the
    counts of what cascades from it, the counts per kind, the kinds `request`'s user may not
    delete, and the protected objects (none: nothing protects these models' children)."""
    opts = model_admin.model._meta
    registry = model_admin.admin_site._registry
    to_delete: list[Any] = []
    model_count: dict[str, int] = {}
    perms_needed: set[str] = set()
    for obj in objs:
        to_delete.append(_link(obj, model_admin))
        counted = []
        for relation in _cascades(model_admin.model):
            related = relation.related_model._meta
            number = relation.related_model._default_manager.filter(
                **{relation.field.name: obj}
            ).count()
            if not number:
                continue
            name = related.verbose_name if number == 1 else related.verbose_name_plural
            counted.append(f"{number:,} {name}")
            model_count[related.verbose_name_plural] = (
                model_count.get(related.verbose_name_plural, 0) + number
            )
            related_admin = registry.get(relation.related_model)
            if related_admin is not None and not related_admin.has_delete_permission(request):
                perms_needed.add(related.verbose_name)
        if counted:
            to_delete.append(counted)
        model_count[opts.verbose_name_plural] = model_count.get(opts.verbose_name_plural, 0) + 1
        if not model_admin.has_delete_permission(request, obj):
            perms_needed.add(opts.verbose_name)
    return to_delete, model_count, perms_needed, []


def _cascades(model: type[Model]) -> list[Any]:
    """The relations a deletion of `model` cascades along (its runs, deliveries, ...)."""
    return [
        relation
        for relation in model._meta.get_fields(include_hidden=True)
        if relation.auto_created
        and not relation.concrete
        and (relation.one_to_many or relation.one_to_one)
        and relation.on_delete is CASCADE
    ]


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
