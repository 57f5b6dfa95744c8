"""The operator's path through the cron admin in a real browser: Debian's
headless Chromium driven by Selenium through Debian's chromedriver (nothing is
downloaded), against the live server, with a real Celery worker executing the
triggered run.

Skipped when /usr/bin/chromium or /usr/bin/chromedriver is missing
(scripts/browser.sh installs both with apt).
"""

from __future__ import annotations

import pytest

from crons.models import Cron
from runs.models import Run
from tests.browser import chromium, installed

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.skipif(
        not installed(),
        reason="Debian's chromium and chromium-driver are not installed (scripts/browser.sh)",
    ),
]


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path / "chromium-profile", "--window-size=1400,1000")
    yield driver
    driver.quit()


@pytest.fixture
def operator(django_user_model):
    django_user_model.objects.create_superuser("operator", "ops@example.com", "s3cret-pass")
    return "operator", "s3cret-pass"


def test_operator_creates_fixes_disables_and_runs_a_cron(browser, live_server, worker, operator):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)

    def page_text() -> str:
        return browser.find_element(By.TAG_NAME, "body").text

    # Logs in.
    browser.get(f"{live_server.url}/admin/crons/cron/")
    assert "/admin/login/" in browser.current_url
    browser.find_element(By.NAME, "username").send_keys(operator[0])
    browser.find_element(By.NAME, "password").send_keys(operator[1])
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(ec.url_to_be(f"{live_server.url}/admin/crons/cron/"))
    assert "0 crons" in page_text()

    # Creates a cron with an invalid schedule and sees the error.
    browser.find_element(By.CSS_SELECTOR, ".object-tools a.addlink").click()
    Select(
        wait.until(ec.presence_of_element_located((By.NAME, "assistant")))
    ).select_by_visible_text("agent (fe096781-5601-53d2-b2f6-0d3403f7e9ca)")
    browser.find_element(By.NAME, "schedule").send_keys("61 9 * * 1-5")
    browser.find_element(By.NAME, "timezone").send_keys("Europe/Paris")
    Select(browser.find_element(By.NAME, "on_run_completed")).select_by_value("keep")
    payload = browser.find_element(By.NAME, "payload")
    payload.clear()
    payload.send_keys('{"input": {"messages": [{"role": "user", "content": "What time is it?"}]}}')
    browser.find_element(By.NAME, "_continue").click()
    error = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".errorlist")))
    assert error.text == (
        "Invalid cron schedule '61 9 * * 1-5': [61 9 * * 1-5] is not acceptable, out of range"
    )
    assert "Please correct the error below." in page_text()
    assert Cron.objects.count() == 0

    # Fixes it; sees the description and the next fire times.
    schedule = browser.find_element(By.NAME, "schedule")
    schedule.clear()
    schedule.send_keys("30 9 * * 1-5")
    browser.find_element(By.NAME, "_continue").click()
    wait.until(ec.presence_of_element_located((By.ID, "next-fires")))
    cron = Cron.objects.get()
    assert browser.current_url == f"{live_server.url}/admin/crons/cron/{cron.pk}/change/"
    assert "At 09:30, Monday through Friday" in page_text()
    rows = browser.find_elements(By.CSS_SELECTOR, "#next-fires tbody tr")
    assert len(rows) == 5
    first_local, first_utc = (td.text for td in rows[0].find_elements(By.TAG_NAME, "td"))
    assert first_local.endswith(("09:30:00 CET", "09:30:00 CEST"))
    assert first_utc == f"{cron.next_run_date:%Y-%m-%d %H:%M:%S} UTC"
    assert (cron.schedule, cron.timezone, cron.enabled) == ("30 9 * * 1-5", "Europe/Paris", True)
    assert cron.periodic_task.enabled is True

    # Disables it with the list action.
    browser.get(f"{live_server.url}/admin/crons/cron/")
    browser.find_element(
        By.CSS_SELECTOR, f"input[name=_selected_action][value='{cron.pk}']"
    ).click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("disable_crons")
    browser.find_element(By.NAME, "index").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".messagelist"), "disabled"))
    assert "1 cron(s) disabled; 0 already disabled." in page_text()
    cron.refresh_from_db()
    assert cron.enabled is False
    assert cron.periodic_task.enabled is False
    enabled_cell = browser.find_element(By.CSS_SELECTOR, "#result_list tbody td.field-enabled img")
    assert enabled_cell.get_attribute("alt") == "False"

    # Triggers it and sees the run appear, executed by the worker.
    browser.find_element(
        By.CSS_SELECTOR, f"input[name=_selected_action][value='{cron.pk}']"
    ).click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("trigger")
    browser.find_element(By.NAME, "index").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".messagelist"), "created"))
    run = Run.objects.get()
    assert run.cron_id == cron.pk
    assert f"run {run.run_id} created (pending)" in page_text()

    browser.get(f"{live_server.url}/admin/crons/cron/{cron.pk}/change/")

    def run_finished(driver):
        driver.refresh()
        row = driver.find_elements(By.CSS_SELECTOR, f"#runs tr[data-run-id='{run.run_id}']")
        return row and row[0].get_attribute("data-status") in ("success", "error")

    WebDriverWait(browser, 60, poll_frequency=0.5).until(run_finished)
    row = browser.find_element(By.CSS_SELECTOR, f"#runs tr[data-run-id='{run.run_id}']")
    assert row.find_element(By.CSS_SELECTOR, ".run-status").text == "success"
    assert "Runs (1), newest first" in page_text()
    tick = browser.find_element(By.CSS_SELECTOR, "#ticks tr.tick-row")
    assert tick.get_attribute("data-status") == "fired"

    # The run's own page and the list's last run status say the same.
    row.find_element(By.LINK_TEXT, str(run.run_id)).click()
    wait.until(ec.url_contains(f"/admin/runs/run/{run.run_id}/change/"))
    assert "success" in page_text()
    browser.get(f"{live_server.url}/admin/crons/cron/")
    status = browser.find_element(By.CSS_SELECTOR, "#result_list td.field-last_run_status")
    assert status.text == "success"
    run.refresh_from_db()
    assert run.status == "success"
    assert run.output["messages"][-1]["content"].startswith("It is ")
