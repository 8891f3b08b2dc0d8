"""Each process names its database sessions by its program, not by the folder it was installed
in, and `python -m celery` as the `celery` script.

Regression (review1): common.application_name looked for "gunicorn" anywhere in argv[0], so a
deployment under /home/gunicorn/ (or /opt/gunicorn-apps/) named its workers and beat
"importbeat web" in pg_stat_activity; and a worker started as `python -m celery` was named
"importbeat", the same as any other process.
"""

from __future__ import annotations

import pytest

from common.application_name import application_name


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["/home/gunicorn/.venv/bin/celery", "-A", "project", "worker"], "importbeat worker"),
        (["/opt/gunicorn-apps/importbeat/.venv/bin/celery", "-A", "project", "beat"],
         "importbeat beat"),
        (["/home/gunicorn/importbeat/manage.py", "run_import", "5"], "importbeat run_import"),
    ],
)  # fmt: skip
def test_a_process_installed_under_a_folder_named_gunicorn_keeps_its_own_name(argv, name):
    # Given a process of importbeat installed in a folder whose name says "gunicorn"
    # When it names its database sessions
    # Then it is named by its program
    assert application_name(argv) == name


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["/srv/.venv/lib/python3.11/site-packages/celery/__main__.py", "-A", "project",
          "worker"], "importbeat worker"),
        (["/srv/.venv/lib/python3.11/site-packages/gunicorn/__main__.py", "project.wsgi"],
         "importbeat web"),
        (["/srv/.venv/bin/gunicorn", "project.wsgi"], "importbeat web"),
    ],
)  # fmt: skip
def test_a_program_started_as_a_python_module_is_named_as_its_script(argv, name):
    # Given alice's worker started as `python -m celery` (and the web as `python -m gunicorn`)
    # When it names its database sessions
    # Then it is named as the script would be
    assert application_name(argv) == name
