"""The production path: docker-compose.yml as a real Compose implementation reads it (Debian's
`docker-compose`, installed by `make compose`, a prerequisite of `make test`), and the image's
build context as that implementation's docker-py cuts it by `.dockerignore`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

BASE_DIR = Path(__file__).resolve().parent.parent
# `COPY . .` must send the application, not the virtualenv (~300 MB) nor .run (over 1 GB).
MAX_CONTEXT_BYTES = 5 * 1024 * 1024
REQUIRED = {"DJANGO_SECRET_KEY": "prod-secret", "FLOWER_BASIC_AUTH": "ops:s3cret"}


def docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed: run `make compose` (Debian's package)")
    return binary


def compose_config(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    return subprocess.run(
        [docker_compose(), "--project-directory", str(BASE_DIR), "config"],
        cwd=BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_accepts_the_file_and_runs_every_process_from_one_image():
    result = compose_config(**REQUIRED, DJANGO_SUPERUSER_USERNAME="ops")

    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat", "flower"}
    for name in ("migrate", "web", "worker", "beat", "flower"):
        assert services[name]["image"] == "importbeat", name
        assert services[name]["environment"]["DJANGO_SECRET_KEY"] == "prod-secret", name
    assert services["web"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


def test_the_first_admin_is_created_by_the_migrate_service_from_the_environment():
    services = yaml.safe_load(compose_config(**REQUIRED, DJANGO_SUPERUSER_USERNAME="ops").stdout)[
        "services"
    ]

    migrate = services["migrate"]
    assert "manage.py create_admin" in migrate["command"]
    assert migrate["environment"]["DJANGO_SUPERUSER_USERNAME"] == "ops"
    # Only the one-off service sees the admin's password.
    assert "DJANGO_SUPERUSER_PASSWORD" not in services["web"]["environment"]


def test_the_drop_folder_is_mounted_where_import_drop_dirs_points_in_web_and_workers():
    config = yaml.safe_load(compose_config(**REQUIRED).stdout)
    services = config["services"]

    # Workers read the folder and move imported files to processed/; web checks a source's
    # path and links when it is saved, and writes nothing there.
    for name, writable in (("worker", True), ("web", False)):
        folders = re.split(r"[,:]", services[name]["environment"]["IMPORT_DROP_DIRS"])
        mounted = mounts(services[name])
        for folder in folders:
            assert folder in mounted, f"{folder} is not mounted in {name}"
            assert mounted[folder] == ("drop-folder", not writable), name
    assert "drop-folder" in config["volumes"]


def mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """target -> (source, read-only) of a service's volumes, in the short or the long syntax."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            found[target] = (source, mode == ["ro"])
        else:
            found[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
    return found


def test_docker_compose_refuses_to_start_without_the_secret_key_and_flower_credentials():
    result = compose_config()

    assert result.returncode != 0
    assert "set DJANGO_SECRET_KEY" in result.stderr


# docker-compose builds with docker-py; its `exclude_paths` is what it sends as the context.
CONTEXT_FILES = """
import json, sys
from docker.utils.build import exclude_paths
root = sys.argv[1]
with open(root + "/.dockerignore") as f:
    patterns = [p.strip() for p in f if p.strip() and not p.startswith("#")]
print(json.dumps(sorted(exclude_paths(root, patterns))))
"""


def test_the_image_build_context_is_the_application_only():
    interpreter = Path(docker_compose()).read_text(errors="replace").splitlines()[0][2:].strip()
    result = subprocess.run(
        [interpreter, "-c", CONTEXT_FILES, str(BASE_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    files = [p for p in yaml.safe_load(result.stdout) if (BASE_DIR / p).is_file()]

    size = sum((BASE_DIR / p).stat().st_size for p in files)
    assert size < MAX_CONTEXT_BYTES, f"build context {size} bytes"
    assert {"Dockerfile", "manage.py", "requirements.txt", "demo/products.csv"} <= set(files)
    for excluded in (".venv/", ".run/", ".git/", "tests/", "staticfiles/"):
        assert not [p for p in files if p.startswith(excluded)], excluded
    assert not [p for p in files if "__pycache__" in p]


# What compose sets itself, for every process or for one; the rest pass through.
# (DATABASE_URL and REDIS_URL pass through too, with the stack's own servers by default: an
# operator's managed ones were silently replaced by them.)
SET_BY_COMPOSE = {"DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "FLOWER_BASIC_AUTH",
                  "IMPORTBEAT_ENCRYPTION_KEY", "IMPORT_DROP_DIRS"}  # fmt: skip
# Inside the containers the ports are the image's (`ports:` maps them on the host); the rest
# are the development stack's and the suite's own.
NOT_PASSED = {"PORT", "FLOWER_PORT", "IMPORTBEAT_SERVICES_ENV", "PYTEST_XDIST_WORKER",
              "TEST_DATABASE_NAME"}  # fmt: skip


def test_every_setting_set_where_compose_runs_reaches_every_process():
    # Given each setting the processes read set in the shell that runs `docker compose`
    from project.devservices import settings_variables

    passed = set(settings_variables()) - SET_BY_COMPOSE - NOT_PASSED
    shell = {name: f"value-of-{name}" for name in passed}

    services = yaml.safe_load(compose_config(**REQUIRED, **shell).stdout)["services"]

    # Then each reaches every process as it was set (before, MAX_RUNNING_PER_OWNER, EMAIL_URL
    # and all but seven others were dropped without a word)
    for name in ("migrate", "web", "worker", "beat", "flower"):
        environment = services[name]["environment"]
        missing = sorted(n for n in passed if environment.get(n) != shell[n])
        assert missing == [], name


def test_a_setting_unset_where_compose_runs_is_unset_in_the_processes():
    # An empty value would not be the default: `MAX_RUNNING_PER_OWNER=` is not a number
    services = yaml.safe_load(compose_config(**REQUIRED).stdout)["services"]

    assert services["worker"]["environment"]["MAX_RUNNING_PER_OWNER"] is None
    assert services["worker"]["environment"]["EMAIL_URL"] is None
