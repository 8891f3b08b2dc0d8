"""A library's error read as plain words, for the messages an operator or a user reads.

psycopg, redis-py, kombu and requests name their own classes and quote their internals
(`OperationalError('Error 111 connecting to 127.0.0.1:6379.')`, `[Errno 111] Connection
refused`). What importbeat shows says instead what could not be reached, without a password,
and why: "cannot reach the broker at 127.0.0.1:6379: connection refused". The error itself
goes to the log.

Shared by the worker's start-up and database checks (project.worker_checks), the health checks
(schedules.api.health) and the fetcher's words for a failed request (tasks.fetch_errors), which
is why it lives in `common`, the one package all three may import.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import psycopg.errors

from common.server_languages import REFUSALS

# The operating system's words for a failed connection, inside a library's message.
ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^\"'()\[\]]+)")
# A word like `BadStatusLine` or `ConnectionError`: a class name that must not reach a reader.
CLASS_NAME = re.compile(r"\b[A-Z][a-z]+[A-Z]\w*\b")

# A server that answered and took no more connections: said apart from one that cannot be
# reached, since it is there and how many connections it allows is the operator's to size.
# PostgreSQL tells a role that is no superuser "remaining connection slots are reserved …"
# once only its reserved slots are left: an application's usual refusal, said "the reason is in
# the log" before (clients hunt). Redis says "max number of clients reached" at its maxclients.
OUT_OF_CONNECTIONS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"too many connections for role"),
        "the database user has no free connection: it is at its CONNECTION LIMIT",
    ),
    (
        re.compile(r"too many connections for database"),
        "the database has no free connection: it is at its CONNECTION LIMIT",
    ),
    (
        re.compile(r"too many clients already|remaining connection slots are reserved"),
        "the server has no free connection: it is at its max_connections",
    ),
    (
        re.compile(r"max number of clients reached"),
        "the server has no free connection: it is at its maxclients",
    ),
    # PgBouncer's refusal of a client beyond its max_client_conn (README: Behind PgBouncer).
    (
        re.compile(r"no more connections allowed \(max_client_conn\)"),
        "the connection pooler takes no more clients: it is at its max_client_conn",
    ),
]

# Why a connection to the database or the broker failed: a phrase of psycopg's, redis-py's or
# the operating system's (lowercase, searched in the error and every error inside it) and the
# words shown. The first that matches wins, so the more precise phrases come first.
_REASONS: list[tuple[re.Pattern[str], str]] = [
    # TLS (a rediss:// Redis, a PostgreSQL with sslmode=verify-ca or verify-full): before the
    # others, as libpq's words for a missing CA file say "does not exist" and "provide".
    (
        re.compile(r"ip address mismatch|hostname mismatch|does not match host name"),
        "the TLS certificate of the server names another host: use the host name it was issued for",
    ),
    (
        re.compile(r"root certificate file .* does not exist"),
        "the CA file that sslrootcert names does not exist",
    ),
    (re.compile(r"certificate has expired"), "the TLS certificate of the server has expired"),
    (
        re.compile(
            r"unable to get local issuer certificate|self.signed certificate|unknown ca"
            r"|certificate verify failed"
        ),
        "the TLS certificate of the server is not signed by a CA trusted here: give the file "
        "of its CA, as ssl_ca_certs in a rediss:// URL or sslrootcert in DATABASE_URL",
    ),
    (
        re.compile(r"wrong version number|unknown protocol|record layer failure"),
        "the server there does not speak TLS: check the scheme, rediss:// or redis://, and "
        "the port",
    ),
    (
        re.compile(r"server does not support ssl"),
        "the database server does not accept TLS, which sslmode requires",
    ),
    (
        re.compile(r"pg_hba\.conf rejects connection .* no encryption"),
        "the database server takes TLS connections only: set sslmode=verify-full in DATABASE_URL",
    ),
    # An ACL user of Redis without the right to run a command importbeat needs.
    (
        re.compile(r"noperm|no permissions to"),
        "the Redis user is not allowed to run what importbeat needs: check its ACL",
    ),
    (re.compile(r"database \"[^\"]*\" does not exist"), "the database does not exist"),
    (re.compile(r"role \"[^\"]*\" does not exist"), "the database user does not exist"),
    (
        re.compile(
            r"authentication|password|wrongpass|noauth|username-password|already authenticated"
        ),
        "authentication failed: check the user name and password",
    ),
    # PgBouncer's own words, before "timeout" below: "query_wait_timeout" said "timed out" and
    # "no such database: x" the reason is in the log (README: Behind PgBouncer).
    (
        re.compile(r"query_wait_timeout"),
        "the connection pooler had no server connection for it in time (its "
        "query_wait_timeout): its pool is too small, or it cannot reach PostgreSQL",
    ),
    (
        re.compile(r"pgbouncer cannot connect to server|server login has been failing"),
        "the connection pooler cannot reach PostgreSQL behind it",
    ),
    (
        re.compile(r"no such database: "),
        "the connection pooler has no such database: check its [databases] section",
    ),
    (re.compile(r"timeout|timed out"), "timed out"),
    (re.compile(r"connection refused"), "connection refused"),
    (
        re.compile(
            r"name or service not known|nodename nor servname|name resolution"
            r"|resolve host|translate host name|no address associated"
        ),
        "the host name does not resolve",
    ),
    (re.compile(r"network is unreachable"), "the network is unreachable"),
    (re.compile(r"no route to host"), "no route to the host"),
    (re.compile(r"no such file or directory"), "no server listens on that socket"),
    *OUT_OF_CONNECTIONS,
    (re.compile(r"starting up|shutting down"), "the server is starting up or shutting down"),
    # (ALTER DATABASE … ALLOW_CONNECTIONS false, as before a maintenance or a migration)
    (
        re.compile(r"not currently accepting connections"),
        "the database takes no connections now: its ALLOW_CONNECTIONS is off",
    ),
    # The session ended by the server, said before the connection's closing that follows it.
    (
        re.compile(r"terminating connection due to administrator command"),
        "the server ended the session: by an operator or at its shutdown",
    ),
    (re.compile(r"terminating connection due to"), "the server ended the session"),
    (
        re.compile(r"connection reset|closed the connection|connection closed"),
        "the server closed the connection",
    ),
    (
        re.compile(r"protocol error|invalid response"),
        "the server there does not answer as expected: check the host and port",
    ),
]
UNKNOWN = "the reason is in the log"

# The same reasons by PostgreSQL's SQLSTATE, looked at before the phrases above: a server whose
# messages are in another language (`lc_messages` set for importbeat's role or database, or the
# whole server's, as a German or Japanese operator's is) says none of them in English, and each
# read "the reason is in the log". A session's errors carry their code; a refused connection's
# do not (libpq keeps only the text), hence servers_own_words below.
# https://www.postgresql.org/docs/current/errcodes-appendix.html
_SQLSTATE_REASONS: dict[str, str] = {
    "57P01": "the server ended the session: by an operator or at its shutdown",  # admin_shutdown
    "57P02": "the server ended the session",  # crash_shutdown
    "57P03": "the server is starting up or shutting down",  # cannot_connect_now
    "57P05": "the server ended the session",  # idle_session_timeout
    "3D000": "the database does not exist",  # invalid_catalog_name
    "28P01": "authentication failed: check the user name and password",  # invalid_password
}
# The same refusals in each language PostgreSQL speaks (common.server_languages), each read as
# its English message, the name it quotes kept (no quote inside: a name the message begins
# with, `"x" 데이터베이스 없음`, was taken from libpq's `"10.0.0.5", port …`).
_TRANSLATED: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"([^\"«»]{1,200}?)".join(
                r"\s+".join(re.escape(word) for word in part.split())
                for part in translation.lower().split("%s")
            )
        ),
        english,
    )
    for english, translations in REFUSALS.items()
    for translation in translations.values()
]

# libpq's words for a connection the server refused, then the server's own, in its language:
# `connection to server at "host", port 5432 failed: FATAL:  zu viele Verbindungen von Rolle …`.
_SERVER_REFUSAL = re.compile(r"\bfailed: [^\s:]+:\s+(?P<words>[^\n]+)")

# Why a Redis that answers refuses to write: a phrase of its error (lowercase) and the words.
FULL = "Redis is full: it reached its maxmemory and evicts nothing; free memory or raise maxmemory"
READ_ONLY = "it is a read-only replica: point the URL at the primary"
# A task queue that has no room for a message (a full Redis), as both a trigger (its 503) and a
# check of a source (its problem) say it: the same cause in the same words.
QUEUE_FULL = "the task queue is full"
_REFUSALS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"used memory > 'maxmemory'"), FULL),
    # Redis's own sentence (redis-py drops its READONLY code): "readonly" alone was also found in
    # a host name, a socket's path or an ACL user's name (Redis 7.2 names it in a NOPERM), and a
    # Redis away at `redis-readonly` was said a replica (reviewD hunt).
    (re.compile(r"read only (?:replica|slave)|(?:^|\s)readonly you can't write"), READ_ONLY),
]

# A Redis (the broker's, REDIS_URL's) that answered and refused the login: requirepass set and
# no password or a wrong one given (NOAUTH, WRONGPASS), or an ACL user that is off. It was said
# "cannot reach Redis: authentication failed", sending an operator to the network, and the
# worker's and Flower's lines quoted redis-py's class and text (health3 hunt).
LOGIN_REFUSED = (
    "the user name or password in its URL is wrong or missing, or that user is disabled in its ACL"
)
_LOGIN_REFUSALS = re.compile(
    r"wrongpass|invalid username-password pair|noauth|authentication required"
    r"|invalid password|user is disabled"
    # NOAUTH to a client that greets with HELLO 3 (redis-py 8's default) and gave no password;
    # redis-py drops the NOAUTH: a client without a health check's PING first (the throttles'
    # cache) said "the reason is in the log" with redis-py's class and text (review).
    r"|must be called with the client already authenticated"
)


# An ACL user of Redis refused a command or a key: the server answered (the same phrase as the
# ACL's entry of _REASONS).
_NO_PERMISSION = re.compile(r"noperm|no permissions to")


def unreachable(what: str, error: BaseException, log: logging.Logger) -> str:
    """The words `cannot reach <what>: <why>`; `error` itself (its class and whole text) goes
    to `log`. A Redis that refused the login: `<what> refuses the login: <why>` (login_refusal),
    its text at DEBUG only, as it adds nothing to the words."""
    if words := login_refusal(what, error):
        log.warning("%s", words)
        log.debug("%s (%s: %s)", words, type(error).__name__, log_text(error))
        return words
    words = f"cannot reach {what}: {reason(error)}"
    log.warning("%s (%s: %s)", words, type(error).__name__, log_text(error))
    return words


def refused_or_unreachable(what: str, error: BaseException, log: logging.Logger) -> str:
    """`<what> refuses new messages: <why>` for a server that answered but refused to write (a
    full Redis, a read-only replica), else `cannot reach <what>: <why>`; `error` itself goes to
    `log`."""
    refused = refusal(error)
    if refused is None or refused == LOGIN_REFUSED:
        return unreachable(what, error, log)
    words = f"{what} refuses new messages: {refused}"
    log.warning("%s (%s: %s)", words, type(error).__name__, log_text(error))
    return words


def refusal(error: BaseException) -> str | None:
    """Why a server that answers refused to write (a full Redis, a read-only replica, a Redis
    that refused the login: LOGIN_REFUSED), in words; None when `error` is no such refusal (a
    connection that failed, say)."""
    text = " ".join(str(link) for link in chain(error)).lower()
    for phrase, words in _REFUSALS:
        if phrase.search(text):
            return words
    if _LOGIN_REFUSALS.search(text):
        return LOGIN_REFUSED
    return None


def login_refusal(what: str, error: BaseException) -> str | None:
    """`<what> refuses the login: <why>` for a Redis that answered and refused the user name or
    password of its URL; None for any other error."""
    if _LOGIN_REFUSALS.search(" ".join(str(link) for link in chain(error)).lower()):
        return f"{what} refuses the login: {LOGIN_REFUSED}"
    return None


def redis_words(what: str, error: BaseException) -> str:
    """What a Redis that failed a command (`what`: "the broker at host:port", "Redis at …") did,
    in words: `<what> refuses the login: …`, `<what> refuses writes: …` (full, a read-only
    replica), `<what> refuses: …` (an ACL user not allowed a command), `cannot reach <what>: …`,
    or `<what> failed: the reason is in the log` (an answer no words know, WRONGTYPE say).
    The reconciliation's readers of the queues logged redis-py's class or text for all of
    these, a login refusal as "AuthenticationError" or "invalid username-password pair …"
    (words3 hunt)."""
    if words := login_refusal(what, error):
        return words
    if (refused := refusal(error)) is not None:
        return f"{what} refuses writes: {refused}"
    why = reason(error)
    if why == UNKNOWN:
        return f"{what} failed: {UNKNOWN}"
    if _NO_PERMISSION.search(" ".join(str(link) for link in chain(error)).lower()):
        return f"{what} refuses: {why}"
    return f"cannot reach {what}: {why}"


def for_the_log(words: str, error: BaseException) -> str:
    """`words`, and the error's class and text after them where they say UNKNOWN: the log is
    where the reason is then."""
    if words.endswith(UNKNOWN):
        return f"{words} ({type(error).__name__}: {log_text(error)})"
    return words


def redis_for_the_log(error: BaseException, url: str | None = None, what: str = "Redis") -> str:
    """redis_words of `what` at the host and port of `url` (REDIS_URL's by default), for a log
    line: the error's class and text only where no words know the reason."""
    if url is None:
        from django.conf import settings

        url = settings.REDIS_URL
    return for_the_log(redis_words(broker_place(url or "", what), error), error)


def out_of_connections(error: BaseException) -> bool:
    """Whether `error` is a server refusing a new connection because it has no free one (its
    max_connections, a role's or a database's CONNECTION LIMIT, Redis's maxclients)."""
    text = _text(chain(error))
    return any(phrase.search(text) for phrase, _words in OUT_OF_CONNECTIONS)


def log_text(error: BaseException) -> str:
    """An error's own text on one line, for the log only (psycopg's adds hints on further
    lines, and names hosts and ports that a run's owner has no use for)."""
    return " ".join(str(error).split())


def reason(error: BaseException) -> str:
    """Why a connection failed, in words; UNKNOWN when no known phrase or plain OS word says."""
    links = chain(error)
    if words := sqlstate_reason(links):
        return words
    text = _text(links)
    for phrase, words in _REASONS:
        if phrase.search(text):
            return words
    if found := ERRNO_TEXT.search(text):
        return found.group(1).strip()
    return os_reason(links) or servers_own_words(links) or UNKNOWN


def _text(links: list[BaseException]) -> str:
    """The errors' texts, lowercase, on one line, and after them the English message of each
    refusal a server said in another language (`database "x" does not exist` for `Datenbank
    »x« existiert nicht`), for the English phrases to find."""
    text = " ".join(" ".join(str(link) for link in links).lower().split())
    english = [
        message.replace("%s", "{}").format(*found.groups())
        for phrase, message in _TRANSLATED
        if (found := phrase.search(text))
    ]
    return " ".join([text, *english])


def database_place(settings_dict: Mapping[str, Any]) -> str:
    """`the database <name> at host:port` (or at its socket), from Django's DATABASES entry."""
    host, port = settings_dict.get("HOST") or "", settings_dict.get("PORT") or 5432
    if not host:
        where = "the local socket"
    elif host.startswith("/"):
        where = f"{host.rstrip('/')}/.s.PGSQL.{port}"
    else:
        where = f"{host}:{port}"
    name = settings_dict.get("NAME")
    return f"the database {name} at {where}" if name else f"the database at {where}"


def broker_place(url: str, what: str = "the broker") -> str:
    """`the broker at host:port` for a broker URL (or `what` at host:port for another server's
    URL, Redis's): never its user name nor its password."""
    address = server_address(url)
    return f"{what} at {address}" if address else what


def server_address(url: str) -> str | None:
    """`host:port` (or `host`) of a broker's or Redis's URL, without its credentials; None for
    a URL that names no host."""
    from kombu import Connection

    try:
        info = Connection(url).info()
    except Exception:
        # A URL kombu cannot read: nothing of it is shown (it may hold the password).
        return None
    host, port = info.get("hostname"), info.get("port")
    if not host:
        return None
    if "://" in host:
        # kombu reads the whole rest of `redis+socket://:password@/path` (its way to give a
        # socket broker a password) as the host: named by it, the password was in every line
        # that said where the broker is (reviewD hunt). Its socket's path alone.
        return urlsplit(host).path or None
    return f"{host}:{port}" if port else host


def plain(text: str) -> bool:
    """Whether a library's message can be shown as it is: no class name, no repr quoting."""
    return bool(text) and not CLASS_NAME.search(text) and not any(c in text for c in "'\"()[]<>")


def os_reason(links: list[BaseException]) -> str | None:
    """The operating system's words (`strerror`) of the first OSError among `links`."""
    for link in links:
        if isinstance(link, OSError) and isinstance(link.strerror, str) and link.strerror:
            return link.strerror.strip().lower()
    return None


def chain(error: BaseException) -> list[BaseException]:
    """The error and every exception inside it: urllib3, requests and kombu wrap one in
    another's arguments (`ConnectionError(ProtocolError('Connection aborted.', ...))`), in
    `reason`, or as the cause."""
    found: list[BaseException] = []
    pending = [error]
    while pending and len(found) < 20:
        link = pending.pop(0)
        if any(link is seen for seen in found):
            continue
        found.append(link)
        inner = [*link.args, getattr(link, "reason", None), link.__cause__, link.__context__]
        pending.extend(item for item in inner if isinstance(item, BaseException))
    return found


def waited_for_a_lock(error: BaseException) -> bool:
    """lock_timeout's error (55P03), not a statement_timeout or an operator's cancel."""
    return any(isinstance(link, psycopg.errors.LockNotAvailable) for link in chain(error))


def sqlstate_reason(links: list[BaseException]) -> str | None:
    """The words for the SQLSTATE of the first PostgreSQL error among `links` that has one of
    _SQLSTATE_REASONS; None otherwise."""
    for link in links:
        words = _SQLSTATE_REASONS.get(getattr(link, "sqlstate", None) or "")
        if words:
            return words
    return None


def servers_own_words(links: list[BaseException]) -> str | None:
    """`the server refused: <its words>` for a connection PostgreSQL refused in words none of
    the phrases know (its messages in another language): the operator reads them, where
    "the reason is in the log" sent them there. None for any other error."""
    for link in links:
        if isinstance(link, psycopg.Error) and (found := _SERVER_REFUSAL.search(str(link))):
            # Its quotes dropped, as a name quoted in an English message is named without.
            words = " ".join(found.group("words").replace('"', "").replace("'", "").split())
            return f"the server refused: {words}"
    return None
