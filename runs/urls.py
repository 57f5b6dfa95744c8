from django.urls import path

from runs import apis, mcp

urlpatterns = [
    path("mcp", mcp.McpApi.as_view()),
    path("mcp/", mcp.McpSlashApi.as_view()),
    path("runs", apis.StatelessRunsApi.as_view()),
    path("runs/wait", apis.StatelessRunWaitApi.as_view()),
    path("runs/stream", apis.StatelessRunStreamApi.as_view()),
    path("runs/batch", apis.RunBatchApi.as_view()),
    path("runs/cancel", apis.RunsCancelApi.as_view()),
    path("runs/<str:run_id>/stream", apis.StatelessRunJoinStreamApi.as_view()),
    path("threads/<str:thread_id>/stream", apis.ThreadJoinStreamApi.as_view()),
    path("threads/<str:thread_id>/runs", apis.ThreadRunsApi.as_view()),
    path("threads/<str:thread_id>/runs/wait", apis.ThreadRunWaitApi.as_view()),
    path("threads/<str:thread_id>/runs/stream", apis.ThreadRunStreamApi.as_view()),
    path("threads/<str:thread_id>/runs/<str:run_id>", apis.RunApi.as_view()),
    path("threads/<str:thread_id>/runs/<str:run_id>/join", apis.RunJoinApi.as_view()),
    path("threads/<str:thread_id>/runs/<str:run_id>/cancel", apis.RunCancelApi.as_view()),
    path("threads/<str:thread_id>/runs/<str:run_id>/webhook", apis.RunWebhookApi.as_view()),
    path("threads/<str:thread_id>/runs/<str:run_id>/stream", apis.RunJoinStreamApi.as_view()),
]
