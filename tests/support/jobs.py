"""Helpers of the job tests: submit, read, wait for a state; a gateway that signs callbacks."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx

from tests.support.gateway import Gateway, StartGateway
from tests.support.waiting import wait_for

SECRET = "whsec_" + base64.b64encode(b"rpcfleet-test-secret-0123456789ab").decode()


def submit(http: httpx.Client, method: str, params: dict[str, Any], **extra: Any
            ) -> httpx.Response:
    headers = extra.pop("headers", None)
    return http.post(f"/v1/jobs/{method}", json={"params": params, **extra}, headers=headers)


def fetch_job(http: httpx.Client, job_id: str) -> dict[str, Any]:
    response = http.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def until(http: httpx.Client, job_id: str, *statuses: str, timeout: float = 30
           ) -> dict[str, Any]:
    return wait_for(lambda: (job := fetch_job(http, job_id))["status"] in statuses and job,
                    timeout=timeout, what=f"job {job_id} to be {statuses}")


def callback_gateway(start_gateway: StartGateway, **settings: object
                      ) -> Gateway:
    return start_gateway(callback_secret=SECRET, callback_allow_hosts="127.0.0.1",
                         callback_backoff=0.05, callback_backoff_max=0.2, **settings)


def occupy(http: httpx.Client, marker: Path, seconds: float = 1.5) -> str:
    """Keep the only consumer busy with a job; returns once it has started."""
    job_id: str = submit(http, "sleep", {"seconds": seconds, "marker": str(marker)}).json()["id"]
    wait_for(marker.exists, what="the worker to be busy")
    return job_id
