"""Wire formats of runs, as the LangGraph Server sends them: used by the API and
by webhook delivery alike."""

from __future__ import annotations

from rest_framework import serializers

from cronsvc.api import iso
from runs.models import Run


def run_out(run: Run) -> dict:
    return {
        "run_id": str(run.run_id),
        "thread_id": str(run.thread_id),
        "assistant_id": str(run.assistant_id) if run.assistant_id else None,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "status": run.status,
        "metadata": run.metadata,
        "kwargs": run.kwargs,
        "multitask_strategy": run.multitask_strategy,
        "langsmith_session_name": None,
    }


RUN_FIELDS = [
    "run_id",
    "thread_id",
    "assistant_id",
    "created_at",
    "updated_at",
    "status",
    "metadata",
    "kwargs",
    "multitask_strategy",
    "langsmith_session_name",
]


def run_result(run: Run) -> dict:
    """What wait/join answer: the final values, or the error as the server shows it."""
    if run.status == Run.Status.ERROR:
        output = run.output or {}
        return {"__error__": {"error": output.get("error", "Error"), "message": run.error or ""}}
    return run.output if run.output is not None else {}


def webhook_delivery_out(run: Run) -> dict:
    """Where a run's webhook delivery stands (GET .../runs/{run_id}/webhook).
    Not part of the run's own wire format, which is exactly the server's."""
    return {
        "run_id": str(run.run_id),
        "url": (run.kwargs or {}).get("webhook"),
        "status": run.webhook_status,
        "attempts": run.webhook_attempts,
        "last_status_code": run.webhook_status_code,
        "error": run.webhook_error,
        "last_attempt_at": iso(run.webhook_sent_at),
    }


class WebhookDeliveryOut(serializers.Serializer):
    """The OpenAPI description of webhook_delivery_out."""

    run_id = serializers.UUIDField()
    url = serializers.CharField(allow_null=True, help_text="the run's `webhook`; null: none")
    status = serializers.ChoiceField(
        choices=Run.WebhookStatus.values,
        allow_null=True,
        help_text="null: no webhook, or the run has not finished; pending: being delivered "
        "(retried); delivered; failed: every attempt failed, or an answer that is not "
        "retried; refused: the address may not be reached (CRONSVC_WEBHOOK_ALLOWLIST)",
    )
    attempts = serializers.IntegerField(help_text="attempts made so far")
    last_status_code = serializers.IntegerField(
        allow_null=True, help_text="the HTTP status of the last answer; null: none received"
    )
    error = serializers.CharField(allow_null=True, help_text="why the last attempt failed")
    last_attempt_at = serializers.DateTimeField(allow_null=True)
