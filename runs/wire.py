"""Wire formats of runs, as the LangGraph Server sends them: used by the API and
by webhook delivery alike."""

from __future__ import annotations

from cronsvc.http.outputs import iso
from runs.models import Run


def run_out(run: Run) -> dict:
    return {
        "run_id": str(run.run_id),
        "thread_id": str(run.thread_id),
        "assistant_id": str(run.assistant_id) if run.assistant_id else None,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.updated_at),
        "status": run.status,
        "metadata": run.metadata,
        "kwargs": run.kwargs,
        "multitask_strategy": run.multitask_strategy,
        "langsmith_session_name": None,
    }


RUN_FIELDS = [
    "run_id", "thread_id", "assistant_id", "created_at", "updated_at", "status", "metadata",
    "kwargs", "multitask_strategy", "langsmith_session_name",
]


def run_result(run: Run) -> dict:
    """What wait/join answer: the final values, or the error as the server shows it."""
    if run.status == Run.Status.ERROR:
        output = run.output or {}
        return {"__error__": {"error": output.get("error", "Error"), "message": run.error or ""}}
    return run.output if run.output is not None else {}
