from django.urls import path

from threads import apis

urlpatterns = [
    path("threads", apis.ThreadsApi.as_view()),
    path("threads/search", apis.ThreadSearchApi.as_view()),
    path("threads/count", apis.ThreadCountApi.as_view()),
    path("threads/prune", apis.ThreadPruneApi.as_view()),
    path("threads/<str:thread_id>", apis.ThreadApi.as_view()),
    path("threads/<str:thread_id>/state", apis.ThreadStateApi.as_view()),
    path("threads/<str:thread_id>/state/checkpoint", apis.ThreadStateCheckpointApi.as_view()),
    path(
        "threads/<str:thread_id>/state/<str:checkpoint_id>",
        apis.ThreadStateAtCheckpointApi.as_view(),
    ),
    path("threads/<str:thread_id>/history", apis.ThreadHistoryApi.as_view()),
    path("threads/<str:thread_id>/copy", apis.ThreadCopyApi.as_view()),
    path("threads/<str:thread_id>/storage", apis.ThreadStorageApi.as_view()),
]
