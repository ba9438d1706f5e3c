"""The OpenAPI document explains every operation: a description, request and answer examples
that are what the API really takes and answers, the headers of idempotency and rate limiting,
and typed problem fields."""

from __future__ import annotations

import copy
import json
import os
import re
from typing import Any

import pytest
from django.test import Client
from django_tenants.utils import tenant_context
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from billable.services.catalog import demo_catalog_install
from billing_platform.http.openapi import EXAMPLES_PATH, load_examples
from tests.billing_platform.openapi_scenario import Walk, walk_platform, walk_tenant
from tests.support.api import Api
from tests.support.tenants import TenantFixture

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """The OpenAPI document, fetched once: Ninja takes seconds to build it."""
    response = Api(Client()).get("/api/v1/openapi.json")
    assert response.status == 200
    return response.json  # type: ignore[no-any-return]


@pytest.fixture
def schema(document: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(document)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def _validator(schema: dict[str, Any], target: dict[str, Any]) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", DRAFT202012.create_resource(schema)
    )
    wrapped = {"$ref": "urn:openapi#/components/schemas/__target__"}
    schema["components"]["schemas"]["__target__"] = target
    return Draft202012Validator(wrapped, registry=registry)


def _check(schema: dict[str, Any], target: dict[str, Any], value: Any, where: str) -> None:
    errors = sorted(_validator(schema, target).iter_errors(value), key=lambda e: e.path)
    assert not errors, (where, [f"{list(e.path)}: {e.message}" for e in errors[:5]])


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")


def test_every_operation_is_described(schema: dict[str, Any]) -> None:
    for path, method, op in _operations(schema):
        assert len(op.get("description", "")) >= 40, (method, path, op.get("description"))


def test_examples_of_every_operation_validate_against_its_schemas(
    schema: dict[str, Any],
) -> None:
    for path, method, op in _operations(schema):
        where = f"{method.upper()} {path}"
        body = op.get("requestBody")
        if body is not None:
            content = body["content"]["application/json"]
            assert "example" in content, where
            _check(schema, content["schema"], content["example"], where + " request")
        answered = False
        for status, response in op["responses"].items():
            content = response.get("content", {})
            for media in content.values():
                if "example" in media:
                    _check(schema, media["schema"], media["example"], f"{where} {status}")
                    answered = answered or int(status) < 300
        assert answered or "204" in op["responses"], f"{where}: no answer example"
        for parameter in op.get("parameters", []):
            if parameter.get("in") == "path":
                assert "example" in parameter, (where, parameter["name"])
            if "example" in parameter and "schema" in parameter:
                _check(schema, parameter["schema"], parameter["example"],
                       f"{where} {parameter['name']}")


def test_idempotency_and_rate_limit_headers_are_declared(schema: dict[str, Any]) -> None:
    headers = schema["components"]["headers"]
    assert {"Idempotent-Replayed", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
            "Retry-After"} <= set(headers)
    for path, method, op in _operations(schema):
        idempotent = method == "post" and re.match(r"/api/v1/(billing|keys|webhooks)(/|$)", path)
        names = {p.get("name") or p.get("$ref", "").rsplit("/", 1)[-1]
                 for p in op.get("parameters", [])}
        assert ("IdempotencyKey" in names) == bool(idempotent), (method, path)
        for status, response in op["responses"].items():
            declared = set(response.get("headers", {}))
            if status in {"429", "503"}:
                assert "Retry-After" in declared, (method, path, status)
            if not path.startswith("/api/v1/platform/"):
                assert "RateLimit-Limit" in declared, (method, path, status)
            if idempotent and (status.startswith("2") or status in {"402", "409"}):
                assert "Idempotent-Replayed" in declared, (method, path, status)


