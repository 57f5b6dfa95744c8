from django.urls import path

from crons import apis

urlpatterns = [
    path("runs/crons", apis.CronsApi.as_view()),
    path("runs/crons/search", apis.CronSearchApi.as_view()),
    path("runs/crons/count", apis.CronCountApi.as_view()),
    path("runs/crons/<str:cron_id>", apis.CronApi.as_view()),
    path("runs/crons/<str:cron_id>/trigger", apis.CronTriggerApi.as_view()),
    path("runs/crons/<str:cron_id>/backfill", apis.CronBackfillApi.as_view()),
    path("runs/crons/<str:cron_id>/ticks", apis.CronTicksApi.as_view()),
    path("runs/crons/<str:cron_id>/schedule", apis.CronScheduleApi.as_view()),
    path("threads/<str:thread_id>/runs/crons", apis.ThreadCronsApi.as_view()),
]
