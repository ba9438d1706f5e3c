"""`/settings`: this tenant's billing settings (an admin key's to change)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from billable.api.inputs import patch_changes
from billable.api.routers import settings_router
from billable.schemas import SettingsOut, SettingsPatch
from billable.tenancy import current_tenant_row
from billing_platform.core.errors import ValidationFailed
from billing_platform.core.identity import caller
from billing_platform.core.problems import error_responses
from tenants.services import tenant_settings_update

# null clears a reward SKU; for the other settings null means "leave as is".
_REWARD_SKUS = ("referral_reward_sku", "referee_reward_sku")


@settings_router.get(
    "",
    response={200: SettingsOut, **error_responses()},
    operation_id="settings_get",
    summary="This tenant's billing settings",
)
def settings_get(request: HttpRequest) -> dict[str, Any]:
    """This tenant's billing settings: low-balance threshold, idempotency key retention, referral
    rewards, public catalog and subscription grace and notice days."""
    return current_tenant_row().merged_settings


@settings_router.patch(
    "",
    response={200: SettingsOut, **error_responses()},
    operation_id="settings_update",
    summary="Change this tenant's billing settings",
)
def settings_update(request: HttpRequest, payload: SettingsPatch) -> dict[str, Any]:
    """Change the settings given; the others stay (null leaves a setting as is, except the reward
    SKUs, which null clears)."""
    context = caller(request)
    changes = patch_changes(payload, clearable=_REWARD_SKUS)
    if context.tenant is None:
        raise ValidationFailed("A tenant key is required.")
    return tenant_settings_update(tenant_id=context.tenant.id, changes=changes).merged_settings
