"""Hiding a text that was hidden before changes nothing. A secret that is a piece of the marker
(a password `e`, `den`, `]`) was hidden again inside each `[hidden]` at every pass
(`[hidd[hidden]n]`, then `[hidd[hidd[hidden]n]n]`): a retry's error is hidden again when the run
ends, and runs saved before the masking are passed through the hiding as often as an operator
runs `manage.py hide_run_secrets`."""

from __future__ import annotations

import pytest

from schedules import credentials

pytestmark = pytest.mark.usefixtures("encryption_key")

TEXT = "the server answered: the key e, den ] and the password"


@pytest.mark.parametrize(
    ("password", "once"),
    [
        ("e", "th[hidden] s[hidden]rv[hidden]r answ[hidden]r[hidden]d: th[hidden] k[hidden]y "
              "[hidden], d[hidden]n ] and th[hidden] password"),
        ("den", "the server answered: the key e, [hidden] ] and the password"),
        ("]", "the server answered: the key e, den [hidden] and the password"),
    ],
)  # fmt: skip
def test_a_text_hidden_once_is_left_as_it_is_the_second_time(password, once):
    # Given a credential whose password is a piece of the marker, and a text hidden once
    token = credentials.encrypt({"kind": "basic", "username": "feed", "password": password})
    secrets = credentials.secrets_of(token)
    hidden = credentials.hide(secrets, TEXT)
    assert hidden == once

    cut_once = credentials.hide(secrets, TEXT, cut_at=len(TEXT))

    # When it is hidden again (as a value that may have been cut, too)
    again = credentials.hide(secrets, hidden)
    cut_again = credentials.hide(secrets, cut_once, cut_at=len(TEXT))

    # Then it is the same text
    assert again == once
    assert cut_again == cut_once
