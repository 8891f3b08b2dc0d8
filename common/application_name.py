"""The name a process gives its PostgreSQL sessions (libpq's `application_name`), so that
`pg_stat_activity` tells the web, the workers, beat and a command apart.

An operator whose server is at its max_connections counts who holds them by it, and the words
for a session that holds a lock (tasks.lock_waits, beat, `migrate`) name a session by it: every
session of importbeat was named '' and shown by its user alone, the same for every process.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The Procfile's celery lines, by their subcommand.
CELERY_PROCESSES = ("worker", "beat", "flower")


def application_name(argv: list[str] | None = None) -> str:
    """`importbeat web`, `importbeat worker`, `importbeat beat`, `importbeat flower`,
    `importbeat <command>` for `manage.py <command>`, else `importbeat`."""
    argv = sys.argv if argv is None else argv
    program = _program(argv[0]) if argv else ""
    if program.startswith("gunicorn"):  # (Debian named its script gunicorn3)
        return "importbeat web"
    if program == "celery":
        found = next((arg for arg in argv[1:] if arg in CELERY_PROCESSES), "celery")
        return f"importbeat {found}"
    if program == "manage.py" and len(argv) > 1 and not argv[1].startswith("-"):
        # PostgreSQL keeps 63 bytes of it.
        return f"importbeat {argv[1]}"[:63]
    return "importbeat"


def _program(path: str) -> str:
    """The program's name: its script's (`celery`), or its package's when started as a module
    (`python -m celery`: argv[0] is celery/__main__.py). Not its folders': "gunicorn" anywhere
    in the path named a worker installed under /home/gunicorn/ "importbeat web" (review1)."""
    script = Path(path)
    return script.parent.name if script.name == "__main__.py" else script.name
