"""The FLOWER_* numbers the Procfile's `flower` line passes to Flower, checked before Flower
reads them.

Flower reads every FLOWER_* variable of the environment as its own option, first thing, before
its configuration file (flowerconfig.py): a value it could not read as a number
(FLOWER_PURGE_OFFLINE_WORKERS=abc, or one set empty, which the Procfile's line takes for unset)
stopped it with a 30-line traceback ending in "invalid literal for int() with base 10", and one
it could read but that means nothing (-1) was taken as it was (reviewA hunt). Checked from the
Celery app (project.celery), which Celery loads before it starts Flower, and again by
flowerconfig.py: one line naming the variable, what it takes and its default.
"""

from __future__ import annotations

from collections.abc import MutableMapping

# Variable: (the least it takes, the most, what it is, the Procfile's default).
NUMBERS = {
    "FLOWER_PURGE_OFFLINE_WORKERS": (
        0, None, "the seconds Flower lists a worker gone offline before it forgets it", "86400"
    ),
    "FLOWER_MAX_TASKS": (1, None, "the tasks Flower keeps", "10000"),
    "FLOWER_PORT": (1, 65535, "the port Flower listens on", "5555"),
}  # fmt: skip


def check(environ: MutableMapping[str, str]) -> None:
    """Stop with one line naming the first FLOWER_* number in `environ` that Flower cannot take;
    drop one set empty, so that Flower takes the Procfile's default as the line does."""
    for name, (least, most, meaning, default) in NUMBERS.items():
        value = environ.get(name)
        if value is None:
            continue
        if not value.strip():
            # `${FLOWER_PORT:-5555}` on the line, and the empty value again from the environment
            # in Flower, which cannot read it.
            del environ[name]
            continue
        try:
            number = int(value.strip())
        except ValueError:
            number = None
        if number is None or number < least or (most is not None and number > most):
            bound = f"from {least} to {most}" if most is not None else f"{least} or more"
            raise SystemExit(
                f"importbeat not started: {name}={value!r} is not a whole number {bound}: "
                f"{meaning} (unset: {default})"
            )
