"""Operations that span the apps: the operator's API and commands, the background worker.

Here because each composes several apps that must not know each other: onboarding with a demo
catalog (tenants + billable), the sweep (billable + webhooks), a tenant's export and purge
(tenants + billable + webhooks).
"""
