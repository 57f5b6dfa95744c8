"""The API's and a worker's startup objects are frozen out of the cyclic
collector's generations (cronsvc.heap): its full collections walk only what
requests and runs created since."""

import subprocess
import sys

from tests.conftest import ROOT, subprocess_env


def test_the_asgi_application_freezes_what_its_start_created(tmp_path):
    probe = (
        "import gc; before = gc.get_freeze_count(); import cronsvc.asgi; "
        "print(before, gc.get_freeze_count(), len(gc.get_objects()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()
    before, frozen, collected = map(int, out)
    assert before == 0
    assert frozen > 50_000  # Django, DRF, Celery, LangGraph...
    assert collected < frozen / 10  # what the collector still walks
