"""What every admin list of importbeat needs at a year of history (a million runs, ten thousand
imports), measured in tests/bench/bench_admin_lists.py."""

from __future__ import annotations

from django.contrib.admin import helpers
from django.db import models
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from schedules.api.pagination import BoundedCountPaginator


class ListAtScale:
    """A ModelAdmin mixin: counts that stop, and a row's checkbox without a template.

    - Django renders each row's action checkbox through the form renderer's templates: 38 %
      of a page of 100 runs in a profile. The same `<input>` is written here directly.
    - The count under the list is exact up to ten thousand rows and PostgreSQL's estimate past
      it (the API's rule, BoundedCountPaginator), and the unfiltered total ("of M total") is not
      counted: each was a `COUNT(*)` of a million runs on every page.
    """

    paginator = BoundedCountPaginator
    show_full_result_count = False

    def action_checkbox(self, obj: models.Model) -> SafeString:
        # Django's own markup and label (ModelAdmin.action_checkbox), escaped the same way.
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(_("Select this object for an action - {}"), str(obj)),
        )
