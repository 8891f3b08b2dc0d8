"""A management command whose database is away says so in one line of words.

manage.py printed two: the `importbeat` log's WARNING, which quoted the library (`(OperationalError:
connection failed: …)`), then its own words (the says hunt). The library's text is now only at
DEBUG."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import BASE_DIR
from tests.test_commands_say_a_database_away_in_words import NO_STACK


def printed(command: list[str], database_url: str) -> tuple[int, list[str]]:
    """The exit status of `manage.py <command>` and the lines it printed, but django-axes'
    banner (at INFO, said at every command's start whatever happens)."""
    environment = {**os.environ, **NO_STACK, "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=BASE_DIR, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode, [line for line in lines if " INFO axes.apps AXES: BEGIN" not in line]


@pytest.mark.parametrize("command", [["showmigrations", "schedules"], ["run_import", "1"]])
def test_a_command_whose_database_refuses_prints_one_line_in_words(command, refused_port):
    away = refused_port

    status, said = printed(command, f"postgres://app:secret@127.0.0.1:{away}/ib")

    assert status == 1
    assert said == [
        f"{command[0]}: cannot reach the database ib at 127.0.0.1:{away}: connection refused"
    ], said
