"""What the OpenAPI document says beyond the routes' own declarations.

`explain(schema, ...)` adds to the document that Ninja builds:

- the `Idempotency-Key` request header of every POST the idempotency layer wraps, and the
  `Idempotent-Replayed` header of the answers it stores (2xx, 402, 409);
- the `RateLimit-*` headers of every rate-limited route's answers and `Retry-After` on 429 and
  503 (platform routes are not rate-limited);
- the examples of `openapi_examples.json` beside this module: the requests and answers of one walk
  through every operation (`tests/billing_platform/openapi_scenario.py`, against the demo
  catalog), where a route declares none of its own;
- the defaults of request-only schemas moved into their descriptions: generators such as
  openapi-typescript read a property with a `default` as always present, which holds for answers
  but would make every defaulted request field required.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from billing_platform.http.idempotency import REPLAY_HEADER, STORED_STATUSES

EXAMPLES_PATH = Path(__file__).with_name("openapi_examples.json")
METHODS = ("get", "post", "put", "patch", "delete")

_RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": "Requests allowed in the current window (the tenant's `rate_limit`, or "
    "the per-IP limit of public routes).",
    "RateLimit-Remaining": "Requests left in the current window.",
    "RateLimit-Reset": "Seconds until the current window ends.",
}
HEADERS: dict[str, dict[str, Any]] = {
    REPLAY_HEADER: {
        "description": "`true` when this is the stored answer of an earlier request with the "
        "same `Idempotency-Key` (nothing was applied again); absent otherwise.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    **{
        name: {"description": text, "schema": {"type": "integer", "minimum": 0}}
        for name, text in _RATE_LIMIT_HEADERS.items()
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    },
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes the request safe to retry: the same key with the same request answers the first "
        "answer again (with `Idempotent-Replayed: true`) and applies nothing twice; with another "
        "request it is 422 `idempotency_key_reused`. 1–255 printable ASCII characters, kept "
        "7 days by default. `/billing` operations also take it as the body field "
        "`idempotency_key` (the header wins)."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
    "example": "order-4312-confirm",
}


@cache
def load_examples() -> dict[str, Any]:
    """The recorded examples by operation id: `parameters`, `request`, `responses` by status."""
    examples: dict[str, Any] = json.loads(EXAMPLES_PATH.read_text())
    return examples


def explain(
    schema: dict[str, Any], *, idempotent_prefixes: tuple[str, ...],
    unlimited_prefixes: tuple[str, ...],
) -> dict[str, Any]:
    """Add the headers, examples and request defaults described above to `schema`."""
    components = schema.setdefault("components", {})
    components.setdefault("headers", {}).update(HEADERS)
    components.setdefault("parameters", {})["IdempotencyKey"] = IDEMPOTENCY_KEY
    examples = load_examples()
    for path, method, op in _operations(schema):
        idempotent = method == "post" and _under(path, idempotent_prefixes)
        limited = not _under(path, unlimited_prefixes)
        if idempotent:
            op.setdefault("parameters", []).append(
                {"$ref": "#/components/parameters/IdempotencyKey"}
            )
        for code, response in op.get("responses", {}).items():
            status = str(code)  # Ninja's keys are integers until the document is rendered
            headers = response.setdefault("headers", {})
            if limited:
                headers.update({name: _header(name) for name in _RATE_LIMIT_HEADERS})
            if status in ("429", "503"):
                headers["Retry-After"] = _header("Retry-After")
            if idempotent and (status.startswith("2") or int(status) in STORED_STATUSES):
                headers[REPLAY_HEADER] = _header(REPLAY_HEADER)
            if not headers:
                del response["headers"]
        if op.get("operationId") in examples:
            _add_examples(op, examples[op["operationId"]])
    _move_request_defaults(components.get("schemas", {}), schema)
    return schema


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)


def _header(name: str) -> dict[str, str]:
    return {"$ref": "#/components/headers/" + name}


def _add_examples(op: dict[str, Any], example: dict[str, Any]) -> None:
    """Examples the route does not declare itself."""
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None and "request" in example:
        body.setdefault("example", example["request"])
    answers = example.get("responses", {})
    for status, response in op.get("responses", {}).items():
        if str(status) in answers:
            for media in response.get("content", {}).values():
                media.setdefault("example", answers[str(status)])
    values = example.get("parameters", {})
    for parameter in op.get("parameters", []):
        if parameter.get("name") in values:
            parameter.setdefault("example", values[parameter["name"]])


def _refs(value: Any) -> Iterator[str]:
    """The component schemas a part of the document names, directly."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            yield ref.rsplit("/", 1)[-1]
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def _reachable(roots: list[Any], schemas: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    pending = [name for root in roots for name in _refs(root)]
    while pending:
        name = pending.pop()
        if name not in found and name in schemas:
            found.add(name)
            pending.extend(_refs(schemas[name]))
    return found


def _move_request_defaults(schemas: dict[str, Any], schema: dict[str, Any]) -> None:
    """Defaults of schemas only requests use go to the description: `Default: `1`.`"""
    ops = [op for _, _, op in _operations(schema)]
    requests = _reachable([op.get("requestBody") for op in ops], schemas)
    answers = _reachable([op.get("responses") for op in ops], schemas)
    for name in requests - answers:
        for prop in schemas[name].get("properties", {}).values():
            if "default" in prop:
                default = json.dumps(prop.pop("default"))
                text = prop.get("description", "")
                prop["description"] = (text + " " if text else "") + f"Default: `{default}`."