def test_problem_extra_fields_are_typed(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    quota = components["QuotaProblem"]
    assert quota["properties"]["remaining"]["type"] == "integer"
    assert "remaining" in quota["required"]
    assert "remaining_credits" in quota["properties"]
    assert "required_scope" in components["ForbiddenProblem"]["properties"]
    assert {"errors", "limit", "size"} <= set(components["ValidationProblem"]["properties"])
    for path, method, op in _operations(schema):
        for status, expected in (("402", "QuotaProblem"), ("403", "ForbiddenProblem")):
            if status in op["responses"]:
                media = op["responses"][status]["content"]["application/problem+json"]
                assert media["schema"]["$ref"].endswith("/" + expected), (method, path)


def test_request_fields_with_defaults_stay_optional_for_generated_clients(
    schema: dict[str, Any],
) -> None:
    # openapi-typescript makes a property with a `default` required unless the schema is
    # inline in a request body; the input schemas keep their defaults in the description.
    consume = schema["components"]["schemas"]["ConsumeIn"]
    assert "default" not in consume["properties"]["amount"]
    assert "Default: `1`" in consume["properties"]["amount"]["description"]
    assert "amount" not in consume.get("required", [])


def test_the_tenant_walk_answers_what_the_examples_show(
    api: Api, acme: TenantFixture, platform_key: str, schema: dict[str, Any], settings: Any
) -> None:
    # given: acme with the demo catalog, as `make run` seeds the demo tenant, and a webhook
    # endpoint on this machine (a local n8n) allowed
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    with tenant_context(acme.tenant):
        demo_catalog_install()
    recorder = Walk(api=api, key=acme.key, platform_key=platform_key,
                    tenant_slug=acme.tenant.slug)

    # when: every tenant operation is called (each call asserts its status)
    walk_tenant(recorder)

    # then
    _answers_match_examples(recorder, schema, platform=False)


def test_the_platform_walk_answers_what_the_examples_show(
    api: Api, committed_platform_key: str, cleanup_tenants: list[str], schema: dict[str, Any]
) -> None:
    # given: tenants are built outside a transaction, so these commit and are dropped after
    cleanup_tenants.append("acme-bots")
    recorder = Walk(api=api, key="", platform_key=committed_platform_key, tenant_slug="")

    # when
    walk_platform(recorder)

    # then
    _answers_match_examples(recorder, schema, platform=True)


def _answers_match_examples(recorder: Walk, schema: dict[str, Any], *, platform: bool) -> None:
    """Every operation of the walk's kind was called; each answer has its example's fields."""
    templates = {op["operationId"]: (path, op) for path, _, op in _operations(schema)}
    expected = {
        op_id for op_id, (path, _) in templates.items()
        if path.startswith("/api/v1/platform/") == platform
    }
    assert {call.operation_id for call in recorder.calls} == expected
    recorded = _recorded(recorder, templates)
    if os.environ.get("RECORD_OPENAPI_EXAMPLES") == "1":
        stored = json.loads(EXAMPLES_PATH.read_text())
        stored.update(recorded)
        EXAMPLES_PATH.write_text(
            json.dumps(dict(sorted(stored.items())), indent=1, ensure_ascii=False) + "\n"
        )
        load_examples.cache_clear()
    examples = load_examples()
    for operation_id, entry in recorded.items():
        stored = examples[operation_id]
        for status, answer in entry["responses"].items():
            assert status in stored["responses"], (operation_id, status)
            assert _shape(answer) == _shape(stored["responses"][status]), (
                f"{operation_id} {status} answers another shape than its example; "
                "record them anew with RECORD_OPENAPI_EXAMPLES=1"
            )


def _recorded(recorder: Walk, templates: dict[str, Any]) -> dict[str, Any]:
    """The first request of each operation, and its first answer of each status."""
    recorded: dict[str, Any] = {}
    for call in recorder.calls:
        path, op = templates[call.operation_id]
        assert _template(path).match(call.path), (call.operation_id, call.path)
        entry = recorded.setdefault(call.operation_id, {"responses": {}})
        if "parameters" not in entry:
            entry["parameters"] = _parameters(path, call.path, op, call.query)
            if "requestBody" in op:  # an operation whose fields are all optional takes {}
                entry["request"] = call.body if call.body is not None else {}
        if call.answer is not None:
            entry["responses"].setdefault(str(call.status), _without_secrets(call.answer))
    return recorded


_SECRETS = (
    (re.compile(r"\b(bk|bpk)_([A-Za-z0-9]{8})_[A-Za-z0-9]+"), r"\1_\2_" + "EXAMPLE" * 6),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), "whsec_" + "EXAMPLE" * 4),
)


def _without_secrets(answer: Any) -> Any:
    """The answer with the secrets of keys and webhook endpoints made up (same shape)."""
    text = json.dumps(answer)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return json.loads(text)


def _parameters(
    template: str, path: str, op: dict[str, Any], query: dict[str, Any]
) -> dict[str, Any]:
    """The path and query parameters of a call, by name."""
    names = re.findall(r"\{([^}]+)\}", template)
    pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$"
    found = re.match(pattern, path)
    assert found is not None, (template, path)
    values: dict[str, Any] = {**dict(zip(names, found.groups(), strict=True)), **query}
    typed: dict[str, Any] = {}
    for parameter in op.get("parameters", []):
        name = parameter.get("name")
        if name in values:
            typed[name] = _typed(values[name], parameter.get("schema", {}))
    return typed


def _typed(value: Any, schema: dict[str, Any]) -> Any:
    """A value as written in a URL, as the parameter's schema types it."""
    kinds = {schema.get("type")} | {item.get("type") for item in schema.get("anyOf", [])}
    if isinstance(value, str) and "string" not in kinds:
        if "boolean" in kinds and value in ("true", "false"):
            return value == "true"
        if "integer" in kinds and value.isdigit():
            return int(value)
    return value


def _shape(value: Any) -> Any:
    """The keys of a JSON value, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None
