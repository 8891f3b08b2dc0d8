"""What every admin list of importbeat needs at a year of history (a million runs, ten thousand
imports), measured in tests/bench/bench_admin_lists.py."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.db import models
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from schedules import rows
from schedules.admin_deletion import counted_deletion
from schedules.api.pagination import BoundedCountPaginator


class RefusesNulSearch:
    """A ModelAdmin mixin: a search term holding a NUL finds nothing.

    A form's autocomplete (an import's dataset, its owner) sends its term here as typed, past
    the change list's search form that drops a NUL: PostgreSQL refused it in the query, a 500.
    """

    def get_search_results(self, request: HttpRequest, queryset: Any, search_term: str) -> Any:
        if "\x00" in search_term:
            return queryset.none(), False
        return super().get_search_results(request, queryset, search_term)


class ListAtScale(RefusesNulSearch):
    """A ModelAdmin mixin: counts that stop, a first page read before it is counted, and a
    row's checkbox without a template.

    - Django renders each row's action checkbox through the form renderer's templates: 38 %
      of a page of 100 runs in a profile. The same `<input>` is written here directly.
    - The count under the list is exact up to ten thousand rows and PostgreSQL's estimate past
      it (the API's rule, BoundedCountPaginator), said as "about", and the unfiltered total
      ("of M total") is not counted: each was a `COUNT(*)` of a million runs on every page.
    - A page is read before anything is counted (ChangeListAtScale): a search that finds less
      than a page needs no count, and was read twice, for its rows and for their count; and a
      page past an estimate answers while it has rows.
    - A deletion's confirmation counts what goes along (an import's runs, a dataset's records)
      instead of reading and listing each one, and a selection across the pages is confirmed as
      that choice: Django's form held one input per object and refused itself past 1,000.
    """

    paginator = BoundedCountPaginator
    show_full_result_count = False
    # What a deletion takes along, counted rather than listed (schedules/admin_deletion.py).
    get_deleted_objects = counted_deletion
    # A selection across the pages confirmed as that choice, not as an input per object.
    delete_selected_confirmation_template = "admin/schedules/delete_selected_at_scale.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ChangeListAtScale

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None) or {}
        cl = context.get("cl")
        if getattr(cl, "count_is_estimate", False):
            # Django's own words ("All 30000 selected") state the estimate as a count.
            context["selection_note_all"] = f"All of about {cl.result_count:,} selected"
        if cl is not None:
            self._say_what_the_order_leaves_out(request, cl)
        return response

    def _say_what_the_order_leaves_out(self, request: HttpRequest, cl: ChangeList) -> None:
        """A list sorted by an expression that cannot place every row (the imports' "next run"
        in a long outage: overdue_next_runs.ListedNextRun) says so above it, in its words."""
        for ordering in cl.queryset.query.order_by:
            expression = getattr(ordering, "expression", ordering)
            note = getattr(expression, "order_note", None)
            words = note() if callable(note) else None
            if words:
                self.message_user(request, words, messages.WARNING)

    def response_action(self, request: HttpRequest, queryset: Any) -> Any:
        # A selection that is no id (a request made by hand) raised in the query: a 500.
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if not all(item.isascii() and item.isdigit() for item in selected):
            self.message_user(request, "Items are chosen by their ids.", messages.WARNING)
            return None
        return super().response_action(request, queryset)

    def action_checkbox(self, obj: models.Model) -> SafeString:
        # Django's own markup and label (ModelAdmin.action_checkbox), escaped the same way.
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(_("Select this object for an action - {}"), str(obj)),
        )


class ChangeListAtScale(ChangeList):
    """Django's change list, but a page reads up to one row more than it shows, and that row
    says whether a next page exists (as the API's PagedByRowsPaginator): a page that holds the
    last row knows the count from its rows; otherwise the count is asked, exact up to the
    paginator's limit and PostgreSQL's estimate past it, never less than the rows read.

    Django's pages ended at the estimate's last page: the planner multiplies the selectivities of
    correlated filters (one import's failed runs), so 30,000 runs were counted as 10,001 and a
    page past the 101st sent the user to the unfiltered list with "?e=1", the older runs out of
    reach. A page now answers while it has rows. "Show all" and editable lists are Django's.

    A filter's value holding a NUL (`?status__exact=%00`) is a bad lookup (the list, with
    Django's "?e=1"): PostgreSQL refused it in the query, a 500."""

    # The count shown is PostgreSQL's estimate (or a floor), said as "about" in the page.
    count_is_estimate = False

    def get_filters_params(self, params=None) -> dict[str, Any]:
        found = super().get_filters_params(params)
        values = [
            v for value in found.values() for v in (value if isinstance(value, list) else [value])
        ]
        if any("\x00" in str(value) for value in values):
            raise IncorrectLookupParameters("a filter's value holds a NUL character")
        return found

    def get_ordering_field(self, field_name: Any) -> Any:
        # Django leaves a column out of `sortable_by` unlinked, but still sorts by it when
        # `?o=` asks (a bookmark, a link typed by hand): the list's order without it instead.
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    @property
    def result_count_text(self) -> str:
        if self.count_is_estimate:
            return f"about {self.result_count:,}"
        return str(self.result_count)

    def _rows(self, bottom: int, count: int) -> list[Any]:
        """`count` rows of the list from row `bottom` on.

        Past the first page, their ids first, then those rows: an OFFSET reads every row it
        skips, and the run list's last page (`?p=10000` at a million runs) read a million
        whole runs, their errors and counts, 2.8 s to show a hundred; their ids come from
        the index the list is ordered by (0.3 s), and only the hundred are read whole."""
        if not bottom:
            return list(self.queryset[:count])
        ids = list(self.queryset.values_list("pk", flat=True)[bottom : bottom + count])
        by_id = {row.pk: row for row in self.queryset.order_by().filter(pk__in=ids)}
        return [by_id[pk] for pk in ids if pk in by_id]

    def get_results(self, request: HttpRequest) -> None:
        if self.show_all or self.list_editable:
            return super().get_results(request)
        per_page = self.list_per_page
        bottom = (self.page_num - 1) * per_page
        # Past a bigint PostgreSQL refuses the OFFSET (`?p=10**20` was a 500 there).
        if self.page_num < 1 or bottom + per_page + 1 > rows.MAX_ID:
            raise IncorrectLookupParameters("no such page")
        found = self._rows(bottom, per_page + 1)
        if not found and self.page_num > 1:
            # A page an estimate too high linked to (statistics not refreshed after retention
            # deleted most runs): the last page that has rows, counted no further than this
            # page. It sent the user to the unfiltered list, "?e=1".
            there = self.queryset.order_by()[:bottom].count()
            if not there:
                raise IncorrectLookupParameters("a page past the last row")
            self.page_num = (there - 1) // per_page + 1
            bottom = (self.page_num - 1) * per_page
            found = self._rows(bottom, per_page + 1)
        paginator = self.model_admin.get_paginator(request, self.queryset, per_page)
        # Paginator.count is a cached property: set, it is what the page links follow.
        if len(found) <= per_page:
            paginator.count = bottom + len(found)
        else:
            paginator.count = max(paginator.count, bottom + per_page + 1)
            limit = getattr(paginator, "exact_count_limit", None)
            self.count_is_estimate = limit is not None and paginator.count > limit
        # As ChangeList.get_results sets them (Django 5.2), from the rows read.
        full_count = self.root_queryset.count() if self.model_admin.show_full_result_count else None
        self.result_count = paginator.count
        self.show_full_result_count = self.model_admin.show_full_result_count
        self.show_admin_actions = not self.show_full_result_count or bool(full_count)
        self.full_result_count = full_count
        self.can_show_all = self.result_count <= self.list_max_show_all
        self.multi_page = self.result_count > per_page
        self.result_list = found[:per_page]
        self.paginator = paginator
        return None
