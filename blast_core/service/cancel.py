"""Cancelling a queued or running job."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blast_core.domain import jobs
from blast_core.domain.jobs import Job
from blast_core.logs import job_log
from blast_core.service import lookup
from blast_core.service.errors import JobFinished, JobNotFound
from blast_core.storage.ports import RecordMissing

if TYPE_CHECKING:
    from blast_core.service.core import BlastService


def cancel(service: BlastService, job_id: str) -> Job:
    """The record turns `cancelled` at once (so no pending batch will start, and workers
    running one stop BLAST at their next check), then its query and any batch results are
    deleted. JobFinished if it has ended."""
    lookup.check_id(service, job_id)

    def change(job: Job) -> Job:
        if job.status in jobs.FINAL_STATUSES:
            raise JobFinished(job)
        return job.cancel()

    try:
        cancelled = service.records.update(job_id, change)
    except RecordMissing:
        raise JobNotFound(job_id) from None
    service.blobs.delete_job(job_id)
    job_log(job_id).info("job %s cancelled", job_id)
    return cancelled.job
