"""URL configuration: the API under /api/v1, the platform admin, health checks at the root."""

from django.contrib import admin
from django.urls import path

from billing_platform import views
from billing_platform.api import api
from billing_platform.metrics import metrics_view

urlpatterns = [
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
]

handler400 = "billing_platform.views.bad_request"
handler403 = "billing_platform.views.permission_denied"
handler404 = "billing_platform.views.not_found"
handler500 = "billing_platform.views.server_error"
