from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from cronsvc import apis, health

urlpatterns = [
    path("ok", apis.OkApi.as_view()),
    path("info", apis.InfoApi.as_view()),
    path("health", health.HealthApi.as_view()),
    path("metrics", apis.MetricsApi.as_view()),
    path("assistants", apis.AssistantsApi.as_view()),
    path("assistants/search", apis.AssistantSearchApi.as_view()),
    path("assistants/count", apis.AssistantCountApi.as_view()),
    path("assistants/<str:assistant_id>", apis.AssistantApi.as_view()),
    path("assistants/<str:assistant_id>/graph", apis.AssistantGraphApi.as_view()),
    path("assistants/<str:assistant_id>/schemas", apis.AssistantSchemasApi.as_view()),
    path("assistants/<str:assistant_id>/subgraphs", apis.AssistantSubgraphsApi.as_view()),
    path(
        "assistants/<str:assistant_id>/subgraphs/<str:namespace>",
        apis.AssistantSubgraphsAtApi.as_view(),
    ),
    path("assistants/<str:assistant_id>/versions", apis.AssistantVersionsApi.as_view()),
    path("assistants/<str:assistant_id>/latest", apis.AssistantLatestApi.as_view()),
    # crons before runs: /threads/{id}/runs/crons is not a run id.
    path("", include("crons.urls")),
    path("", include("runs.urls")),
    path("", include("threads.urls")),
    path("", include("store.urls")),
    path("admin/", admin.site.urls),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="schema"),
    # GET only: the Swagger page has no answer to OPTIONS (it was a 500).
    path(
        "docs",
        SpectacularSwaggerView.as_view(url_name="schema", http_method_names=["get", "head"]),
        name="docs",
    ),
]


def not_found(request, exception=None):
    """Unknown routes answer JSON, like every other error of the API."""
    return JsonResponse({"detail": "Not Found"}, status=404)


handler404 = not_found
