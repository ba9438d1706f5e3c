"""Settings, read from the environment (12-factor).

`deploy/env.example` lists every variable with its default. Values the process environment lacks
are read from `var/secrets.env` and `var/services.env` in the checkout, which `make run` writes, so
`python manage.py <command>` uses the same database and secrets as the server.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# What `make run` generates (secrets.env, services.env, static files); BILLABLE_VAR_DIR moves it.
VAR_DIR = Path(os.environ.get("BILLABLE_VAR_DIR") or BASE_DIR / "var")

env = environ.Env()
for _name in ("secrets.env", "services.env"):
    if (VAR_DIR / _name).exists():
        # read_env never overrides a variable the process environment already has.
        environ.Env.read_env(str(VAR_DIR / _name))

TESTING = "pytest" in sys.modules or env.bool("BILLABLE_TESTING", default=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: run `make run` once (it writes var/secrets.env) or export it."
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
if TESTING:
    ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS: on by default (production); `make run` and the tests turn it off for loopback HTTP.
SECURE_HTTPS = env.bool("SECURE_HTTPS", default=not TESTING)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=SECURE_HTTPS)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=SECURE_HTTPS)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=SECURE_HTTPS)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if SECURE_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=SECURE_HTTPS)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=SECURE_HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# --- Applications: django-tenants splits them between the public schema and each tenant schema.
SHARED_APPS = [
    # Before django_tenants: its commands `migrate_schemas`, `migrate` and `delete_tenant` replace
    # django-tenants' commands of the same names (the first app listed wins).
    "tenants",
    "billing_platform.operations",
    "django_tenants",
    "billing_platform.webhooks",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    # TOTP second factor of the tenant console (its devices live in the public schema).
    "django_otp",
    "django_otp.plugins.otp_totp",
    # The tenant console under /console/: its people, invitations and audit log are public rows.
    "billing_platform.console",
    # django.contrib.admin, with the operators' site (failed logins limited) as its default site.
    "billing_platform.operations.apps.PlatformAdminConfig",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",
    "corsheaders",
]
TENANT_APPS = [
    "billable",
]
INSTALLED_APPS = list(SHARED_APPS) + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
# One `SET search_path` per tenant switch instead of one per cursor.
TENANT_LIMIT_SET_CALLS = True
DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)

MIDDLEWARE = [
    # First: every answer (even a refused body) gets a request id, a log line and its metrics.
    "billing_platform.http.middleware.RequestContextMiddleware",
    "billing_platform.http.middleware.RequestGuardMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "billing_platform.http.middleware.TenantResetMiddleware",
    # Django's own classes by their own paths on every route: `check --deploy` looks for these
    # exact paths (sessions, CSRF, clickjacking). On the API they cost little: no cookie is read
    # into a session, and Ninja's views are CSRF-exempt (no cookie authenticates them).
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Host validation (ALLOWED_HOSTS) and Content-Length, on every route.
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # `request.user` and one-time messages serve the admin's browsers only: these subclasses of
    # Django's own pass the API, the health checks and /metrics straight through.
    "billing_platform.http.middleware.AuthenticationMiddleware",
    "billing_platform.http.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "billing_platform.http.middleware.ProblemFallbackMiddleware",
    "billing_platform.http.middleware.RateLimitHeadersMiddleware",
]

ROOT_URLCONF = "billing_platform.urls"
WSGI_APPLICATION = "billing_platform.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "billing_platform" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL through django-tenants' backend (psycopg 3), whose health check of a
# persistent connection reads the connection's state instead of sending `SELECT 1`.
DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/billable"
    )
}
DATABASES["default"]["ENGINE"] = "billing_platform.core.postgresql"
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
# Bounded waits: a lock or statement timeout is retried by the transaction layer, then 503.
DATABASES["default"]["OPTIONS"].setdefault(
    "options",
    f"-c lock_timeout={env.int('DB_LOCK_TIMEOUT_MS', default=5000)}"
    f" -c statement_timeout={env.int('DB_STATEMENT_TIMEOUT_MS', default=30000)}",
)
if env.str("TEST_DATABASE_NAME", default=""):
    DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache: Redis is shared by every process (key resolution, rate limits).
REDIS_URL = env.str("REDIS_URL", default="")
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default="billable")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "billing_platform.core.cache.SharedRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    # Single-process fallback (make run without Redis): rate limits and key revocation are then
    # only exact within this one process. The launcher prints a loud warning.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    logging.getLogger("billable").warning(
        "REDIS_URL is not set: using an in-process cache (single process only)."
    )

SILENCED_SYSTEM_CHECKS = [
    # django-ratelimit prefers django-redis; Django's built-in RedisCache is shared and atomic
    # enough for its counters (INCR), so its warning about other backends does not apply.
    "django_ratelimit.W001",
]
if not REDIS_URL:
    # In-process cache fallback: understood and announced by the launcher.
    SILENCED_SYSTEM_CHECKS.append("django_ratelimit.E003")

# --- Secrets owned by the platform.
# API keys are stored as HMAC-SHA256 hashes keyed by a versioned secret: "2:newsecret,1:old".
# New keys use the highest version; existing keys keep verifying with the version they carry.
API_KEY_HASH_SECRETS = env.str("API_KEY_HASH_SECRETS", default="")
# Fernet keys for stored secrets (webhook secrets, custom headers); the first one encrypts.
ENCRYPTION_KEYS = env.list("ENCRYPTION_KEYS", default=[])

# --- Tenancy and onboarding.
# Pre-built spare schemas kept ready so onboarding is a rename, not a migration; the worker
# refills the pool as soon as one is claimed (NOTIFY), by cloning the template.
TENANT_SPARE_SCHEMAS = env.int("TENANT_SPARE_SCHEMAS", default=3)
# The empty template schema new tenant schemas are cloned from (kept current by migrate_schemas;
# never a tenant). Empty: no template, every schema is built by running the migrations.
TENANT_BASE_SCHEMA = env.str("TENANT_BASE_SCHEMA", default="tenant_template")
# Seconds a resolved API key stays cached; invalidation on change makes it exact earlier.
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=300)
PLATFORM_OPEN_SIGNUP = env.bool("PLATFORM_OPEN_SIGNUP", default=False)
# Hours between a tenant's deletion request (suspended, keys revoked) and the purge of its schema
# and rows by `run_worker`; the time to export its data (`manage.py export_tenant`).
TENANT_PURGE_AFTER_HOURS = env.int("TENANT_PURGE_AFTER_HOURS", default=24)
# Seconds /readyz keeps its count of tenant schemas behind the code (migrate_schemas clears it).
READYZ_MIGRATIONS_CACHE_SECONDS = env.int("READYZ_MIGRATIONS_CACHE_SECONDS", default=30)

# --- Rate limits (django-ratelimit counters in the shared cache).
RATELIMIT_ENABLE = env.bool("RATELIMIT_ENABLE", default=True)
# How many proxies in front of the server append to X-Forwarded-For (0: use REMOTE_ADDR only).
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", default=0)
PUBLIC_RATE_LIMIT = env.str("PUBLIC_RATE_LIMIT", default="60/m")
SIGNUP_RATE_LIMIT = env.str("SIGNUP_RATE_LIMIT", default="5/h")
AUTH_FAILURE_RATE_LIMIT = env.str("AUTH_FAILURE_RATE_LIMIT", default="30/m")
# Failed logins to the admin: per account from browsers new to it, and per client IP; past either,
# the login form refuses every attempt until the window ends (`manage.py unlock_admin_login`).
ADMIN_LOGIN_ACCOUNT_FAILURE_LIMIT = env.str("ADMIN_LOGIN_ACCOUNT_FAILURE_LIMIT", default="5/15m")
ADMIN_LOGIN_IP_FAILURE_LIMIT = env.str("ADMIN_LOGIN_IP_FAILURE_LIMIT", default="20/h")

# --- CORS: off unless origins are listed (django-cors-headers).
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/api/v1/.*$"
CORS_ALLOW_HEADERS = (
    "accept", "authorization", "content-type", "idempotency-key", "x-api-key",
)
CORS_EXPOSE_HEADERS = (
    "idempotent-replayed", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset",
    "retry-after",
)

# --- Webhooks.
WEBHOOKS_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", default=False)
# Seconds between attempts after a failure (then `failed`); tests compress it.
WEBHOOK_RETRY_SCHEDULE = [
    int(v) for v in env.list(
        "WEBHOOK_RETRY_SCHEDULE", default=["5", "300", "1800", "7200", "18000", "36000", "36000"]
    )
]
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
WEBHOOK_LEASE_SECONDS = env.int("WEBHOOK_LEASE_SECONDS", default=60)
# Threads of one webhook worker posting deliveries at once.
WEBHOOK_WORKER_THREADS = env.int("WEBHOOK_WORKER_THREADS", default=8)
WEBHOOK_RETENTION_DAYS = env.int("WEBHOOK_RETENTION_DAYS", default=30)
WEBHOOK_MAX_ENDPOINTS = 20

# --- Metrics: /metrics answers only with `Authorization: Bearer <METRICS_TOKEN>`; empty: 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Tenants that get their own `tenant` label on the per-tenant metrics, per process (the first ones
# counted); the others share the label "other". 0: every tenant is "other".
METRICS_TENANT_LABELS = env.int("METRICS_TENANT_LABELS", default=50)

# --- Request limits: bodies over 1 MiB are refused before they are read.
MAX_REQUEST_BODY_BYTES = 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES + 1

# --- The tenant console (/console/, docs/console.md).
# Failed console logins: per account (the email, whether or not it exists) and per client IP; past
# either, the login form refuses every attempt until the window ends.
CONSOLE_LOGIN_ACCOUNT_FAILURE_LIMIT = env.str(
    "CONSOLE_LOGIN_ACCOUNT_FAILURE_LIMIT", default="5/15m"
)
CONSOLE_LOGIN_IP_FAILURE_LIMIT = env.str("CONSOLE_LOGIN_IP_FAILURE_LIMIT", default="20/h")
# Password-reset requests: per email (existing or not) and per client address; past either, the
# reset form refuses (and mails nothing) until the window ends.
CONSOLE_PASSWORD_RESET_EMAIL_LIMIT = env.str("CONSOLE_PASSWORD_RESET_EMAIL_LIMIT", default="3/h")
CONSOLE_PASSWORD_RESET_IP_LIMIT = env.str("CONSOLE_PASSWORD_RESET_IP_LIMIT", default="20/h")
# Days an invitation link stays valid.
CONSOLE_INVITATION_DAYS = env.int("CONSOLE_INVITATION_DAYS", default=7)
# Where links in mail sent without a request (`manage.py console_invite`) point.
CONSOLE_BASE_URL = env.str("CONSOLE_BASE_URL", default="http://127.0.0.1:8000")
# Minutes an operator's support session in a tenant's console lasts (opened from the admin).
CONSOLE_SUPPORT_SESSION_MINUTES = env.int("CONSOLE_SUPPORT_SESSION_MINUTES", default=30)
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:overview"
# The issuer authenticator apps show beside a console account's TOTP code.
OTP_TOTP_ISSUER = "Billable"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=12 * 3600)

# --- Mail (invitations, password resets): sent only when EMAIL_URL is set, e.g.
# smtp+tls://user:password@smtp.example.com:587 (django-environ's form).
EMAIL_URL = env.str("EMAIL_URL", default="")
EMAIL_CONFIGURED = bool(EMAIL_URL)
if EMAIL_CONFIGURED:
    globals().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billable@localhost")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("STATIC_ROOT", default=str(VAR_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not TESTING
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = TESTING or DEBUG

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# "json": one JSON object per line with request id, tenant and API key id; "plain": one short line
# per record for people (`make run` chooses it on a terminal), coloured when stderr is a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default="json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"()": "billing_platform.core.observability.HumanFormatter"},
        "json": {"()": "billing_platform.core.observability.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain" if LOG_FORMAT == "plain" else "json",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "django_tenants": {"level": "WARNING"},
        # At INFO httpx logs every webhook URL, whose path or query can be a receiver's secret.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
