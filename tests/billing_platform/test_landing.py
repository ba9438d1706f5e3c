"""The landing page at `/`: a page for people, cheap to answer, and no change to the 404s."""

from __future__ import annotations

import re

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.support.api import Api, assert_problem

LINKS = {
    "link-console": "/console/",
    "link-docs": "/api/v1/docs",
    "link-openapi": "/api/v1/openapi.json",
    "link-healthz": "/healthz",
    "link-readyz": "/readyz",
    "link-admin": "/admin/",
}


def test_the_root_is_a_page_with_links(db: None) -> None:
    client = Client()
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert len(queries) == 0, [q["sql"] for q in queries]
    page = response.content.decode()
    assert "<h1>Billable</h1>" in page
    for element_id, href in LINKS.items():
        assert f'id="{element_id}" href="{href}"' in page, element_id
    # Everything it needs is in the page: no script, stylesheet or image from anywhere.
    assert not re.search(r"<(script|link|img)\b", page)
    assert "http://" not in page and "https://" not in page
    # A browser page like the admin: no session cookie is set for an anonymous visit.
    assert "sessionid" not in response.cookies
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_its_links_lead_somewhere(api: Api, db: None) -> None:
    for href in ("/api/v1/openapi.json", "/healthz", "/readyz"):
        assert api.get(href).status == 200, href
    assert Client().get("/api/v1/docs").status_code == 200
    assert Client().get("/admin/").status_code == 302


def test_unknown_paths_still_answer_the_problem_404(api: Api) -> None:
    for path in ("/nope", "/index.html", "/console-nope", "/api/v1/nope"):
        response = api.get(path)
        assert_problem(response, 404, "not_found")
    # Only GET and HEAD are served at the root; the rest is the problem 405.
    assert Client().head("/").status_code == 200
    refused = api.post("/", json={})
    assert_problem(refused, 405, "method_not_allowed")


def test_view_site_in_the_admin_leads_to_the_landing_page(operator: Client) -> None:
    response = operator.get("/admin/")

    assert response.context["site_url"] == "/"
    assert '<a href="/">View site</a>' in response.content.decode()
    assert Client().get(response.context["site_url"]).status_code == 200
