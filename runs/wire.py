"""Wire formats of runs, as the LangGraph Server sends them: used by the API and
by webhook delivery alike."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from cronsvc.http.outputs import IsoDateTime, ObjectOut, WireSerializer
from runs.models import Run

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

RUN_STATUSES = Run.Status.values


class RunOut(WireSerializer):
    run_id = serializers.UUIDField()
    thread_id = serializers.UUIDField()
    assistant_id = serializers.UUIDField(allow_null=True, help_text="null: assistant deleted")
    created_at = IsoDateTime()
    updated_at = IsoDateTime()
    status = serializers.ChoiceField(choices=RUN_STATUSES)
    metadata = ObjectOut()
    kwargs = ObjectOut(help_text="what the run executes: input, command, config, context...")
    multitask_strategy = serializers.ChoiceField(
        choices=Run.MultitaskStrategy.values, allow_null=True
    )
    langsmith_session_name = serializers.SerializerMethodField()

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="always null"))
    def get_langsmith_session_name(self, run: Run) -> None:
        return None


def run_out(run: Run) -> dict:
    return RunOut(run).data


def run_result(run: Run) -> dict:
    """What wait/join answer: the final values, or the error as the server shows it."""
    if run.status == Run.Status.ERROR:
        output = run.output or {}
        return {"__error__": {"error": output.get("error", "Error"), "message": run.error or ""}}
    return run.output if run.output is not None else {}


class RunResultOut(serializers.Serializer):
    """What wait and join answer (documentation): the run's final state values,
    whatever keys the graph's state has; for a failed run only `__error__`."""

    __error__ = serializers.DictField(
        required=False, help_text="a failed run: {error: the exception's type, message}"
    )


RUN_RESULT = OpenApiResponse(
    RunResultOut,
    description="The run's final state values (a failed run: `__error__`). `Location` is "
    "the run's join URL, `Content-Location` the run.",
)


class WebhookDeliveryOut(WireSerializer):
    """Where a run's webhook delivery stands (GET .../runs/{run_id}/webhook).
    Not part of the run's own wire format, which is exactly the server's."""

    run_id = serializers.UUIDField()
    url = serializers.SerializerMethodField()
    status = serializers.ChoiceField(
        source="webhook_status",
        choices=Run.WebhookStatus.values,
        allow_null=True,
        help_text="null: no webhook, or the run has not finished; pending: being delivered "
        "(retried); delivered; failed: every attempt failed, or an answer that is not "
        "retried; refused: the address may not be reached (CRONSVC_WEBHOOK_ALLOWLIST)",
    )
    attempts = serializers.IntegerField(source="webhook_attempts", help_text="attempts so far")
    last_status_code = serializers.IntegerField(
        source="webhook_status_code",
        allow_null=True,
        help_text="the HTTP status of the last answer; null: none received",
    )
    error = serializers.CharField(
        source="webhook_error", allow_null=True, help_text="why the last attempt failed"
    )
    last_attempt_at = IsoDateTime(source="webhook_sent_at", allow_null=True)

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="the run's `webhook`"))
    def get_url(self, run: Run) -> str | None:
        return (run.kwargs or {}).get("webhook")


def webhook_delivery_out(run: Run) -> dict:
    return WebhookDeliveryOut(run).data
