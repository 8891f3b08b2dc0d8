"""A `*` inside a list of a cron field (`0 0 15 * 1,*`) is refused, saying why.

Regression (scheduler hunt): such a rule was accepted, described as one rule and fired as
another. `0 0 15 * 1,*` read "At 00:00, on day 15 of the month, or on Sunday, Monday, ... and
Saturday" (every day, as cron runs it: the weekday field does not start with `*`, so the day
fields are OR'ed) while its ticks, which read a list holding `*` as `*`, fired on the 15th alone.
"""

import pytest
from django.core.exceptions import ValidationError

from schedules import services
from schedules.models import ScheduledImport
from schedules.validation import validate_import_fields
from tests.api_support import SOURCE
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def refused(rule: str) -> None:
    validate_import_fields(
        ScheduledImport(schedule_type="cron", cron_expression=rule, name="p", key_column="sku",
                        source_url=SOURCE)
    )  # fmt: skip


@pytest.mark.parametrize("rule", ["0 0 15 * 1,*", "0 0 15,* * 1", "0 0 15 * 1-5,*", "5,* * * * *"])
def test_a_star_in_a_list_is_refused_saying_it_stands_alone(rule):
    with pytest.raises(ValidationError) as refusal:
        refused(rule)

    said = refusal.value.message_dict["cron_expression"]
    assert said == [next(m for m in said if "* means every value and stands alone" in m)], said


@pytest.mark.parametrize("rule", ["* * * * *", "*/5 * * * *", "0 0 * * 1", "0 0 1,15 * *"])
def test_a_star_alone_or_stepped_is_still_accepted(rule):
    try:
        refused(rule)
    except ValidationError as refusal:
        assert "cron_expression" not in refusal.message_dict, refusal.message_dict


def test_an_import_saved_with_one_before_stays_editable(alice):
    # Regression (review of this round): refused wherever it stood, a rename of an import saved
    # with one was a 400 on a field it did not send; it fires as its ticks list
    imp = make_import(alice, SOURCE, schedule_type="cron", cron_expression="0 0 15 * 1")
    ScheduledImport.objects.filter(pk=imp.pk).update(cron_expression="0 0 15 * 1,*")

    services.update_import(ScheduledImport.objects.get(pk=imp.pk), name="products (old)")

    assert ScheduledImport.objects.get(pk=imp.pk).name == "products (old)"
