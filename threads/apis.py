"""The threads endpoints of the LangGraph Server API."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from cronsvc.http.inputs import (
    MAX_INT,
    AnyJSON,
    JSONObject,
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    StrictUUID,
    query_bool,
    query_int,
    require_uuid,
    validated,
)
from cronsvc.http.outputs import selected_items
from cronsvc.http.pagination import PAGINATION_HEADERS, SELECTED, search_page
from cronsvc.http.schema import errors
from threads import selectors, services, state
from threads import ttl as thread_ttl
from threads.models import Thread
from threads.wire import (
    THREAD_FIELDS,
    ThreadOut,
    ThreadStateOut,
    ThreadStateUpdateOut,
    ThreadStorageOut,
    thread_out,
)


class ThreadTTLIn(serializers.Serializer):
    """A thread's time to live (threads.ttl): minutes, from now or its next run."""

    strategy = serializers.ChoiceField(
        choices=thread_ttl.STRATEGIES, required=False, default="delete"
    )
    ttl = StrictFloatField(max_value=thread_ttl.MAX_TTL_MINUTES, help_text="minutes")

    def validate_ttl(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("Must be more than 0 minutes.")
        return value


class ThreadCreateIn(serializers.Serializer):
    thread_id = StrictUUID(required=False, allow_null=True)
    metadata = JSONObject(required=False, allow_null=True)
    if_exists = serializers.ChoiceField(choices=["raise", "do_nothing"], required=False)
    ttl = ThreadTTLIn(required=False, allow_null=True)
    supersteps = serializers.ListField(required=False, allow_null=True)


class ThreadPatchIn(serializers.Serializer):
    metadata = JSONObject(required=False, allow_null=True)
    ttl = ThreadTTLIn(required=False, allow_null=True)


class ThreadSearchIn(serializers.Serializer):
    ids = serializers.ListField(child=StrictUUID(), required=False, allow_null=True)
    metadata = JSONObject(required=False, allow_null=True)
    values = JSONObject(required=False, allow_null=True)
    status = serializers.ChoiceField(choices=Thread.Status.values, required=False, allow_null=True)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=10)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_INT, default=0)
    sort_by = serializers.ChoiceField(
        choices=["thread_id", "status", "created_at", "updated_at", "state_updated_at"],
        required=False,
    )
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], required=False)
    select = serializers.ListField(
        child=serializers.ChoiceField(choices=THREAD_FIELDS), required=False
    )


class CheckpointIn(serializers.Serializer):
    thread_id = StrictCharField(required=False, allow_null=True)
    checkpoint_ns = StrictCharField(required=False, allow_blank=True, allow_null=True)
    checkpoint_id = StrictCharField(required=False, allow_null=True)
    checkpoint_map = JSONObject(required=False, allow_null=True)


class StateUpdateIn(serializers.Serializer):
    values = AnyJSON(required=False, allow_null=True)
    as_node = StrictCharField(required=False, allow_null=True)
    checkpoint = CheckpointIn(required=False, allow_null=True)
    checkpoint_id = StrictCharField(required=False, allow_null=True)


class HistoryIn(serializers.Serializer):
    # The server's default is 1 (the SDK always sends a limit).
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=1)
    before = CheckpointIn(required=False, allow_null=True)
    metadata = JSONObject(required=False, allow_null=True)
    checkpoint = CheckpointIn(required=False, allow_null=True)


def _thread(thread_id, action: str | None = "read") -> Thread:
    """The thread, as the current user may `action` it (custom auth)."""
    require_uuid(thread_id, "thread")
    return selectors.thread_get_or_404(thread_id, action=action)


class ThreadsApi(APIView):
    @extend_schema(
        operation_id="threads_create",
        summary="Create a thread",
        request=ThreadCreateIn,
        responses={200: ThreadOut, **errors(409, 422)},
    )
    def post(self, request):
        data = validated(ThreadCreateIn, request.data)
        thread = services.thread_create(
            thread_id=data.get("thread_id"),
            metadata=data.get("metadata"),
            if_exists=data.get("if_exists") or "raise",
            ttl=data.get("ttl"),
        )
        return Response(thread_out(thread))


