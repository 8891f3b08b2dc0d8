"""The error answers every operation may give, declared in the OpenAPI schema (SPEC section 5):
a client generated from the schema knew only the success of each operation, so a typed client
raised on a 400, 401 or 404 instead of reading its `detail` and `errors`.

A drf-spectacular postprocessing hook: each operation gets the errors it can answer and does
not declare itself, each with its body's shape (project/settings.py SPECTACULAR_SETTINGS); the
import's version (`If-Match` asked, `ETag` sent, the 412), the throttles' 429 and the 413 and
503 any request may meet, which the schema left out: a generated client could not send
`If-Match`, and raised "unexpected status" on a 412 or a 429 instead of reading `detail` and
`Retry-After`.
"""

from __future__ import annotations

import re
from typing import Any

MESSAGES = {"type": "array", "items": {"type": "string"}}
ERROR = {
    "type": "object",
    "description": "An error: `detail` says it; a 400's `errors` names each field or query "
    "parameter refused, with why.",
    "properties": {
        "detail": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": MESSAGES},
    },
    "required": ["detail"],
}
REFUSED = {**ERROR, "required": ["detail", "errors"]}
CHANGING = {"post", "put", "patch", "delete"}
METHODS = CHANGING | {"get", "head", "options", "trace"}

ANSWERS = {
    "400": ("Refused", "the request is refused: `errors` names each field or query parameter"),
    "401": ("Error", "no valid token (`Authorization: Token <key>` or `Bearer <key>`)"),
    "403": ("Error", "not yours to change (staff read other users' objects, and change them in "
            "the admin), or a session's request without its CSRF token"),
    "404": ("Error", "none of yours by that id or name, or a page past the list's last"),
    "412": ("Error", "the import changed since the version sent in `If-Match`: read it again "
            "(its `ETag`) and send the change on it"),
    "413": ("Error", "the request's body is larger than the API takes "
            "(`DATA_UPLOAD_MAX_MEMORY_SIZE`)"),
    "429": ("Error", "throttled: too many of these requests; try again after `Retry-After` "
            "seconds"),
    "503": ("Error", "the database cannot be reached now, or has no free connection, so "
            "nothing was read or changed; try again after `Retry-After` seconds"),
}  # fmt: skip

# The import's version: every change of an import that services.check_version guards takes it
# in If-Match (views.ImportViewSet: update, destroy, pause, resume, cancel), and the answers
# that show the import carry it as an ETag (views._versioned).
IMPORT = "/api/v1/imports/{id}/"
ASKS_IF_MATCH = {
    (IMPORT, "put"), (IMPORT, "patch"), (IMPORT, "delete"),
    (f"{IMPORT}pause/", "post"), (f"{IMPORT}resume/", "post"), (f"{IMPORT}cancel/", "post"),
}  # fmt: skip
SENDS_ETAG = (ASKS_IF_MATCH - {(IMPORT, "delete")}) | {(IMPORT, "get")}
IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "schema": {"type": "string"},
    "description": 'the import\'s version as its `ETag` gave it (`"..."`): the change is '
    "refused (412) if the import changed since; `*` matches any version, a weak tag (`W/`) none",
}
ETAG = {
    "description": "the import's version: send it back in `If-Match` with a change (none on a "
    "dry run)",
    "schema": {"type": "string"},
}
DRY_RUN_THROTTLED = (
    "a dry run (`?dry_run=true`) throttled: it counts against `POST /imports/check`'s budget; "
    "try again after `Retry-After` seconds"
)
RETRY_AFTER = {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}


def declare_error_answers(
    result: dict[str, Any], generator: Any = None, **_kwargs: Any
) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"], schemas["Refused"] = ERROR, REFUSED
    throttled = _throttled(generator)
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            answers = operation.setdefault("responses", {})
            public = {} in (operation.get("security") or [{}])
            codes = ["400"]
            if not public:
                codes.append("401")
                if method in CHANGING:
                    codes.append("403")
            named = {p.get("name") for p in operation.get("parameters", [])}
            if "{" in path or "page" in named:
                codes.append("404")
            if (path, method) in ASKS_IF_MATCH:
                codes.append("412")
                if "If-Match" not in named:
                    operation.setdefault("parameters", []).append(dict(IF_MATCH))
            if method in CHANGING:
                codes.append("413")
            if (_shape(path), method) in throttled:
                codes.append("429")
            elif "dry_run" in named:
                # A dry run counts against the check's throttle (views._throttled_as_the_check).
                codes.append("429")
                answers.setdefault("429", _answer("Error", DRY_RUN_THROTTLED))
            codes.append("503")
            for code in codes:
                if code not in answers:
                    name, words = ANSWERS[code]
                    answers[code] = _answer(name, words)
                    if code in ("429", "503"):
                        answers[code]["headers"] = {"Retry-After": dict(RETRY_AFTER)}
                elif code == "429":
                    answers[code].setdefault("headers", {}).setdefault(
                        "Retry-After", dict(RETRY_AFTER)
                    )
            if (path, method) in SENDS_ETAG and "200" in answers:
                answers["200"].setdefault("headers", {})["ETag"] = dict(ETAG)
            for code, answer in answers.items():
                if code >= "400" and not answer.get("content"):
                    # Declared by its view with words alone (a 409, a 429): its body is an Error.
                    answer["content"] = _answer("Error", "")["content"]
    _dry_run_answers(result)
    return result


def _throttled(generator: Any) -> set[tuple[str, str]]:
    """The operations (path, method) whose view has a throttle (`throttle_classes`, a viewset
    action's own included): read from the views, so a throttle added is declared with it."""
    found = set()
    for path, _regex, method, callback in getattr(generator, "endpoints", None) or ():
        view = getattr(callback, "cls", None)
        if view is None:
            continue
        kwargs = getattr(callback, "initkwargs", {})
        if kwargs.get("throttle_classes", view.throttle_classes):
            found.add((_shape(path), method.lower()))
    return found


def _shape(path: str) -> str:
    """A path with its parameters unnamed: the views' routes say `{pk}` where the schema, which
    drf-spectacular's SCHEMA_COERCE_PATH_PK renamed, says `{id}`."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _answer(schema: str, words: str) -> dict[str, Any]:
    return {
        "description": words,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _dry_run_answers(result: dict[str, Any]) -> None:
    """`?dry_run=true` answers the source check (200), not the import saved (201, or 200)."""
    check = {"$ref": "#/components/schemas/SourceCheck"}
    imports = result["paths"].get("/api/v1/imports/", {})
    if "post" in imports:
        imports["post"]["responses"]["200"] = {
            "description": "a dry run (`?dry_run=true`): the source checked, nothing saved",
            "content": {"application/json": {"schema": check}},
        }
    for method in ("put", "patch"):
        operation = result["paths"].get("/api/v1/imports/{id}/", {}).get(method)
        if operation is None:
            continue
        content = operation["responses"]["200"].setdefault("content", {})
        saved = content.get("application/json", {}).get("schema")
        if saved is not None:
            content["application/json"]["schema"] = {"oneOf": [saved, check]}
            operation["responses"]["200"]["description"] = (
                "the import as saved; with `?dry_run=true`, the source checked, nothing saved"
            )
