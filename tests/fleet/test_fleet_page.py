"""The fleet page in headless Chromium: it lists the workers, and a prefetch set there changes
the fleet. It also leaves a screenshot to look at (tests/artifacts/fleet-page.png)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from playwright.sync_api import Browser

from protocol.clock import now_ms
from tests.support.amqp_client import amqp_client
from tests.support.browser import ARTIFACTS
from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers
from tests.support.waiting import wait_for


def test_the_fleet_page_lists_workers_and_sets_prefetch_live(
    browser: Browser, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker(processes=2)
    gateway = start_gateway(admin_keys="boss", api_keys="caller")
    admin = {"Authorization": "Bearer boss"}
    entries = wait_for_workers(gateway, 2, headers=admin)
    page = browser.new_page(viewport={"width": 1400, "height": 700})
    denied = page.goto(f"{gateway.url}/ui")
    assert denied is not None and denied.status == 401
    page.goto(f"{gateway.url}/ui/login")
    page.fill("#key", "boss")
    page.click("button[type=submit]")
    page.wait_for_selector("#workers tbody tr[data-worker]")
    rows = page.locator("#workers tbody tr[data-worker]")
    assert rows.count() == 2
    assert {rows.nth(i).get_attribute("data-worker") for i in range(2)} == {
        e["id"] for e in entries}
    assert page.locator("#pools tbody tr[data-pool=basic]").count() == 1

    pool_form = page.locator("#pools tr[data-pool=basic] form.prefetch")
    pool_form.locator("input").fill("3")
    pool_form.locator("button").click()
    with gateway.client(headers=admin) as http:
        wait_for(lambda: {w["prefetch"] for w in http.get("/v1/workers").json()} == {3},
                 what="the fleet to apply prefetch 3")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#workers .prefetch-value')]"
        ".every(td => td.textContent.trim() === '3')", timeout=10_000)
    # The pool's consumers per host, and a range set there (SPEC 1.2, elastic pools).
    host = entries[0]["host"]
    page.wait_for_function(
        f"() => document.querySelector('#pools tr[data-pool=basic] .processes "
        f"[data-host=\"{host}\"]')?.textContent.startsWith('{host}: 2 (2)')", timeout=10_000)
    range_form = page.locator("#pools tr[data-pool=basic] form.processes")
    range_form.locator("input").fill("2..3")
    range_form.locator("button").click()
    with gateway.client(headers=admin) as http:
        wait_for(lambda: all(w["processes"]["max"] == 3 for w in http.get("/v1/workers").json()),
                 what="the fleet to apply processes 2..3")
    page.wait_for_function(
        f"() => document.querySelector('#pools tr[data-pool=basic] .processes "
        f"[data-host=\"{host}\"]')?.textContent.startsWith('{host}: 2 (2..3)')",
        timeout=10_000)
    # Live charts: calls made now show as calls/s and latency on the pool's charts.
    with gateway.client(headers={"Authorization": "Bearer caller"}) as http:
        def busy() -> bool:
            for n in range(20):
                assert http.post("/v1/rpc/echo", json={"n": n}).status_code == 200
            latest = page.locator("[data-pool-charts=basic] canvas[data-chart=calls]") \
                .get_attribute("data-latest")
            return bool(latest) and json.loads(latest)[0] > 0
        wait_for(busy, timeout=20, what="calls/s on the pool's chart")
    latency = json.loads(page.locator("[data-pool-charts=basic] canvas[data-chart=latency]")
                         .get_attribute("data-latest") or "[]")
    assert latency and latency[0] is not None and latency[0] > 0  # p50, in ms
    page.wait_for_function(
        "() => [...document.querySelectorAll('#workers td.rate')]"
        ".some(td => /^[0-9.]+$/.test(td.textContent))",
        timeout=10_000)
    # Recent jobs, newest first, with a state filter and the job's detail on a click.
    with gateway.client(headers={"Authorization": "Bearer caller"}) as http:
        job_id = http.post("/v1/jobs/echo", json={"params": {"shown": True}}).json()["id"]
    row = page.locator(f"#jobs tr[data-job='{job_id}']")
    row.wait_for(timeout=10_000)
    page.wait_for_function(f"() => document.querySelector(\"#jobs tr[data-job='{job_id}']\")"
                           ".classList.contains('succeeded')", timeout=10_000)
    row.click()
    assert json.loads(page.locator("#job-detail").inner_text())["result"] == {"shown": True}
    page.select_option("#job-status", "failed")
    page.wait_for_function("() => document.querySelectorAll('#jobs tbody tr').length === 0",
                           timeout=10_000)
    page.select_option("#job-status", "")
    row.wait_for(timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "fleet-page.png"), full_page=True)
    assert (ARTIFACTS / "fleet-page.png").stat().st_size > 10_000
    page.close()


def test_a_part_of_the_page_that_fails_leaves_the_others_live(
    browser: Browser, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    """The jobs table's request refused (here a filter the gateway rejects; in production a
    job store that is down): the workers and pools, which come from the beats, keep updating
    and the page says what failed."""
    start_worker()
    gateway = start_gateway()
    wait_for_workers(gateway, 1)
    page = browser.new_page(viewport={"width": 1400, "height": 700})
    page.goto(f"{gateway.url}/ui")
    page.wait_for_selector("#workers tbody tr[data-worker]")
    page.evaluate("""() => {
        const select = document.getElementById("job-status");
        select.add(new Option("no such state", "no-such-state"));
        select.value = "no-such-state";
        select.dispatchEvent(new Event("change"));
    }""")
    page.wait_for_function(
        "() => document.getElementById('status').className === 'error'"
        " && document.getElementById('status').textContent.includes('invalid_params')",
        timeout=10_000)
    with gateway.client() as http:
        assert http.put("/v1/pools/basic/prefetch", json={"prefetch": 4}).status_code == 202
    page.wait_for_function(
        "() => [...document.querySelectorAll('#workers .prefetch-value')]"
        ".every(td => td.textContent.trim() === '4')", timeout=10_000)
    assert "invalid_params" in page.locator("#status").inner_text()  # said while it fails
    page.close()


def test_dead_letters_are_listed_and_replayed_from_the_page(
    browser: Browser, amqp_url: str, start_worker: StartWorker, start_gateway: StartGateway,
    tmp_path: Path
) -> None:
    start_worker()
    gateway = start_gateway(admin_keys="boss")
    wait_for_workers(gateway, 1, headers={"Authorization": "Bearer boss"})
    log = tmp_path / "ran.log"

    async def expired_requests() -> tuple[str, str]:
        async with amqp_client(amqp_url) as client:  # past their deadline: dead-lettered
            fire_and_forget = await client.send("record", {"log": str(log), "tag": "replayed"},
                                                reply_to=None, deadline_ms=now_ms() - 1000)
            sync = await client.send("record", {"log": str(log), "tag": "sync"},
                                     deadline_ms=now_ms() - 1000)
        return fire_and_forget, sync

    with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs in this one
        replayable, sync_call = thread.submit(asyncio.run, expired_requests()).result()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{gateway.url}/ui/login")
    page.fill("#key", "boss")
    page.click("button[type=submit]")
    show = page.locator("#pools tr[data-pool=basic] button.show-dead")
    show.wait_for(timeout=15_000)
    show.click()
    row = page.locator(f"#dead tr[data-dead='{replayable}']")
    row.wait_for(timeout=10_000)
    assert "expired" in row.inner_text()
    refused = page.locator(f"#dead tr[data-dead='{sync_call}']")
    assert refused.locator("button.replay").count() == 0  # its caller gave up: not replayable
    assert "a sync call" in (refused.locator("td").last.get_attribute("title") or "")
    row.locator("button.replay").click()
    wait_for(lambda: log.exists() and log.read_text() == "replayed\n", timeout=15,
             what="the replayed request to run")
    page.wait_for_function(
        f"() => !document.querySelector(\"#dead tr[data-dead='{replayable}']\")",
        timeout=10_000)
    refused.locator("button.purge").click()
    page.wait_for_function("() => document.querySelector('#dead tbody').innerText"
                           ".includes('none')", timeout=10_000)
    page.close()
