"""On/off switches from the environment: the words they take, in one place.

The settings (`envbool`) and flowerconfig.py read them alike, without Django's settings: Flower
reads its configuration file before them. A word that is neither on nor off is an error, not
"off": django-environ's `env.bool` took `DJANGO_SSL_REDIRECT=ture` for off, and the redirect to
HTTPS was gone without a word; Flower took `DJANGO_DEBUG=y` for off where Django took it for on.
"""

from __future__ import annotations

ON = frozenset({"1", "true", "yes", "on"})
OFF = frozenset({"0", "false", "no", "off"})


def switch(name: str, value: str | None, default: bool) -> bool:
    """`value` of the variable `name` as on or off, in any case, surrounding spaces trimmed;
    unset or empty: `default`. Raises ValueError naming the variable for any other word."""
    word = (value or "").strip().lower()
    if not word:
        return default
    if word in ON:
        return True
    if word in OFF:
        return False
    raise ValueError(
        f"{name}={value!r} is neither on nor off: write 1 or 0 (true/false, yes/no, on/off)"
    )
