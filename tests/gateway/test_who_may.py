"""Who may touch what (SPEC 1.1): a job belongs to the key that submitted it; a keyless gateway
cannot be driven by a web page elsewhere."""

from __future__ import annotations

import httpx

from tests.support.fleet import StartWorker
from tests.support.gateway import Gateway, StartGateway, error_code, wait_for_workers
from tests.support.jobs import submit, until


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_job_is_seen_and_cancelled_only_with_its_own_key_or_an_admin_key(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(api_keys="alice,bob", admin_keys="root")
    wait_for_workers(gateway, 1, headers=_as("root"))
    with gateway.client() as http:
        job_id = submit(http, "echo", {"n": 1}, headers=_as("alice")).json()["id"]
        as_bob = [http.get(f"/v1/jobs/{job_id}", headers=_as("bob")),
                  http.get(f"/v1/jobs/{job_id}/events", headers=_as("bob")),
                  http.delete(f"/v1/jobs/{job_id}", headers=_as("bob"))]
        unknown = http.get("/v1/jobs/" + "0" * 32, headers=_as("bob"))
        http.headers.update(_as("alice"))
        done = until(http, job_id, "succeeded")
        by_root = http.get(f"/v1/jobs/{job_id}", headers=_as("root"))
    for answer in as_bob:
        assert error_code(answer) == (404, "not_found")
        # Exactly what an unknown id gets: its existence is not revealed.
        assert answer.json()["error"]["message"] == unknown.json()["error"]["message"].replace(
            "0" * 32, job_id)
    assert done["result"] == {"n": 1}
    assert by_root.status_code == 200 and by_root.json()["id"] == job_id


def test_an_idempotency_key_is_scoped_to_the_api_key(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(api_keys="alice,bob")
    with gateway.client() as http:
        same = {"Idempotency-Key": "order-1"}
        alice = submit(http, "echo", {"n": 1}, headers={**same, **_as("alice")})
        alice_again = submit(http, "echo", {"n": 1}, headers={**same, **_as("alice")})
        bob = submit(http, "echo", {"n": 2}, headers={**same, **_as("bob")})
    assert alice.status_code == 202 and bob.status_code == 202
    assert alice_again.json()["id"] == alice.json()["id"]
    assert bob.json()["id"] != alice.json()["id"]  # not a 422 for "another body", not alice's


def test_a_keyless_gateway_refuses_cross_site_pages_and_foreign_host_names(
    gateway: Gateway
) -> None:
    wait_for_workers(gateway, 1)
    port = gateway.url.rsplit(":", 1)[1]
    with gateway.client() as http:
        refused = {
            "other origin": http.post("/v1/rpc/echo", json={},
                                      headers={"Origin": "https://evil.example"}),
            "same host, other port": http.post("/v1/jobs/echo", json={"params": {}},
                                               headers={"Origin": "http://127.0.0.1:3000"}),
            "cross-site fetch": http.put("/v1/pools/basic/prefetch", json={"prefetch": 2},
                                         headers={"Sec-Fetch-Site": "cross-site"}),
            "rebound name": http.get("/v1/workers",
                                     headers={"Host": f"attacker.example:{port}"}),
        }
        allowed = {
            "curl": http.post("/v1/rpc/echo", json={"ok": 1}),
            "own page": http.post("/v1/rpc/echo", json={"ok": 2},
                                  headers={"Origin": gateway.url, "Sec-Fetch-Site":
                                           "same-origin"}),
            "localhost": http.get("/v1/workers", headers={"Host": f"localhost:{port}"}),
        }
    for what, answer in refused.items():
        assert error_code(answer) == (403, "forbidden"), what
    for what, answer in allowed.items():
        assert answer.status_code == 200, (what, answer.text)


def test_allowed_hosts_and_origins_are_settings(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(allowed_hosts="gateway.internal,127.0.0.1",
                            allowed_origins="https://app.test")
    port = gateway.url.rsplit(":", 1)[1]
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        named = http.get("/healthz", headers={"Host": f"gateway.internal:{port}"})
        localhost = http.get("/healthz", headers={"Host": f"localhost:{port}"})  # not listed
        page = http.post("/v1/jobs/echo", json={"params": {}},
                         headers={"Host": f"gateway.internal:{port}",
                                  "Origin": "https://app.test"})
    assert named.status_code == 200
    assert error_code(localhost) == (403, "forbidden")
    assert page.status_code == 202


def test_the_job_list_shows_a_caller_its_own_jobs_and_an_admin_all_of_them(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(api_keys="alice,bob", admin_keys="root")
    wait_for_workers(gateway, 1, headers=_as("root"))
    with gateway.client() as http:
        alices = [submit(http, "echo", {"n": n}, headers=_as("alice")).json()["id"]
                  for n in range(3)]
        bobs = submit(http, "echo", {"n": 9}, headers=_as("bob")).json()["id"]
        http.headers.update(_as("alice"))
        for job_id in alices:
            until(http, job_id, "succeeded")
        mine = http.get("/v1/jobs").json()
        newest_two = http.get("/v1/jobs", params={"limit": 2}).json()
        everything = http.get("/v1/jobs", headers=_as("root")).json()
        queued = http.get("/v1/jobs", params={"status": "queued"}).json()
        bad = http.get("/v1/jobs", params={"status": "sleeping"})
        anonymous = httpx.get(f"{gateway.url}/v1/jobs")
    assert [job["id"] for job in mine] == alices[::-1]  # newest first, only alice's
    assert [job["id"] for job in newest_two] == alices[:0:-1]
    assert {job["id"] for job in everything} == {*alices, bobs}
    assert all(job["status_url"].endswith(f"/v1/jobs/{job['id']}") for job in everything)
    assert queued == []
    assert error_code(bad) == (422, "invalid_params")
    assert error_code(anonymous) == (401, "unauthorized")


def test_dead_letters_are_an_admins_and_bad_requests_for_them_are_refused(
    start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker()
    gateway = start_gateway(api_keys="alice", admin_keys="root")
    wait_for_workers(gateway, 1, headers=_as("root"))
    with gateway.client() as http:
        as_caller = http.get("/v1/pools/basic/dead", headers=_as("alice"))
        listed = http.get("/v1/pools/basic/dead", headers=_as("root"))
        unknown_pool = http.get("/v1/pools/nope/dead", headers=_as("root"))
        no_ids = http.post("/v1/pools/basic/dead/replay", json={"ids": []}, headers=_as("root"))
        bad_timeout = http.post("/v1/pools/basic/dead/replay", json={"ids": ["x"], "timeout": -1},
                                headers=_as("root"))
        missing = http.post("/v1/pools/basic/dead/purge", json={"ids": ["x"]},
                            headers=_as("root"))
    assert error_code(as_caller) == (403, "forbidden")
    assert listed.status_code == 200 and listed.json() == []
    assert error_code(unknown_pool) == (404, "not_found")
    assert error_code(no_ids) == (422, "invalid_params")
    assert error_code(bad_timeout) == (422, "invalid_params")
    assert missing.json() == {"purged": [], "kept": [], "not_found": ["x"]}


def test_with_api_keys_alone_any_of_them_opens_the_fleet_page(
    start_gateway: StartGateway
) -> None:
    """No admin keys: admin routes are as open as the rest, the page included. A browser
    cannot send an Authorization header on a page load: the login page's cookie must do."""
    gateway = start_gateway(api_keys="alice")
    with gateway.client() as http:
        with_cookie = http.get("/ui", headers={"Cookie": "rpcfleet_key=alice"})
        unknown = http.get("/ui", headers={"Cookie": "rpcfleet_key=mallory"})
        without = http.get("/ui")
    assert with_cookie.status_code == 200, with_cookie.text
    assert "text/html" in with_cookie.headers["content-type"]
    assert error_code(unknown) == (401, "unauthorized")
    assert error_code(without) == (401, "unauthorized")
