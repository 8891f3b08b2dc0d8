"""A `*` inside a list of a cron field (`0 0 15 * 1,*`) is refused, saying why.

Regression (scheduler hunt): such a rule was accepted, described as one rule and fired as
another. `0 0 15 * 1,*` read "At 00:00, on day 15 of the month, or on Sunday, Monday, ... and
Saturday" (every day, as cron runs it: the weekday field does not start with `*`, so the day
fields are OR'ed) while its ticks, which read a list holding `*` as `*`, fired on the 15th alone.
"""

import pytest
from django.core.exceptions import ValidationError

from schedules.validation import validate_cron_expression


@pytest.mark.parametrize("rule", ["0 0 15 * 1,*", "0 0 15,* * 1", "0 0 15 * 1-5,*", "5,* * * * *"])
def test_a_star_in_a_list_is_refused_saying_it_stands_alone(rule):
    with pytest.raises(ValidationError) as refused:
        validate_cron_expression(rule)

    assert "* means every value and stands alone, not in a list" in refused.value.messages[0]


@pytest.mark.parametrize("rule", ["* * * * *", "*/5 * * * *", "0 0 * * 1", "0 0 1,15 * *"])
def test_a_star_alone_or_stepped_is_still_accepted(rule):
    validate_cron_expression(rule)
