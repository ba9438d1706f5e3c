"""The platform operators' admin: tenants and their keys, every write through the services.

Onboarding, key creation and deletion are views of their own rather than model saves: onboarding
builds or claims the tenant's schema outside the admin's request transaction, and deletion drops
one (`operations.lifecycle.tenant_purge`, as `manage.py delete_tenant`). A new key's secret is
never stored: the form redirects (Post/Redirect/Get) to a page that shows it once
(`core.shown_once`), so a reload neither submits the form again nor shows the secret again. Keys
are otherwise read-only here; the only write on them is revocation.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from billable.setting_forms import SETTING_NAMES
from billing_platform.core import errors
from billing_platform.core.shown_once import keep_once, take_once
from billing_platform.operations.admin_forms import (
    SETTABLE_STATUSES,
    ApiKeyCreateForm,
    TenantChangeForm,
    TenantDeleteForm,
    TenantOnboardForm,
    add_billing_error,
)
from billing_platform.operations.lifecycle import tenant_purge
from billing_platform.operations.services import platform_tenant_onboard
from tenants import services
from tenants.models import ApiKey, PlatformKey, Tenant, TenantStatus

admin.site.site_header = "Billable platform admin"
admin.site.site_title = "Billable admin"
admin.site.index_title = "Platform"

# The kind of one-time secret a new tenant key is, in the operator's session.
_API_KEY_SECRET = "api-key"  # noqa: S105 (a label, not a secret)


# --- Tenants.


class TenantStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in SETTABLE_STATUSES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> QuerySet[Tenant]:
        if self.value() in dict(SETTABLE_STATUSES):
            return queryset.filter(status=self.value())
        return queryset


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantChangeForm
    list_display = ("slug", "name", "status", "rate_limit", "created_at")
    list_filter = (TenantStatusFilter,)
    search_fields = ("slug", "name")
    ordering = ("-created_at", "-id")
    actions = ("suspend_tenants", "reactivate_tenants")
    readonly_fields = (
        "slug",
        "schema_name",
        "settings_table",
        "created_at",
        "updated_at",
        "deletion_requested_at",
    )
    change_form_template = "admin/tenants/tenant/change_form.html"
    onboarded_template = "admin/tenants/tenant/onboarded.html"
    key_form_template = "admin/tenants/tenant/key_form.html"
    key_created_template = "admin/tenants/tenant/key_created.html"
    delete_confirmation_template = "admin/tenants/tenant/delete_confirmation.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return (
            super()
            .get_queryset(request)
            .exclude(status__in=[TenantStatus.SPARE, TenantStatus.BUILDING])
        )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        # Operators who may change a tenant edit its settings one field each; others read them.
        editable = self.has_change_permission(request, obj)
        return (
            (None, {"fields": ("slug", "name", "status", "rate_limit")}),
            ("Settings", {"fields": SETTING_NAMES if editable else ("settings_table",)}),
            (
                "Schema",
                {"fields": ("schema_name", "created_at", "updated_at", "deletion_requested_at")},
            ),
        )

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        # The setting fields are the form's own (TenantChangeForm), not the model's.
        fields = kwargs.get("fields")
        if fields:
            kwargs["fields"] = [name for name in fields if name not in SETTING_NAMES]
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="settings")
    def settings_table(self, obj: Tenant) -> str:
        return format_html(
            "<table>{}</table>",
            format_html_join(
                "",
                "<tr><th>{}</th><td>{}</td></tr>",
                ((name, value) for name, value in obj.merged_settings.items()),
            ),
        )

    def get_urls(self) -> list[URLPattern]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/onboarded/<uuid:key_id>/",
                view(self.onboarded_view),
                name=f"{prefix}_onboarded",
            ),
            path(
                "<path:object_id>/keys/add/",
                view(self.key_add_view),
                name=f"{prefix}_key_add",
            ),
            path(
                "<path:object_id>/keys/<uuid:key_id>/",
                view(self.key_created_view),
                name=f"{prefix}_key_created",
            ),
            *super().get_urls(),
        ]

    def _url(self, name: str, *args: Any) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}",
            args=args,
        )

    def _tenant_or_404(self, request: HttpRequest, object_id: str) -> Tenant:
        tenant = self.get_object(request, unquote(object_id))
        if tenant is None:
            raise Http404("No such tenant.")
        return tenant

    def _page(
        self, request: HttpRequest, template: str, title: str, **context: Any
    ) -> TemplateResponse:
        request.current_app = self.admin_site.name
        # admin_site.admin_view marks every admin response never_cache (no-store), so a page
        # holding a secret is kept by no cache.
        return TemplateResponse(
            request,
            template,
            {**self.admin_site.each_context(request), "title": title, "opts": self.opts, **context},
        )

    # Onboarding.

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Onboard a tenant through the service, then redirect to the page showing its first key.

        Unlike the stock add view this runs outside a transaction: building a schema by
        migrations commits on its own and refuses to run inside one.
        """
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = TenantOnboardForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    tenant, key, raw = platform_tenant_onboard(
                        name=data["name"],
                        slug=data["slug"],
                        rate_limit=data["rate_limit"] or None,
                        demo_catalog=data["demo_catalog"],
                    )
                except errors.BillingError as exc:
                    add_billing_error(form, exc)
                else:
                    self.log_addition(request, tenant, [{"added": {}}])
                    keep_once(request, kind=_API_KEY_SECRET, object_id=key.pk, secret=raw)
                    return HttpResponseRedirect(self._url("onboarded", tenant.pk, key.pk))
        else:
            form = TenantOnboardForm()
        return self._onboard_form_response(request, form, form_url, extra_context)

    def _onboard_form_response(
        self,
        request: HttpRequest,
        form: TenantOnboardForm,
        form_url: str,
        extra_context: dict[str, Any] | None,
    ) -> HttpResponse:
        # AdminForm and AdminErrorList accept any form at runtime; the stubs say ModelForm.
        admin_form = helpers.AdminForm(
            form,  # type: ignore[arg-type]
            [(None, {"fields": ["name", "slug", "rate_limit", "demo_catalog"]})],
            {"slug": ["name"]},
            model_admin=self,
        )
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Onboard a tenant",
            "subtitle": None,
            "adminform": admin_form,
            "object_id": None,
            "original": None,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),  # type: ignore[arg-type]
            "preserved_filters": self.get_preserved_filters(request),
            "show_save_and_add_another": False,
            "show_save_and_continue": False,
            **(extra_context or {}),
        }
        return self.render_change_form(request, context, add=True, form_url=form_url)

    def _key_shown_once(
        self, request: HttpRequest, object_id: str, key_id: Any
    ) -> tuple[Tenant, ApiKey, str | None]:
        """The tenant, its key `key_id` (404 otherwise) and the key's secret, the first time
        this session asks only (`shown_once`)."""
        tenant = self._tenant_or_404(request, object_id)
        key = ApiKey.objects.filter(pk=key_id, tenant=tenant).first()
        if key is None:
            raise Http404("No such key.")
        return tenant, key, take_once(request, kind=_API_KEY_SECRET, object_id=key.pk)

    def onboarded_view(self, request: HttpRequest, object_id: str, key_id: Any) -> HttpResponse:
        """The onboarded tenant, with its first key's secret the first time only."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        tenant, key, raw = self._key_shown_once(request, object_id, key_id)
        return self._page(
            request,
            self.onboarded_template,
            f"Tenant {tenant.slug} onboarded",
            tenant=tenant,
            key=key,
            api_key=raw,
        )

    # Keys: created for one tenant, through the service, and shown once.

    def key_add_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_view_permission(request) or not request.user.has_perm("tenants.add_apikey"):
            raise PermissionDenied
        tenant = self._tenant_or_404(request, object_id)
        if request.method == "POST":
            form = ApiKeyCreateForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    key, raw = services.api_key_create(
                        tenant=tenant,
                        name=data["name"],
                        scopes=data["scopes"],
                        expires_at=data["expires_at"],
                    )
                except errors.BillingError as exc:
                    add_billing_error(form, exc)
                else:
                    self.log_addition(request, key, [{"added": {}}])
                    keep_once(request, kind=_API_KEY_SECRET, object_id=key.pk, secret=raw)
                    return HttpResponseRedirect(self._url("key_created", tenant.pk, key.pk))
        else:
            form = ApiKeyCreateForm()
        admin_form = helpers.AdminForm(
            form,  # type: ignore[arg-type]
            [(None, {"fields": ["name", "scopes", "expires_at"]})],
            {},
            model_admin=self,
        )
        return self._page(
            request,
            self.key_form_template,
            f"Create an API key for {tenant.slug}",
            tenant=tenant,
            adminform=admin_form,
            errors=helpers.AdminErrorList(form, []),  # type: ignore[arg-type]
        )

    def key_created_view(self, request: HttpRequest, object_id: str, key_id: Any) -> HttpResponse:
        if not self.has_view_permission(request) or not request.user.has_perm("tenants.add_apikey"):
            raise PermissionDenied
        tenant, key, raw = self._key_shown_once(request, object_id, key_id)
        return self._page(
            request,
            self.key_created_template,
            f"API key {key.name} for {tenant.slug}",
            tenant=tenant,
            key=key,
            api_key=raw,
            base_url=request.build_absolute_uri("/api/v1/"),
        )

    # Deletion: for good, by the same purge as `manage.py delete_tenant`, once confirmed.

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        # A bulk delete would bypass the purge: the rows would go and the schemas stay.
        actions.pop("delete_selected", None)
        return actions

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Drop the tenant's schema and rows once the operator types its slug.

        Runs outside the stock view's transaction: the purge is one transaction of its own.
        """
        tenant = self._tenant_or_404(request, object_id)
        if not self.has_delete_permission(request, tenant):
            raise PermissionDenied
        form = TenantDeleteForm(request.POST or None, tenant=tenant)
        if request.method == "POST" and form.is_valid():
            try:
                with transaction.atomic():
                    # Logged in the purge's transaction: no entry if the purge fails.
                    self.log_deletions(request, Tenant.objects.filter(pk=tenant.pk))
                    tenant_purge(tenant=tenant)
            except DatabaseError as exc:
                # Typically lock_timeout: requests still hold its tables. Nothing was changed.
                self.message_user(
                    request,
                    f"{tenant.slug} was not deleted ({exc.__class__.__name__}); nothing changed. "
                    "Suspend it first and try again.",
                    messages.ERROR,
                )
            else:
                self.message_user(
                    request,
                    f"Tenant {tenant.slug} deleted: schema {tenant.schema_name} dropped, "
                    "its keys, webhooks and rows removed.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(self._url("changelist"))
        return self._page(
            request,
            self.delete_confirmation_template,
            f"Delete tenant {tenant.slug}",
            tenant=tenant,
            object=tenant,
            form=form,
            key_count=ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True).count(),
            endpoint_count=tenant.webhook_endpoints.count(),
        )

    # Changes: through the services, which invalidate every process's cached view of the tenant.

    def save_model(
        self, request: HttpRequest, obj: Tenant, form: forms.ModelForm, change: bool
    ) -> None:
        changes = {
            name: form.cleaned_data[name]
            for name in ("name", "status", "rate_limit")
            if name in form.changed_data
        }
        if changes:
            services.tenant_update(tenant=obj, **changes)
        settings_changes = getattr(form, "settings_changes", {})
        if settings_changes:
            services.tenant_settings_update(tenant_id=obj.pk, changes=settings_changes)
        obj.refresh_from_db()

    @admin.action(description="Suspend selected tenants", permissions=["change"])
    def suspend_tenants(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._set_status(request, queryset, TenantStatus.SUSPENDED)

    @admin.action(description="Reactivate selected tenants", permissions=["change"])
    def reactivate_tenants(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._set_status(request, queryset, TenantStatus.ACTIVE)

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Tenant], status: str) -> None:
        changed: list[str] = []
        for tenant in queryset:
            if tenant.status == status:
                continue
            try:
                services.tenant_update(tenant=tenant, status=status)
            except errors.BillingError as exc:
                self.message_user(request, f"{tenant.slug}: {exc.detail}", messages.ERROR)
                continue
            self.log_change(request, tenant, [{"changed": {"fields": ["status"]}}])
            changed.append(tenant.slug)
        if changed:
            self.message_user(
                request, f"Status set to {status}: {', '.join(changed)}.", messages.SUCCESS
            )
        else:
            self.message_user(request, "No tenant changed.", messages.WARNING)


