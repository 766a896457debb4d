"""The use cases: submit a job, read jobs and results, and process one queue message.

`BlastService` holds no Azure types of its own; it works through the records, results and
transport adapters, so that the same code runs under the Functions host and `serve`.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from blast_core import fasta, jobs, runner
from blast_core.databases import DatabaseCatalog, DatabaseInfo
from blast_core.jobs import Job
from blast_core.records import JobRecords, RecordConflict
from blast_core.results import ARCHIVE_BLOB, QUERY_BLOB, ResultStore, result_blob
from blast_core.settings import STORAGE_CONNECTION, Settings
from blast_core.transports import Transport, connect

log = logging.getLogger("blast_core")


class JobNotFound(LookupError):
    pass


class ResultNotReady(Exception):
    def __init__(self, job: Job):
        super().__init__(job.status)
        self.job = job


class UnknownJob(Exception):
    """A message names a job that has no record: retried, then dead-lettered."""


@dataclass(frozen=True)
class ResultBody:
    chunks: Iterator[bytes]
    content_type: str
    filename: str


class BlastService:
    def __init__(self, settings: Settings, catalog: DatabaseCatalog, records: JobRecords,
                 results: ResultStore, transport: Transport):
        self.settings = settings
        self.catalog = catalog
        self.records = records
        self.results = results
        self.transport = transport
        self.tools = runner.BlastTools.from_settings(settings)
        self.limits = fasta.QueryLimits(settings.max_query_bytes, settings.max_queries,
                                        settings.max_sequence_letters)

    @classmethod
    def from_settings(cls, settings: Settings) -> BlastService:
        storage = settings.connection(STORAGE_CONNECTION)
        catalog = DatabaseCatalog(settings.db_dir,
                                  runner.BlastTools.from_settings(settings).path("blastdbcmd"))
        return cls(settings, catalog, JobRecords.connect(storage, settings.jobs_table),
                   ResultStore.connect(storage, settings.results_container), connect(settings))

    def ensure_storage(self) -> None:
        """Create the container, table and (Storage) queues if missing; idempotent."""
        self.results.ensure()
        self.records.ensure()
        self.transport.ensure()

    # Submitting and reading

    def submit(self, payload: object) -> Job:
        """Validate, store the query, record the job, then queue it: a worker never sees a job
        without a record. Raises jobs.InvalidRequest before anything is stored."""
        request = jobs.parse_request(payload, self.limits, self.catalog.find)
        job = Job.submitted(jobs.new_job_id(), request)
        self.results.put_text(job.id, QUERY_BLOB, request.query, "text/x-fasta")
        try:
            self.records.create(job)
            try:
                self.transport.send(jobs.encode_message(job.id), message_id=job.id)
            except Exception:
                self.records.delete(job.id)
                raise
        except Exception:
            self.results.delete_job(job.id)
            raise
        log.info("job %s queued: %s %s on %s, %d queries", job.id, job.program, job.task,
                 job.database, job.queries)
        return job

    def get(self, job_id: str) -> Job:
        found = self.records.get(job_id) if jobs.is_job_id(job_id) else None
        if found is None:
            raise JobNotFound(job_id)
        return found[0]

    def recent(self, limit: int) -> list[Job]:
        return self.records.recent(limit)

    def databases(self) -> list[DatabaseInfo]:
        return self.catalog.list()

    def result(self, job_id: str, format_name: str) -> ResultBody:
        """A succeeded job's result in one format, formatted from its archive on first use."""
        job = self._succeeded(job_id)
        fmt = runner.OUTPUT_FORMATS[format_name]
        chunks = self.results.stream(job.id, result_blob(fmt.extension))
        if chunks is None:
            self._format(job, fmt)
            chunks = self.results.stream(job.id, result_blob(fmt.extension))
        if chunks is None:
            raise RuntimeError(f"job {job.id}: the {format_name} result vanished after formatting")
        return ResultBody(chunks, fmt.content_type, f"{job.id}.{fmt.extension}")

    def result_link(self, job_id: str, format_name: str) -> str:
        job = self._succeeded(job_id)
        fmt = runner.OUTPUT_FORMATS[format_name]
        if not self.results.exists(job.id, result_blob(fmt.extension)):
            self._format(job, fmt)
        return self.results.read_link(job.id, result_blob(fmt.extension),
                                      self.settings.result_link_hours)

    def _succeeded(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.status != jobs.SUCCEEDED:
            raise ResultNotReady(job)
        return job

    def _format(self, job: Job, fmt: runner.OutputFormat) -> None:
        """Turn the job's archive into `fmt` and keep it; two requests racing write the same."""
        with tempfile.TemporaryDirectory(prefix=f"format-{job.id}-") as workdir:
            archive = os.path.join(workdir, ARCHIVE_BLOB)
            self.results.download(job.id, ARCHIVE_BLOB, archive)
            formatted = os.path.join(workdir, f"result.{fmt.extension}")
            runner.format_archive(self.tools, archive, fmt, self.settings.db_dir, formatted)
            self.results.put_file(job.id, result_blob(fmt.extension), formatted,
                                  fmt.content_type)

    # Working

    def process(self, body: bytes | str, delivery_count: int) -> None:
        """Handle one delivery of a job message.

        Returns normally when the message is done with: the job succeeded, failed for good,
        or was already finished (a redelivery). Raises when another delivery should try again;
        on the last allowed delivery it first marks the job failed, so no job stays open.
        """
        job_id = jobs.decode_message(body)
        found = self.records.get(job_id)
        if found is None:
            raise UnknownJob(f"no record for job {job_id}")
        job, etag = found
        if job.status in jobs.FINAL_STATUSES:
            log.info("job %s already %s; delivery %d ignored", job.id, job.status, delivery_count)
            return
        job = job.started()
        etag = self.records.replace(job, etag)
        log.info("job %s running, attempt %d", job.id, job.attempts)
        try:
            hits = self._run(job)
        except runner.SearchRejected as error:
            self._finish(job.failed(str(error)), etag)
            log.warning("job %s failed: %s", job.id, error)
            return
        except Exception as error:
            if delivery_count >= self.settings.max_deliveries:
                reason = f"gave up after {delivery_count} attempts: {_describe(error)}"
                self._finish(job.failed(reason), etag)
                log.error("job %s failed: %s", job.id, reason)
            raise
        self._finish(job.succeeded(hits), etag)
        log.info("job %s succeeded with %d hits", job.id, hits)

    def _run(self, job: Job) -> int:
        """Search and store the archive; the caller marks the job succeeded only after."""
        with tempfile.TemporaryDirectory(prefix=f"blast-{job.id}-") as workdir:
            query_path = os.path.join(workdir, "query.fasta")
            self.results.download(job.id, QUERY_BLOB, query_path)
            result = runner.run_search(job, self.tools, query_path,
                                       self.catalog.path(job.database), workdir)
            self.results.put_file(job.id, ARCHIVE_BLOB, result.archive,
                                  runner.ARCHIVE.content_type)
        return result.hits

    # Dead letters

    def dead_letters(self, limit: int = 32) -> list[DeadLetterView]:
        """Messages that gave up, with the job each one names (if any) and its state."""
        views = []
        for letter in self.transport.peek_dead_letters(limit):
            job_id, found = self._job_of(letter.body)
            views.append(DeadLetterView(job_id, found[0].status if found else None,
                                        letter.reason, found[0].error if found else None))
        return views

    def requeue_dead_letters(self, limit: int = 1000) -> tuple[list[str], int]:
        """Put dead-lettered jobs back in the queue as new; returns the requeued job ids and
        how many messages were left (unreadable, or naming no job).

        Order: reset the record, send a new message, then remove the dead letter; a crash
        in between leaves at most a duplicate message, which processing ignores."""
        requeued: list[str] = []
        unreadable = []
        for _ in range(limit):
            delivery = self.transport.receive_dead_letter()
            if delivery is None:
                break
            job_id, found = self._job_of(delivery.body)
            if found is None:
                unreadable.append(delivery)  # held until the loop ends, so it is seen once
                continue
            if job_id not in requeued:
                job, etag = found
                self.records.replace(job.requeued(), etag)
                self.transport.send(jobs.encode_message(job.id), message_id=job.id)
                requeued.append(job.id)
                log.info("job %s requeued from the dead letters", job.id)
            delivery.complete()
        for delivery in unreadable:
            delivery.retry_later(0)
        return requeued, len(unreadable)

    def _job_of(self, body: bytes) -> tuple[str | None, tuple[Job, str] | None]:
        try:
            job_id = jobs.decode_message(body)
        except jobs.MalformedMessage:
            return None, None
        return job_id, self.records.get(job_id)

    def _finish(self, job: Job, etag: str) -> None:
        try:
            self.records.replace(job, etag)
        except RecordConflict:
            log.warning("job %s changed while it ran; its outcome is left to the newer attempt",
                        job.id)


@dataclass(frozen=True)
class DeadLetterView:
    job_id: str | None
    status: str | None
    reason: str
    error: str | None


def _describe(error: Exception) -> str:
    """One line for a job record: SDK errors carry whole response documents after it."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first_line}"[:500]


@functools.cache
def default_service() -> BlastService:
    """The process-wide service, built from the environment on first use."""
    service = BlastService.from_settings(Settings.from_env())
    service.ensure_storage()
    return service
