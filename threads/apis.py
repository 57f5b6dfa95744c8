"""The threads endpoints of the LangGraph Server API."""

from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from cronsvc.http.inputs import (
    MAX_INT,
    AnyJSON,
    JSONObject,
    StrictUUID,
    query_int,
    require_uuid,
    validated,
)
from cronsvc.http.outputs import iso
from cronsvc.http.pagination import search_page
from threads import selectors, services, state
from threads.models import Thread

THREAD_FIELDS = [
    "thread_id",
    "created_at",
    "updated_at",
    "state_updated_at",
    "metadata",
    "config",
    "status",
    "values",
    "interrupts",
]


def thread_out(thread: Thread, select: list[str] | None = None) -> dict:
    data = {
        "thread_id": str(thread.thread_id),
        "created_at": iso(thread.created_at),
        "updated_at": iso(thread.updated_at),
        "state_updated_at": iso(thread.updated_at),
        "metadata": thread.metadata,
        "config": {},
        "status": thread.status,
        "values": thread.values,
        "interrupts": {},
        "error": selectors.thread_last_error(thread)
        if thread.status == Thread.Status.ERROR
        else None,
    }
    return {k: data[k] for k in select} if select else data


class ThreadCreateIn(serializers.Serializer):
    thread_id = StrictUUID(required=False, allow_null=True)
    metadata = JSONObject(required=False, allow_null=True)
    if_exists = serializers.ChoiceField(choices=["raise", "do_nothing"], required=False)
    ttl = JSONObject(required=False, allow_null=True)
    supersteps = serializers.ListField(required=False, allow_null=True)


class ThreadPatchIn(serializers.Serializer):
    metadata = JSONObject(required=False, allow_null=True)
    ttl = JSONObject(required=False, allow_null=True)


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
    thread_id = serializers.CharField(required=False, allow_null=True)
    checkpoint_ns = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    checkpoint_id = serializers.CharField(required=False, allow_null=True)
    checkpoint_map = JSONObject(required=False, allow_null=True)


class StateUpdateIn(serializers.Serializer):
    values = AnyJSON(required=False, allow_null=True)
    as_node = serializers.CharField(required=False, allow_null=True)
    checkpoint = CheckpointIn(required=False, allow_null=True)
    checkpoint_id = serializers.CharField(required=False, allow_null=True)


class HistoryIn(serializers.Serializer):
    # The server's default is 1 (the SDK always sends a limit).
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=1)
    before = CheckpointIn(required=False, allow_null=True)
    metadata = JSONObject(required=False, allow_null=True)
    checkpoint = CheckpointIn(required=False, allow_null=True)


def _thread(thread_id) -> Thread:
    require_uuid(thread_id, "thread")
    return selectors.thread_get_or_404(thread_id)


class ThreadsApi(APIView):
    def post(self, request):
        data = validated(ThreadCreateIn, request.data)
        thread = services.thread_create(
            thread_id=data.get("thread_id"),
            metadata=data.get("metadata"),
            if_exists=data.get("if_exists") or "raise",
        )
        return Response(thread_out(thread))


class ThreadApi(APIView):
    def get(self, request, thread_id):
        return Response(thread_out(_thread(thread_id)))

    def patch(self, request, thread_id):
        thread = _thread(thread_id)
        data = validated(ThreadPatchIn, request.data)
        thread = services.thread_update(thread=thread, metadata=data.get("metadata"))
        if request.headers.get("Prefer") == "return=minimal":
            return Response(status=204)
        return Response(thread_out(thread))

    def delete(self, request, thread_id):
        services.thread_delete(thread=_thread(thread_id))
        return Response(status=204)


class ThreadSearchApi(APIView):
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
    def post(self, request):
        data = validated(ThreadSearchIn, request.data)
        qs = selectors.thread_search(
            metadata=data.get("metadata"), values=data.get("values"), status=data.get("status")
        )
        return Response(qs.count())


class ThreadStateApi(APIView):
    def get(self, request, thread_id):
        subgraphs = request.query_params.get("subgraphs", "false").lower() == "true"
        return Response(state.thread_get_state(thread=_thread(thread_id), subgraphs=subgraphs))

    def post(self, request, thread_id):
        thread = _thread(thread_id)
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
    def get(self, request, thread_id, checkpoint_id):
        return Response(
            state.thread_get_state(
                thread=_thread(thread_id), checkpoint={"checkpoint_id": checkpoint_id}
            )
        )


class ThreadHistoryApi(APIView):
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
