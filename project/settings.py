"""importbeat settings: twelve-factor, every value from the environment.

Every process (web, worker, beat, Flower, manage.py) reads the same variables. In development
`make run` / `make test` resolve PostgreSQL and Redis (the ones in DATABASE_URL / REDIS_URL, or
embedded servers under .run/) and write what they chose to .run/services.env, which is read
here only for variables the environment does not set.
"""

import ipaddress
import logging
import os
import re
import socket
import sys
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from common import redis_tls
from common.application_name import application_name
from common.switches import switch


def _said_in_a_line(kind, error, trace, _default=sys.excepthook):
    """A setting that stops a process (ImproperlyConfigured, raised below) says so in one line
    naming the variable: every process (manage.py, the worker, beat, Flower) printed a
    traceback of 50 to 90 lines before it. The web process says it through project/wsgi.py."""
    if isinstance(error, ImproperlyConfigured):
        print(f"importbeat not started: {error}", file=sys.stderr)
        return
    _default(kind, error, trace)


sys.excepthook = _said_in_a_line

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_DIR = BASE_DIR / ".run"


class Env(environ.Env):
    """django-environ's reader, whose error for a value of the wrong type names the variable:
    `MAX_IMPORT_BYTES=1GiB` stopped every process with "invalid literal for int()" alone."""

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except ValueError as error:
            raise ImproperlyConfigured(
                f"{var}={os.environ.get(var)!r} is not valid: {error}"
            ) from None


env = Env()
environ.Env.read_env(
    env("IMPORTBEAT_SERVICES_ENV", default=str(RUN_DIR / "services.env")), overwrite=False
)


def envbool(name: str, default: bool) -> bool:
    """An on/off switch: 1/0, true/false, yes/no or on/off, in any case, and what env.bool
    took before (common.switches, which flowerconfig.py reads too); unset: `default`; set
    empty: off. Any other word stops the start naming the variable: `env.bool` took it for off,
    and `DJANGO_SSL_REDIRECT=ture` turned the redirect to HTTPS off without a word."""
    try:
        # (os.environ: django-environ gives a default of None for a value set empty)
        return switch(name, os.environ.get(name), default)
    except ValueError as error:
        raise ImproperlyConfigured(str(error)) from None


def url_scheme(url: str) -> str:
    """What a URL says before `://`, for an error that names it without the password after it
    ("no scheme" when there is none)."""
    return f"{url.split('://')[0]}://" if "://" in url else "no scheme"


DEBUG = envbool("DJANGO_DEBUG", default=False)

if DEBUG:
    SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-only-insecure-secret-key")
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["*"])
else:
    SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required unless DJANGO_DEBUG=1")
    ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    # The admin's modules load with the URLs, in the processes that serve them
    # (project/admin_apps.py).
    "project.admin_apps.AdminServedConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "axes",
    # Who changed an import, when and what (schedules/history.py).
    # https://django-auditlog.readthedocs.io/
    "auditlog",
    "schedules.apps.SchedulesConfig",
    "tasks.apps.TasksConfig",
]

MIDDLEWARE = [
    # First: `/api/v1/health` answers whatever the Host header says (compose's healthcheck and
    # load balancers ask by address); every other path keeps the host check below.
    "project.health_any_host.HealthAnswersAnyHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Records who (also an API token's user) and which surface made each change of an import.
    "schedules.history.ChangeContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Before the JSON errors, so that it sees the answer to a locked-out login and replaces it
    # (django-axes).
    "axes.middleware.AxesMiddleware",
    # Last, so it sees exactly what a view raised: /api/ answers JSON even for a crash.
    "schedules.api.middleware.JsonErrorsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env("DATABASE_URL", default="")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set: set it, or run `make run` / `make test`, which start an "
        "embedded PostgreSQL under .run/ when none is reachable"
    )
# Another database's URL (mysql://), or one without its scheme, started every process on
# another engine, or none, and failed only at the first connection, in a library's words.
try:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
except (ValueError, KeyError):
    DATABASES = {"default": {}}
if "://" not in DATABASE_URL or DATABASES["default"].get("ENGINE") != (
    "django.db.backends.postgresql"
):
    raise ImproperlyConfigured(
        f"DATABASE_URL ({url_scheme(DATABASE_URL)}) is no PostgreSQL URL: write "
        "postgres://user:password@host:5432/name"
    )
