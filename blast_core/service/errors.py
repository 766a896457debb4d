"""What the use cases raise for the hosts and the API to answer."""

from __future__ import annotations

from datetime import datetime

from blast_core.domain.jobs import BatchTimings, Job


class JobNotFound(LookupError):
    pass


class JobExpired(LookupError):
    """The job is older than the retention period: its record and results are (being)
    deleted. Known from the id alone, so it holds after the record is gone."""

    def __init__(self, job_id: str, expired_at: datetime):
        super().__init__(job_id)
        self.job_id = job_id
        self.expired_at = expired_at


class JobFinished(Exception):
    """The job has already ended, so it cannot be cancelled."""

    def __init__(self, job: Job):
        super().__init__(job.status)
        self.job = job


class ResultNotReady(Exception):
    def __init__(self, job: Job):
        super().__init__(job.status)
        self.job = job


class ResultPending(Exception):
    """A succeeded job's result in this format is being made by a worker; ask again soon.
    `last_error` says why the previous attempt failed, if one did."""

    def __init__(self, job: Job, format_name: str, last_error: str | None = None):
        super().__init__(format_name)
        self.job = job
        self.format_name = format_name
        self.last_error = last_error


class UnknownJob(Exception):
    """A message names a job that has no record: it can never run, so it is dead-lettered."""


class NoTimeLeft(Exception):
    """Staging and download took so long that the invocation cannot fit a search before the
    function timeout: the message is tried again in a new invocation."""


class BatchStopped(Exception):
    """BLAST of a run was stopped because the jobs of all its batches were cancelled;
    `timings` says what each batch had spent by then."""

    def __init__(self, timings: list[BatchTimings]):
        super().__init__("stopped")
        self.timings = timings


class NotTakenOn(Exception):
    """A batch received beyond what one invocation takes on (`coalescing.plan`): not worked
    on, it goes back to the queue as it came, for another worker."""
