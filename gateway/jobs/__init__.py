"""Jobs: fire-and-forget submissions, their outcomes, events, cancels and callbacks."""

from gateway.jobs.extension import jobs_extension
from gateway.jobs.service import JobService

__all__ = ["JobService", "jobs_extension"]