# --- Keys: read-only, revocable.


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(revoked_at__isnull=True)
        return queryset


class _KeyAdmin(admin.ModelAdmin):
    """Keys are created by services (the secret is shown once there) and only ever revoked."""

    list_filter = (RevokedFilter,)
    ordering = ("-created_at",)
    actions = ("revoke_keys",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Every field is part of the cached authentication entry; edits would bypass invalidation.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.display(description="prefix")
    def key_prefix(self, obj: ApiKey | PlatformKey) -> str:
        return obj.prefix

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            self.revoke(key)
            self.log_change(request, key, [{"changed": {"fields": ["revoked_at"]}}])
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)

    def revoke(self, key: Any) -> None:
        raise NotImplementedError


@admin.register(ApiKey)
class ApiKeyAdmin(_KeyAdmin):
    list_display = (
        "name",
        "key_prefix",
        "tenant",
        "scope_list",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    list_select_related = ("tenant",)
    search_fields = ("name", "lookup_id", "tenant__slug")
    fields = (
        "name",
        "key_prefix",
        "tenant",
        "scope_list",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    readonly_fields = fields

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    def revoke(self, key: ApiKey) -> None:
        services.api_key_revoke(key=key)


@admin.register(PlatformKey)
class PlatformKeyAdmin(_KeyAdmin):
    list_display = ("name", "key_prefix", "created_at", "last_used_at", "expires_at", "revoked_at")
    search_fields = ("name", "lookup_id")
    fields = ("name", "key_prefix", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = fields

    def revoke(self, key: PlatformKey) -> None:
        services.platform_key_revoke(key=key)
