"""Links to an object's admin page, for the dashboard's page and for what its script draws."""

from __future__ import annotations

from functools import cache

from django.urls import reverse


def admin_page(model_name: str, pk: int) -> str:
    """The admin page of one object of `schedules` (`importrun`, `scheduledimport`).

    Its list's address is reversed once per process and the page's is Django admin's
    `<list>/<pk>/change/`: the dashboard lists up to 80 of them, and a reverse() of each was
    a tenth of the page's time."""
    return f"{_changelist(model_name)}{pk}/change/"


@cache
def _changelist(model_name: str) -> str:
    return reverse(f"admin:schedules_{model_name}_changelist")
