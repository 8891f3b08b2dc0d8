#!/usr/bin/env bash
# `make run`: migrate, seed the demo, then web + worker + beat + Flower from the Procfile.
# Runs under project.devservices, which has set DATABASE_URL and REDIS_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export PORT="${PORT:-8000}"
export FLOWER_PORT="${FLOWER_PORT:-5555}"
# Development defaults only; production sets its own (see README).
export FLOWER_BASIC_AUTH="${FLOWER_BASIC_AUTH:-admin:admin}"
# The demo CSV is served by the web process itself: allow exactly its port on loopback.
export ALLOWED_PRIVATE_HOSTS="${ALLOWED_PRIVATE_HOSTS:-127.0.0.1:${PORT},localhost:${PORT}}"
# A second terminal (`manage.py`, `celery`, `make manage`) gets the settings of this stack.
python -m project.devservices env >> "${IMPORTBEAT_SERVICES_ENV:-.run/services.env}"

python manage.py migrate --noinput
python manage.py seed_demo --base-url "http://127.0.0.1:${PORT}" | tee .run/demo.txt
cat <<MSG

  importbeat is starting (Ctrl-C stops everything):
    admin      http://127.0.0.1:${PORT}/admin/        (demo user above)
    API        http://127.0.0.1:${PORT}/api/v1/
    API docs   http://127.0.0.1:${PORT}/api/v1/docs/
    dashboard  http://127.0.0.1:${PORT}/dashboard/    (staff)
    Flower     http://127.0.0.1:${FLOWER_PORT}/        (${FLOWER_BASIC_AUTH})

MSG
exec honcho start -f Procfile
