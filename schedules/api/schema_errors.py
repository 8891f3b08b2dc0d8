"""The error answers every operation may give, declared in the OpenAPI schema (SPEC section 5):
a client generated from the schema knew only the success of each operation, so a typed client
raised on a 400, 401 or 404 instead of reading its `detail` and `errors`.

A drf-spectacular postprocessing hook: each operation gets the errors it can answer and does
not declare itself, each with its body's shape (project/settings.py SPECTACULAR_SETTINGS).
"""

from __future__ import annotations

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
}  # fmt: skip


def declare_error_answers(result: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"], schemas["Refused"] = ERROR, REFUSED
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
            pages = any(p.get("name") == "page" for p in operation.get("parameters", []))
            if "{" in path or pages:
                codes.append("404")
            for code in codes:
                if code not in answers:
                    name, words = ANSWERS[code]
                    answers[code] = _answer(name, words)
            for code, answer in answers.items():
                if code >= "400" and not answer.get("content"):
                    # Declared by its view with words alone (a 409, a 429): its body is an Error.
                    answer["content"] = _answer("Error", "")["content"]
    _dry_run_answers(result)
    return result


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
