"""The console's routes, under /console/ (`billing_platform/urls.py` includes them)."""

from __future__ import annotations

from django.urls import path, re_path

from billing_platform.console.views import (
    account,
    catalog,
    corrections,
    customers,
    developers,
    merge_erase,
    orders,
    overview,
    settings,
    support,
    team,
)

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
    path("team/members/<int:membership_id>/role/", team.member_role, name="member_role"),
    path("team/members/<int:membership_id>/remove/", team.member_remove, name="member_remove"),
    path(
        "team/invitations/<int:invitation_id>/revoke/",
        team.invitation_revoke,
        name="invitation_revoke",
    ),
    # The catalog, orders and a customer's corrections.
    path("catalog/", catalog.product_list, name="catalog"),
    path("catalog/new-product/", catalog.product_new, name="product_new"),
    path("catalog/products/<str:key>/", catalog.product_detail, name="product"),
    path("catalog/products/<str:key>/edit/", catalog.product_edit, name="product_edit"),
    path("catalog/products/<str:key>/active/", catalog.product_active, name="product_active"),
    path("catalog/offers/", catalog.offer_list, name="offers"),
    path("catalog/new-offer/", catalog.offer_new, name="offer_new"),
    path("catalog/offers/<str:sku>/", catalog.offer_detail, name="offer"),
    path("catalog/offers/<str:sku>/edit/", catalog.offer_edit, name="offer_edit"),
    path("catalog/offers/<str:sku>/active/", catalog.offer_active, name="offer_active"),
    path("catalog/plans/", catalog.plan_list, name="plans"),
    path("catalog/plans/<str:key>/", catalog.plan_detail, name="plan"),
    path("catalog/plans/<str:key>/active/", catalog.plan_active, name="plan_active"),
    path("catalog/new-plan/", catalog.plan_new, name="plan_new"),
    path("catalog/plans/<str:key>/edit/", catalog.plan_edit, name="plan_edit"),
    path(
        "catalog/plans/<str:key>/versions/<int:version>/retire/",
        catalog.plan_version_retire,
        name="plan_version_retire",
    ),
    path("orders/", orders.order_list, name="orders"),
    path("orders/<str:order_id>/", orders.order_detail, name="order"),
    path("orders/<str:order_id>/confirm/", orders.order_confirm, name="order_confirm"),
    path("orders/<str:order_id>/cancel/", orders.order_cancel, name="order_cancel"),
    path("orders/<str:order_id>/refund/", orders.order_refund, name="order_refund"),
    path(
        "customers/<str:customer_id>/adjust/",
        corrections.customer_adjust,
        name="customer_adjust",
    ),
    path(
        "customers/<str:customer_id>/batches/<str:batch_id>/revoke/",
        corrections.batch_revoke,
        name="batch_revoke",
    ),
    # Merging and erasing a customer (the overview is the first route, above).
    path(
        "customers/<str:customer_id>/merge/", merge_erase.customer_merge, name="customer_merge"
    ),
    path(
        "customers/<str:customer_id>/erase/", merge_erase.customer_erase, name="customer_erase"
    ),
    # The settings pages (the tenant's settings, the audit log) and an operator's support session.
    path("settings/", settings.tenant_settings, name="settings"),
    path("audit/", settings.audit_log, name="audit"),
    path("support/start/<int:tenant_id>/", support.support_start, name="support_start"),
    path("support/end/", support.support_end, name="support_end"),
    # The developers pages: API keys, webhook endpoints, the delivery log.
    path("developers/", developers.developers, name="developers"),
    path("developers/keys/new/", developers.key_create, name="developer_key_create"),
    path("developers/keys/<str:key_id>/", developers.key_detail, name="developer_key"),
    path(
        "developers/keys/<str:key_id>/revoke/",
        developers.key_revoke,
        name="developer_key_revoke",
    ),
    path("developers/webhooks/", developers.webhooks, name="developer_webhooks"),
    path("developers/webhooks/new/", developers.webhook_create, name="developer_webhook_create"),
    path(
        "developers/webhooks/<str:endpoint_id>/",
        developers.webhook_detail,
        name="developer_webhook",
    ),
    path(
        "developers/webhooks/<str:endpoint_id>/event-types/",
        developers.webhook_event_types,
        name="developer_webhook_types",
    ),
    path(
        "developers/webhooks/<str:endpoint_id>/active/",
        developers.webhook_active,
        name="developer_webhook_active",
    ),
    path(
        "developers/webhooks/<str:endpoint_id>/rotate/",
        developers.webhook_rotate,
        name="developer_webhook_rotate",
    ),
    path(
        "developers/webhooks/<str:endpoint_id>/test/",
        developers.webhook_test,
        name="developer_webhook_test",
    ),
    path(
        "developers/deliveries/<str:delivery_id>/",
        developers.delivery_detail,
        name="developer_delivery",
    ),
    path(
        "developers/deliveries/<str:delivery_id>/redeliver/",
        developers.delivery_redeliver,
        name="developer_delivery_redeliver",
    ),
    re_path(r"^(?P<path>.*)$", overview.not_found),
]
