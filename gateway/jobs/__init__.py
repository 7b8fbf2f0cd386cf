"""Jobs: fire-and-forget submissions, their outcomes, events, cancels and callbacks."""

from gateway.jobs.running import jobs_running
from gateway.jobs.service import JobService

__all__ = ["JobService", "jobs_running"]
