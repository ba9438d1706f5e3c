"""The console's routes, under /console/ (`billing_platform/urls.py` includes them)."""

from __future__ import annotations

from django.urls import path, re_path

from billing_platform.console.views import account, customers, overview, team

app_name = "console"

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("login/", account.login, name="login"),
    path("login/verify/", account.login_verify, name="login_verify"),
    path("logout/", account.logout, name="logout"),
    path("password-reset/", account.password_reset, name="password_reset"),
    path("password-reset/sent/", account.password_reset_done, name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        account.password_reset_confirm,
        name="password_reset_confirm",
    ),
    path("password-reset/done/", account.password_reset_complete, name="password_reset_complete"),
    path("invitations/<str:token>/", account.invitation, name="invitation"),
    path("switch/", account.switch_tenant, name="switch"),
    path("account/security/", account.security, name="security"),
    path("customers/", customers.customer_list, name="customers"),
    path("customers/<str:customer_id>/", customers.customer_detail, name="customer"),
    path("customers/<str:customer_id>/grant/", customers.customer_grant, name="customer_grant"),
    path("team/", team.team, name="team"),
    re_path(r"^(?P<path>.*)$", overview.not_found),
]
