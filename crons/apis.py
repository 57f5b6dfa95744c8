"""The crons endpoints of the LangGraph Server API."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from crons import selectors, services
from crons.dispatch import CRON_KEYS, POLICY_KEYS
from crons.models import Cron
from crons.wire import CRON_FIELDS, CronOut, cron_columns, cron_out
from cronsvc.errors import ServiceError
from cronsvc.http.inputs import (
    MAX_INT,
    RunOptionsIn,
    StrictCharField,
    StrictUUID,
    column_length,
    require_uuid,
    validated,
)
from cronsvc.http.outputs import selected_items
from cronsvc.http.pagination import PAGINATION_HEADERS, SELECTED, search_page
from cronsvc.http.schema import errors
from cronsvc.services import assistant_resolve
from threads.selectors import thread_get_or_404

OVERLAP_POLICIES = [choice.value for choice in Cron.OverlapPolicy]


class PolicyIn(serializers.Serializer):
    """cronsvc's scheduler control: none of these is LangGraph's; not sent,
    each keeps the LangGraph behaviour."""

    overlap_policy = serializers.ChoiceField(
        choices=OVERLAP_POLICIES,
        required=False,
        allow_null=True,
        help_text=(
            "stateless crons only (a thread cron: 422, it uses multitask_strategy): what a "
            "tick does while an earlier run of the cron is pending or running; "
            "default allow_all"
        ),
    )
    start_time = serializers.DateTimeField(
        required=False, allow_null=True, help_text="no instant before it fires"
    )
    max_runs = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_INT,
        help_text="scheduled ticks that may fire, then the cron disables itself; null: no limit",
    )


class CronCreateIn(RunOptionsIn, PolicyIn):
    """A cron: its schedule, and the run each tick starts (the run options)."""

    assistant_id = StrictCharField()
    schedule = StrictCharField(max_length=column_length(Cron, "schedule"))
    timezone = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=column_length(Cron, "timezone"),
    )
    end_time = serializers.DateTimeField(required=False, allow_null=True)
    enabled = serializers.BooleanField(required=False, allow_null=True)
    on_run_completed = serializers.ChoiceField(
        choices=["delete", "keep"], required=False, allow_null=True
    )


class CronPatchIn(RunOptionsIn, PolicyIn):
    """What changes on a cron; run options given replace those in its payload."""

    schedule = StrictCharField(required=False, max_length=column_length(Cron, "schedule"))
    timezone = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=column_length(Cron, "timezone"),
    )
    end_time = serializers.DateTimeField(required=False, allow_null=True)
    enabled = serializers.BooleanField(required=False, allow_null=True)
    on_run_completed = serializers.ChoiceField(
        choices=["delete", "keep"], required=False, allow_null=True
    )


class CronSearchIn(serializers.Serializer):
    assistant_id = StrictCharField(required=False, allow_null=True)
    thread_id = StrictUUID(required=False, allow_null=True)
    enabled = serializers.BooleanField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, allow_null=True)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=10)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_INT, default=0)
    sort_by = serializers.ChoiceField(choices=sorted(selectors.SORTABLE), required=False)
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], required=False)
    select = serializers.ListField(
        child=serializers.ChoiceField(choices=CRON_FIELDS), required=False, allow_empty=False
    )


class CronCountIn(serializers.Serializer):
    assistant_id = StrictCharField(required=False, allow_null=True)
    thread_id = StrictUUID(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, allow_null=True)


def _create(request, thread_id=None) -> Response:
    data = validated(CronCreateIn, request.data)
    thread = None
    if thread_id is not None:
        require_uuid(thread_id, "thread")
        thread = thread_get_or_404(thread_id)
    assistant = assistant_resolve(data["assistant_id"])
    # The run payload is the request as sent (as the LangGraph Server keeps it).
    payload = {k: v for k, v in request.data.items() if v is not None and k not in POLICY_KEYS}
    if thread is not None:
        payload.pop("on_run_completed", None)
    cron = services.cron_create(
        assistant=assistant,
        thread=thread,
        schedule=data["schedule"],
        timezone=data.get("timezone") or None,
        payload=payload,
        metadata=data.get("metadata") or {},
        end_time=data.get("end_time"),
        enabled=data.get("enabled") if data.get("enabled") is not None else True,
        on_run_completed=data.get("on_run_completed"),  # the service decides the default
        overlap_policy=data.get("overlap_policy"),
        start_time=data.get("start_time"),
        max_runs=data.get("max_runs"),
    )
    return Response(cron_out(cron))


class CronsApi(APIView):
    @extend_schema(
        operation_id="crons_create",
        summary="Create a stateless cron (each run on a new thread)",
        request=CronCreateIn,
        responses={200: CronOut, **errors(400, 404, 422)},
    )
    def post(self, request):
        return _create(request)


class ThreadCronsApi(APIView):
    @extend_schema(
        operation_id="crons_create_for_thread",
        summary="Create a cron on a thread",
        request=CronCreateIn,
        responses={200: CronOut, **errors(400, 404, 422)},
    )
    def post(self, request, thread_id):
        return _create(request, thread_id)


class CronApi(APIView):
    @extend_schema(
        operation_id="crons_get",
        summary="Get a cron",
        responses={200: CronOut, **errors(404, 422)},
    )
    def get(self, request, cron_id):
        require_uuid(cron_id, "cron")
        return Response(cron_out(selectors.cron_get_or_404(cron_id)))

    @extend_schema(
        operation_id="crons_patch",
        summary="Update a cron",
        request=CronPatchIn,
        responses={200: CronOut, **errors(400, 404, 422)},
    )
    def patch(self, request, cron_id):
        require_uuid(cron_id, "cron")
        if isinstance(request.data, dict) and not request.data:
            raise ServiceError("Request body cannot be empty")
        data = validated(CronPatchIn, request.data)
        cron = selectors.cron_get_or_404(cron_id, action=None)  # the update authorizes
        run_fields = {
            k: v for k, v in request.data.items() if k not in CRON_KEYS and k not in POLICY_KEYS
        }
        kwargs = {}
        for name in ("end_time", "start_time", "max_runs"):  # null: cleared
            if name in data:
                kwargs[name] = data[name]
        cron = services.cron_update(
            cron=cron,
            schedule=data.get("schedule"),
            timezone=data.get("timezone"),
            enabled=data.get("enabled"),
            on_run_completed=data.get("on_run_completed") if cron.thread_id is None else None,
            payload=run_fields,
            metadata=data.get("metadata"),
            overlap_policy=data.get("overlap_policy"),
            **kwargs,
        )
        return Response(cron_out(cron))

    @extend_schema(
        operation_id="crons_delete",
        summary="Delete a cron",
        responses={204: None, **errors(404, 422)},
    )
    def delete(self, request, cron_id):
        require_uuid(cron_id, "cron")
        services.cron_delete(cron=selectors.cron_get_or_404(cron_id, action="delete"))
        return Response(status=204)


class CronSearchApi(APIView):
    @extend_schema(
        operation_id="crons_search",
        summary="Search crons",
        request=CronSearchIn,
        parameters=PAGINATION_HEADERS,
        responses={
            200: OpenApiResponse(selected_items(CronOut)(many=True), description=SELECTED),
            **errors(422),
        },
    )
    def post(self, request):
        data = validated(CronSearchIn, request.data)
        qs = selectors.cron_search(
            assistant_id=data.get("assistant_id"),
            thread_id=data.get("thread_id"),
            enabled=data.get("enabled"),
            metadata=data.get("metadata"),
            sort_by=data.get("sort_by"),
            sort_order=data.get("sort_order"),
        )
        # Only the columns the selected fields need are read (and decoded).
        return search_page(qs.only(*cron_columns(data.get("select"))), data, cron_out)


class CronCountApi(APIView):
    @extend_schema(
        operation_id="crons_count",
        summary="Count crons",
        request=CronCountIn,
        responses={200: OpenApiTypes.INT, **errors(422)},
    )
    def post(self, request):
        data = validated(CronCountIn, request.data)
        qs = selectors.cron_search(
            assistant_id=data.get("assistant_id"),
            thread_id=data.get("thread_id"),
            metadata=data.get("metadata"),
        )
        return Response(qs.count())
