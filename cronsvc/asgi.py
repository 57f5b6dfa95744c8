"""The ASGI application every server runs (cronsvc.topology.ASGI_APP)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cronsvc.settings")
# Under ASGI each request's sync work runs on a thread of its own: a connection
# kept for CONN_MAX_AGE would be kept per request, never reused. The API closes
# its connections at the end of each request instead (an operator may still
# set DATABASE_CONN_MAX_AGE).
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
# On PostgreSQL, connections come from Django's pool instead (settings.py).
os.environ.setdefault("CRONSVC_DB_POOL", "true")
application = get_asgi_application()
