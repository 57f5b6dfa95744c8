#!/usr/bin/env python
"""Screenshots of the cron admin for the README: docs/admin-cron-list.png and
docs/admin-cron-change.png.

    .venv/bin/python scripts/screenshots.py [--out docs]

Builds a throwaway instance in a temporary data folder (SQLite, filesystem
broker: nothing touches your database), adds a few crons through the services,
fires them through the tick path and executes their runs in-process, serves
the admin on a free loopback port and photographs it with Debian's headless
Chromium (/usr/bin/chromium + /usr/bin/chromedriver, `scripts/browser.sh`
installs them; nothing is downloaded). Not run by `.ci/run`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project and tests.browser
USER, PASSWORD = "operator", "screenshots-only"
WIDTH = 1600


def isolated_environment(data_dir: Path) -> None:
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CRONSVC_API_KEYS"):
        os.environ.pop(name, None)
    os.environ["CRONSVC_DATA_DIR"] = str(data_dir)
    os.environ["CRONSVC_STATIC_ROOT"] = str(data_dir / "static")
    os.environ["CELERY_QUEUE"] = "cronsvc-screenshots"
    os.environ["DJANGO_SETTINGS_MODULE"] = "cronsvc.settings"
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything


def seed() -> str:
    """A handful of crons as an operator would have them; returns the one to show."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone as djtz

    from crons.dispatch import cron_run_now
    from crons.services import cron_create, cron_update
    from crons.ticking import fire_due
    from cronsvc.selectors import assistant_get_or_404
    from runs.tasks import drain
    from threads.services import thread_create

    call_command("migrate", verbosity=0, interactive=False)
    get_user_model().objects.create_superuser(USER, "ops@example.com", PASSWORD)
    agent = assistant_get_or_404("agent")
    question = {"input": {"messages": [{"role": "user", "content": "What time is it?"}]}}
    now = djtz.now()

    report_thread = thread_create(metadata={"team": "finance"})
    daily = cron_create(
        assistant=agent,
        thread=report_thread,
        schedule="30 9 * * 1-5",
        timezone="Europe/Paris",
        payload={**question, "metadata": {"report": "daily"}},
        metadata={"team": "finance", "report": "daily"},
        # As if beat had been down for three days: its ticks show as skipped.
        now=now - timedelta(days=3),
    )
    # Created two hours ago and never ticked since: the scheduler records the
    # missed ticks as skipped and fires the latest one if it is recent enough.
    cron_create(
        assistant=agent,
        schedule="*/15 * * * *",
        payload=question,
        metadata={"team": "ops"},
        on_run_completed="keep",
        now=now - timedelta(hours=2),
    )
    cron_create(
        assistant=agent,
        schedule="0 0 L * *",
        timezone="America/New_York",
        payload=question,
        metadata={"team": "billing"},
        on_run_completed="keep",
    )
    paused = cron_create(
        assistant=agent, schedule="0 */6 * * *", timezone="Asia/Tokyo", payload=question
    )
    cron_update(cron=paused, enabled=False)
    cron_create(
        assistant=agent,
        schedule="* * * * * */30",
        payload=question,
        end_time=now + timedelta(days=1),
        on_run_completed="keep",
    )
    fire_due(now=now)
    for _ in range(3):
        cron_run_now(cron=daily)
        drain(str(report_thread.pk))
        time.sleep(1)  # one tick per second and cron
    drain()
    return str(daily.pk)


def serve():
    """The ASGI application under uvicorn in a thread, as every entry point serves it."""
    import socket

    import uvicorn

    from cronsvc.asgi import application

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(application, lifespan="on", access_log=False, log_level="warning")
    )
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}"


def photograph(driver, url: str, path: Path, min_height: int = 700) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    driver.find_element(By.ID, "content")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, max(min_height, min(height, 4000)))
    driver.save_screenshot(str(path))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs")
    args = parser.parse_args()
    from tests.browser import chromium, installed

    if not installed():
        print("needs /usr/bin/chromium and /usr/bin/chromedriver: run scripts/browser.sh")
        return 1
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="cronsvc-screenshots-") as tmp:
        isolated_environment(Path(tmp))
        import django

        django.setup()
        cron_id = seed()
        httpd, base = serve()
        driver = chromium(
            Path(tmp) / "chromium-profile", "--hide-scrollbars", f"--window-size={WIDTH},900"
        )
        try:
            from selenium.webdriver.common.by import By

            driver.get(f"{base}/admin/login/?next=/admin/")
            driver.find_element(By.NAME, "username").send_keys(USER)
            driver.find_element(By.NAME, "password").send_keys(PASSWORD)
            driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
            driver.find_element(By.ID, "content")
            # More room for the tables: the app list stays folded.
            driver.execute_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
            photograph(driver, f"{base}/admin/crons/cron/", out / "admin-cron-list.png", 620)
            photograph(
                driver, f"{base}/admin/crons/cron/{cron_id}/change/", out / "admin-cron-change.png"
            )
        finally:
            driver.quit()
            httpd.should_exit = True
            from cronsvc import checkpointer

            checkpointer.reset()
    return 0


if __name__ == "__main__":
    sys.exit(main())
