"""One webhook delivery attempt, claimed and recorded on the Run row.

The body is what the LangGraph Server sends: the run (runs.wire.run_out), its
status, start and end times, the thread's `values`, and `error` for a failed
run. A refused target (runs.webhooks.guard) is recorded on the run and never
connected to. Retried (until the last attempt, then `failed`): network
errors, the attempt's deadline, a resolver error that may pass, 5xx, 408 and
429. Failed at once: other 4xx, and 301/302/303 (not followed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from cronsvc import metrics
from runs.models import Run
from runs.webhooks import transport
from runs.webhooks.guard import Refused, ResolutionFailed
from runs.wire import run_out
from threads.models import Thread

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: str  # one of Run.WebhookStatus
    status_code: int | None = None
    error: str | None = None
    retry: bool = False


def payload_for(run: Run) -> dict:
    values = run.output if run.status != Run.Status.ERROR else None
    if run.status == Run.Status.ERROR:
        values = Thread.objects.filter(pk=run.thread_id).values_list("values", flat=True).first()
    body = {
        **run_out(run),
        "status": run.status,
        "run_started_at": run.started_at.isoformat() if run.started_at else None,
        "run_ended_at": run.finished_at.isoformat() if run.finished_at else None,
        "webhook_sent_at": datetime.now(UTC).isoformat(),
        "values": values,
    }
    if run.status == Run.Status.ERROR:
        output = run.output or {}
        body["error"] = {"error": output.get("error", "Error"), "message": run.error or ""}
    return body


def attempts_made(run_id) -> int | None:
    """How many delivery attempts `run_id`'s webhook has had (None: no such run)."""
    return Run.objects.filter(pk=run_id).values_list("webhook_attempts", flat=True).first()


def deliver(run_id, *, final: bool) -> Outcome | None:
    """Make one delivery attempt of `run_id`'s webhook and record it.

    Returns None when there is nothing to do (no webhook, already delivered
    or refused, or another task holds this attempt). `final`: the last
    attempt allowed, so a retryable failure is recorded as `failed`."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None or run.webhook_status != Run.WebhookStatus.PENDING:
        return None
    url = (run.kwargs or {}).get("webhook")
    if not url:
        return None
    # Claim the attempt (compare-and-set on the count): a duplicate task
    # message does not send the same attempt twice.
    now = timezone.now()
    if not Run.objects.filter(
        pk=run.pk, webhook_status=Run.WebhookStatus.PENDING, webhook_attempts=run.webhook_attempts
    ).update(webhook_attempts=F("webhook_attempts") + 1, webhook_sent_at=now, updated_at=now):
        return None
    try:
        response = transport.send(url, payload_for(run))
    except Refused as exc:
        log.warning("run %s: webhook refused: %s", run.run_id, exc)
        outcome = Outcome(Run.WebhookStatus.REFUSED, error=str(exc))
    except (httpx.HTTPError, ResolutionFailed) as exc:
        outcome = Outcome(
            Run.WebhookStatus.FAILED if final else Run.WebhookStatus.PENDING,
            error=f"{type(exc).__name__}: {exc}",
            retry=not final,
        )
    else:
        if response.is_success:
            outcome = Outcome(Run.WebhookStatus.DELIVERED, status_code=response.status_code)
        elif response.is_redirect:
            # 301/302/303 (307/308 were followed): a client would re-send the
            # POST as a GET without the body, so the receiver never got it.
            outcome = Outcome(
                Run.WebhookStatus.FAILED,
                status_code=response.status_code,
                error=f"HTTP {response.status_code}: redirect to "
                f"{response.headers.get('location', '?')!r} not followed "
                "(only 307 and 308 re-send the POST)",
            )
        else:
            retryable = response.status_code >= 500 or response.status_code in (408, 429)
            outcome = Outcome(
                Run.WebhookStatus.PENDING if retryable and not final else Run.WebhookStatus.FAILED,
                status_code=response.status_code,
                error=f"HTTP {response.status_code}",
                retry=retryable and not final,
            )
    with transaction.atomic():
        Run.objects.filter(pk=run.pk).update(
            webhook_status=outcome.status,
            webhook_status_code=outcome.status_code,
            webhook_error=outcome.error,
            updated_at=timezone.now(),
        )
        metrics.webhook_delivered("retry" if outcome.retry else outcome.status)
    return outcome