class ThreadApi(APIView):
    @extend_schema(
        operation_id="threads_get",
        summary="Get a thread",
        responses={200: ThreadOut, **errors(404, 422)},
    )
    def get(self, request, thread_id):
        thread = _thread(thread_id)
        body = thread_out(thread)
        included = {f.strip() for f in request.query_params.get("include", "").split(",")}
        if "ttl" in included:  # only when asked, as the LangGraph Server answers
            body["ttl"] = thread_ttl.out(thread)
        return Response(body)

    @extend_schema(
        operation_id="threads_patch",
        summary="Update a thread's metadata",
        description="`Prefer: return=minimal` answers 204 without a body.",
        request=ThreadPatchIn,
        responses={200: ThreadOut, 204: None, **errors(404, 422)},
    )
    def patch(self, request, thread_id):
        thread = _thread(thread_id, action=None)  # the update authorizes
        data = validated(ThreadPatchIn, request.data)
        thread = services.thread_update(
            thread=thread, metadata=data.get("metadata"), ttl=data.get("ttl")
        )
        if request.headers.get("Prefer") == "return=minimal":
            return Response(status=204)
        return Response(thread_out(thread))

    @extend_schema(
        operation_id="threads_delete",
        summary="Delete a thread, its runs and its checkpoints",
        responses={204: None, **errors(404, 422)},
    )
    def delete(self, request, thread_id):
        services.thread_delete(thread=_thread(thread_id, action="delete"))
        return Response(status=204)


class ThreadSearchApi(APIView):
    @extend_schema(
        operation_id="threads_search",
        summary="Search threads",
        request=ThreadSearchIn,
        parameters=PAGINATION_HEADERS,
        responses={
            200: OpenApiResponse(selected_items(ThreadOut)(many=True), description=SELECTED),
            **errors(422),
        },
    )
    def post(self, request):
        data = validated(ThreadSearchIn, request.data)
        sort_by = data.get("sort_by")
        qs = selectors.thread_search(
            ids=data.get("ids"),
            metadata=data.get("metadata"),
            values=data.get("values"),
            status=data.get("status"),
            sort_by="updated_at" if sort_by == "state_updated_at" else sort_by,
            sort_order=data.get("sort_order"),
        )
        return search_page(qs, data, thread_out)


class ThreadCountApi(APIView):
    @extend_schema(
        operation_id="threads_count",
        summary="Count threads",
        request=ThreadSearchIn,
        responses={200: OpenApiTypes.INT, **errors(422)},
    )
    def post(self, request):
        data = validated(ThreadSearchIn, request.data)
        qs = selectors.thread_search(
            metadata=data.get("metadata"), values=data.get("values"), status=data.get("status")
        )
        return Response(qs.count())


class ThreadStateApi(APIView):
    @extend_schema(
        operation_id="threads_get_state",
        summary="A thread's latest state",
        parameters=[OpenApiParameter("subgraphs", bool, description="include subgraph states")],
        responses={200: ThreadStateOut, **errors(404, 422)},
    )
    def get(self, request, thread_id):
        subgraphs = query_bool(request.query_params, "subgraphs")
        return Response(state.thread_get_state(thread=_thread(thread_id), subgraphs=subgraphs))

    @extend_schema(
        operation_id="threads_update_state",
        summary="Write to a thread's state (a new checkpoint)",
        request=StateUpdateIn,
        responses={200: ThreadStateUpdateOut, **errors(400, 404, 409, 422)},
    )
    def post(self, request, thread_id):
        thread = _thread(thread_id, action="update")
        data = validated(StateUpdateIn, request.data)
        checkpoint = data.get("checkpoint") or {}
        if data.get("checkpoint_id"):
            checkpoint = {**checkpoint, "checkpoint_id": data["checkpoint_id"]}
        result = services.thread_update_state(
            thread=thread,
            values=data.get("values"),
            as_node=data.get("as_node"),
            checkpoint=checkpoint,
        )
        return Response(result)


class ThreadStateAtCheckpointApi(APIView):
    @extend_schema(
        operation_id="threads_get_state_at_checkpoint",
        summary="A thread's state at a checkpoint",
        responses={200: ThreadStateOut, **errors(404, 422)},
    )
    def get(self, request, thread_id, checkpoint_id):
        return Response(
            state.thread_get_state(
                thread=_thread(thread_id), checkpoint={"checkpoint_id": checkpoint_id}
            )
        )


