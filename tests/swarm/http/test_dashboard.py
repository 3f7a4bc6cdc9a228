"""The dashboard in a real browser (Debian's headless Chromium through selenium) against a real
stack: Redis, registry, orchestrator, worker and API processes, around the benchmarks' instant
model. The browser must start: if it cannot, the test fails and says why.

Screenshots go to the test's temp dir; with ``SWARM_DASHBOARD_SCREENSHOTS=DIR`` they are also
copied there (``docs/dashboard.png`` is one of them).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port

ROOT = Path(__file__).parents[3]
sys.path.insert(0, str(ROOT / "bench"))
from overhead import runtime, serve_instant_model  # noqa: E402

KEY = "dashboard-key"
WAIT_S = 30


def browser() -> Any:
    """Headless Chromium, or a failure that says what is missing."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.fail(
            "the browser test needs Debian's chromium and chromium-driver "
            f"(found chromium={binary}, chromedriver={driver}): apt-get install chromium "
            "chromium-driver, as README's Test section says"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,900"):  # fmt: skip
        options.add_argument(flag)
    try:
        return webdriver.Chrome(service=Service(executable_path=driver), options=options)
    except WebDriverException as exc:
        pytest.fail(f"headless Chromium did not start: {exc.msg}")


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """The whole swarm with keys on, the built-ins' manifests (entities with its eval card), and
    one folder the registry rejects."""
    adapters = tmp_path / "adapters"
    for name in ("pii", "entities", "sql"):
        (adapters / name).mkdir(parents=True)
        shutil.copy(ROOT / "adapters" / name / "specialist.yaml", adapters / name)
    shutil.copy(ROOT / "adapters" / "entities" / "eval.json", adapters / "entities")
    (adapters / "broken").mkdir()
    (adapters / "broken" / "specialist.yaml").write_text("name: broken\nversion: [1\n")
    api_port = free_port()
    env = {
        **os.environ,
        "SWARM_REDIS_URL": redis_url,
        "SWARM_ADAPTERS_DIR": str(adapters),
        "SWARM_API_PORT": str(api_port),
        "SWARM_API_KEYS": KEY,
        "SWARM_LOG_LEVEL": "WARNING",
    }
    with serve_instant_model(free_port(), tmp_path) as (model_url, _pid):
        env["SWARM_VLLM_URLS"] = model_url
        with runtime(env, api_port, tmp_path, api_key=KEY) as (url, _pids):
            yield url


def test_submit_watch_inspect_and_see_a_rejected_folder(
    stack: str, redis: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    shots = tmp_path / "screenshots"
    shots.mkdir()
    page = browser()
    wait = WebDriverWait(page, WAIT_S)

    def shot(name: str) -> None:
        page.save_screenshot(str(shots / f"{name}.png"))

    def texts(selector: str) -> list[str]:
        """What the matching elements show now (read in one go: the page re-renders live)."""
        script = "return [...document.querySelectorAll(arguments[0])].map(e => e.innerText)"
        return [str(t) for t in page.execute_script(script, selector)]

    def text(selector: str) -> str:
        return (texts(selector) or [""])[0]

    def click(selector: str) -> None:
        """Click the element once it is there (the page re-renders live: find it afresh)."""
        script = "const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e"
        wait.until(lambda p: p.execute_script(script, selector))

    try:
        page.get(f"{stack}/ui/")
        # Keys are on: the page asks for one and shows nothing else.
        wait.until(seen.visibility_of_element_located((By.ID, "key-form")))
        assert not page.find_element(By.ID, "app").is_displayed()
        page.find_element(By.NAME, "key").send_keys("not-the-key\n")
        wait.until(lambda p: "not valid" in text("#key-error"))
        assert not page.find_element(By.ID, "app").is_displayed()
        page.find_element(By.NAME, "key").send_keys(f"{KEY}\n")
        wait.until(seen.visibility_of_element_located((By.ID, "app")))
        assert page.execute_script("return sessionStorage.getItem('swarm-api-key')") == KEY
        assert page.execute_script("return localStorage.length") == 0

        # Submit from the form: pii, then entities.
        click("[data-view=submit]")
        click("input[value=pii]")
        click("input[value=entities]")
        assert text("#submit-plan") == "pii → entities"
        page.find_element(By.NAME, "input").send_keys("Maria Lopez met Acme Corp in Berlin.")
        shot("submit")
        click("#submit-form button[type=submit]")

        # The task goes live, completes, and its detail opens with each step.
        wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "tbody tr")))
        task_id = page.execute_script("return document.querySelector('tbody tr').dataset.id")
        wait.until(lambda p: "completed" in text(f"tr[data-id='{task_id}'] td:nth-child(2)"))
        wait.until(lambda p: "completed" in text("#detail-summary"))
        wait.until(lambda p: all("completed" in step for step in texts("#detail .step")))
        steps = texts("#detail .step")
        assert len(steps) == 2 and "pii" in steps[0] and "entities" in steps[1]
        assert "Maria Lopez met Acme Corp" in steps[0]  # the step's input
        assert "attempts 1" in steps[0] and " ms" in steps[0]
        assert text("#detail-result")
        wait.until(lambda p: len(texts("#detail-timeline li")) >= 4)
        timeline = text("#detail-timeline")
        assert "step.completed" in timeline and "state completed" in timeline
        shot("dashboard")

        # Specialists: the rejected folder says why; a shipped eval card names its data.
        click("[data-view=specialists]")
        wait.until(lambda p: text("[data-name=broken] .reason"))
        reason = text("[data-name=broken] .reason")
        assert "specialist.yaml" in reason or "YAML" in reason, reason
        card = text("[data-name=entities]")
        assert "conll2003-dev" in card and "student" in card and "synalp/NER" in card
        shot("specialists")

        # The last hour counts the task, its steps and their latency.
        click("[data-view=hour]")
        wait.until(lambda p: "1 tasks" in text("[data-figure=states]"))
        assert "completed 1" in text("[data-figure=states]")
        assert "pii: 0.0% of 1 steps" in text("[data-figure=escalation]")
        assert "p50" in text("[data-figure=latency]")
        shot("hour")

        # A narrow screen: everything fits its width.
        page.set_window_size(390, 844)
        click("[data-view=tasks]")
        wait.until(seen.visibility_of_element_located((By.ID, "task-table")))
        assert page.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1"
        )
        shot("narrow")
    finally:
        page.quit()
    keep = os.environ.get("SWARM_DASHBOARD_SCREENSHOTS")
    if keep:
        shutil.copytree(shots, keep, dirs_exist_ok=True)
