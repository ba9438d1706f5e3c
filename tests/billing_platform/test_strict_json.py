"""Request bodies are parsed strictly; CORS stays off unless origins are allowed."""

from __future__ import annotations

from typing import Any

import pytest

from billing_platform.core.jsonbody import MAX_JSON_DEPTH, TooDeep, read_json
from tests.support.api import Api, assert_problem
from tests.support.tenants import TenantFixture


def test_duplicate_keys_are_malformed(api: Api, acme: TenantFixture) -> None:
    response = api.request("POST", "keys", key=acme.key, body=b'{"name": "a", "name": "b"}',
                           content_type="application/json")
    assert_problem(response, 400, "malformed_json")


def test_nan_and_infinity_are_malformed(api: Api, acme: TenantFixture) -> None:
    for raw in (b'{"name": NaN}', b'{"name": Infinity}', b'{"name": -Infinity}'):
        response = api.request("POST", "keys", key=acme.key, body=raw,
                               content_type="application/json")
        assert_problem(response, 400, "malformed_json")


def test_unknown_fields_are_ignored(api: Api, acme: TenantFixture) -> None:
    response = api.post("keys", json={"name": "ok", "colour": "blue"}, key=acme.key)
    assert response.status == 201


def test_cors_off_by_default_and_allow_list(api: Api, acme: TenantFixture, settings: Any) -> None:
    response = api.get("keys", key=acme.key, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example"]
    allowed = api.get("keys", key=acme.key, headers={"Origin": "https://app.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = api.get("keys", key=acme.key, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


DEEP = b"[" * 2000 + b"]" * 2000  # about 4 KB, far past any sane nesting


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("billing/identify", None),  # the body's idempotency_key is looked for
        ("billing/quota/consume", {"Idempotency-Key": "deep-1"}),
        ("keys", None),
        ("keys", {"Idempotency-Key": "deep-2"}),
        ("webhooks/endpoints", {"Idempotency-Key": "deep-3"}),
    ],
)
def test_deeply_nested_json_is_malformed(
    api: Api, acme: TenantFixture, path: str, headers: dict[str, str] | None
) -> None:
    for raw in (DEEP, b'{"metadata": ' + DEEP + b"}", b"{" + b'"a":{' * 2000 + b"}" * 2001):
        response = api.request("POST", path, key=acme.key, body=raw,
                               content_type="application/json", headers=headers)
        body = assert_problem(response, 400, "malformed_json")
        assert "nested" in body["detail"]


def test_deeply_nested_json_is_malformed_on_platform_routes(api: Api, platform_key: str) -> None:
    response = api.request("POST", "platform/tenants", key=platform_key, body=DEEP,
                           content_type="application/json")
    assert_problem(response, 400, "malformed_json")


def test_nesting_up_to_the_limit_is_accepted(api: Api, acme: TenantFixture) -> None:
    # given a profile nested exactly as deep as allowed (the body object is the first level)
    inner: Any = 1
    for _ in range(MAX_JSON_DEPTH - 2):
        inner = {"a": inner}
    # when
    ok = api.post("billing/identify", json={"external_id": "nest", "profile": {"p": inner}},
                  key=acme.key)
    deeper = api.post("billing/identify", json={"external_id": "nest", "profile": {"p": [inner]}},
                      key=acme.key, headers={"Idempotency-Key": "nest-1"})
    # then
    assert ok.status == 200, ok.body
    assert_problem(deeper, 400, "malformed_json")


def test_brackets_inside_strings_do_not_count_as_nesting(api: Api, acme: TenantFixture) -> None:
    text = '["\\"' + "[" * 3000 + "{" * 3000
    response = api.post("billing/identify", json={"external_id": "s", "profile": {"t": text}},
                        key=acme.key, headers={"Idempotency-Key": "brackets-1"})
    assert response.status == 200, response.body
    assert response.json["metadata"]["t"] == text


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16-le", "utf-32"])
def test_depth_is_judged_on_the_decoded_text(encoding: str) -> None:
    # U+4E22 is the bytes 22 4E in UTF-16-LE: a byte-level scan would take it for a quote and
    # lose track of where strings end.
    text = '["\u4e22", "x", ' + "[" * 2000 + "]" * 2000 + "]"
    with pytest.raises(TooDeep):
        read_json(text.encode(encoding))
    assert read_json(('["\u4e22", ' + "[" * 10 + "]" * 10 + "]").encode(encoding))[0] == "\u4e22"


@pytest.mark.timeout(60)
def test_a_long_run_of_escaped_quotes_is_refused_at_once(api: Api, acme: TenantFixture) -> None:
    # One string pattern with escapes inside backtracks quadratically on `"\"\"\"…`: 64 KB took
    # 24 s and the 1 MiB limit would hold a worker for hours. The scan is linear.
    body = "[" * (MAX_JSON_DEPTH + 1) + '"' + '\\"' * 400_000
    response = api.request("POST", "billing/identify", key=acme.key, body=body.encode(),
                           content_type="application/json")
    assert_problem(response, 400, "malformed_json")


@pytest.mark.parametrize(
    ("text", "too_deep"),
    [
        # An escaped backslash ends its escape: the quote after it closes the string.
        ('["\\\\",' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "]", True),
        # An escaped quote does not close the string: the brackets after it are text.
        ('["\\"' + "[" * (MAX_JSON_DEPTH + 1) + '"]', False),
    ],
)
def test_escapes_inside_strings_are_read_as_json_reads_them(text: str, too_deep: bool) -> None:
    if too_deep:
        with pytest.raises(TooDeep):
            read_json(text)
    else:
        assert read_json(text) == ['"' + "[" * (MAX_JSON_DEPTH + 1)]