class StateAtCheckpointIn(serializers.Serializer):
    checkpoint = CheckpointIn()
    subgraphs = StrictBooleanField(required=False, default=False)


class ThreadStateCheckpointApi(ThreadStateAtCheckpointApi):
    """`POST /threads/{id}/state/checkpoint`: what the SDKs' `get_state(checkpoint=…)`
    sends; `GET` keeps meaning "the checkpoint whose id is `checkpoint`"."""

    @extend_schema(
        operation_id="threads_get_state_at_checkpoint_named_checkpoint",
        summary="A thread's state at the checkpoint whose id is 'checkpoint'",
        responses={200: ThreadStateOut, **errors(404, 422)},
    )
    def get(self, request, thread_id, checkpoint_id="checkpoint"):
        return super().get(request, thread_id, checkpoint_id)

    @extend_schema(
        operation_id="threads_post_state_at_checkpoint",
        summary="A thread's state at a checkpoint (given in the body)",
        request=StateAtCheckpointIn,
        responses={200: ThreadStateOut, **errors(404, 422)},
    )
    def post(self, request, thread_id):
        thread = _thread(thread_id)
        data = validated(StateAtCheckpointIn, request.data)
        checkpoint = {k: v for k, v in dict(data["checkpoint"]).items() if v is not None}
        checkpoint.pop("thread_id", None)
        return Response(
            state.thread_get_state(
                thread=thread, checkpoint=checkpoint, subgraphs=data["subgraphs"]
            )
        )


class ThreadHistoryApi(APIView):
    @extend_schema(
        operation_id="threads_history_list",
        summary="A thread's past states, newest first",
        parameters=[
            OpenApiParameter("limit", int, description="how many states (default 1)"),
            OpenApiParameter("before", str, description="states before this checkpoint id"),
        ],
        responses={200: ThreadStateOut(many=True), **errors(404, 422)},
    )
    def get(self, request, thread_id):
        limit = query_int(request.query_params, "limit", 1, min_value=1)
        before = request.query_params.get("before")
        return Response(
            state.thread_history(
                thread=_thread(thread_id),
                limit=limit,
                before={"checkpoint_id": before} if before else None,
            )
        )

    @extend_schema(
        operation_id="threads_history",
        summary="A thread's past states, newest first, filtered",
        request=HistoryIn,
        responses={200: ThreadStateOut(many=True), **errors(404, 422)},
    )
    def post(self, request, thread_id):
        thread = _thread(thread_id)
        data = validated(HistoryIn, request.data)
        return Response(
            state.thread_history(
                thread=thread,
                limit=data["limit"],
                before=data.get("before"),
                metadata=data.get("metadata"),
                checkpoint=data.get("checkpoint"),
            )
        )


class ThreadCopyApi(APIView):
    @extend_schema(
        operation_id="threads_copy",
        summary="A new thread with a copy of this one's state and checkpoints",
        request=None,
        responses={200: ThreadOut, **errors(404, 409, 422)},
    )
    def post(self, request, thread_id):
        return Response(thread_out(services.thread_copy(thread=_thread(thread_id))))


class ThreadStorageApi(APIView):
    @extend_schema(
        operation_id="threads_get_storage",
        summary="The bytes a thread's checkpoints occupy, as stored",
        responses={200: ThreadStorageOut, **errors(404, 422)},
    )
    def get(self, request, thread_id):
        return Response(selectors.thread_storage(_thread(thread_id)))


class ThreadPruneIn(serializers.Serializer):
    thread_ids = serializers.ListField(child=StrictUUID(), max_length=1000)
    strategy = serializers.ChoiceField(
        choices=["delete", "keep_latest"], required=False, default="delete"
    )


class ThreadPruneOut(serializers.Serializer):
    pruned_count = serializers.IntegerField()


class ThreadPruneApi(APIView):
    @extend_schema(
        operation_id="threads_prune",
        summary="Delete threads, or keep only their latest checkpoints",
        request=ThreadPruneIn,
        responses={200: ThreadPruneOut, **errors(422)},
    )
    def post(self, request):
        data = validated(ThreadPruneIn, request.data)
        pruned = services.threads_prune(thread_ids=data["thread_ids"], strategy=data["strategy"])
        return Response({"pruned_count": pruned})
