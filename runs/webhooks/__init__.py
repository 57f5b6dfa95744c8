"""Webhook delivery: POST a finished run to its `webhook`, as the LangGraph
Server does.

- `guard`: which targets may be connected to (pure: no database, no HTTP).
- `transport`: the HTTP POST, pinned to the address the guard checked,
  redirects followed by hand and each hop checked.
- `delivery`: one attempt claimed and recorded on the Run row; the body is
  the run's wire format (runs.wire).

The task (`runs.deliver_webhook`) retries; runs.wakeups publishes it.
"""