# Workers hold a connection for the whole import; reuse it between tasks.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Django's PostgreSQL backend, saying a kept connection that failed that check (common/).
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "common.database_backend"
# A connection the network stopped carrying (a firewall or NAT that forgot it, a database host
# replaced without a word) errors within 30 s: TCP keepalives probe one that waits for an
# answer after 15 s of silence, every 5 s, three times; tcp_user_timeout bounds how long what
# was sent may go unacknowledged (and, on Linux, the probes); a connect gives up after 10 s.
# Without them a run waited for its answer until its time limit, and a web request until
# gunicorn's. libpq's parameters; DATABASE_URL's query string overrides each.
# https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-KEEPALIVES
DATABASE_LINK_OPTIONS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 15,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
DATABASES["default"]["OPTIONS"] = {
    **DATABASE_LINK_OPTIONS,
    **DATABASES["default"].get("OPTIONS", {}),
}
# Each process names its sessions in pg_stat_activity ("importbeat worker", …), so that who holds
# a server's connections can be counted (common/application_name.py). libpq's fallback: PGAPPNAME
# or DATABASE_URL's `?application_name=` name them otherwise.
# https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNECT-FALLBACK-APPLICATION-NAME
DATABASES["default"]["OPTIONS"].setdefault("fallback_application_name", application_name())
# A connection pooler between the processes and PostgreSQL (README: Behind PgBouncer): unset
# for PostgreSQL itself or a pool in session mode, where each client keeps its server session;
# `transaction` for a pool that hands each transaction to whichever server session is free
# (PgBouncer's pool_mode = transaction). There, nothing of a session lasts past a transaction:
# psycopg's prepared statements and Django's server-side cursors (`.iterator()` outside a
# transaction) are turned off, as Django's docs ask for one; and a process whose work needs a
# session of its own refuses to start, where it ran and failed half way ("relation
# importbeat_raw does not exist": a run's staging tables live from one transaction to the next).
# A worker or beat that finds itself behind such a pool undeclared refuses as well
# (project/database_pooler.py).
# https://docs.djangoproject.com/en/5.2/ref/databases/#transaction-pooling-server-side-cursors
# https://www.psycopg.org/psycopg3/docs/advanced/prepare.html#using-prepared-statements-with-pgbouncer
DATABASE_POOL_MODE = env("DATABASE_POOL_MODE", default="").strip().lower()
if DATABASE_POOL_MODE not in {"", "session", "transaction"}:
    raise ImproperlyConfigured(
        f"DATABASE_POOL_MODE={DATABASE_POOL_MODE!r}: use session or transaction (the pool_mode "
        "of the PgBouncer that DATABASE_URL names), or leave it unset for PostgreSQL itself"
    )
