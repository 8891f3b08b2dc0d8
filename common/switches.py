"""On/off switches from the environment: the words they take, in one place.

The settings (`envbool`) and flowerconfig.py read them alike, without Django's settings: Flower
reads its configuration file before them. A word that is neither on nor off is an error, not
"off": django-environ's `env.bool` took `DJANGO_SSL_REDIRECT=ture` for off, and the redirect to
HTTPS was gone without a word; Flower took `DJANGO_DEBUG=y` for off where Django took it for on.

Every value env.bool gave a meaning that a deployment may have written keeps it (review): its
words for on (`y`, `ok` among them), any whole number but 0 for on, and a value set empty for
off whatever the default, as healthchecks' `envbool` reads it too. Only what neither reads as a
switch stops the start.
"""

from __future__ import annotations

ON = frozenset({"1", "true", "yes", "on", "y", "ok"})
OFF = frozenset({"0", "false", "no", "off", "n", "f"})


def switch(name: str, value: str | None, default: bool) -> bool:
    """`value` of the variable `name` as on or off, in any case, surrounding spaces trimmed;
    unset: `default`; set empty: off. Raises ValueError naming the variable for any other
    word."""
    if value is None:
        return default
    word = value.strip().lower()
    if not word or word in OFF:
        return False
    if word in ON:
        return True
    try:
        return int(word) != 0
    except ValueError:
        raise ValueError(
            f"{name}={value!r} is neither on nor off: write 1 or 0 (true/false, yes/no, on/off)"
        ) from None
