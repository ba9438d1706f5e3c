"""The billing endpoints (`/billing`, `/settings`): parse, call one service or selector, answer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status

from billable import presenters, selectors
from billable.schemas import (
    AdjustmentIn,
    AdjustmentOut,
    BalanceListOut,
    BalanceOut,
    BatchOut,
    BatchPage,
    ConfirmIn,
    ConsumeIn,
    CustomerOut,
    CustomerPage,
    CustomerRefIn,
    ExchangeIn,
    GrantIn,
    GrantOut,
    HoldCommitIn,
    HoldIn,
    HoldOut,
    HoldReleaseIn,
    IdentifyIn,
    IdentifyOut,
    LedgerPage,
    MergeIn,
    MergeOut,
    OfferIn,
    OfferOut,
    OfferPage,
    OfferPatch,
    OrderIn,
    OrderOut,
    OrderPage,
    ProductIn,
    ProductOut,
    ProductPage,
    ProductPatch,
    ReasonIn,
    ReferralIn,
    ReferralOut,
    ReferralStatsOut,
    RevokeIn,
    SettingsOut,
    SettingsPatch,
    UsageOut,
    WalletOut,
)
from billable.services import catalog as catalog_services
from billable.services import customers as customer_services
from billable.services import grants as grant_services
from billable.services import holds as hold_services
from billable.services import merge as merge_services
from billable.services import orders as order_services
from billable.services import quota as quota_services
from billable.services import referrals as referral_services
from billable.services.catalog import ItemSpec
from billable.services.customers import CustomerRef
from billing_platform.core.errors import ValidationFailed
from billing_platform.core.identity import KeyContext
from billing_platform.core.pagination import PageParams, page_data, paginate
from billing_platform.core.problems import error_responses
from billing_platform.core.schema_types import UtcDateTime
from tenants.auth import tenant_auth

router = Router(tags=["billing"])
settings_router = Router(tags=["settings"], auth=tenant_auth("admin"))

READ = tenant_auth("billing:read")
WRITE = tenant_auth("billing:write")
GRANT = tenant_auth("billing:grant")
ADMIN = tenant_auth("admin")


def _actor(request: HttpRequest) -> str:
    context: KeyContext = request.auth  # type: ignore[attr-defined]
    return context.actor


def _ref(payload: CustomerRefIn) -> CustomerRef:
    external = payload.external_id
    return CustomerRef(
        customer_id=payload.customer_id,
        external_id=str(external) if external is not None else None,
        provider=payload.provider,
    )


class CustomerQuery(CustomerRefIn):
    pass


def _decimal(value: Any, field: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except Exception as exc:
        raise ValidationFailed(
            f"{field} is a decimal amount.", errors=[{"loc": ["body", field], "msg": "invalid"}]
        ) from exc
    if not amount.is_finite() or amount < 0:
        raise ValidationFailed(
            f"{field} is a non-negative amount.",
            errors=[{"loc": ["body", field], "msg": "invalid"}],
        )
    return amount


def _items(items: list[Any]) -> list[ItemSpec]:
    return [
        ItemSpec(
            product=item.product,
            quantity=item.quantity,
            period_unit=item.period_unit,
            period_value=item.period_value,
        )
        for item in items
    ]


# --- Balance and consumption


@router.get(
    "/balance",
    auth=READ,
    response={200: BalanceOut | BalanceListOut, **error_responses(404)},
    operation_id="billing_balance",
    summary="Check what a customer can use (one feature, or every held feature)",
)
def balance(
    request: HttpRequest, customer: Query[CustomerQuery], feature: str | None = None
) -> dict[str, Any]:
    found = customer_services.customer_resolve(_ref(customer), create=False)
    if feature:
        result = quota_services.balance_get(customer=found, feature=feature)
        return {**result.__dict__, "customer_id": str(found.pk) if found else None}
    items = quota_services.balance_list(customer=found)
    return {
        "customer_id": str(found.pk) if found else None,
        "items": [{**item.__dict__, "customer_id": str(found.pk)} for item in items]
        if found
        else [],
    }


@router.post(
    "/quota/consume",
    auth=WRITE,
    response={200: UsageOut, **error_responses(402, 404, 409)},
    operation_id="billing_quota_consume",
    summary="Consume quota atomically (all or nothing)",
)
def consume(request: HttpRequest, payload: ConsumeIn) -> dict[str, Any]:
    customer = customer_services.customer_ensure(_ref(payload))
    result = quota_services.quota_consume(
        customer=customer,
        feature=payload.feature or payload.product_key or "",
        amount=payload.amount,
        action_type=payload.action_type,
        action_id=payload.action_id,
        metadata=payload.metadata,
        actor=_actor(request),
    )
    return presenters.usage_data(
        result.usage, remaining=result.remaining, unlimited=result.unlimited
    )


@router.post(
    "/holds",
    auth=WRITE,
    response={201: HoldOut, **error_responses(402, 404, 409)},
    operation_id="billing_hold_create",
    summary="Reserve quota for work whose cost is known afterwards",
)
def hold_create(request: HttpRequest, payload: HoldIn) -> Status:
    customer = customer_services.customer_ensure(_ref(payload))
    hold = hold_services.hold_create(
        customer=customer,
        feature=payload.feature,
        amount=payload.amount,
        ttl_seconds=payload.ttl_seconds,
        metadata=payload.metadata,
        actor=_actor(request),
    )
    return Status(201, presenters.hold_data(hold))


@router.post(
    "/holds/{hold_id}/commit",
    auth=WRITE,
    response={200: HoldOut, **error_responses(404, 409)},
    operation_id="billing_hold_commit",
    summary="Keep part or all of a hold spent and return the rest",
)
def hold_commit(request: HttpRequest, hold_id: str, payload: HoldCommitIn) -> dict[str, Any]:
    hold = selectors.hold_get(hold_id=hold_id)
    hold = hold_services.hold_commit(hold=hold, amount=payload.amount, actor=_actor(request))
    return presenters.hold_data(hold)


@router.post(
    "/holds/{hold_id}/release",
    auth=WRITE,
    response={200: HoldOut, **error_responses(404, 409)},
    operation_id="billing_hold_release",
    summary="Return every unit of a hold",
)
def hold_release(request: HttpRequest, hold_id: str, payload: HoldReleaseIn) -> dict[str, Any]:
    hold = selectors.hold_get(hold_id=hold_id)
    return presenters.hold_data(hold_services.hold_release(hold=hold, actor=_actor(request)))


# --- Grants, adjustments, batches


@router.post(
    "/grants",
    auth=GRANT,
    response={201: GrantOut, **error_responses(404, 409)},
    operation_id="billing_grant_create",
    summary="Activate an offer without payment (trial, bonus, referral, manual)",
)
def grant_create(request: HttpRequest, payload: GrantIn) -> Status:
    customer = customer_services.customer_ensure(_ref(payload))
    offer = grant_services.offer_for_grant(payload.sku)
    if payload.kind == "trial":
        from billable.services.trials import trial_grant

        result = trial_grant(
            customer=customer,
            offer=offer,
            identities=payload.identities,
            reason=payload.reason,
            metadata=payload.metadata,
            actor=_actor(request),
        )
    else:
        result = grant_services.offer_grant(
            customer=customer,
            offer=offer,
            kind=payload.kind,
            reason=payload.reason,
            expires_at=payload.expires_at,
            metadata=payload.metadata,
            actor=_actor(request),
        )
    return Status(201, presenters.grant_data(result.grant, result.batches))


@router.post(
    "/adjustments",
    auth=GRANT,
    response={201: AdjustmentOut, **error_responses(402, 404, 409)},
    operation_id="billing_adjustment_create",
    summary="Credit or debit a customer's units of a product (support fixes)",
)
def adjustment_create(request: HttpRequest, payload: AdjustmentIn) -> Status:
    customer = customer_services.customer_ensure(_ref(payload))
    result = grant_services.adjustment_create(
        customer=customer,
        product_key=payload.product,
        amount=payload.amount,
        reason=payload.reason,
        expires_at=payload.expires_at,
        actor=_actor(request),
    )
    adjustment = result.adjustment
    return Status(
        201,
        {
            "id": str(adjustment.pk),
            "customer_id": str(customer.pk),
            "product": adjustment.product.key,
            "amount": adjustment.amount,
            "batches": [presenters.batch_data(b) for b in result.batches],
            "reason": adjustment.reason,
        },
    )


@router.post(
    "/batches/{batch_id}/revoke",
    auth=GRANT,
    response={200: BatchOut, **error_responses(404, 409)},
    operation_id="billing_batch_revoke",
    summary="Revoke one batch (a debit of what remained)",
)
def batch_revoke(request: HttpRequest, batch_id: str, payload: RevokeIn) -> dict[str, Any]:
    batch = selectors.batch_get(batch_id=batch_id)
    batch = grant_services.batch_revoke(batch=batch, reason=payload.reason, actor=_actor(request))
    return presenters.batch_data(batch)


# --- Customers


@router.post(
    "/identify",
    auth=WRITE,
    response={200: IdentifyOut, **error_responses(409)},
    operation_id="billing_identify",
    summary="Register or look up a customer by an external identity",
)
def identify(request: HttpRequest, payload: IdentifyIn) -> dict[str, Any]:
    result = customer_services.customer_identify(
        provider=payload.provider,
        external_id=str(payload.external_id),
        profile=payload.profile,
    )
    return {
        "customer_id": str(result.customer.pk),
        "created": result.created,
        "trial_eligible": result.trial_eligible,
        "metadata": result.customer.metadata,
    }


@router.post(
    "/customers/merge",
    auth=GRANT,
    response={200: MergeOut, **error_responses(404, 409)},
    operation_id="billing_customer_merge",
    summary="Merge the source customer into the target",
)
def customer_merge(request: HttpRequest, payload: MergeIn) -> dict[str, Any]:
    target = selectors.customer_get(customer_id=payload.target_customer_id)
    source = selectors.customer_get(customer_id=payload.source_customer_id)
    result = merge_services.customer_merge(target=target, source=source)
    return {
        "target_customer_id": str(result.target.pk),
        "moved_identities": result.moved_identities,
        "moved_batches": result.moved_batches,
        "moved_orders": result.moved_orders,
        "moved_holds": result.moved_holds,
        "moved_usages": result.moved_usages,
        "moved_referrals": result.moved_referrals,
    }


@router.get(
    "/customers",
    auth=READ,
    response={200: CustomerPage, **error_responses()},
    operation_id="billing_customer_list",
    summary="List customers (filter by provider and external_id)",
)
def customer_list(
    request: HttpRequest,
    page: Query[PageParams],
    provider: str | None = None,
    external_id: str | None = None,
) -> dict[str, Any]:
    result = paginate(
        selectors.customer_list(provider=provider, external_id=external_id),
        limit=page.limit,
        cursor=page.cursor,
    )
    return page_data(result, presenters.customer_data)


@router.get(
    "/customers/{customer_id}",
    auth=READ,
    response={200: CustomerOut, **error_responses(404)},
    operation_id="billing_customer_get",
    summary="Get a customer",
)
def customer_get(request: HttpRequest, customer_id: str) -> dict[str, Any]:
    return presenters.customer_data(selectors.customer_get(customer_id=customer_id))


@router.delete(
    "/customers/{customer_id}",
    auth=ADMIN,
    response={204: None, **error_responses(404)},
    operation_id="billing_customer_erase",
    summary="Erase a customer's identities and metadata (the ledger stays, anonymous)",
    description="A merged customer's id erases the customer it was merged into, with every "
    "customer merged into that one: the same person under earlier ids.",
)
def customer_erase(request: HttpRequest, customer_id: str) -> HttpResponse:
    customer = selectors.customer_get(customer_id=customer_id, follow_merge=True)
    customer_services.customer_erase(customer=customer)
    return HttpResponse(status=204)


# --- Wallet


@router.get(
    "/wallet",
    auth=READ,
    response={200: WalletOut, **error_responses(404)},
    operation_id="billing_wallet",
    summary="Units per product (null for period or unlimited access)",
)
def wallet(request: HttpRequest, customer: Query[CustomerQuery]) -> dict[str, Any]:
    return selectors.wallet(customer=customer_services.customer_require(_ref(customer)))


@router.get(
    "/wallet/batches",
    auth=READ,
    response={200: BatchPage, **error_responses(404)},
    operation_id="billing_wallet_batches",
    summary="Usable batches in consumption order",
)
def wallet_batches(
    request: HttpRequest, customer: Query[CustomerQuery], page: Query[PageParams]
) -> dict[str, Any]:
    found = customer_services.customer_require(_ref(customer))
    result = paginate(
        selectors.usable_batches(customer=found),
        limit=page.limit,
        cursor=page.cursor,
        order=("sort_expires", "created_at", "pk"),
    )
    return page_data(result, presenters.batch_data)


@router.get(
    "/wallet/transactions",
    auth=READ,
    response={200: LedgerPage, **error_responses(404)},
    operation_id="billing_wallet_transactions",
    summary="Ledger entries of a customer, newest first",
)
def wallet_transactions(
    request: HttpRequest,
    customer: Query[CustomerQuery],
    page: Query[PageParams],
    product: str | None = None,
    action_type: str | None = None,
    since: UtcDateTime | None = None,
) -> dict[str, Any]:
    found = customer_services.customer_require(_ref(customer))
    result = paginate(
        selectors.ledger_entries(
            customer=found, product=product, action_type=action_type, since=since
        ),
        limit=page.limit,
        cursor=page.cursor,
        order=("-created_at", "-pk"),
    )
    return page_data(result, presenters.entry_data)


# --- Catalog


@router.get(
    "/products",
    auth=READ,
    response={200: ProductPage, **error_responses()},
    operation_id="billing_product_list",
    summary="List products",
)
def product_list(request: HttpRequest, page: Query[PageParams]) -> dict[str, Any]:
    result = paginate(selectors.product_list(), limit=page.limit, cursor=page.cursor)
    return page_data(result, presenters.product_data)


@router.post(
    "/products",
    auth=ADMIN,
    response={201: ProductOut, **error_responses(409)},
    operation_id="billing_product_create",
    summary="Create a product",
)
def product_create(request: HttpRequest, payload: ProductIn) -> Status:
    product = catalog_services.product_create(
        key=payload.key,
        name=payload.name,
        product_type=payload.product_type,
        description=payload.description,
        is_active=payload.is_active,
        is_currency=payload.is_currency,
        metadata=payload.metadata,
        features=payload.features,
    )
    return Status(201, presenters.product_data(product))


@router.get(
    "/products/{key}",
    auth=READ,
    response={200: ProductOut, **error_responses(404)},
    operation_id="billing_product_get",
    summary="Get a product",
)
def product_get(request: HttpRequest, key: str) -> dict[str, Any]:
    return presenters.product_data(selectors.product_get(key=key))


@router.patch(
    "/products/{key}",
    auth=ADMIN,
    response={200: ProductOut, **error_responses(404, 409)},
    operation_id="billing_product_update",
    summary="Change a product (deactivating sends product_deactivated)",
)
def product_update(request: HttpRequest, key: str, payload: ProductPatch) -> dict[str, Any]:
    product = selectors.product_get(key=key)
    changes = {k: v for k, v in payload.dict(exclude_unset=True).items() if v is not None}
    return presenters.product_data(catalog_services.product_update(product=product, **changes))


@router.get(
    "/offers",
    auth=READ,
    response={200: OfferPage, **error_responses()},
    operation_id="billing_offer_list",
    summary="List offers (active and inactive)",
)
def offer_list(request: HttpRequest, page: Query[PageParams]) -> dict[str, Any]:
    result = paginate(selectors.offer_list(), limit=page.limit, cursor=page.cursor)
    return page_data(result, presenters.offer_data)


@router.post(
    "/offers",
    auth=ADMIN,
    response={201: OfferOut, **error_responses(409)},
    operation_id="billing_offer_create",
    summary="Create an offer",
)
def offer_create(request: HttpRequest, payload: OfferIn) -> Status:
    offer = catalog_services.offer_create(
        sku=payload.sku,
        name=payload.name,
        price=_decimal(payload.price, "price"),
        currency=payload.currency,
        items=_items(payload.items),
        description=payload.description,
        is_active=payload.is_active,
        metadata=payload.metadata,
    )
    return Status(201, presenters.offer_data(selectors.offer_get(sku=offer.sku)))


@router.get(
    "/offers/{sku}",
    auth=READ,
    response={200: OfferOut, **error_responses(404)},
    operation_id="billing_offer_get",
    summary="Get an offer",
)
def offer_get(request: HttpRequest, sku: str) -> dict[str, Any]:
    return presenters.offer_data(selectors.offer_get(sku=sku))


@router.patch(
    "/offers/{sku}",
    auth=ADMIN,
    response={200: OfferOut, **error_responses(404, 409)},
    operation_id="billing_offer_update",
    summary="Change an offer (new items replace the old)",
)
def offer_update(request: HttpRequest, sku: str, payload: OfferPatch) -> dict[str, Any]:
    offer = selectors.offer_get(sku=sku)
    changes: dict[str, Any] = {
        k: v for k, v in payload.dict(exclude_unset=True).items() if v is not None
    }
    if "price" in changes:
        changes["price"] = _decimal(changes["price"], "price")
    if "items" in changes:
        changes["items"] = _items(payload.items or [])
    catalog_services.offer_update(offer=offer, **changes)
    return presenters.offer_data(selectors.offer_get(sku=offer.sku))


@router.get(
    "/catalog",
    auth=READ,
    response={200: OfferPage, **error_responses()},
    operation_id="billing_catalog",
    summary="Active offers; ?sku=A&sku=B returns those in request order",
)
def catalog(
    request: HttpRequest,
    page: Query[PageParams],
    sku: list[str] | None = Query(None),  # noqa: B008
) -> dict[str, Any]:
    if sku:
        offers = selectors.catalog_by_skus(sku)
        return {"items": [presenters.offer_data(o) for o in offers], "next_cursor": None}
    result = paginate(selectors.catalog(), limit=page.limit, cursor=page.cursor)
    return page_data(result, presenters.offer_data)


# --- Orders and exchange


@router.post(
    "/orders",
    auth=WRITE,
    response={201: OrderOut, **error_responses(404, 409)},
    operation_id="billing_order_create",
    summary="Create an order at the offers' prices (status pending)",
)
def order_create(request: HttpRequest, payload: OrderIn) -> Status:
    customer = customer_services.customer_ensure(_ref(payload))
    order = order_services.order_create(
        customer=customer,
        items=[order_services.LineIn(sku=i.sku, quantity=i.quantity) for i in payload.items],
        metadata=payload.metadata,
    )
    return Status(201, presenters.order_data(selectors.order_get(order_id=str(order.pk))))


@router.get(
    "/orders",
    auth=READ,
    response={200: OrderPage, **error_responses(404)},
    operation_id="billing_order_list",
    summary="List orders, newest first (optionally of one customer, by status)",
)
def order_list(
    request: HttpRequest,
    page: Query[PageParams],
    customer_id: str | None = None,
    external_id: str | None = None,
    provider: str = "default",
    status: str | None = None,
) -> dict[str, Any]:
    customer = None
    if customer_id is not None or external_id is not None:
        customer = customer_services.customer_require(
            CustomerRef(customer_id=customer_id, external_id=external_id, provider=provider)
        )
    result = paginate(
        selectors.order_list(customer=customer, status=status),
        limit=page.limit,
        cursor=page.cursor,
    )
    return page_data(result, presenters.order_data)


@router.get(
    "/orders/{order_id}",
    auth=READ,
    response={200: OrderOut, **error_responses(404)},
    operation_id="billing_order_get",
    summary="Get an order",
)
def order_get(request: HttpRequest, order_id: str) -> dict[str, Any]:
    return presenters.order_data(selectors.order_get(order_id=order_id))


@router.post(
    "/orders/{order_id}/confirm",
    auth=GRANT,
    response={200: OrderOut, **error_responses(404, 409)},
    operation_id="billing_order_confirm",
    summary="Confirm payment and activate the order's rights",
)
def order_confirm(request: HttpRequest, order_id: str, payload: ConfirmIn) -> dict[str, Any]:
    order = selectors.order_get(order_id=order_id)
    order = order_services.order_confirm(
        order=order,
        payment_id=payload.payment_id,
        payment_method=payload.payment_method,
        actor=_actor(request),
    )
    return presenters.order_data(selectors.order_get(order_id=str(order.pk)))


@router.post(
    "/orders/{order_id}/cancel",
    auth=WRITE,
    response={200: OrderOut, **error_responses(404, 409)},
    operation_id="billing_order_cancel",
    summary="Cancel a pending order",
)
def order_cancel(request: HttpRequest, order_id: str, payload: ReasonIn) -> dict[str, Any]:
    order = order_services.order_cancel(
        order=selectors.order_get(order_id=order_id), reason=payload.reason
    )
    return presenters.order_data(selectors.order_get(order_id=str(order.pk)))


@router.post(
    "/orders/{order_id}/refund",
    auth=GRANT,
    response={200: OrderOut, **error_responses(404, 409)},
    operation_id="billing_order_refund",
    summary="Refund a paid order (revokes what it granted)",
)
def order_refund(request: HttpRequest, order_id: str, payload: ReasonIn) -> dict[str, Any]:
    order = order_services.order_refund(
        order=selectors.order_get(order_id=order_id),
        reason=payload.reason,
        actor=_actor(request),
    )
    return presenters.order_data(selectors.order_get(order_id=str(order.pk)))


@router.post(
    "/exchange",
    auth=GRANT,
    response={200: OrderOut, **error_responses(402, 404, 409)},
    operation_id="billing_exchange",
    summary="Buy an offer priced in a currency product with that product's units",
)
def exchange(request: HttpRequest, payload: ExchangeIn) -> dict[str, Any]:
    customer = customer_services.customer_ensure(_ref(payload))
    order = order_services.exchange(customer=customer, sku=payload.sku, actor=_actor(request))
    return presenters.order_data(selectors.order_get(order_id=str(order.pk)))


# --- Referrals and merge


@router.post(
    "/referrals",
    auth=WRITE,
    response={200: ReferralOut, 201: ReferralOut, **error_responses(404, 409)},
    operation_id="billing_referral_attach",
    summary="Link a referrer and a referee",
)
def referral_attach(request: HttpRequest, payload: ReferralIn) -> Status:
    referrer = customer_services.customer_ensure(_ref(payload.referrer))
    referee = customer_services.customer_ensure(_ref(payload.referee))
    result = referral_services.referral_attach(
        referrer=referrer, referee=referee, metadata=payload.metadata
    )
    body = {
        "id": str(result.referral.pk),
        "referrer_id": str(result.referral.referrer_id),
        "referee_id": str(result.referral.referee_id),
        "created": result.created,
    }
    return Status(201 if result.created else 200, body)


@router.get(
    "/referrals/stats",
    auth=READ,
    response={200: ReferralStatsOut, **error_responses(404)},
    operation_id="billing_referral_stats",
    summary="How many customers this customer referred, and how many were rewarded",
)
def referral_stats(request: HttpRequest, customer: Query[CustomerQuery]) -> dict[str, int]:
    found = customer_services.customer_require(_ref(customer))
    return referral_services.referral_stats(customer=found)


# --- Settings


@settings_router.get(
    "",
    response={200: SettingsOut, **error_responses()},
    operation_id="settings_get",
    summary="This tenant's billing settings",
)
def settings_get(request: HttpRequest) -> dict[str, Any]:
    from billable.tenancy import current_tenant_row

    return current_tenant_row().merged_settings


@settings_router.patch(
    "",
    response={200: SettingsOut, **error_responses()},
    operation_id="settings_update",
    summary="Change this tenant's billing settings",
)
def settings_update(request: HttpRequest, payload: SettingsPatch) -> dict[str, Any]:
    from tenants.services import tenant_settings_update

    context: KeyContext = request.auth  # type: ignore[attr-defined]
    changes = payload.dict(exclude_unset=True)
    # null clears a reward SKU; for the other settings null means "leave as is".
    changes = {
        name: value
        for name, value in changes.items()
        if value is not None or name in ("referral_reward_sku", "referee_reward_sku")
    }
    for field in ("referral_reward_sku", "referee_reward_sku"):
        if changes.get(field):
            changes[field] = changes[field].upper()
    if context.tenant is None:
        raise ValidationFailed("A tenant key is required.")
    return tenant_settings_update(tenant_id=context.tenant.id, changes=changes).merged_settings