# The processes whose work is a session's: a run's staging tables, a worker's and beat's
# session settings. `migrate` takes its lock_timeout for the session too.
SESSION_PROCESSES = ("worker", "beat", "run_import", "migrate")
if DATABASE_POOL_MODE == "transaction":
    if (_process := application_name().removeprefix("importbeat ")) in SESSION_PROCESSES:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_MODE=transaction: importbeat {_process} needs a database session of "
            "its own, which a pool in transaction mode does not keep from one transaction to the "
            "next; point its DATABASE_URL at a pool in session mode or at PostgreSQL itself "
            "(README: Behind PgBouncer)"
        )
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
# How a worker's database connection commits (project/worker_connections.py): "off" lets its
# bookkeeping writes skip the wait for the disk; a run's rows and outcome are always durable.
# https://www.postgresql.org/docs/current/wal-async-commit.html
WORKER_SYNCHRONOUS_COMMIT = env("WORKER_SYNCHRONOUS_COMMIT", default="off")
if WORKER_SYNCHRONOUS_COMMIT not in {"on", "off", "local", "remote_write", "remote_apply"}:
    raise ImproperlyConfigured(
        f"WORKER_SYNCHRONOUS_COMMIT={WORKER_SYNCHRONOUS_COMMIT!r}: use on, off, local, "
        "remote_write or remote_apply"
    )
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default="test_importbeat")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes first: it refuses a locked-out username or address before a password is checked,
# for the admin's login form and the API's token endpoint alike.
# https://django-axes.readthedocs.io/en/latest/2_installation.html
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # Django's ModelBackend, reading a session's user in a statement written once.
    "schedules.web_sessions.ModelBackend",
]
# Django's database sessions, each read in a statement written once.
SESSION_ENGINE = "schedules.web_sessions"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# project/formats/en: one date format everywhere (`2026-12-02 19:37:05 UTC`).
FORMAT_MODULE_PATH = ["project.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves from here once `collectstatic` ran (the Docker image does); in development
# it serves through the finders and only needs the directory to exist.
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
# The mail server as one URL (django-environ): smtp://user:password@host:25, smtp+tls://...:587
# (STARTTLS), smtp+ssl://...:465 (TLS from the first byte; django-environ's smtps:// is STARTTLS,
# which a server on 465 does not speak). Without it Django's defaults stand (localhost:25 for
# the SMTP backend), and a server elsewhere could not be reached at all.
# One without its scheme, or with one django-environ does not know, stopped every process with
# "Invalid email schema mail.example.com", naming neither the variable nor the forms it takes.
if _email_url := env("EMAIL_URL", default=""):
    try:
        _email = env.email_url_config(_email_url) if "://" in _email_url else None
    except (ImproperlyConfigured, KeyError, ValueError):
        _email = None
    if _email is None:
        raise ImproperlyConfigured(
            f"EMAIL_URL ({url_scheme(_email_url)}) is no mail server URL: write "
            "smtp://user:password@host:25, smtp+tls://user:password@host:587 or "
            "smtp+ssl://user:password@host:465"
        )
    vars().update(_email)
# Seconds an SMTP connection may stay silent; Django's default is to wait for ever, which held
# the delivering worker until the task's time limit killed it, and said nothing of the server.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=20)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="importbeat@localhost")
# One e-mail per owner at most this often: the notifications between go out together in the
# next one (schedules.email_digest). 0 sends each at once.
EMAIL_DIGEST_SECONDS = env.int("EMAIL_DIGEST_SECONDS", default=300)
if EMAIL_DIGEST_SECONDS < 0:
    raise ImproperlyConfigured("EMAIL_DIGEST_SECONDS must be 0 or more")
# E-mails sent at once across the cluster (tasks.turns): notifications share the worker slots
# with runs, and a relay that took a second an e-mail held every slot when many owners' imports
# failed together. The others wait their turn without holding a slot.
EMAIL_CONCURRENCY = env.int("EMAIL_CONCURRENCY", default=1)
if EMAIL_CONCURRENCY < 1:
    raise ImproperlyConfigured("EMAIL_CONCURRENCY must be at least 1")

# --- importbeat ------------------------------------------------------------------------------

REDIS_URL = env("REDIS_URL", default="")
if not REDIS_URL:
    raise ImproperlyConfigured(
        "REDIS_URL is not set: set it, or run `make run` / `make test`, which start an "
        "embedded Redis under .run/ when none is reachable"
    )
# Redis's forms only (redis-py's): `localhost:6379` started every process, and each failed at
# its first lock or throttle.
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(
        f"REDIS_URL ({url_scheme(REDIS_URL)}) is no Redis URL: write redis://host:6379/0, "
        "rediss://host:6380/0 or unix:///path/to/redis.sock"
    )

# The suite's parallel runners (pytest-xdist's gw0, gw1, ...) share its Redis server: each takes
# a database of its own below the suite's, and the processes its tests start inherit the choice.
# A URL a test points elsewhere (another server, another database) is left as it is.
if (_runner := os.environ.get("PYTEST_XDIST_WORKER", "")).startswith("gw"):
    from project.devservices import TEST_REDIS_DB, with_redis_db

    for _name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        _url = os.environ.get(_name, "")
        if _url.startswith("redis") and _url.rstrip("/").endswith(f"/{TEST_REDIS_DB}"):
            os.environ[_name] = with_redis_db(_url, TEST_REDIS_DB - 1 - int(_runner[2:]))
    REDIS_URL = os.environ["REDIS_URL"]


def redis_url(name: str, url: str) -> str:
    """A Redis URL's TLS options checked and written the one way every Redis client reads them
    (common/redis_tls.py): a rediss:// URL checks its server's certificate unless it says
    ssl_cert_reqs=none. kombu's broker connected to any server posing as a rediss:// Redis,
    without a word, where redis-py's clients checked it (README "TLS and passwords")."""
    try:
        return redis_tls.canonical(url)
    except redis_tls.TlsOptionError as error:
        raise ImproperlyConfigured(f"{name}: {error}") from None


REDIS_URL = redis_url("REDIS_URL", REDIS_URL)

WEB_PORT = env.int("PORT", default=8000)
MIN_INTERVAL_SECONDS = env.int("MIN_INTERVAL_SECONDS", default=60)
ALLOWED_PRIVATE_HOSTS = env.list("ALLOWED_PRIVATE_HOSTS", default=[])
MAX_IMPORT_BYTES = env.int("MAX_IMPORT_BYTES", default=1024**3)
# Local folders `file:///` sources may read (schedules/drop_folders.py): absolute paths,
# comma- or colon-separated; none by default, so no import reads the workers' disks.
IMPORT_DROP_DIRS = [
    folder.strip()
    for folder in re.split(r"[,:]", env("IMPORT_DROP_DIRS", default=""))
    if folder.strip()
]
# Each user reads their own folder in each drop folder (`<folder>/<username>/`), staff all of
# them; shared: every user reads all of them (one team). schedules/drop_folders.py.
IMPORT_DROP_DIRS_SHARED = envbool("IMPORT_DROP_DIRS_SHARED", default=False)
for _drop_dir in IMPORT_DROP_DIRS:
    if not os.path.isabs(_drop_dir):
        raise ImproperlyConfigured(f"IMPORT_DROP_DIRS: {_drop_dir!r} is not an absolute path")
# A drop folder's or SFTP server's file changed this recently when a run opens it is read only
# once it has been quiet this long: one changed meanwhile is still being written, and the run
# is retried rather than import part of it (tasks/whole_file.py). 0: no wait.
FILE_SETTLE_SECONDS = env.float("FILE_SETTLE_SECONDS", default=5.0)
# The longest line, row or field of a file: what the importer holds in memory at once.
MAX_FIELD_BYTES = env.int("MAX_FIELD_BYTES", default=8 * 1024**2)
RUN_RETENTION_DAYS = env.int("RUN_RETENTION_DAYS", default=30)
FAILED_RUN_RETENTION_DAYS = env.int("FAILED_RUN_RETENTION_DAYS", default=90)
# Files a run filed away in a drop folder's `processed/` are deleted by the retention job this
# many days after the move (tasks/processed_retention.py); 0 or empty keeps them for ever. The
# default is the succeeded runs' own retention: after it no run names the file any more.
_processed_days = env("PROCESSED_FILE_RETENTION_DAYS", default="30").strip() or "0"
if not _processed_days.isdigit():
    raise ImproperlyConfigured(
        f"PROCESSED_FILE_RETENTION_DAYS: {_processed_days!r} is not a whole number of days "
        f"(0 or empty keeps processed files for ever)"
    )
PROCESSED_FILE_RETENTION_DAYS = int(_processed_days)
# The longest timeout_seconds an import may ask for; the broker's visibility timeout is
# derived from it so that Redis never redelivers a run that is still legitimately working.
MAX_TIMEOUT_SECONDS = env.int("MAX_TIMEOUT_SECONDS", default=6 * 3600)
# Runs of one owner executing at once (tasks/fairness.py); keep it below the cluster's worker
# slots so that one user cannot take them all. 0: no cap.
MAX_RUNNING_PER_OWNER = env.int("MAX_RUNNING_PER_OWNER", default=2)
# Checks of a source in progress at once (schedules/check_slots.py): `POST /imports/check`,
# `?dry_run=true` and the admin's Test source each hold a web thread while a worker fetches the
# source (20 s at most) and a worker slot (17 s at most); one over the cap is refused at once
# (429). Per user (0: no cap), at the runs' cap: one user's checks hold no more worker slots
# than their runs may.
SOURCE_CHECKS_AT_ONCE = env.int("SOURCE_CHECKS_AT_ONCE", default=2)
# The Procfile's threads per web process (gunicorn reads the same variable): a web process lets
# half of them wait on checks, whatever the caps, since gunicorn's threaded worker queues the
# requests it takes behind its busy threads. Under gunicorn the threads it runs count
# (gunicorn.conf.py records them: check_slots.record_threads); this, elsewhere.
WEB_THREADS = env.int("WEB_THREADS", default=4)
# For everyone together (0: no cap): half the threads of the web the Procfile starts
# (WEB_CONCURRENCY x WEB_THREADS, 2 x 4 = 8, so 4), so that checks of sources that never
# answer cannot hold every thread and the web keeps answering everyone else and the health
# check; twice a user's cap, so one user cannot take them all. Checks above the cluster's
# worker slots (one worker: 2) wait in the queue as runs do, and runs wait behind checks 17 s
# at most: lower it to the worker slots to keep runs from waiting behind checks at all.
SOURCE_CHECKS_AT_ONCE_IN_ALL = env.int(
    "SOURCE_CHECKS_AT_ONCE_IN_ALL",
    default=max(1, env.int("WEB_CONCURRENCY", default=2) * WEB_THREADS // 2),
)
# How long a check of a source waits: the page (API, admin) for a worker's answer, under
# gunicorn's 30 s worker timeout; the worker for the source, whose check task's hard limit comes
# 5 s later (schedules.source_check.time_limits), inside the page's wait so that the worker's
# words reach the page and not "no worker answered".
SOURCE_CHECK_WAIT_SECONDS = env.int("SOURCE_CHECK_WAIT_SECONDS", default=20)
SOURCE_CHECK_FETCH_SECONDS = env.int("SOURCE_CHECK_FETCH_SECONDS", default=12)
if not 1 <= SOURCE_CHECK_FETCH_SECONDS <= SOURCE_CHECK_WAIT_SECONDS - 6:
    raise ImproperlyConfigured(
        f"SOURCE_CHECK_FETCH_SECONDS must be at least 1 and at most SOURCE_CHECK_WAIT_SECONDS - 6 "
        f"(it is {SOURCE_CHECK_FETCH_SECONDS}, SOURCE_CHECK_WAIT_SECONDS "
        f"{SOURCE_CHECK_WAIT_SECONDS}): the check's task may run 5 s past it, and the page must "
        "still be waiting for its answer"
    )
FETCH_CONNECT_TIMEOUT_SECONDS = env.float("FETCH_CONNECT_TIMEOUT_SECONDS", default=10.0)
FETCH_READ_TIMEOUT_SECONDS = env.float("FETCH_READ_TIMEOUT_SECONDS", default=60.0)
# The read timeout bounds one silence, not a download: a server dripping a byte every few
# seconds would hold a worker for hours. A whole download gets this long, and must average this
# rate while the worker waits for it (tasks/fetch_watchdog.py).
FETCH_TOTAL_TIMEOUT_SECONDS = env.float("FETCH_TOTAL_TIMEOUT_SECONDS", default=1800.0)
FETCH_MIN_BYTES_PER_SECOND = env.float("FETCH_MIN_BYTES_PER_SECOND", default=10 * 1024)
# Fernet keys that encrypt source credentials at rest (schedules/credentials.py): the first
# encrypts, every one decrypts, so a new key goes first and `manage.py rotate_credentials`
# re-encrypts with it before the old one is dropped. Empty: no credential can be saved.
IMPORTBEAT_ENCRYPTION_KEYS = env.list("IMPORTBEAT_ENCRYPTION_KEY", default=[])
for _position, _key in enumerate(IMPORTBEAT_ENCRYPTION_KEYS, start=1):
    # Checked here: a key that is none let everything start, then every save of a credential
    # answered 500 and `rotate_credentials` said it re-encrypted 0.
    from cryptography.fernet import Fernet

    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            f"IMPORTBEAT_ENCRYPTION_KEY: key {_position} is not a Fernet key (32 url-safe "
            "base64-encoded bytes; make one with `python -c 'from cryptography.fernet import "
            "Fernet; print(Fernet.generate_key().decode())'`)"
        ) from None

# --- Celery (https://docs.celeryq.dev/en/stable/userguide/configuration.html) -------------

# A Redis broker is served by project.broker_transport (named so in project/celery.py).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
# Any broker Celery takes (redis://, amqp://), but named by its scheme: without one kombu took
# `localhost:6379` for the name of an AMQP server (amqp://guest@localhost%3A6379:5672//).
if "://" not in CELERY_BROKER_URL:
    raise ImproperlyConfigured(
        "CELERY_BROKER_URL has no scheme: write redis://host:6379/0 or amqp://user:password@host"
    )
# Results hold the progress that Flower and the API read while a run is going.
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=REDIS_URL)
# A Redis broker's and results' TLS options, read as every other Redis client reads them: in
# their URL (kombu and Celery read it there) and given again as the settings Flower's broker
# page and Celery's result backend read (Flower refused a rediss:// broker without
# broker_use_ssl, and the backend a rediss:// URL without ssl_cert_reqs).
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-use-ssl
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#redis-backend-use-ssl
CELERY_BROKER_USE_SSL: dict | None = None
CELERY_REDIS_BACKEND_USE_SSL: dict | None = None
if CELERY_BROKER_URL.startswith(("redis", "unix")):
    CELERY_BROKER_URL = redis_url("CELERY_BROKER_URL", CELERY_BROKER_URL)
    CELERY_BROKER_USE_SSL = redis_tls.options(CELERY_BROKER_URL) or None
