"""The runs endpoints of the LangGraph Server API (background, wait, stream,
join, join_stream, cancel).

The waiting endpoints (wait, join, stream, join_stream) are async views
(adrf's `APIView`: the same authentication, permissions, parsers and error
handler as every other view, run before the handler): they wait on the
process's poller (runs.waiters) and reach the database through the bounded
executor (cronsvc.offloop), holding no thread while they wait."""

from adrf.views import APIView as AsyncAPIView
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from cronsvc import offloop
from cronsvc.errors import Invalid, NotFound
from cronsvc.http.inputs import (
    STREAM_MODES,
    JSONObject,
    RunOptionsIn,
    StrictCharField,
    StrictFloatField,
    StrictUUID,
    query_bool,
    query_int,
    require_uuid,
    validated,
)
from cronsvc.http.outputs import selected_items
from cronsvc.http.schema import EVENT_STREAM, errors
from runs import lifecycle, selectors, services, streaming, waiters
from runs.models import Run
from runs.wire import (
    RUN_FIELDS,
    RUN_RESULT,
    RunOut,
    RunResultOut,
    WebhookDeliveryOut,
    run_out,
    run_result,
    webhook_delivery_out,
)
from threads.selectors import thread_get_or_404

MAX_AFTER_SECONDS = 10 * 366 * 86400


class RunCreateIn(RunOptionsIn):
    """A run: the assistant (UUID or graph name), what it executes, and how."""

    assistant_id = StrictCharField()
    checkpoint = JSONObject(required=False, allow_null=True)
    checkpoint_id = StrictCharField(required=False, allow_null=True)
    feedback_keys = serializers.ListField(required=False, allow_null=True)
    if_not_exists = serializers.ChoiceField(choices=["create", "reject"], required=False)
    on_completion = serializers.ChoiceField(choices=["delete", "keep"], required=False)
    on_disconnect = serializers.ChoiceField(choices=["cancel", "continue"], required=False)
    # Seconds before a worker may start the run (ten years at most: past that a
    # 422, not a date out of range).
    after_seconds = StrictFloatField(required=False, allow_null=True, max_value=MAX_AFTER_SECONDS)


def _run_input(request, thread_id=None, *, stream: bool = False) -> dict:
    """runs.services.run_start's arguments from a run-creating request (`stream`:
    a stream endpoint's)."""
    if thread_id is not None:
        require_uuid(thread_id, "thread")
    data = validated(RunCreateIn, request.data)
    return {"thread_id": thread_id, "data": data, "body": request.data, "stream": stream}


def _locations(run: Run) -> dict:
    base = f"/threads/{run.thread_id}/runs/{run.run_id}"
    return {"Location": f"{base}/join", "Content-Location": base}


def _run(thread_id, run_id, action: str = "read") -> Run:
    require_uuid(thread_id, "thread")
    require_uuid(run_id, "run")
    thread = thread_get_or_404(thread_id, action=action)
    return selectors.run_get_or_404(thread=thread, run_id=run_id)


def _select(params) -> list[str] | None:
    select = params.getlist("select")
    invalid = [f for f in select if f not in RUN_FIELDS]
    if invalid:
        raise Invalid(f"Invalid select columns: {invalid}. Expected: {RUN_FIELDS}")
    return select or None


@extend_schema_view(
    get=extend_schema(
        operation_id="runs_list",
        summary="A thread's runs, newest first",
        parameters=[
            OpenApiParameter("limit", int, description="default 10"),
            OpenApiParameter("offset", int, description="default 0"),
            OpenApiParameter("status", str, enum=Run.Status.values),
            OpenApiParameter("select", str, many=True, enum=RUN_FIELDS),
        ],
        responses={
            200: OpenApiResponse(
                selected_items(RunOut)(many=True),
                description="With `select`, each run has only the selected fields.",
            ),
            **errors(404, 422),
        },
    ),
    post=extend_schema(
        operation_id="runs_create",
        summary="Start a run on a thread (in the background)",
        request=RunCreateIn,
        responses={200: RunOut, **errors(400, 404, 409, 422)},
    ),
)
class ThreadRunsApi(APIView):
    def get(self, request, thread_id):
        require_uuid(thread_id, "thread")
        thread = thread_get_or_404(thread_id)
        params = request.query_params
        limit = query_int(params, "limit", 10)
        offset = query_int(params, "offset", 0)
        status = params.get("status")
        if status is not None and status not in Run.Status.values:
            raise Invalid(f"Invalid status '{status}'. Expected one of: {Run.Status.values}")
        select = _select(params)
        qs = selectors.run_list(thread=thread, status=status)
        return Response([_selected(run_out(r), select) for r in qs[offset : offset + limit]])

    def post(self, request, thread_id):
        run = services.run_start(**_run_input(request, thread_id))
        return Response(
            run_out(run), headers={"Content-Location": _locations(run)["Content-Location"]}
        )


