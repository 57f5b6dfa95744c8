"""OpenAPI documentation helpers: the schema class every view uses, error
responses in the `{"detail": ...}` shape, and the event-stream response.

Views document themselves with `@extend_schema(request=..., responses=...)`
next to their code; what is the same for every view lives here:
- path ids are typed by name (`PATH_IDS`), since the routes take any string
  and the views answer 422 for a malformed id, as the LangGraph Server does;
- an operation is tagged by the app its view lives in (`TAGS`).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from cronsvc.http.outputs import ErrorSerializer, ValidationErrorSerializer


def _path_id(name: str, what: str, type_=OpenApiTypes.UUID) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.PATH, description=what)


PATH_IDS = {
    "thread_id": _path_id("thread_id", "The thread's ID."),
    "run_id": _path_id("run_id", "The run's ID."),
    "cron_id": _path_id("cron_id", "The cron's ID."),
    "assistant_id": _path_id("assistant_id", "The assistant's ID (a UUID).", OpenApiTypes.STR),
    "checkpoint_id": _path_id("checkpoint_id", "A checkpoint's ID.", OpenApiTypes.STR),
}
# Only GET /assistants/{assistant_id}/graph also takes a graph name.
ASSISTANT_ID_OR_GRAPH = _path_id(
    "assistant_id",
    "The assistant's ID (a UUID), or the name of a graph in langgraph.json for its "
    "default assistant.",
    OpenApiTypes.STR,
)

# Top-level module of a view -> its tag; the assistants and system views of
# `cronsvc` say theirs.
TAGS = {"crons": "crons", "runs": "runs", "threads": "threads", "store": "store"}

ERROR_DESCRIPTIONS = {
    400: "Bad request.",
    403: "Missing or invalid API key (x-api-key header), when keys are configured.",
    404: "Not found.",
    409: "Conflict.",
    422: "Invalid input: the body, a query parameter or an id.",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Error responses with the `{"detail": ...}` body; 403 (API key) always."""
    return {
        code: OpenApiResponse(
            ValidationErrorSerializer if code == 422 else ErrorSerializer,
            description=ERROR_DESCRIPTIONS[code],
        )
        for code in sorted({403, *codes})
    }


EVENT_STREAM = {
    (200, "text/event-stream"): OpenApiResponse(
        OpenApiTypes.STR,
        description=(
            "Server-sent events (`event:`, `data:` JSON, `id:`) until the run ends. "
            "`Location` is where to reconnect with `Last-Event-ID`."
        ),
    )
}


class ApiSchema(AutoSchema):
    def get_override_parameters(self):
        params = list(super().get_override_parameters())
        named = {p.name for p in params if isinstance(p, OpenApiParameter)}
        for name, parameter in PATH_IDS.items():
            if "{" + name + "}" in self.path and name not in named:
                params.append(parameter)
        return params

    def get_serializer_name(self, serializer, direction) -> str:
        # AssistantOut -> Assistant, AssistantCreateIn -> AssistantCreate(Request).
        name = super().get_serializer_name(serializer, direction)
        for suffix in ("Out", "In"):
            if name.endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)]
        return name

    def get_tags(self) -> list[str]:
        app = type(self.view).__module__.split(".", 1)[0]
        return [TAGS[app]] if app in TAGS else super().get_tags()
