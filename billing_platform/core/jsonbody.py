"""The one strict JSON reader of request bodies.

`read_json` refuses duplicate keys, NaN/Infinity, NUL characters and unpaired surrogates;
`JsonParser` is Ninja's parser built on it (a non-JSON content type is 415, bad JSON 400
`malformed_json`); the idempotency layer reads the same bodies with `json_object`.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser

from billing_platform.core import errors


def read_json(raw: bytes | str) -> Any:
    """Parse a body strictly; raises `ValueError` (or `UnicodeDecodeError`) on bad JSON."""
    return json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def json_object(raw: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one (the parser will say why)."""
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


class JsonParser(Parser):
    """Parse JSON bodies strictly; anything else is 415, bad JSON is 400 `malformed_json`.

    Duplicate keys and NaN/Infinity are refused; unknown fields are ignored by the schemas.
    """

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        content_type = (request.content_type or "").lower()
        if content_type and content_type != "application/json" and not content_type.endswith(
            "+json"
        ):
            raise errors.UnsupportedMediaType()
        try:
            data: dict[str, Any] = read_json(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.MalformedJson(f"The body is not valid JSON: {exc}") from exc
        _check_strings(data, ["body"])
        return data


def _bad_string(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate escape
        return True
    return False


def _check_strings(value: Any, loc: list[Any]) -> None:
    """Refuse strings a database cannot store: NUL characters and unpaired surrogates."""
    if isinstance(value, str):
        if _bad_string(value):
            raise errors.ValidationFailed(
                "Strings may not contain NUL characters or unpaired surrogates.",
                errors=[{"loc": loc, "msg": "unsupported character"}],
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            if _bad_string(key):
                raise errors.ValidationFailed(
                    "Keys may not contain NUL characters or unpaired surrogates.",
                    errors=[{"loc": [*loc, "<key>"], "msg": "unsupported character"}],
                )
            _check_strings(item, [*loc, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_strings(item, [*loc, index])


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