def _selected(data: dict, select: list[str] | None) -> dict:
    return {k: data[k] for k in select} if select else data


@extend_schema_view(
    post=extend_schema(
        operation_id="runs_create_stateless",
        summary="Start a run on a new thread (in the background)",
        request=RunCreateIn,
        responses={200: RunOut, **errors(400, 404, 409, 422)},
    )
)
class StatelessRunsApi(APIView):
    def post(self, request):
        run = services.run_start(**_run_input(request))
        # No thread segment: the SDK's on_run_created then reports thread_id None, as there.
        return Response(run_out(run), headers={"Content-Location": f"/runs/{run.run_id}"})


@extend_schema_view(
    post=extend_schema(
        operation_id="runs_wait",
        summary="Run on a thread and wait for its result",
        request=RunCreateIn,
        responses={200: RUN_RESULT, **errors(400, 404, 409, 422)},
    )
)
class ThreadRunWaitApi(AsyncAPIView):
    async def post(self, request, thread_id):
        run = await offloop.run(services.run_start, **_run_input(request, thread_id))
        run = await waiters.run_wait(run)
        return Response(run_result(run), headers=_locations(run))


@extend_schema_view(
    post=extend_schema(
        operation_id="runs_wait_stateless",
        summary="Run on a new thread and wait for its result",
        request=RunCreateIn,
        responses={200: RUN_RESULT, **errors(400, 404, 409, 422)},
    )
)
class StatelessRunWaitApi(AsyncAPIView):
    async def post(self, request):
        run = await offloop.run(services.run_start, **_run_input(request))
        run = await waiters.run_wait(run)
        return Response(run_result(run), headers=_locations(run))


@extend_schema_view(
    get=extend_schema(
        operation_id="runs_get",
        summary="Get a run",
        responses={200: RunOut, **errors(404, 422)},
    ),
    delete=extend_schema(
        operation_id="runs_delete",
        summary="Delete a run",
        responses={204: None, **errors(404, 422)},
    ),
)
class RunApi(APIView):
    def get(self, request, thread_id, run_id):
        return Response(run_out(_run(thread_id, run_id)))

    def delete(self, request, thread_id, run_id):
        services.run_delete(run=_run(thread_id, run_id, "delete"))
        return Response(status=204)


@extend_schema_view(
    get=extend_schema(
        operation_id="runs_join",
        summary="Wait for a run and get its result",
        responses={200: RUN_RESULT, **errors(404, 422)},
    )
)
class RunJoinApi(AsyncAPIView):
    async def get(self, request, thread_id, run_id):
        run = await waiters.run_wait(await offloop.run(_run, thread_id, run_id))
        return Response(run_result(run), headers=_locations(run))


class RunWebhookApi(APIView):
    @extend_schema(
        operation_id="runs_webhook_get",
        summary="Where the run's webhook delivery stands",
        description="cronsvc's own endpoint (the LangGraph Server has none): the delivery's "
        "status, attempts, last HTTP status code and error. The run itself keeps the "
        "server's wire format.",
        tags=["runs"],
        responses={200: WebhookDeliveryOut, **errors(404, 422)},
    )
    def get(self, request, thread_id, run_id):
        return Response(webhook_delivery_out(_run(thread_id, run_id)))


@extend_schema_view(
    post=extend_schema(
        operation_id="runs_cancel",
        summary="Cancel a pending or running run",
        request=None,
        parameters=[
            OpenApiParameter("action", str, enum=["interrupt", "rollback"]),
            OpenApiParameter("wait", bool, description="answer the run's result when it ends"),
        ],
        responses={
            200: OpenApiResponse(RunResultOut, description="with `wait=true`: the result"),
            202: OpenApiResponse(description="Cancellation requested."),
            **errors(404, 422),
        },
    )
)
class RunCancelApi(AsyncAPIView):
    """Async, as every wait: with `wait=true` the answer waits on the run's
    notifications (runs.waiters), holding no thread."""

    async def post(self, request, thread_id, run_id):
        action = request.query_params.get("action", "interrupt")
        action = action if action in ("interrupt", "rollback") else "interrupt"
        run = await offloop.run(_cancel, thread_id, run_id, action)
        if query_bool(request.query_params, "wait"):
            run = await waiters.run_wait(run)
            return Response(run_result(run), headers=_locations(run))
        return Response(status=202)


def _cancel(thread_id, run_id, action: str) -> Run:
    run = _run(thread_id, run_id, "update")
    if run.status in Run.FINISHED:
        raise NotFound(
            "No matching runs to cancel. Please verify the thread ID and run IDs are "
            "correct, and the runs haven't been deleted or completed."
        )
    lifecycle.run_cancel(run=run, action=action)
    return run


