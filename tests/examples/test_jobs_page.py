"""The example page (examples/pages/jobs.html), served by the gateway, in headless Chromium: it
submits a job and shows its progress live over the WebSocket, with and without API keys."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Page

from tests.support.browser import ARTIFACTS
from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers

PAGES = Path(__file__).resolve().parents[2] / "examples" / "pages"
PARAMS = '{"steps": 4, "step_seconds": 0.3}'


def _run_a_job(page: Page, url: str, key: str = "") -> list[str]:
    page.goto(f"{url}/pages/jobs.html")
    page.fill("#params", PARAMS)
    page.fill("#key", key)
    page.click("button[type=submit]")
    # Progress shows while the job runs, then the terminal state.
    page.wait_for_function("() => document.getElementById('status').textContent === 'running'"
                           " && document.getElementById('bar').value > 0", timeout=15_000)
    page.wait_for_function(
        "() => document.getElementById('status').textContent === 'succeeded'", timeout=15_000)
    return page.locator("#events").inner_text().strip().splitlines()


def test_the_example_page_shows_a_job_live_over_its_websocket(
    browser: Browser, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker("examples.vectors:pool", pool="vectors", example_cache_mb=1)
    gateway = start_gateway(pages_dir=PAGES)  # keyless: the browser guard lets same-origin in
    wait_for_workers(gateway, 1)
    page = browser.new_page(viewport={"width": 900, "height": 640})
    events = _run_a_job(page, gateway.url)
    assert events == ["#1 queued", "#2 running", "#3 progress 25%", "#4 progress 50%",
                      "#5 progress 75%", "#6 progress 100%", "#7 succeeded"]
    assert page.locator("#bar").evaluate("bar => bar.value") == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "jobs-page.png"), full_page=True)
    page.close()


def test_with_api_keys_the_page_trades_its_key_for_a_socket_token(
    browser: Browser, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker("examples.vectors:pool", pool="vectors", example_cache_mb=1)
    gateway = start_gateway(pages_dir=PAGES, api_keys="secret")
    wait_for_workers(gateway, 1, headers={"Authorization": "Bearer secret"})
    page = browser.new_page()
    assert _run_a_job(page, gateway.url, key="secret")[-1] == "#7 succeeded"
    page.fill("#key", "wrong")
    page.click("button[type=submit]")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('unauthorized')",
        timeout=10_000)
    page.close()
