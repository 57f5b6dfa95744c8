"""The crons endpoints of the LangGraph Server API."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from crons import selectors, services
from crons.dispatch import CRON_KEYS, POLICY_KEYS
from crons.models import Cron, Tick
from crons.wire import (
    CRON_FIELDS,
    BackfillOut,
    CronOut,
    RetryPolicyField,
    ScheduleOut,
    TickOut,
    cron_columns,
    cron_out,
    tick_out,
)
from cronsvc import statements
from cronsvc.dbclock import db_now
from cronsvc.errors import Conflict, Invalid, ServiceError
from cronsvc.http.inputs import (
    MAX_INT,
    RunOptionsIn,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictUUID,
    column_length,
    query_int,
    require_uuid,
    validated,
)
from cronsvc.http.outputs import selected_items
from cronsvc.http.pagination import PAGINATION_HEADERS, SELECTED, page, paginated, search_page
from cronsvc.http.schema import errors
from cronsvc.services import assistant_resolve
from runs.wire import RunOut, run_out
from threads.selectors import thread_get_or_404

OVERLAP_POLICIES = [choice.value for choice in Cron.OverlapPolicy]
CATCHUP = [choice.value for choice in Cron.Catchup]


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
    catchup_window = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_INT,
        help_text=(
            "seconds a missed instant (beat or database down) may still fire, older ones are "
            "recorded skipped; null: the server's CRONSVC_MISSED_TICK_GRACE (default 300)"
        ),
    )
    catchup = serializers.ChoiceField(
        choices=CATCHUP,
        required=False,
        allow_null=True,
        help_text=(
            "which missed instants within catchup_window fire: latest (the default: the "
            "newest only) or all (every one, in order, subject to overlap_policy, at most "
            "100 per scheduler pass)"
        ),
    )
    jitter = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=MAX_INT,
        help_text=(
            "each instant's run starts up to this many seconds late, by an offset stable for "
            "(cron, instant) and always before the next instant; null or 0: on time"
        ),
    )

    retry_policy = RetryPolicyField(
        required=False,
        allow_null=True,
        help_text=(
            "a cron-fired run that ends in error or timeout is attempted again (the same run, "
            "from its last checkpoint) after initial_interval * backoff_coefficient^(n-1) "
            "seconds, at most max_interval, up to max_attempts attempts in all; keys left out "
            "take their defaults; null or max_attempts 1: no retry (the default)"
        ),
    )
    max_consecutive_failures = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_INT,
        help_text=(
            "after this many of its runs failed in a row (after retries) the cron disables "
            "itself with paused_reason; null: never (the default)"
        ),
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
    enabled = StrictBooleanField(required=False, allow_null=True)
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
    enabled = StrictBooleanField(required=False, allow_null=True)
    on_run_completed = serializers.ChoiceField(
        choices=["delete", "keep"], required=False, allow_null=True
    )


class CronSearchIn(serializers.Serializer):
    assistant_id = StrictCharField(required=False, allow_null=True)
    thread_id = StrictUUID(required=False, allow_null=True)
    enabled = StrictBooleanField(required=False, allow_null=True)
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
        catchup_window=data.get("catchup_window"),
        catchup=data.get("catchup"),
        jitter=data.get("jitter"),
        retry_policy=data.get("retry_policy"),
        max_consecutive_failures=data.get("max_consecutive_failures"),
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
        pk = require_uuid(cron_id, "cron")
        if isinstance(request.data, dict) and not request.data:
            raise ServiceError("Request body cannot be empty")
        data = validated(CronPatchIn, request.data)
        run_fields = {
            k: v for k, v in request.data.items() if k not in CRON_KEYS and k not in POLICY_KEYS
        }
        kwargs = {}
        # null: cleared (retry_policy: no retry)
        for name in (
            "end_time",
            "start_time",
            "max_runs",
            "catchup_window",
            "jitter",
            "retry_policy",
            "max_consecutive_failures",
        ):
            if name in data:
                kwargs[name] = data[name]
        # The update reads the cron locked, and authorizes (a 404 when it is not
        # there or hidden): no read before it.
        cron = services.cron_update(
            cron=pk,
            schedule=data.get("schedule"),
            timezone=data.get("timezone"),
            enabled=data.get("enabled"),
            on_run_completed=data.get("on_run_completed"),  # a thread cron's is ignored
            payload=run_fields,
            metadata=data.get("metadata"),
            overlap_policy=data.get("overlap_policy"),
            catchup=data.get("catchup"),
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
        filters = {
            "assistant_id": data.get("assistant_id"),
            "thread_id": data.get("thread_id"),
            "enabled": data.get("enabled"),
            "metadata": data.get("metadata"),
        }
        inputs = {
            **filters,
            "sort_by": data.get("sort_by"),
            "sort_order": data.get("sort_order"),
            "select": data.get("select"),
        }

        def build():
            # Only the columns the selected fields need are read (and decoded).
            return selectors.cron_search(
                **filters, sort_by=inputs["sort_by"], sort_order=inputs["sort_order"]
            ).only(*cron_columns(inputs["select"]))

        # Unfiltered, the total comes from counters (sent with the page's
        # statement); filtered (a metadata filter, or custom auth's), the
        # page's statement counts its rows too.
        return search_page(
            build,
            data,
            cron_out,
            total_sql=selectors.cron_counted_total_sql(**filters),
            one_statement=True,
            key=statements.key_of("crons.search", inputs),
        )


class CronCountApi(APIView):
    @extend_schema(
        operation_id="crons_count",
        summary="Count crons",
        request=CronCountIn,
        responses={200: OpenApiTypes.INT, **errors(422)},
    )
    def post(self, request):
        data = validated(CronCountIn, request.data)
        filters = {
            "assistant_id": data.get("assistant_id"),
            "thread_id": data.get("thread_id"),
            "metadata": data.get("metadata"),
        }
        return Response(selectors.cron_count(**filters))


# ------------------------------------------------------ scheduler control


class _NoOtherKeys(serializers.Serializer):
    """Refuses keys it does not know: a policy override sent to a server that
    does not apply it yet is a 422, not silently ignored."""

    def validate(self, attrs):
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if "overlap_policy" in unknown:
            raise serializers.ValidationError(
                "overlap_policy is not supported yet: ticks fire as the cron's "
                "multitask_strategy says"
            )
        if unknown:
            raise serializers.ValidationError(f"Unknown fields: {', '.join(unknown)}")
        return attrs


class CronTriggerIn(_NoOtherKeys):
    """The body may be omitted or `{}`."""

    overlap_policy = serializers.ChoiceField(
        choices=OVERLAP_POLICIES,
        required=False,
        allow_null=True,
        help_text="this tick only, instead of the cron's (stateless crons; a thread cron: 422)",
    )


class CronBackfillIn(_NoOtherKeys):
    """The range of instants to fire: [start, end), end at most now, start
    within the tick retention, at most 1,000 instants."""

    start = serializers.DateTimeField(help_text="ISO 8601; the first instant considered")
    end = serializers.DateTimeField(help_text="ISO 8601, at most now; excluded")
    overlap_policy = serializers.ChoiceField(
        choices=OVERLAP_POLICIES,
        required=False,
        allow_null=True,
        help_text=(
            "how the backfill's runs overlap each other and the cron's runs going on "
            "(stateless crons; a thread cron: 422); default allow_all"
        ),
    )


def _cron_to_update(cron_id) -> Cron:
    """The cron, as PATCH /runs/crons/{id} authorizes: crons.update (custom auth)."""
    require_uuid(cron_id, "cron")
    return selectors.cron_get_or_404(cron_id, action="update")


def _cron_to_read(cron_id) -> Cron:
    require_uuid(cron_id, "cron")
    return selectors.cron_get_or_404(cron_id)


class CronTriggerApi(APIView):
    @extend_schema(
        operation_id="crons_trigger",
        summary="Fire a cron once, now (a manual tick; also a disabled cron)",
        request=CronTriggerIn,
        responses={200: RunOut, **errors(404, 409, 422)},
    )
    def post(self, request, cron_id):
        cron = _cron_to_update(cron_id)
        data = validated(CronTriggerIn, request.data)
        tick = services.cron_trigger(cron=cron, overlap_policy=data.get("overlap_policy"))
        run = selectors.tick_run(tick)
        if tick.status != Tick.Status.FIRED or run is None:
            raise Conflict(f"Cron '{cron.cron_id}' was not fired: {tick.reason}")
        location = (
            f"/threads/{run.thread_id}/runs/{run.run_id}"
            if cron.thread_id
            else f"/runs/{run.run_id}"
        )
        return Response(run_out(run), headers={"Content-Location": location})


class CronBackfillApi(APIView):
    @extend_schema(
        operation_id="crons_backfill",
        summary="Fire each instant of [start, end) that has not fired, once",
        request=CronBackfillIn,
        responses={200: BackfillOut, **errors(404, 422)},
    )
    def post(self, request, cron_id):
        cron = _cron_to_update(cron_id)
        data = validated(CronBackfillIn, request.data)
        report = services.cron_backfill(
            cron=cron,
            start=data["start"],
            end=data["end"],
            overlap_policy=data.get("overlap_policy"),
        )
        return Response(report.as_dict())


class CronTicksApi(APIView):
    @extend_schema(
        operation_id="crons_ticks",
        summary="A cron's ticks, newest first",
        parameters=[
            OpenApiParameter("limit", int, description="1 to 1000, default 10"),
            OpenApiParameter("offset", int, description="default 0"),
            OpenApiParameter("status", str, enum=Tick.Status.values),
            *PAGINATION_HEADERS,
        ],
        responses={200: TickOut(many=True), **errors(404, 422)},
    )
    def get(self, request, cron_id):
        cron = _cron_to_read(cron_id)
        params = request.query_params
        limit = query_int(params, "limit", 10, min_value=1)
        if limit > 1000:
            raise Invalid(f"Invalid limit {limit}: at most 1000")
        offset = query_int(params, "offset", 0)
        status = params.get("status")
        if status is not None and status not in Tick.Status.values:
            raise Invalid(f"Invalid status '{status}'. Expected one of: {Tick.Status.values}")
        qs = selectors.cron_ticks(cron, status=status)
        ticks = list(page(qs, offset, limit))
        runs = selectors.tick_runs(ticks)
        return paginated(
            [tick_out(t, runs) for t in ticks], total=qs.count(), offset=offset, limit=limit
        )


class CronScheduleApi(APIView):
    @extend_schema(
        operation_id="crons_schedule",
        summary="A cron's next instants, as beat computes them",
        parameters=[OpenApiParameter("limit", int, description="1 to 100, default 10")],
        responses={200: ScheduleOut, **errors(404, 422)},
    )
    def get(self, request, cron_id):
        cron = _cron_to_read(cron_id)
        limit = query_int(request.query_params, "limit", 10, min_value=1)
        if limit > 100:
            raise Invalid(f"Invalid limit {limit}: at most 100")
        instants = selectors.cron_next_fires(cron, after=db_now(), limit=limit)
        return Response(
            {"timezone": cron.timezone or "UTC", "next": [t.isoformat() for t in instants]}
        )
