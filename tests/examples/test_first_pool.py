"""The newcomer's path, as docs/first-pool.md tells it: the page's two files written to an empty
folder, the pool started with the CLI (`rpcfleet worker ... --app-dir`), called over HTTP and with
`rpcfleet.client` as the page shows, and the page's kit tests run with pytest from that folder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from rpcfleet.client import Client, RpcfleetError
from tests.support.fleet import StartWorker
from tests.support.gateway import StartGateway, wait_for_workers

PAGE = Path(__file__).resolve().parents[2] / "docs" / "first-pool.md"


def _files_of_the_page() -> dict[str, str]:
    """Each fenced python block of the page that starts with `# file: NAME`."""
    blocks = re.findall(r"```python\n# file: (\S+)\n(.*?)```", PAGE.read_text(), re.DOTALL)
    return {name: body for name, body in blocks}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    files = _files_of_the_page()
    assert set(files) == {"catalog.py", "test_catalog.py"}
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    return tmp_path


def test_the_pool_of_the_page_runs_and_answers_as_the_page_says(
    folder: Path, start_worker: StartWorker, start_gateway: StartGateway
) -> None:
    start_worker("catalog:pool", pool="catalog", processes=2, extra=("--app-dir", str(folder)))
    gateway = start_gateway()
    wait_for_workers(gateway, 2)
    with gateway.client() as http:
        found = http.post("/v1/rpc/get_product", json={"id": 7})
        missing = http.post("/v1/rpc/get_product", json={"id": 999999})
        counted = http.post("/v1/rpc/count")  # no body
    assert found.json()["result"] == {"id": 7, "name": "product 7", "price": 3.5}
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert (error["code"], error["message"], error["details"]) == (
        "not_found", "no product 999999", {"id": 999999})
    assert counted.json()["result"] == 100_000
    with Client(gateway.url) as fleet:
        assert fleet.call("get_product", {"id": 7})["name"] == "product 7"
        with pytest.raises(RpcfleetError) as raised:
            fleet.call("get_product", {"id": 999999})
        assert (raised.value.status, raised.value.code, raised.value.details) == (
            404, "not_found", {"id": 999999})
        job = fleet.submit("reprice", {"factor": 1.1})
        assert fleet.wait(job.id, timeout=30).result == {"factor": 1.1, "batches": 3}
    # Followed: the stream ends with the result (progress events of a job this short may be
    # recorded or not, depending on whether they reach a gateway before its reply).
    events = httpx.get(f"{gateway.url}/v1/jobs/{job.id}/events", timeout=30).text
    assert "event: succeeded" in events and '"result":{"factor":1.1,"batches":3}' in events


def test_the_kit_tests_of_the_page_pass_from_the_pools_folder(folder: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "test_catalog.py"], cwd=folder, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout, done.stdout
