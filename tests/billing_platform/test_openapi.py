"""The OpenAPI schema: every operation is documented the way generated clients need."""

from __future__ import annotations

from tests.support.api import Api


def _operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def test_schema_is_public_and_complete(api: Api) -> None:
    response = api.get("/api/v1/openapi.json")
    assert response.status == 200
    schema = response.json
    operations = _operations(schema)
    assert operations
    ids = [op["operationId"] for _, _, op in operations]
    assert len(ids) == len(set(ids))
    for path, method, op in operations:
        assert path.startswith("/api/v1/"), path
        assert op.get("summary"), (path, method)
        responses = op["responses"]
        if not path.startswith("/api/v1/public/"):
            assert "401" in responses and "403" in responses, (path, method)
            assert op.get("security"), (path, method)
        assert "422" in responses, (path, method)
        for status, declared in responses.items():
            if int(status) >= 400:
                assert list(declared["content"]) == ["application/problem+json"], (path, status)


def test_swagger_ui_needs_no_key(api: Api) -> None:
    assert api.get("/api/v1/docs").status == 200
