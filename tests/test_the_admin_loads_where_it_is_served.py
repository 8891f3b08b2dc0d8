"""The admin's modules are imported by the URLs and the system checks, not by every process's
start: a worker, beat or `manage.py run_import` never serve it, and importing it (with the
REST framework its lists bring) was an eighth of their start-up (project/admin_apps.py)."""

import os
import subprocess
import sys

from tests.conftest import BASE_DIR

PROBE = """
import sys
import django
django.setup()
print("at start:", "schedules.admin" in sys.modules, "rest_framework.pagination" in sys.modules)
from django.core import checks
errors = checks.run_checks(tags=[checks.Tags.admin])
from django.contrib import admin
from schedules.models import ImportRun, ScheduledImport
registry = admin.site._registry
print("checked:", errors, ScheduledImport in registry, ImportRun in registry)
from django.urls import reverse
print("served:", reverse("admin:schedules_scheduledimport_changelist"))
"""


def test_a_process_starts_without_the_admin_and_its_checks_and_urls_find_it():
    # When a process starts Django, runs the admin's checks, then resolves an admin URL
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_DEBUG": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    # Then the admin was not imported at its start; the checks saw every ModelAdmin (none
    # wrong), and the URLs serve them
    assert probe.stdout.splitlines() == [
        "at start: False False",
        "checked: [] True True",
        "served: /admin/schedules/scheduledimport/",
    ]