if CELERY_RESULT_BACKEND.startswith(("redis", "unix")):
    CELERY_RESULT_BACKEND = redis_url("CELERY_RESULT_BACKEND", CELERY_RESULT_BACKEND)
    CELERY_REDIS_BACKEND_USE_SSL = redis_tls.options(CELERY_RESULT_BACKEND) or None
# Celery reads these two from the environment before its configuration (celery/app/utils.py):
# the URL as written there reached kombu, its TLS options read kombu's way, not as above.
for _name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
    if _name in os.environ:
        os.environ[_name] = globals()[_name]
# A day, for every state: a parked run's RETRY says "waiting its turn" for as long as it waits in
# its owner's line, and Celery has one expiry for all states but FAILURE, so none is shorter. What
# a day cost is bounded instead: a run's task stores no traceback, and its end replaces a RETRY or
# PROGRESS it stored while it waited or ran (tasks.tasks.execute_run).
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#result-expires
CELERY_RESULT_EXPIRES = 24 * 3600
# A result backend connection the network forgot (a NAT whose idle timeout drops packets
# instead of refusing them) held the worker's process that wrote on it until the kernel gave it
# up, about 15 minutes: a run's progress, a failed task's error. Each answer is waited for 10 s
# at most, then Celery tries again on a new connection, and a connection idle for 25 s is
# checked before it is used.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#redis-backend-settings
CELERY_REDIS_SOCKET_TIMEOUT = 10
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 5
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = 25
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-serializer
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
# A run is acknowledged only when it ended, and handed back if its worker process died:
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-acks-late
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Imports are long; a worker takes one message at a time so others can pick up the rest.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-prefetch-multiplier
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# No STARTED state in the result backend: nothing reads it (Flower follows a task through the
# worker's events, the API reads PROGRESS), and it was one more Redis write per run.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-track-started
CELERY_TASK_TRACK_STARTED = False
# Celery's Django fix-up closes the database connections around every task unless told to
# reuse them; project/worker_connections.py honours CONN_MAX_AGE and CONN_HEALTH_CHECKS
# between tasks instead, as Django does between requests. The fix-up's own forced close then
# comes only every this many tasks of a pool process.
# (A setting of celery/fixups/django.py, read as CELERY_DB_REUSE_MAX.)
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker tries to reach its broker for as long as it takes: after Celery's 100 tries (about
# 46 minutes of waits growing to 30 s) it stopped for good, and honcho (`make run`) stopped the
# whole stack with it. It says "Cannot connect" once a minute meanwhile (project/worker_log.py).
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-connection-max-retries
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A broker that answers and refuses a write (a Redis full at its maxmemory, a replica a failover
# left the URL on) raises a channel error, not a connection error: a worker whose
# acknowledgement met a full Redis stopped for good ("Unrecoverable error"), and the runs queued
# behind it waited for a worker that never came back. With this its consumer reconnects, as
# after a lost connection, until the broker takes writes again.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#broker-channel-error-retry
CELERY_BROKER_CHANNEL_ERROR_RETRY = True
# A broker connection the network stopped carrying (a firewall or a NAT that forgot it, a Redis
# host replaced while a link was down) is noticed by TCP keepalives: probed after 5 s of
# silence, every 2 s, three times, so given up after 11 s, as is what was sent and went
# unacknowledged as long (TCP_USER_TIMEOUT, which Linux also lets end the probes). The consumer
# then reconnects on its usual path, and Flower's event receiver too. Without them kombu's own
# check of an unanswered BRPOP dropped the socket 26 to 50 s later, and the consumer it
# restarted took no message again, the first one it popped lost (handed to the consumer being
# closed: project/broker_transport.py): a worker up, answering pings, running nothing; and
# Flower showed no task again.
# https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html
BROKER_KEEPALIVE_OPTIONS = {
    getattr(socket, name): value
    for name, value in (
        ("TCP_KEEPIDLE", 5),
        ("TCP_KEEPINTVL", 2),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", 11_000),
    )
    if hasattr(socket, name)  # Linux's; another system keeps its own defaults
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redis redelivers an unacknowledged message after this long; it must outlive the longest
    # import, or a healthy long run would be started twice.
    # https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
    "visibility_timeout": MAX_TIMEOUT_SECONDS + 3600,
    "socket_keepalive": True,
    "socket_keepalive_options": BROKER_KEEPALIVE_OPTIONS,
    # ... and its reconnection gives up after 5 s and tries again, instead of holding the
    # worker's main process in connect() for as long as the kernel retries (two minutes).
    "socket_connect_timeout": 5,
    # An answer is waited for 20 s at most. A Redis, or a proxy before it, that keeps the
    # connection and loses what it carries answers every keepalive probe: the worker's main
    # process waited for ever for the answer to its event heartbeat's publish, and took no
    # message again, even once the broker answered again.
    "socket_timeout": 20,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": MAX_TIMEOUT_SECONDS + 3600}
# https://django-celery-beat.readthedocs.io/en/latest/#example-creating-interval-based-periodic-task
CELERY_BEAT_SCHEDULER = "project.beat:ImportScheduler"
# Beat re-reads changed PeriodicTasks at least this often (seconds).
BEAT_MAX_LOOP_INTERVAL = env.int("BEAT_MAX_LOOP_INTERVAL", default=5)
CELERY_BEAT_MAX_LOOP_INTERVAL = BEAT_MAX_LOOP_INTERVAL
# When the broker connection drops, let running imports finish instead of cancelling them: a
# restarted Redis without persistence has lost their messages, so a cancelled run could not be
# redelivered. The run's own lease and heartbeat keep it single and visible meanwhile.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#worker-cancel-long-running-tasks-on-connection-loss
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False

# --- Reliability (README "Reliability") ------------------------------------------------------

# The single-instance lease of a run in Redis: it expires this long after its worker died, and
# a live run renews it (and its heartbeat) every third of it.
RUN_LEASE_SECONDS = env.int("RUN_LEASE_SECONDS", default=60)
# Only the beat holding this lease dispatches; a standby takes over this long after the leader
# stopped renewing it (a crash), at once after a clean stop.
BEAT_LEADER_LEASE_SECONDS = env.int("BEAT_LEADER_LEASE_SECONDS", default=30)
# How often beat runs the maintenance sweep (runs left `running` by dead workers, notifications
# whose message was lost) and the reconciliation (lost run messages, ticks without a run).
MAINTENANCE_INTERVAL_SECONDS = env.int("MAINTENANCE_INTERVAL_SECONDS", default=60)
# A notification still pending this long, or retrying this long after its next attempt was due,
# is sent again by the sweep (its message was lost, or the broker was down when its run finished
# or its retry was sent; not one waiting its turn, tasks.turns); a waiting run's message a worker
# still holds this long after it was due is counted lost by reconciliation (its worker was
# killed outright).
STALE_QUEUED_SECONDS = env.int("STALE_QUEUED_SECONDS", default=1800)
# A tick dispatched later than this after it was due is a missed tick (beat was down or
# stalled): it is counted, its import is late, and the import's `catchup` policy decides whether
# it still runs. A scheduled run whose message is gone from the broker this long after its tick
# is a missed tick too, and a waiting run's message gone this long is sent again
# (schedules.reconcile).
MISSED_TICK_GRACE_SECONDS = env.int("MISSED_TICK_GRACE_SECONDS", default=60)
# Beat takes due imports in batches of this many, one transaction each (runs created, next
# ticks advanced), and then publishes their messages in one pipelined round trip.
BEAT_DISPATCH_BATCH = env.int("BEAT_DISPATCH_BATCH", default=1000)
# Reconciliation looks this far back at most (an import's ticks since its last edit or resume).
RECONCILE_WINDOW_SECONDS = env.int("RECONCILE_WINDOW_SECONDS", default=24 * 3600)
# The maintenance PeriodicTasks: django-celery-beat writes this mapping into its tables when beat
# starts, so they show in the admin and follow the environment of the beat that runs them.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#beat-schedule
CELERY_BEAT_SCHEDULE = {
    "importbeat:maintenance:sweep": {
        "task": "importbeat.sweep_runs",
        "schedule": float(MAINTENANCE_INTERVAL_SECONDS),
        "options": {"expires": float(MAINTENANCE_INTERVAL_SECONDS)},
    },
    "importbeat:maintenance:reconcile": {
        "task": "importbeat.reconcile_ticks",
        "schedule": float(MAINTENANCE_INTERVAL_SECONDS),
        "options": {"expires": float(MAINTENANCE_INTERVAL_SECONDS)},
    },
    "importbeat:maintenance:retention": {
        "task": "importbeat.delete_old_runs",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
}


REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # `Authorization: Token <key>` or `Bearer <key>` (SPEC section 5), the same knox tokens.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "schedules.api.authentication.TokenAuthentication",
        "schedules.api.authentication.BearerTokenAuthentication",
    ],
}
# API tokens: django-rest-knox stores only a hash of each token; a user may hold several and
# revoke each one. https://jazzband.github.io/django-rest-knox/settings/
REST_KNOX = {
    "TOKEN_TTL": None,
    "AUTH_HEADER_PREFIX": "Token",
    "TOKEN_PREFIX": "ib_",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO").upper()},
}
if not isinstance(logging.getLevelName(LOGGING["root"]["level"]), int):
    raise ImproperlyConfigured(
        f"LOG_LEVEL={LOGGING['root']['level']!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
    )

# --- API, dashboard and Flower (issue 4) -----------------------------------------------------

INSTALLED_APPS += ["drf_spectacular_sidecar"]
API_PAGE_SIZE = env.int("API_PAGE_SIZE", default=50)
# https://www.django-rest-framework.org/api-guide/settings/
REST_FRAMEWORK.update(
    {
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
        "DEFAULT_PAGINATION_CLASS": "schedules.api.pagination.PageNumberPagination",
        "PAGE_SIZE": API_PAGE_SIZE,
        "DEFAULT_FILTER_BACKENDS": ["schedules.api.filters.StrictFilterBackend"],
        "EXCEPTION_HANDLER": "schedules.api.errors.exception_handler",
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        # DRF's JSON parser with a nesting limit (a deeply nested body was a 500).
        "DEFAULT_PARSER_CLASSES": ["schedules.api.parsers.JSONParser"],
        "TEST_REQUEST_DEFAULT_FORMAT": "json",
    }
)
# Rates of the throttled endpoints (DRF rate syntax: N/second|minute|hour|day). Read per request
# by schedules.api.throttles, so they can be changed without a code change.
API_MANUAL_RUN_RATE = env("API_MANUAL_RUN_RATE", default="30/minute")
API_LOGIN_RATE = env("API_LOGIN_RATE", default="20/minute")
for _name in ("API_MANUAL_RUN_RATE", "API_LOGIN_RATE"):
    # Checked here: a rate DRF cannot read made every throttled request a 500.
    if not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", globals()[_name]):
        raise ImproperlyConfigured(
            f"{_name}={globals()[_name]!r}: write it N/second, N/minute, N/hour or N/day"
        )
# Throttle counters live in Redis so that every web process counts against the same budget.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "importbeat:throttle",
    },
    **globals().get("CACHES", {}),
}
# https://drf-spectacular.readthedocs.io/en/latest/settings.html
SPECTACULAR_SETTINGS = {
    "TITLE": "importbeat API",
    "DESCRIPTION": "Scheduled CSV imports: define imports, trigger and follow runs, read datasets.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Every operation's error answers, with their bodies (schedules/api/schema_errors.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "schedules.api.schema_errors.declare_error_answers",
    ],
    "ENUM_NAME_OVERRIDES": {
        "ImportStatusEnum": "schedules.models.ScheduledImport.Status",
        "RunStatusEnum": "schedules.models.ImportRun.Status",
    },
}
# Health: how long to wait for workers to answer a ping, and when beat counts as stale.
HEALTH_WORKER_PING_TIMEOUT = env.float("HEALTH_WORKER_PING_TIMEOUT", default=0.5)
# `/api/v1/health` reuses a web process's answer of the workers up to this many seconds old:
# asking waits the ping timeout twice, which every load balancer's probe would otherwise wait.
HEALTH_WORKERS_MAX_AGE = env.float("HEALTH_WORKERS_MAX_AGE", default=10.0)
HEALTH_BROKER_TIMEOUT = env.float("HEALTH_BROKER_TIMEOUT", default=2.0)
# `/metrics` on the web process asks for Flower's credentials (`user:password`, comma-separated
# for several); Flower reads the same variable itself.
FLOWER_BASIC_AUTH = env("FLOWER_BASIC_AUTH", default="")
LOGIN_URL = "admin:login"

