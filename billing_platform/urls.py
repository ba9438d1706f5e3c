"""URL configuration: the landing page, the API under /api/v1, the tenant console, the
platform admin, health checks at the root."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from billing_platform.api import api
from billing_platform.console import urls as console_urls
from billing_platform.http import health, landing
from billing_platform.http.metrics import metrics_view

urlpatterns = [
    path("", landing.landing, name="landing"),
    path("api/v1/", api.urls),
    path("console", RedirectView.as_view(url="/console/")),
    path("console/", include(console_urls)),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]

handler400 = "billing_platform.http.handlers.bad_request"
handler403 = "billing_platform.http.handlers.permission_denied"
handler404 = "billing_platform.http.handlers.not_found"
handler500 = "billing_platform.http.handlers.server_error"
