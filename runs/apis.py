"""The runs endpoints of the LangGraph Server API (background, wait, join, cancel)."""

import time

from django.conf import settings
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from cronsvc.api import RunOptionsIn, iso, require_uuid, validated
from cronsvc.selectors import assistant_get_or_404
from runs import selectors, services
from runs.models import Run
from threads.selectors import thread_get_or_404
from threads.services import thread_create

# Body keys that are about creating the run, not what it executes.
NOT_KWARGS = {"assistant_id", "metadata", "multitask_strategy", "if_not_exists", "on_completion",
              "after_seconds"}


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
    }


def run_result(run: Run) -> dict:
    """What wait/join answer: the final values, or the error as the server shows it."""
    if run.status == Run.Status.ERROR:
        output = run.output or {}
        return {"__error__": {"error": output.get("error", "Error"), "message": run.error or ""}}
    return run.output if run.output is not None else {}


class RunCreateIn(RunOptionsIn):
    assistant_id = serializers.CharField()
    checkpoint = serializers.JSONField(required=False, allow_null=True)
    checkpoint_id = serializers.CharField(required=False, allow_null=True)
    feedback_keys = serializers.ListField(required=False, allow_null=True)
    if_not_exists = serializers.ChoiceField(choices=["create", "reject"], required=False)
    on_completion = serializers.ChoiceField(choices=["delete", "keep"], required=False)
    on_disconnect = serializers.ChoiceField(choices=["cancel", "continue"], required=False)
    after_seconds = serializers.FloatField(required=False, allow_null=True)


def _create(request, thread_id=None, *, stateless_default_on_completion="delete") -> Run:
    data = validated(RunCreateIn, request.data)
    assistant = assistant_get_or_404(data["assistant_id"])
    on_completion = None
    if thread_id is None:
        thread = thread_create()
        on_completion = data.get("on_completion") or stateless_default_on_completion
    else:
        require_uuid(thread_id, "thread")
        if data.get("if_not_exists") == "create":
            thread = thread_create(thread_id=thread_id, if_exists="do_nothing")
        else:
            thread = thread_get_or_404(thread_id)
    kwargs = {k: v for k, v in request.data.items() if k not in NOT_KWARGS and v is not None}
    return services.run_create(
        thread=thread,
        assistant=assistant,
        kwargs=kwargs,
        metadata=data.get("metadata") or {},
        multitask_strategy=data.get("multitask_strategy"),
        on_completion=on_completion,
    )


def _wait(run: Run, timeout: float | None = None) -> Run:
    """Poll until the run is finished (or deleted with its thread)."""
    deadline = time.monotonic() + (timeout or settings.CRONSVC_WAIT_TIMEOUT)
    delay = 0.05
    while time.monotonic() < deadline:
        current = Run.objects.filter(pk=run.pk).first()
        if current is None:
            return run
        if current.status in Run.FINISHED:
            return current
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    return Run.objects.filter(pk=run.pk).first() or run


def _locations(run: Run) -> dict:
    base = f"/threads/{run.thread_id}/runs/{run.run_id}"
    return {"Location": f"{base}/join", "Content-Location": base}


def _run(thread_id, run_id) -> Run:
    require_uuid(thread_id, "thread")
    require_uuid(run_id, "run")
    thread = thread_get_or_404(thread_id)
    return selectors.run_get_or_404(thread=thread, run_id=run_id)


class ThreadRunsApi(APIView):
    def get(self, request, thread_id):
        require_uuid(thread_id, "thread")
        thread = thread_get_or_404(thread_id)
        limit = int(request.query_params.get("limit", 10))
        offset = int(request.query_params.get("offset", 0))
        qs = selectors.run_list(thread=thread, status=request.query_params.get("status"))
        return Response([run_out(r) for r in qs[offset : offset + limit]])

    def post(self, request, thread_id):
        return Response(run_out(_create(request, thread_id)))


class StatelessRunsApi(APIView):
    def post(self, request):
        return Response(run_out(_create(request)))


class ThreadRunWaitApi(APIView):
    def post(self, request, thread_id):
        run = _wait(_create(request, thread_id))
        return Response(run_result(run), headers=_locations(run))


class StatelessRunWaitApi(APIView):
    def post(self, request):
        run = _wait(_create(request))
        return Response(run_result(run), headers={"Content-Location": f"/runs/{run.run_id}"})


class RunApi(APIView):
    def get(self, request, thread_id, run_id):
        return Response(run_out(_run(thread_id, run_id)))

    def delete(self, request, thread_id, run_id):
        services.run_delete(run=_run(thread_id, run_id))
        return Response(status=204)


class RunJoinApi(APIView):
    def get(self, request, thread_id, run_id):
        run = _wait(_run(thread_id, run_id))
        return Response(run_result(run), headers=_locations(run))


class RunCancelApi(APIView):
    def post(self, request, thread_id, run_id):
        run = _run(thread_id, run_id)
        action = request.query_params.get("action", "interrupt")
        action = action if action in ("interrupt", "rollback") else "interrupt"
        services.run_cancel(run=run, action=action)
        if request.query_params.get("wait", "false").lower() in ("1", "true", "yes"):
            return Response(run_result(_wait(run)))
        return Response(status=202)