# --- HTTPS (README "Security"; `manage.py check --deploy` is clean with the production values) ---

# Behind a TLS-terminating proxy, Django learns that a request came over HTTPS from the header the
# proxy sets, e.g. DJANGO_SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https. Only set it when
# the proxy always sets (or strips) that header: a client could send it otherwise.
# https://docs.djangoproject.com/en/5.2/ref/settings/#secure-proxy-ssl-header
_proxy_ssl_header = env.list("DJANGO_SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured("DJANGO_SECURE_PROXY_SSL_HEADER is HEADER,value")
    SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header)
# Cookies only over HTTPS outside development.
SESSION_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = envbool("DJANGO_SSL_REDIRECT", default=False)
# Load balancers check health over plain HTTP on the private side.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/?$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = envbool("DJANGO_HSTS_PRELOAD", default=False)

# --- Login lockout and client addresses (issue 11, README "Security") -------------------------

# Proxies (addresses or networks) whose X-Forwarded-For is believed; nobody else's is, since any
# client can send that header (common.security.client_ip).
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
for _proxy in TRUSTED_PROXIES:
    # Checked here: an entry that is no address (a host name) made every request a 500.
    try:
        ipaddress.ip_network(_proxy.strip(), strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"TRUSTED_PROXIES: {_proxy!r} is not an IP address or network (names are not "
            "looked up: write 10.0.0.5 or 10.0.0.0/8)"
        ) from None