class _EventStreamApi(AsyncAPIView):
    """Answers text/event-stream; its errors are JSON whatever the client accepts."""

    def perform_content_negotiation(self, request, force=False):
        renderer = JSONRenderer()
        return renderer, renderer.media_type


def _event_stream(
    slot: streaming.StreamSlot, events, *, stream_path: str, run_path: str
) -> streaming.EventStreamResponse:
    response = streaming.EventStreamResponse(slot, events)
    response["Cache-Control"] = "no-store"
    response["Location"] = stream_path  # where the SDKs reconnect, with Last-Event-ID
    response["Content-Location"] = run_path
    return response


async def _stream_new_run(request, thread_id=None) -> streaming.EventStreamResponse:
    run_input = _run_input(request, thread_id, stream=True)
    slot = streaming.StreamSlot.take()  # before the run exists: a refused stream starts none
    cancel_on_disconnect = request.data.get("on_disconnect") == "cancel"
    try:
        run, registration = await offloop.run(
            streaming.run_start_streamed, run_input, slot, cancel_on_disconnect
        )
    except BaseException:
        slot.release()
        raise
    relay = streaming.relay(
        run,
        after=0,
        slot=slot,
        registration=registration,  # and the cancel on disconnect: both on the slot
    )
    base = f"/threads/{thread_id}/runs/{run.run_id}" if thread_id else f"/runs/{run.run_id}"
    return _event_stream(slot, relay, stream_path=f"{base}/stream", run_path=base)


async def _join_stream(request, run: Run, base: str) -> streaming.EventStreamResponse:
    params = request.query_params
    modes = [m for m in params.getlist("stream_mode") if m]  # the SDK sends "" for none
    for mode in modes:
        if mode not in STREAM_MODES:
            raise Invalid(f"Invalid stream_mode '{mode}'. Expected one of: {sorted(STREAM_MODES)}")
    after = _last_event_id_header(request)
    if after is None:
        after = await offloop.run(streaming.last_event_id, run)  # what comes from now on
    slot = streaming.StreamSlot.take()
    relay = streaming.relay(
        run,
        after=after,
        modes=streaming.event_names(modes) if modes else None,
        cancel_on_disconnect=query_bool(params, "cancel_on_disconnect"),
        slot=slot,
    )
    return _event_stream(slot, relay, stream_path=f"{base}/stream", run_path=base)


@extend_schema_view(
    post=extend_schema(
        operation_id="runs_stream",
        summary="Run on a thread and stream its events",
        request=RunCreateIn,
        responses={**EVENT_STREAM, **errors(400, 404, 409, 422)},
    )
)
class ThreadRunStreamApi(_EventStreamApi):
    async def post(self, request, thread_id):
        return await _stream_new_run(request, thread_id)


@extend_schema_view(
    post=extend_schema(
        operation_id="runs_stream_stateless",
        summary="Run on a new thread and stream its events",
        request=RunCreateIn,
        responses={**EVENT_STREAM, **errors(400, 404, 409, 422)},
    )
)
class StatelessRunStreamApi(_EventStreamApi):
    async def post(self, request):
        return await _stream_new_run(request)


# The query and header of both join-stream endpoints.
JOIN_STREAM_PARAMETERS = [
    OpenApiParameter("stream_mode", str, many=True, enum=sorted(STREAM_MODES)),
    OpenApiParameter("cancel_on_disconnect", bool),
    OpenApiParameter(
        "Last-Event-ID",
        str,
        OpenApiParameter.HEADER,
        description="replay after this event id; -1: every recorded event",
    ),
]


@extend_schema_view(
    get=extend_schema(
        operation_id="runs_join_stream",
        summary="Stream a run's events (again, from Last-Event-ID)",
        parameters=JOIN_STREAM_PARAMETERS,
        responses={**EVENT_STREAM, **errors(404, 422)},
    )
)
class RunJoinStreamApi(_EventStreamApi):
    async def get(self, request, thread_id, run_id):
        run = await offloop.run(_run, thread_id, run_id)
        return await _join_stream(request, run, f"/threads/{thread_id}/runs/{run_id}")


@extend_schema_view(
    get=extend_schema(
        operation_id="runs_join_stream_stateless",
        summary="Stream a stateless run's events (again, from Last-Event-ID)",
        parameters=JOIN_STREAM_PARAMETERS,
        responses={**EVENT_STREAM, **errors(404, 422)},
    )
)
class StatelessRunJoinStreamApi(_EventStreamApi):
    """Where a stateless stream's Location points (its thread may be gone later)."""

    async def get(self, request, run_id):
        require_uuid(run_id, "run")
        run = await offloop.run(selectors.run_get_or_404, thread=None, run_id=run_id)
        return await _join_stream(request, run, f"/runs/{run_id}")


