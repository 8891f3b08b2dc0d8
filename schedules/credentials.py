"""Source credentials: which kinds there are, their rules, and their encryption at rest.

An import keeps at most one credential, as a kind in clear (so every surface can say what is
set without decrypting) and its secret parts encrypted with Fernet under
IMPORTBEAT_ENCRYPTION_KEY. The keys are a list: the first encrypts, all decrypt (MultiFernet),
so an operator rotates by putting a new key first and running `manage.py rotate_credentials`.

Nothing here ever returns a secret to a user: the API, the admin and the history show only
`{"kind": ..., "set": true}`; only a worker decrypts, when it fetches the file.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus, urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError

# kind -> (the URL schemes it is for, its required parts, its optional parts)
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "basic": (("http", "https"), ("username", "password"), ()),
    "bearer": (("http", "https"), ("token",), ()),
    "header": (("http", "https"), ("name", "value"), ()),
    "password": (("sftp",), ("password",), ()),
    "private_key": (("sftp",), ("private_key",), ("passphrase",)),
}
# The parts no surface may show: a username or a header's name is not secret.
SECRET_PARTS = ("password", "token", "value", "private_key", "passphrase")
KIND_CHOICES = [(kind, kind.replace("_", " ")) for kind in KINDS]
# RFC 9110 field-name token; headers that frame the request are requests' to set, not ours.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}")
# The parts sent in an HTTP header as they are (a basic credential's are base64-encoded).
HEADER_VALUE_PARTS = {"bearer": ("token",), "header": ("value",)}
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade"}
MAX_PART_CHARS = 16 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443, "sftp": 22}
# What stands where a secret was, in any text a user or an operator reads.
HIDDEN = "[hidden]"
Shown = TypeVar("Shown")


class NoEncryptionKey(ValidationError):
    pass


def _fernet() -> MultiFernet:
    keys = [key.strip() for key in settings.IMPORTBEAT_ENCRYPTION_KEYS if key.strip()]
    if not keys:
        raise NoEncryptionKey(
            "credentials cannot be saved: no encryption key is configured "
            "(the operator sets IMPORTBEAT_ENCRYPTION_KEY)"
        )
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "IMPORTBEAT_ENCRYPTION_KEY: each comma-separated key must be a Fernet key "
            "(32 url-safe base64-encoded bytes; make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())'`)"
        ) from None


def keys_configured() -> bool:
    """Whether credentials can be read here: a key is configured (one that is not a Fernet key
    raises ImproperlyConfigured, saying so)."""
    try:
        _fernet()
    except NoEncryptionKey:
        return False
    return True


def encrypt(credential: dict[str, str]) -> str:
    return _fernet().encrypt(json.dumps(credential).encode()).decode()


NO_KEY_TO_READ = (
    "a saved credential cannot be decrypted: no IMPORTBEAT_ENCRYPTION_KEY is configured (the "
    "operator sets the key it was saved with)"
)


def decrypt(token: str) -> dict[str, str]:
    """The credential a token holds; a token no configured key opens, or no key at all, is a
    configuration error (a key removed before rotation), said without the token."""
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except NoEncryptionKey:
        # (its words are a save's: "credentials cannot be saved", and a run failed as "an
        # unexpected error in importbeat")
        raise ImproperlyConfigured(NO_KEY_TO_READ) from None
    except InvalidToken:
        raise ImproperlyConfigured(
            "a saved credential cannot be decrypted with any IMPORTBEAT_ENCRYPTION_KEY "
            "(was a key removed before `manage.py rotate_credentials` ran?)"
        ) from None


def basic_pair(username: str, password: str) -> str:
    """A basic credential as it is sent (`Authorization: Basic <this>`): `username:password` in
    UTF-8, base64-encoded with the standard alphabet. tasks.fetch sends it, secrets_of hides it."""
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def secrets_of(token: str) -> list[str]:
    """What must never be shown of the credential `token` holds, in every form it is sent in or
    may be repeated in (the token alone when no configured key opens it), longest first.

    A server may write back what it was sent (an echo of the request's headers in the file),
    a library may quote it, a log may serialize it: so each secret part, the basic pair as
    sent, and the token itself are listed raw, percent-encoded (quote and quote_plus) and
    JSON-escaped (ASCII-only and not), whichever of those differ.

    No form is left out for being short. A short secret hidden wherever it occurs costs a
    mangled preview (a one-letter password takes that letter out of every value), but a form
    skipped for its length would be the one shown in the clear; and any encoded form that
    differs from its raw form holds an escape (`%21`, `\\"`, `+`) that ordinary text rarely
    has, so the noise is the raw form's alone. Hiding cannot make a secret of a character or
    two safe (where it was hidden tells what it was); the credential of such a server is
    guessable anyway.
    """
    if not token:
        return []
    try:
        credential = decrypt(token)
    except (ImproperlyConfigured, ValidationError):
        return _forms([token])
    sent = [token, *(credential[part] for part in SECRET_PARTS if credential.get(part))]
    if credential.get("kind") == "basic":
        sent.append(basic_pair(credential["username"], credential["password"]))
    return _forms(sent)


def _forms(secrets: Iterable[str]) -> list[str]:
    forms = {
        form
        for secret in secrets
        for form in (
            secret,
            quote(secret, safe=""),
            quote_plus(secret, safe=""),
            json.dumps(secret)[1:-1],
            json.dumps(secret, ensure_ascii=False)[1:-1],
        )
        if form
    }
    return sorted(forms, key=lambda form: (-len(form), form))


def hide(secrets: list[str], shown: Shown, cut_at: int | None = None) -> Shown:
    """`shown` (a text, or dicts and lists of them) with each stretch of text that any of
    `secrets` covers replaced by HIDDEN: overlapping and adjacent occurrences make one stretch,
    so that no part of one secret is left beside another, and HIDDEN is never itself masked.

    A text of `cut_at` characters or more may have been cut there, perhaps inside a secret:
    its end is hidden too when it is the beginning of one.

    Hiding a text twice changes nothing: a HIDDEN already in it stays as it is, though a
    secret be a piece of it (`e`, `den`). A text is hidden again on its way to another field
    (a retry's error into the run's end), and runs saved before the hiding are passed
    through it later (schedules.saved_secrets), as often as an operator asks.
    """
    if isinstance(shown, str):
        return _hide_text([secret for secret in secrets if secret], shown, cut_at)
    if isinstance(shown, dict):
        return {name: hide(secrets, value, cut_at) for name, value in shown.items()}
    if isinstance(shown, list | tuple):
        return type(shown)(hide(secrets, item, cut_at) for item in shown)
    return shown


def _hide_text(secrets: list[str], text: str, cut_at: int | None) -> str:
    spans = []
    for secret in secrets:
        spans += [(at, at + len(secret)) for at in _found(secret, text)]
        if cut_at is not None and len(text) >= cut_at and (begun := _begun(secret, text)):
            spans.append((len(text) - begun, len(text)))
    markers = [(at, at + len(HIDDEN)) for at in _found(HIDDEN, text)]
    spans = [
        (start, end) for start, end in spans
        if not any(m_start <= start and end <= m_end for m_start, m_end in markers)
    ]  # fmt: skip
    if not spans:
        return text
    pieces: list[str] = []
    shown_to = 0
    for start, end in sorted(spans):
        if start > shown_to or not pieces:
            pieces += [text[shown_to:start], HIDDEN]
        shown_to = max(shown_to, end)
    pieces.append(text[shown_to:])
    return "".join(pieces)


def _begun(secret: str, text: str) -> int:
    """The length of the longest beginning of `secret` that `text` ends with (0: none).

    Only where the secret's first character stands near the end is compared: trying every
    length of each form of a long secret (a credential's ciphertext) cost milliseconds per
    value cut at ROW_VALUE_CHARS."""
    at = text.find(secret[0], max(len(text) - len(secret) + 1, 0))
    while at != -1:
        if secret.startswith(text[at:]):
            return len(text) - at
        at = text.find(secret[0], at + 1)
    return 0


def _found(part: str, text: str) -> list[int]:
    """Where `part` starts in `text`, overlapping occurrences included."""
    starts = []
    at = text.find(part)
    while at != -1:
        starts.append(at)
        at = text.find(part, at + 1)
    return starts


def rotate(token: str) -> str:
    """The same credential encrypted with the first key; ImproperlyConfigured as decrypt."""
    decrypt(token)
    return _fernet().rotate(token.encode()).decode()


def summary(kind: str, origin: str) -> dict[str, Any] | None:
    """What every surface shows of a credential: its kind, that it is set, and the one origin
    it is sent to; never a part of it."""
    return {"kind": kind, "set": True, "origin": origin} if kind else None


def origin(url: str) -> str:
    """scheme://host:port of a URL: a credential is sent to this origin only (a redirect to any
    other, even the same host on another port or scheme, goes without it)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""  # (no URL at all: the validation says so)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        port = None
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme.lower()}://{host}:{port}"


