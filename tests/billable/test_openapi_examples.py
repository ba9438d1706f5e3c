"""The OpenAPI examples of the billing endpoints are valid requests and complete answers: each
request example validates against the operation's input model, and each answer example has
exactly the fields of its output model and validates against it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from billable.schemas import (
    AlertRuleIn,
    BalanceExplainedOut,
    ConsumeIn,
    CurrencyIn,
    ProductIn,
    UsageOut,
    UsagePage,
)
from tests.support.api import Api

CASES: list[tuple[str, str, type[BaseModel] | None, type[BaseModel] | None]] = [
    ("/api/v1/billing/products", "post", ProductIn, None),
    ("/api/v1/billing/quota/consume", "post", ConsumeIn, UsageOut),
    ("/api/v1/billing/balance", "get", None, BalanceExplainedOut),
    ("/api/v1/billing/usages", "get", None, UsagePage),
    ("/api/v1/billing/currencies", "post", CurrencyIn, None),
    ("/api/v1/billing/alert-rules", "post", AlertRuleIn, None),
]


def _fields(model: type[BaseModel], data: dict[str, Any]) -> None:
    """Exactly the model's fields, recursively for nested models and lists of them."""
    assert set(data) == set(model.model_fields), (model.__name__, set(data))
    for name, field in model.model_fields.items():
        inner = field.annotation
        args = getattr(inner, "__args__", ())
        nested = [a for a in (inner, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested and isinstance(data[name], dict):
            _fields(nested[0], data[name])
        elif nested and isinstance(data[name], list):
            for item in data[name]:
                _fields(nested[0], item)


@pytest.mark.parametrize(("path", "method", "given", "answered"), CASES)
def test_examples_match_their_models(
    api: Api, path: str, method: str, given: type[BaseModel] | None,
    answered: type[BaseModel] | None,
) -> None:
    operation = api.get("/api/v1/openapi.json").json["paths"][path][method]
    if given is not None:
        example = operation["requestBody"]["content"]["application/json"]["example"]
        given.model_validate(example)
    if answered is not None:
        example = operation["responses"]["200"]["content"]["application/json"]["example"]
        answered.model_validate(example)
        _fields(answered, example)