@extend_schema_view(
    get=extend_schema(
        operation_id="threads_join_stream",
        summary="Stream the events of the runs on a thread, from now or from Last-Event-ID",
        parameters=[
            OpenApiParameter(
                "stream_mode", str, many=True, enum=list(streaming.THREAD_STREAM_MODES)
            ),
            OpenApiParameter(
                "Last-Event-ID",
                str,
                OpenApiParameter.HEADER,
                description="replay after this event id; -1: every recorded event of the thread",
            ),
        ],
        responses={**EVENT_STREAM, **errors(404, 422)},
    )
)
class ThreadJoinStreamApi(_EventStreamApi):
    """The runs on the thread record their events while this stream is open
    (runs.models.ThreadStream): the ones started from then on, and the
    streamed ones; unobserved runs (crons) record none."""

    async def get(self, request, thread_id):
        require_uuid(thread_id, "thread")
        modes = [m for m in request.query_params.getlist("stream_mode") if m] or ["run_modes"]
        for mode in modes:
            if mode not in streaming.THREAD_STREAM_MODES:
                raise Invalid(
                    f"Invalid stream_mode '{mode}'. Expected one of: "
                    f"{list(streaming.THREAD_STREAM_MODES)}"
                )
        after = _last_event_id_header(request)
        thread = await offloop.run(thread_get_or_404, thread_id)
        slot = streaming.StreamSlot.take()
        try:
            registration, after = await offloop.run(
                streaming.thread_stream_open, thread.pk, after, slot
            )
        except BaseException:
            slot.release()
            raise
        relay = streaming.thread_relay(
            thread.pk,
            registration,
            after=after,
            names=streaming.thread_event_names(modes),
            slot=slot,
        )
        response = streaming.EventStreamResponse(slot, relay)
        response["Cache-Control"] = "no-store"
        response["Location"] = f"/threads/{thread_id}/stream"
        return response


def _last_event_id_header(request) -> int | None:
    """Last-Event-ID: None when absent (from now on), 0 for -1 (everything)."""
    header = request.headers.get("Last-Event-ID")
    if header in (None, ""):
        return None
    if header == "-1":
        return 0
    try:
        return int(header)
    except ValueError:
        raise Invalid(f"Invalid Last-Event-ID '{header}': expected an event id or -1") from None


class RunBatchItemIn(RunCreateIn):
    """A stateless run of a batch (no thread)."""


@extend_schema_view(
    post=extend_schema(
        operation_id="runs_create_batch",
        summary="Start a batch of runs, each on a new thread (in the background)",
        request=RunBatchItemIn(many=True),
        responses={200: RunOut(many=True), **errors(400, 404, 409, 422)},
    )
)
class RunBatchApi(APIView):
    MAX_BATCH = 1000

    def post(self, request):
        body = request.data
        if not isinstance(body, list) or not body:
            raise Invalid("Request body must be a non-empty JSON array of runs")
        if len(body) > self.MAX_BATCH:
            raise Invalid(f"At most {self.MAX_BATCH} runs per batch")
        payloads = [{"data": validated(RunBatchItemIn, item), "body": item} for item in body]
        runs = services.runs_start_batch(payloads)
        return Response([run_out(run) for run in runs])


class RunsCancelIn(serializers.Serializer):
    thread_id = StrictUUID(required=False)
    run_ids = serializers.ListField(child=StrictUUID(), required=False, max_length=1000)
    status = serializers.ChoiceField(choices=["pending", "running", "all"], required=False)

    def validate(self, attrs):
        by_status = "status" in attrs
        by_ids = "thread_id" in attrs and "run_ids" in attrs
        if by_status == by_ids or (by_status and ("thread_id" in attrs or "run_ids" in attrs)):
            raise serializers.ValidationError(
                "Give either status, or thread_id with run_ids (not both)."
            )
        return attrs


@extend_schema_view(
    post=extend_schema(
        operation_id="runs_cancel_many",
        summary="Cancel runs by thread and run ids, or by status",
        request=RunsCancelIn,
        parameters=[OpenApiParameter("action", str, enum=["interrupt", "rollback"])],
        responses={204: None, **errors(404, 422)},
    )
)
class RunsCancelApi(APIView):
    def post(self, request):
        data = validated(RunsCancelIn, request.data)
        action = request.query_params.get("action", "interrupt")
        if action not in ("interrupt", "rollback"):
            raise Invalid("action must be 'interrupt' or 'rollback'")
        services.runs_cancel_many(
            thread_id=data.get("thread_id"),
            run_ids=data.get("run_ids"),
            status=data.get("status"),
            action=action,
        )
        return Response(status=204)
