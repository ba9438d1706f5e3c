"""The platform operators' admin: tenants and their keys, every write through tenants.services.

Onboarding is its own view rather than a model save: the service builds or claims the tenant's
schema outside the admin's request transaction, and the new API key is rendered once in the
response, never stored. Keys are read-only here; the only write on them is revocation.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from billing_platform.core import errors
from billing_platform.operations.services import platform_tenant_onboard
from tenants import services
from tenants.models import ApiKey, PlatformKey, Tenant, TenantStatus

admin.site.site_header = "Billable platform admin"
admin.site.site_title = "Billable admin"
admin.site.index_title = "Platform"

_SETTABLE_STATUSES = [
    (TenantStatus.ACTIVE.value, TenantStatus.ACTIVE.label),
    (TenantStatus.SUSPENDED.value, TenantStatus.SUSPENDED.label),
]


def _add_billing_error(form: forms.BaseForm, exc: errors.BillingError) -> None:
    """Attach a service error to the form field it concerns, else to the whole form."""
    field: str | None = None
    if isinstance(exc, errors.InvalidSlug | errors.SlugTaken):
        field = "slug"
    elif isinstance(exc, errors.ValidationFailed):
        named = [str(path[-1]) for path, _msg in exc.fields if path]
        field = next((name for name in named if name in form.fields), None)
    form.add_error(field, exc.detail)


# --- Tenants.


class TenantOnboardForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.CharField(
        max_length=40,
        help_text="3–40 characters of a-z, 0-9 and '-', starting with a letter. "
        "The schema is t_<slug>.",
    )
    rate_limit = forms.CharField(
        max_length=32,
        required=False,
        help_text="N/s, N/m, N/h, N/d or 0 (unlimited). Empty means 600/m.",
    )
    demo_catalog = forms.BooleanField(
        required=False, label="Install the demo catalog", initial=False
    )


class TenantChangeForm(forms.ModelForm):
    class Meta:
        model = Tenant
        fields = ("name", "status", "rate_limit")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "status" in self.fields:
            self.fields["status"].choices = _SETTABLE_STATUSES  # type: ignore[attr-defined]

    def clean_rate_limit(self) -> str:
        rate_limit: str = self.cleaned_data["rate_limit"]
        try:
            return services.validate_rate_limit(rate_limit)
        except errors.BillingError as exc:
            raise ValidationError(exc.detail) from exc

    def clean_status(self) -> str:
        status: str = self.cleaned_data["status"]
        if (
            status == TenantStatus.ACTIVE
            and self.instance.deletion_requested_at is not None
            and "status" in self.changed_data
        ):
            raise ValidationError(errors.TenantDeleting.title)
        return status


class TenantStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in _SETTABLE_STATUSES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> QuerySet[Tenant]:
        if self.value() in dict(_SETTABLE_STATUSES):
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
    fieldsets = (
        (None, {"fields": ("slug", "name", "status", "rate_limit")}),
        (
            "Schema",
            {
                "fields": (
                    "schema_name",
                    "settings",
                    "created_at",
                    "updated_at",
                    "deletion_requested_at",
                )
            },
        ),
    )
    readonly_fields = (
        "slug",
        "schema_name",
        "settings",
        "created_at",
        "updated_at",
        "deletion_requested_at",
    )
    onboarded_template = "admin/tenants/tenant/onboarded.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return (
            super()
            .get_queryset(request)
            .exclude(status__in=[TenantStatus.SPARE, TenantStatus.BUILDING])
        )

    def has_delete_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        # Deletion drops a schema: it goes through the platform API's confirmed request and a job.
        return False

    # Onboarding.

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Onboard a tenant through the service and show its first key once.

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
                    _add_billing_error(form, exc)
                else:
                    self.log_addition(request, tenant, [{"added": {}}])
                    return self._onboarded_response(request, tenant, key, raw)
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

    def _onboarded_response(
        self, request: HttpRequest, tenant: Tenant, key: ApiKey, raw: str
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"Tenant {tenant.slug} onboarded",
            "opts": self.opts,
            "tenant": tenant,
            "key": key,
            "api_key": raw,
        }
        request.current_app = self.admin_site.name
        # admin_site.admin_view marks every admin response never_cache (no-store), so this page
        # holding the secret is kept by no cache.
        return TemplateResponse(request, self.onboarded_template, context)

    # Changes: through the service, which invalidates every process's cached view of the tenant.

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
