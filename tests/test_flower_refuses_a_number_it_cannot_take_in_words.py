"""Flower (Procfile `flower`) given a FLOWER_* number it cannot take stops at start with one line
naming the variable, what it takes and its default; one set empty is taken for unset.

Regression: Flower reads every FLOWER_* variable itself, before flowerconfig.py, and
FLOWER_PURGE_OFFLINE_WORKERS=abc (or set empty) stopped it with a 30-line traceback ending in
"ValueError: invalid literal for int() with base 10"; -1 was taken as it was (reviewA hunt).
"""

import pytest

from project.devservices import free_port
from tests.conftest import answers, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.processes]


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        (
            "FLOWER_PURGE_OFFLINE_WORKERS",
            "abc",
            "FLOWER_PURGE_OFFLINE_WORKERS='abc' is not a whole number 0 or more: the seconds "
            "Flower lists a worker gone offline before it forgets it (unset: 86400)",
        ),
        (
            "FLOWER_PURGE_OFFLINE_WORKERS",
            "-1",
            "FLOWER_PURGE_OFFLINE_WORKERS='-1' is not a whole number 0 or more",
        ),
        ("FLOWER_MAX_TASKS", "1e4", "FLOWER_MAX_TASKS='1e4' is not a whole number 1 or more"),
    ],
)
def test_flower_stops_at_start_naming_the_number_it_cannot_take(processes, name, value, words):
    # Given Flower started with a number it cannot take
    extra = {"FLOWER_PORT": str(free_port()), "FLOWER_BASIC_AUTH": "ops:s3cret", name: value}
    flower = processes.start("flower", **extra)

    # Then it stops, saying so in one line, without a traceback
    assert flower.wait(30) != 0
    log = processes.log_of("flower")
    assert f"importbeat not started: {words}" in log, log
    assert "Traceback" not in log, log


def test_flower_takes_an_empty_number_for_unset(processes):
    # Given Flower started with FLOWER_PURGE_OFFLINE_WORKERS set empty
    port = free_port()
    processes.start(
        "flower", FLOWER_PORT=str(port), FLOWER_BASIC_AUTH="ops:s3cret",
        FLOWER_PURGE_OFFLINE_WORKERS="",
    )  # fmt: skip

    # Then it starts, as with the variable unset
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthcheck"), 30, what=processes.logs())