def clean_credential(value: object, scheme: str) -> dict[str, str]:
    """The credential as stored (kind and parts, all strings), or ValidationError saying what is
    wrong with it; the messages never repeat a secret."""
    if not isinstance(value, dict):
        raise ValidationError("a credential is an object with a 'kind' and its parts")
    kind = value.get("kind")
    # (a list or an object is no kind: looked up, it was a TypeError, the API's 500)
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
    schemes, required, optional = KINDS[kind]
    if scheme not in schemes:
        fits = ", ".join(k for k, (s, _r, _o) in KINDS.items() if scheme in s) or "none"
        raise ValidationError(f"a {kind} credential is not for {scheme} sources (use: {fits})")
    unknown = set(value) - {"kind", *required, *optional}
    if unknown:
        raise ValidationError(f"unknown parts for a {kind} credential: {sorted(unknown)}")
    credential = {"kind": kind}
    for part in (*required, *optional):
        text = value.get(part, "")
        if not isinstance(text, str) or len(text) > MAX_PART_CHARS:
            raise ValidationError(f"{part} must be text of at most {MAX_PART_CHARS} characters")
        if part in required and not text:
            raise ValidationError(f"a {kind} credential needs {', '.join(required)}")
        if part != "private_key" and ("\r" in text or "\n" in text):
            raise ValidationError(f"{part} must be one line")
        credential[part] = text
    if kind == "header":
        _check_header_name(credential["name"])
    for part in HEADER_VALUE_PARTS.get(kind, ()):
        _check_header_value(part, credential[part])
    if kind == "private_key":
        _check_private_key(credential["private_key"], credential.get("passphrase", ""))
    return credential


