"""The ASGI application every server runs (cronsvc.topology.ASGI_APP)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cronsvc.settings")
# Under ASGI each request's sync work runs on a thread of its own: a connection
# kept for CONN_MAX_AGE would be kept per request, never reused. The API closes
# its connections at the end of each request instead and, on PostgreSQL,
# borrows them from Django's pool (settings.py); an operator may still set
# either variable.
ASGI_DEFAULTS = {"DATABASE_CONN_MAX_AGE": "0", "CRONSVC_DB_POOL": "true"}
_defaulted = [name for name in ASGI_DEFAULTS if name not in os.environ]
os.environ.update({name: ASGI_DEFAULTS[name] for name in _defaulted})
application = get_asgi_application()
# Read by the settings just loaded (when this module loaded them): processes
# started from here (dev's workers and beat, a test's migrate) must not
# inherit the API's defaults.
for _name in _defaulted:
    os.environ.pop(_name, None)
