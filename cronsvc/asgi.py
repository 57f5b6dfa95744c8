"""The ASGI application every server runs (cronsvc.topology.ASGI_APP)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cronsvc.settings")
# On PostgreSQL the API's threads (web and offloop) borrow connections from
# Django's pool (settings.py); an operator may still set the variable.
ASGI_DEFAULTS = {"CRONSVC_DB_POOL": "true"}
_defaulted = [name for name in ASGI_DEFAULTS if name not in os.environ]
os.environ.update({name: ASGI_DEFAULTS[name] for name in _defaulted})
django.setup(set_prefix=False)

from cronsvc import heap, logqueue  # noqa: E402
from cronsvc.http.handler import Handler  # noqa: E402 - needs the settings loaded
from runs import waiters  # noqa: E402

# The run listener (PostgreSQL) connects as the server starts, not at the
# first wait: a burst of waits that started it polled meanwhile (the
# waiting benchmark's /ok p99 158-171 ms against 180-195 started lazily).
application = Handler(on_startup=[waiters.listener_start])
logqueue.offload()  # the access log: off the event loop
heap.freeze_after_start()
# Read by the settings just loaded (when this module loaded them): processes
# started from here (dev's workers and beat, a test's migrate) must not
# inherit the API's defaults.
for _name in _defaulted:
    os.environ.pop(_name, None)