def _check_header_name(name: str) -> None:
    if not HEADER_NAME.fullmatch(name):
        raise ValidationError(
            f"name: {name!r} is not a valid HTTP header name: use letters, digits and "
            f"- only (e.g. X-Api-Key), without spaces, colons or accents"
        )
    if name.lower() in RESERVED_HEADERS:
        raise ValidationError(
            f"name: {name!r} cannot be used as the credential's header name: the HTTP client "
            f"sets it itself"
        )


def _check_header_value(part: str, value: str) -> None:
    """A value the HTTP client sends as it is, and the server reads back as it was given.

    requests refuses leading whitespace and line breaks, http.client anything beyond Latin-1;
    a server strips trailing whitespace and may read other bytes in another charset. Each of
    those would fail (or authenticate wrongly) at every fetch: refused at save instead.
    Never repeats the value: it is a secret.
    """
    if value != value.strip(" \t"):
        raise ValidationError(
            f"{part}: must not start or end with a space or a tab (an HTTP header cannot "
            f"carry them)"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValidationError(
            f"{part}: must not contain line breaks, tabs or other control characters"
        )
    if not value.isascii():
        raise ValidationError(
            f"{part}: must be plain ASCII text (letters, digits, punctuation and inner "
            f"spaces): an HTTP header cannot carry other characters reliably"
        )


def _check_private_key(text: str, passphrase: str) -> None:
    """A key a worker will be able to load: OpenSSH or PEM, with its passphrase if it has one."""
    data, password = text.strip().encode() + b"\n", passphrase.encode() or None
    loaders = (serialization.load_ssh_private_key, serialization.load_pem_private_key)
    for load in loaders:
        try:
            load(data, password=password)
            return
        except TypeError:
            # Encrypted without a passphrase given, or a passphrase for a key without one.
            raise ValidationError(
                "the private key needs its passphrase"
                if not passphrase
                else "the private key is not encrypted: leave the passphrase empty"
            ) from None
        except ValueError as error:
            if "password" in str(error).lower() or "decrypt" in str(error).lower():
                raise ValidationError("the passphrase does not open the private key") from None
            continue
        except Exception:
            continue
    raise ValidationError("not a private key in OpenSSH or PEM format")
