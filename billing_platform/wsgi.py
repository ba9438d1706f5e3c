"""WSGI entry point (gunicorn `billing_platform.wsgi`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_platform.settings")

application = get_wsgi_application()

from billing_platform.core.metrics import mark_process  # noqa: E402  (after Django's set-up)

mark_process("api")
