"""A job as the HTTP API answers it: the job object and its `status_url`, one rendering for every
route that returns jobs (and the submission's fast path)."""

from __future__ import annotations

from typing import Any

from protocol import Job, codec


def job_url(base_url: str, job_id: str) -> str:
    """The job's URL under the gateway's base URL (scheme, host and root path of the request)."""
    return f"{base_url.rstrip('/')}/v1/jobs/{job_id}"


def job_document(job: Job, base_url: str) -> bytes:
    data: dict[str, Any] = job.model_dump(mode="json")
    data["status_url"] = job_url(base_url, job.id)
    return codec.dumps(data)
