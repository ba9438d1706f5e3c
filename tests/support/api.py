"""The HTTP helper of the tests: Django's test client with API-key and JSON conveniences."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.test import Client


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]  # case-insensitive, as HTTP header names are
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class Api:
    """Django's test client with API-key and JSON conveniences."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        json_body: Any = None,
        body: bytes | str | None = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
    ) -> Response:
        extra: dict[str, str] = {}
        if key is not None:
            extra["HTTP_X_API_KEY"] = key
        for name, value in (headers or {}).items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        data: Any = None
        if json_body is not None:
            data = json.dumps(json_body)
            content_type = content_type or "application/json"
        elif body is not None:
            data = body
        kwargs: dict[str, Any] = {}
        if content_type is not None:
            kwargs["content_type"] = content_type
        url = path if path.startswith("/") else "/api/v1/" + path
        handler = getattr(self.client, method.lower())
        if method.upper() == "GET":
            response = handler(url, data=query or {}, **extra)
        else:
            if query:
                url += "?" + urlencode(query, doseq=True)
            if data is None:
                # Like curl -X POST: no body and no content type.
                response = self.client.generic(method.upper(), url, data=b"",
                                               content_type="", **extra)
            else:
                response = handler(url, data=data, **kwargs, **extra)
        return Response(
            status=response.status_code, headers=response.headers,
            body=response.content,
        )

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, json_body=json, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> Response:
        return self.request("PATCH", path, json_body=json, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)


def assert_problem(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, (response.status, response.body[:500])
    assert response.content_type.startswith("application/problem+json"), response.content_type
    body = response.json
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["type"].endswith("/" + code)
    assert body["title"] and body["detail"]
    return body  # type: ignore[no-any-return]