# Failed logins, counted per username and per address (either one locks), within the lockout
# period; after LOGIN_FAILURE_LIMIT of them that username or address gets 429 until the period
# after its last failure has passed. https://django-axes.readthedocs.io/en/latest/4_configuration.html
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=900)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(seconds=LOGIN_LOCKOUT_SECONDS)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "common.security.client_ip"
AXES_LOCKOUT_CALLABLE = "common.security.lockout_response"
# A success does not clear the failures: it would let a guesser reset its address's count by
# logging into an account of its own between guesses.
AXES_RESET_ON_SUCCESS = False
# Failed attempts are kept (admin: Axes › Access attempts); successful logins are not logged.
AXES_DISABLE_ACCESS_LOG = True

# --- Values that cannot work (README "Configuration") ----------------------------------------

# Each stops every process at start, naming itself, rather than starting and failing later, or
# doing what nobody asked for without a word: API_PAGE_SIZE=0 made every API list one bare array
# of every row (-5: a 404 for its first page), LOGIN_FAILURE_LIMIT=0 locked every login out with
# no failure at all, MAX_TIMEOUT_SECONDS=0 refused every save of an import, RUN_RETENTION_DAYS=-1
# let the hourly retention delete every finished run, a timeout of 0 made its socket wait for
# nothing (HEALTH_BROKER_TIMEOUT=0: the broker "down" at every health check, a 503), and an
# interval of 0 was a 500 at each save.
for _name in (
    "MIN_INTERVAL_SECONDS",
    "MAX_IMPORT_BYTES",
    "MAX_FIELD_BYTES",
    "MAX_TIMEOUT_SECONDS",
    "RUN_RETENTION_DAYS",
    "FAILED_RUN_RETENTION_DAYS",
    "RUN_LEASE_SECONDS",
    "BEAT_LEADER_LEASE_SECONDS",
    "BEAT_MAX_LOOP_INTERVAL",
    "MAINTENANCE_INTERVAL_SECONDS",
    "STALE_QUEUED_SECONDS",
    "MISSED_TICK_GRACE_SECONDS",
    "BEAT_DISPATCH_BATCH",
    "RECONCILE_WINDOW_SECONDS",
    "API_PAGE_SIZE",
    "LOGIN_FAILURE_LIMIT",
    "LOGIN_LOCKOUT_SECONDS",
    "WEB_THREADS",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1 (it is {globals()[_name]})")
# Seconds a process waits for an answer: 0 would not wait at all.
for _name in (
    "EMAIL_TIMEOUT",
    "FETCH_CONNECT_TIMEOUT_SECONDS",
    "FETCH_READ_TIMEOUT_SECONDS",
    "FETCH_TOTAL_TIMEOUT_SECONDS",
    "HEALTH_BROKER_TIMEOUT",
    "HEALTH_WORKER_PING_TIMEOUT",
):
    if not globals()[_name] > 0:
        raise ImproperlyConfigured(f"{_name} must be more than 0 (it is {globals()[_name]})")
# 0 has a meaning of its own (the table says which); under 0 has none.
for _name in (
    "FILE_SETTLE_SECONDS",
    "FETCH_MIN_BYTES_PER_SECOND",
    "HEALTH_WORKERS_MAX_AGE",
    "MAX_RUNNING_PER_OWNER",
    "SOURCE_CHECKS_AT_ONCE",
    "SOURCE_CHECKS_AT_ONCE_IN_ALL",
):
    if not globals()[_name] >= 0:
        raise ImproperlyConfigured(f"{_name} must be 0 or more (it is {globals()[_name]})")
