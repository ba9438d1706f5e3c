"""The one strict JSON reader of request bodies.

`read_json` refuses duplicate keys, NaN/Infinity and nesting deeper than `MAX_JSON_DEPTH`
(before the recursive decoder sees it); `JsonParser` is Ninja's parser built on it, which also
refuses NUL characters and unpaired surrogates (a non-JSON content type is 415, bad JSON 400
`malformed_json`); the idempotency layer reads the same bodies with `body_object`. A request's
body is parsed once (`body_json`), whoever reads it first.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

from django.http import HttpRequest
from ninja.parser import Parser

from billing_platform.core import errors
from billing_platform.core.request_state import request_state

# Arrays and objects nest at most this deep (the body itself is level 1). Metadata needs a few
# levels; the limit keeps the decoder, the string check and `json.dumps` far from Python's
# recursion limit, which a 4 KB body of `[` would otherwise reach.
MAX_JSON_DEPTH = 64

# Escapes first (so `\"` ends no string), then whole strings: each pass is linear in the text,
# where one pattern for strings with escapes inside backtracks quadratically on `"\"\"\"…`.
_ESCAPE = re.compile(r"\\.", re.DOTALL)
_STRING = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class TooDeep(ValueError):
    """The JSON nests arrays and objects deeper than `MAX_JSON_DEPTH`."""


def _check_depth(text: str) -> None:
    """Raise `TooDeep` if brackets outside strings nest deeper than `MAX_JSON_DEPTH`.

    A scan of the text, so the recursive decoder never meets deep input. On text that is not
    JSON the count may be off, but only ever above the depth the decoder would reach.
    """
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:  # the common case, at C speed
        return
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", _ESCAPE.sub("", text)))
    depths = accumulate(1 if char in "[{" else -1 for char in brackets)
    if max(depths, default=0) > MAX_JSON_DEPTH:
        raise TooDeep(f"arrays and objects are nested more than {MAX_JSON_DEPTH} levels deep")


def read_json(raw: bytes | str) -> Any:
    """Parse a body strictly; raises `ValueError` (or `UnicodeDecodeError`) on bad JSON.

    Refuses duplicate keys, NaN/Infinity and nesting deeper than `MAX_JSON_DEPTH` (`TooDeep`).
    """
    # Decode as json.loads does (UTF-8, -16 or -32), so the depth scan reads the same text.
    text = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw), "surrogatepass")
    _check_depth(text)
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def body_json(request: HttpRequest) -> Any:
    """`read_json` of the request's body, parsed once per request; raises as `read_json` does.

    The value is shared by every reader of the request: it must not be changed.
    """
    state = request_state(request)
    raw = request.body
    cached = state.body_json
    if cached is None or cached[0] is not raw:
        try:
            cached = (raw, read_json(raw), None)
        except (ValueError, UnicodeDecodeError) as exc:
            cached = (raw, None, exc)
        state.body_json = cached
    if cached[2] is not None:
        raise cached[2]
    return cached[1]


def body_object(request: HttpRequest) -> dict[str, Any] | None:
    """The body as a JSON object read by `read_json` (an empty body is `{}`), or None when it is
    not one (the parser will say why). Shared like `body_json`: not to be changed."""
    if not request.body:
        return {}
    try:
        data = body_json(request)
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
            data: dict[str, Any] = body_json(request)
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
