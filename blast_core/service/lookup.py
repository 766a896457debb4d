"""Reading jobs: one by id (404 and 410 decided without a read where the id says enough), the
newest ones, the databases, and the letters a job searches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from blast_core.blast.programs import ToolError
from blast_core.domain import jobs
from blast_core.domain.database import DatabaseInfo
from blast_core.domain.jobs import Job
from blast_core.service.errors import JobExpired, JobNotFound

if TYPE_CHECKING:
    from blast_core.service.core import BlastService


def get(service: BlastService, job_id: str) -> Job:
    """The job; JobExpired once it is past the retention period, whether or not the
    clean-up has deleted it yet."""
    check_id(service, job_id)
    found = service.records.get(job_id)
    if found is None:
        raise JobNotFound(job_id)
    return found.job


def check_id(service: BlastService, job_id: str) -> None:
    """JobNotFound for what is not a job id, JobExpired for an expired job's: no read."""
    if not jobs.is_job_id(job_id):
        raise JobNotFound(job_id)
    expired_at = expired(service, job_id)
    if expired_at:
        raise JobExpired(job_id, expired_at)


def expired(service: BlastService, job_id: str) -> datetime | None:
    """When the job expired, if it has."""
    expiry = jobs.expires_at(job_id, service.settings.retention_days)
    return expiry if expiry is not None and expiry <= datetime.now(UTC) else None


def recent(service: BlastService, limit: int) -> list[Job]:
    """The newest jobs, without those expired but not yet cleaned up."""
    return [job for job in service.records.recent(limit) if not expired(service, job.id)]


def databases(service: BlastService) -> list[DatabaseInfo]:
    return service.catalog.list()


def searched_letters(service: BlastService, job: Job) -> int | None:
    """The letters a job's queries are searched against: its subject sequences', or its
    databases' (`database_letters`)."""
    return job.subject_letters if job.searches_subject else database_letters(service,
                                                                             job.databases)


def database_letters(service: BlastService, names: list[str]) -> int | None:
    """Letters in these databases, from the catalog; None when the catalog cannot say (a
    database was removed, or cannot be listed)."""
    try:
        found = [service.catalog.find(name) for name in names]
    except ToolError:
        return None
    return None if None in found else sum(info.letters for info in found)
