"""The use cases: submit a job, read jobs and results, and process one queue message.

`BlastService` holds no Azure types of its own; it works through the records, results and
transport adapters, so that the same code runs under the Functions host and `serve`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from blast_core import telemetry
from blast_core.blast import search
from blast_core.blast.databases import DatabaseCatalog, DatabaseInfo
from blast_core.blast.process import ToolError
from blast_core.domain import batches, fasta, jobs, messages, tuning
from blast_core.domain.jobs import Job
from blast_core.domain.limits import duration
from blast_core.domain.messages import Message
from blast_core.settings import STORAGE_CONNECTION, Settings
from blast_core.storage.blobs import ResultStore, archive_blob, query_blob, result_blob
from blast_core.storage.queues import Outgoing, Transport, connect
from blast_core.storage.records import JobRecords, RecordConflict

log = logging.getLogger("blast_core")


class JobLog(logging.LoggerAdapter):
    """A logger whose every line carries the job's fields (`job_id`, `batch`, `attempt`) as
    record attributes: the JSON log lines of `cli.configure_logging` show them."""

    def process(self, msg, kwargs):
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def job_fields(job_id: str, batch: int | None = None,
               attempt: int | None = None) -> dict[str, object]:
    return {"job_id": job_id, "batch": batch, "attempt": attempt}


def job_log(job_id: str, batch: int | None = None, attempt: int | None = None) -> JobLog:
    return JobLog(log, job_fields(job_id, batch, attempt))

_UPDATE_ATTEMPTS = 50
QUEUE_COUNTS_CACHE_SECONDS = 10.0  # GET /api/stats reads the queue at most this often
STATS_RECENT_JOBS = 100  # end-to-end times and throughput over this many newest jobs
STATS_MAX_JOBS = 5000  # most job records read to count a day's jobs by status
CLEANUP_PAGE = 100  # expired jobs deleted per round: one Table transaction holds 100 deletes
CLEANUP_THREADS = 8  # jobs whose blobs are deleted at once: each blob is one round trip
SWEEP_DEAD_LETTERS = 1000  # dead letters a sweep reads, oldest first
SWEEP_STALE_JOBS = 1000  # open jobs a sweep ends at most
FORMAT_REQUEST_SECONDS = 600  # a result format asked for this long ago and not made: ask again
RESULT_RETRY_AFTER = 1  # seconds a client waits before asking again for a result being made
RESULT_POLL_SECONDS = 0.5


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
    """BLAST of a batch was stopped because its job was cancelled; `timings` says what the
    batch had spent by then."""

    def __init__(self, timings: jobs.BatchTimings):
        super().__init__("stopped")
        self.timings = timings


@dataclass(frozen=True)
class ResultBody:
    chunks: Iterator[bytes]
    content_type: str
    filename: str


@dataclass(frozen=True)
class ResultLink:
    """A result too large to pass through a worker: a read-only link to it in Blob storage."""

    url: str


@dataclass(frozen=True)
class SweepReport:
    dead_lettered: list[str]  # jobs ended because the queue dead-lettered their message
    stranded: list[str]  # jobs ended because no message for them can still arrive


class BlastService:
    def __init__(self, settings: Settings, catalog: DatabaseCatalog, records: JobRecords,
                 results: ResultStore, transport: Transport):
        self.settings = settings
        self.catalog = catalog
        self.records = records
        self.results = results
        self.transport = transport
        self.tools = search.BlastTools.from_settings(settings)
        self.limits = fasta.QueryLimits(settings.max_query_bytes, settings.max_queries,
                                        settings.max_sequence_letters, settings.max_header_chars)
        self.on_queued: Callable[[], None] | None = None  # serve wakes its workers here
        self._queue_counts: tuple[float, dict[str, object]] | None = None
        self._queue_counts_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> BlastService:
        storage = settings.connection(STORAGE_CONNECTION)
        catalog = DatabaseCatalog(settings.db_dir,
                                  search.BlastTools.from_settings(settings).path("blastdbcmd"),
                                  cache_dir=settings.db_cache_dir, preload=settings.db_preload)
        return cls(settings, catalog, JobRecords.connect(storage, settings.jobs_table),
                   ResultStore.connect(storage, settings.results_container), connect(settings))

    def ensure_storage(self) -> None:
        """Create the container, table and (Storage) queues if missing; idempotent."""
        self.results.ensure()
        self.records.ensure()
        self.transport.ensure()

    # Submitting and reading

    def submit(self, payload: object) -> Job:
        """Validate, store the query batches, record the job, then queue every batch: a worker
        never sees a job without a record. Raises jobs.InvalidRequest before anything is
        stored; on a storage or queue failure removes what it stored and re-raises. Traced
        as `submit`, the trace that the batches' processing and formatting continue."""
        with telemetry.span("submit"):
            return self._submit(payload)

    def _submit(self, payload: object) -> Job:
        request = jobs.parse_request(payload, self.limits, self.catalog.find)
        sequences = fasta.parse(request.query)
        database_letters = self._letters(jobs.database_names(request.database)) or 0
        self._refuse_what_cannot_finish(request, sequences, database_letters)
        parts = batches.split(sequences, tuning.batch_letters(
            request.program, request.task, database_letters, self.settings.threads,
            self.settings.batch_letters))
        job = Job.submitted(jobs.new_job_id(), request, batches=len(parts),
                            traceparent=telemetry.inject().get("traceparent", ""))
        telemetry.annotate(job_id=job.id, program=job.program, database=job.database,
                           batches=job.batches)
        try:
            for number, part in enumerate(parts):
                self.results.put_text(job.id, query_blob(number), fasta.format_fasta(part),
                                      "text/x-fasta")
            self.records.create(job)
            try:
                self._queue(job, range(job.batches))
            except Exception:
                self.records.delete(job.id)
                raise
        except Exception:
            self.results.delete_job(job.id)
            raise
        job_log(job.id).info("job %s queued: %s %s on %s, %d queries in %d batches", job.id,
                             job.program, job.task, job.database, job.queries, job.batches)
        if self.on_queued:
            self.on_queued()
        return job

    def _refuse_what_cannot_finish(self, request: jobs.JobRequest,
                                   sequences: list[fasta.Sequence], database_letters: int) -> None:
        """A sequence that no search here could get through within BLAST_TIME_LIMIT is
        refused now, by name, rather than stopped at the limit after the wait (tuning.py)."""
        limit = self.settings.limits.blast_time_limit
        for index, sequence in enumerate(sequences, start=1):
            least = tuning.least_search_seconds(request.program, request.task,
                                                len(sequence.residues), database_letters,
                                                self.settings.threads)
            if least is not None and least > limit:
                name = f"sequence {index}" + (f" ({sequence.id[:40]})" if sequence.id else "")
                raise jobs.InvalidRequest([jobs.FieldError("query", (
                    f"{name}: {len(sequence.residues):,} letters against {database_letters:,} "
                    f"database letters with task {request.task} take at least "
                    f"{duration(least)}, longer than the {duration(limit)} one search may run "
                    "here (BLAST_TIME_LIMIT): use task megablast, or split the sequence"))])

    def _queue(self, job: Job, numbers: Iterable[int], resend: bool = False) -> None:
        """Send a message per batch: under its first id when submitting (duplicate detection
        drops a repeated send), under a fresh one when sending again (a requeue)."""
        trace = telemetry.inject()
        for number in numbers:
            self._send(messages.batch_message(job.id, number, trace), resend)

    def _send(self, message: Message, resend: bool = False) -> None:
        self.transport.send(Outgoing(message.encode(),
                                     message.resend_id() if resend else message.first_id,
                                     dict(message.trace)))

    def get(self, job_id: str) -> Job:
        """The job; JobExpired once it is past the retention period, whether or not the
        clean-up has deleted it yet."""
        self._check_id(job_id)
        found = self.records.get(job_id)
        if found is None:
            raise JobNotFound(job_id)
        return found[0]

    def _check_id(self, job_id: str) -> None:
        """JobNotFound for what is not a job id, JobExpired for an expired job's: no read."""
        if not jobs.is_job_id(job_id):
            raise JobNotFound(job_id)
        expired_at = self._expired(job_id)
        if expired_at:
            raise JobExpired(job_id, expired_at)

    def _expired(self, job_id: str) -> datetime | None:
        """When the job expired, if it has."""
        expiry = jobs.expires_at(job_id, self.settings.retention_days)
        return expiry if expiry is not None and expiry <= datetime.now(UTC) else None

    def recent(self, limit: int) -> list[Job]:
        """The newest jobs, without those expired but not yet cleaned up."""
        return [job for job in self.records.recent(limit) if not self._expired(job.id)]

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job: its record turns `cancelled` at once (so no
        pending batch will start, and workers running one stop BLAST at their next check),
        then its query and any batch results are deleted. JobFinished if it has ended."""
        self._check_id(job_id)

        def change(job: Job) -> Job:
            if job.status in jobs.FINAL_STATUSES:
                raise JobFinished(job)
            return job.cancel()

        try:
            cancelled, _ = self._update(job_id, change)
        except UnknownJob:
            raise JobNotFound(job_id) from None
        self.results.delete_job(job_id)
        job_log(job_id).info("job %s cancelled", job_id)
        return cancelled

    def databases(self) -> list[DatabaseInfo]:
        return self.catalog.list()

    def view(self, job: Job) -> dict:
        """The job as the API shows it, with its run summary (cost at the configured price)
        and its expiry."""
        return job.view(self.database_letters(job), self.settings.price_per_core_second,
                        self.settings.retention_days)

    def database_letters(self, job: Job) -> int | None:
        """Letters in the databases a job searches, from the catalog; None when the catalog
        cannot say (a database was removed, or cannot be listed)."""
        return self._letters(job.databases)

    def _letters(self, names: list[str]) -> int | None:
        try:
            found = [self.catalog.find(name) for name in names]
        except ToolError:
            return None
        return None if None in found else sum(info.letters for info in found)

    def result(self, job_id: str, format_name: str,
               wait: float = 0.0) -> ResultBody | ResultLink:
        """A succeeded job's result in one format: its content, or a link when it is larger
        than BLAST_MAX_INLINE_RESULT_BYTES. The first request for a format asks a worker to
        make it: formats are never made inside a request. Meanwhile ResultPending, after
        waiting up to `wait` seconds for the worker (for clients that cannot ask again, such
        as a browser's download link)."""
        deadline = time.monotonic() + wait
        job = self._succeeded(job_id)
        while True:
            made = self._made(job, format_name)
            if made is not None:
                return made
            pending = self._ask_for_format(job, format_name)
            if time.monotonic() >= deadline:
                raise pending
            time.sleep(RESULT_POLL_SECONDS)
            job = self._succeeded(job_id)

    def _made(self, job: Job, format_name: str) -> ResultBody | ResultLink | None:
        fmt = search.OUTPUT_FORMATS[format_name]
        made = job.format_state(format_name)
        if made.state != jobs.FORMAT_READY:
            return None
        if (made.size or 0) > self.settings.max_inline_result_bytes:
            return ResultLink(self._link(job, fmt))
        chunks = self.results.stream(job.id, result_blob(fmt.extension))
        return None if chunks is None else ResultBody(chunks, fmt.content_type,
                                                      f"{job.id}.{fmt.extension}")

    def result_link(self, job_id: str, format_name: str) -> str:
        """A read-only link to a result, which expires after BLAST_RESULT_LINK_HOURS or when
        the job does, whichever comes first: a link never outlives its result."""
        job = self._succeeded(job_id)
        fmt = search.OUTPUT_FORMATS[format_name]
        if job.format_state(format_name).state != jobs.FORMAT_READY or \
                not self.results.exists(job.id, result_blob(fmt.extension)):
            raise self._ask_for_format(job, format_name)
        return self._link(job, fmt)

    def _link(self, job: Job, fmt: search.OutputFormat) -> str:
        expiry = datetime.now(UTC) + timedelta(hours=self.settings.result_link_hours)
        job_expiry = jobs.expires_at(job.id, self.settings.retention_days)
        return self.results.read_link(job.id, result_blob(fmt.extension),
                                      min(expiry, job_expiry) if job_expiry else expiry)

    def _succeeded(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.status != jobs.SUCCEEDED:
            raise ResultNotReady(job)
        return job

    def _ask_for_format(self, job: Job, format_name: str) -> ResultPending:
        """Queue the making of a format unless it is already queued (and recently), and
        record that it is; returns the ResultPending to raise. Also when the record says
        ready but the blob is gone: it is made again."""
        made = job.format_state(format_name)
        if made.state == jobs.FORMAT_QUEUED and made.at and (datetime.now(UTC) - jobs.parse_time(
                made.at)).total_seconds() < FORMAT_REQUEST_SECONDS:
            return ResultPending(job, format_name)
        self._send(messages.format_message(job.id, format_name, {"traceparent": job.traceparent}
                                           if job.traceparent else {}),
                   resend=made.state is not None)
        self._safe_update(job.id, lambda current: current.format_queued(format_name)
                          if current.format_state(format_name) == made else None)
        job_log(job.id).info("job %s: %s result asked for", job.id, format_name)
        if self.on_queued:
            self.on_queued()
        return ResultPending(job, format_name, made.error)

    def _make_format(self, job: Job, format_name: str) -> None:
        """Format every batch's archive, merge them in query order, streaming, and store the
        result; the time it took goes on the job's record. Idempotent: two workers making the
        same format write the same blob."""
        fmt = search.OUTPUT_FORMATS[format_name]
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"format-{job.id}-") as workdir:
            parts, queries_before, seen = [], [], 0
            for number in range(job.batches):
                archive = os.path.join(workdir, archive_blob(number))
                self.results.download(job.id, archive_blob(number), archive)
                formatted = os.path.join(workdir, f"batch-{number}.{fmt.extension}")
                search.format_archive(self.tools, archive, fmt, self.settings.db_dir, formatted)
                os.unlink(archive)
                parts.append(formatted)
                queries_before.append(seen)
                seen += fasta.count_sequences(
                    self.results.get_text(job.id, query_blob(number)).splitlines())
            merged = os.path.join(workdir, f"result.{fmt.extension}")
            with contextlib.ExitStack() as files, open(merged, "w") as out:
                out.writelines(batches.merge(fmt.name, [files.enter_context(open(part))
                                                        for part in parts], queries_before))
            self.results.put_file(job.id, result_blob(fmt.extension), merged, fmt.content_type)
            size = os.path.getsize(merged)
        seconds = time.monotonic() - started
        self._update(job.id, lambda current: current.format_ready(format_name, seconds, size))
        job_log(job.id).info("job %s: %s result made in %.2f s", job.id, format_name, seconds)

    # Working

    def process(self, message: Message, attempt: int) -> None:
        """Handle one delivery of a message; `attempt` counts its deliveries, earlier copies
        included (`messages.Message.attempts`).

        Returns normally when the message is done with: the work succeeded or failed for
        good, or was already done (a redelivery). Raises UnknownJob or MalformedMessage when
        the message can never succeed, and anything else when another attempt should follow;
        on the last allowed attempt it first records the failure, so no job stays open.
        Traced as `process batch` or `format`, continuing the trace the message carries."""
        if message.format is None:
            with telemetry.span("process batch", parent=message.trace, job_id=message.job_id,
                                batch=message.batch, attempt=attempt):
                self._process_batch(message.job_id, message.batch, attempt)
        else:
            with telemetry.span("format", parent=message.trace, job_id=message.job_id,
                                format=message.format, attempt=attempt):
                self._process_format(message.job_id, message.format, attempt)

    def _process_batch(self, job_id: str, number: int, attempt: int) -> None:
        invocation_started = time.monotonic()
        jlog = job_log(job_id, number, attempt)
        if self._expired(job_id):
            jlog.info("job %s has expired; delivery %d ignored", job_id, attempt)
            return

        def start(job: Job) -> Job | None:
            if number >= job.batches:
                raise messages.MalformedMessage(f"job {job_id} has no batch {number}")
            return job.batch_started(number) if job.batch_unfinished(number) else None

        started, etag = self._update(job_id, start)
        if started is None:
            jlog.info("job %s batch %d already finished; delivery %d ignored", job_id, number,
                      attempt)
            return
        jlog.info("job %s batch %d running, attempt %d", job_id, number, attempt)
        known = (started, etag)
        try:
            queries, hits, timings = self._run(started, number, invocation_started)
        except search.SearchRejected as error:
            rejected = str(error)
            self._end_batch(known, number, lambda job: job.batch_failed(number, rejected), jlog)
            return
        except BatchStopped as stopped:
            spent = stopped.timings  # on the cancelled record: its CPU time was spent
            with contextlib.suppress(UnknownJob):  # deleted meanwhile: nothing to record on
                self._update(job_id, lambda job: job.timed(spent)
                             if job.status == jobs.CANCELLED else None)
            jlog.info("job %s batch %d: BLAST stopped after %.1f s, the job was cancelled",
                      job_id, number, spent.blast)
            return
        except Exception as error:
            if self._cancelled(job_id):  # BLAST stopped, or the query deleted under it
                jlog.info("job %s batch %d stopped: the job was cancelled (%s)", job_id, number,
                          describe(error))
                return
            if attempt >= self.settings.max_deliveries:
                reason = f"gave up after {attempt} attempts: {describe(error)}"
                self._end_batch(known, number, lambda job: job.batch_failed(number, reason),
                                jlog)
            raise
        jlog.info("job %s batch %d searched: %d queries, %d hits, BLAST %.2f s (%.2f CPU s)",
                  job_id, number, queries, hits, timings.blast, timings.blast_cpu)
        self._end_batch(known, number,
                        lambda job: job.batch_finished(number, queries, hits, timings), jlog)

    def _process_format(self, job_id: str, format_name: str, attempt: int) -> None:
        if format_name not in search.OUTPUT_FORMATS:
            raise messages.MalformedMessage(f"no result format {format_name!r}")
        jlog = job_log(job_id, None, attempt)
        if self._expired(job_id):
            return
        found = self.records.get(job_id)
        if found is None:
            raise UnknownJob(f"no record for job {job_id}")
        job = found[0]
        fmt = search.OUTPUT_FORMATS[format_name]
        if job.status != jobs.SUCCEEDED or (
                job.format_state(format_name).state == jobs.FORMAT_READY
                and self.results.exists(job.id, result_blob(fmt.extension))):
            jlog.info("job %s: %s result not to be made (job %s); delivery ignored", job_id,
                      format_name, job.status)
            return
        try:
            self._make_format(job, format_name)
        except Exception as error:
            if attempt >= self.settings.max_deliveries:
                reason = f"gave up after {attempt} attempts: {describe(error)}"
                self._safe_update(job_id, lambda current: current.format_failed(format_name,
                                                                               reason))
                jlog.warning("job %s: %s result failed: %s", job_id, format_name, reason)
            raise

    def _run(self, job: Job, number: int,
             invocation_started: float) -> tuple[int, int, jobs.BatchTimings]:
        """Search one batch and store its archive; the caller records the batch done only
        after. BLAST may run for what the invocation has left before the function timeout
        (less the time to store results), and at most BLAST_TIME_LIMIT. Returns the batch's
        query and hit counts and where its time went."""
        queued = time.time() - jobs.parse_time(job.submitted_at).timestamp()
        traced = {"job_id": job.id, "batch": number, "program": job.program,
                  "database": job.database}
        telemetry.annotate(**traced)
        with tempfile.TemporaryDirectory(prefix=f"blast-{job.id}-{number}-") as workdir:
            clock = time.monotonic()
            query_path = os.path.join(workdir, "query.fasta")
            self.results.download(job.id, query_blob(number), query_path)
            transfer = time.monotonic() - clock
            clock = time.monotonic()
            with telemetry.span("staging", **traced):
                databases = [self.catalog.local_path(name) for name in job.databases]
            staging = time.monotonic() - clock
            search_seconds = self.settings.limits.search_seconds(
                time.monotonic() - invocation_started)
            if search_seconds is None:
                raise NoTimeLeft(f"staging and download took {staging + transfer:.0f} s, "
                                 "leaving too little of this invocation for BLAST")
            with open(query_path) as query:
                queries = fasta.count_sequences(query)
            cancelled = search.StopCheck(lambda: self._cancelled(job.id),
                                         self.settings.cancel_check_seconds)
            with telemetry.span("blast", queries=queries, **traced):
                try:
                    result = search.run_search(job, self.tools, query_path, databases, workdir,
                                               queries, cancelled, search_seconds)
                except search.SearchCancelled as stopped:
                    raise BatchStopped(jobs.BatchTimings(
                        queued, staging, stopped.blast_seconds, transfer,
                        stopped.cpu_seconds)) from None
                telemetry.annotate(hits=result.hits, cpu_seconds=result.cpu_seconds)
            clock = time.monotonic()
            with telemetry.span("upload", **traced):
                self.results.put_file(job.id, archive_blob(number), result.archive,
                                      search.ARCHIVE.content_type)
            transfer += time.monotonic() - clock
        return queries, result.hits, jobs.BatchTimings(queued, staging, result.blast_seconds,
                                                       transfer, result.cpu_seconds)

    def _end_batch(self, known: tuple[Job, str], number: int,
                   outcome: Callable[[Job], Job], jlog: logging.LoggerAdapter) -> None:
        """Record a batch's outcome unless the job ended meanwhile (another batch failed it).
        `known` is the record as this worker last wrote it: usually still current."""
        job_id = known[0].id
        current = known[0]

        def change(job: Job) -> Job | None:
            nonlocal current
            current = job
            return outcome(job) if job.batch_unfinished(number) else None

        try:
            ended, _ = self._update(job_id, change, known)
        except UnknownJob:
            ended, current = None, None
        if ended is None and (current is None or current.status == jobs.CANCELLED):
            self.results.delete(job_id, archive_blob(number))  # cancelled as BLAST ended
            jlog.info("job %s batch %d: the job was cancelled or deleted meanwhile; its "
                      "result is not kept", job_id, number)
        elif ended is None:
            jlog.info("job %s batch %d: the job had already ended", job_id, number)
        elif ended.status == jobs.SUCCEEDED:
            jlog.info("job %s succeeded with %d hits", job_id, ended.hits)
        elif ended.status == jobs.FAILED:
            jlog.warning("job %s failed: %s", job_id, ended.error)
        else:
            jlog.info("job %s batch %d done (%d of %d)", job_id, number, ended.batches_done,
                      ended.batches)

    def _cancelled(self, job_id: str) -> bool:
        """Whether the job was cancelled, or deleted: its workers stop. False when the
        record cannot be read (the worker carries on)."""
        try:
            found = self.records.get(job_id)
        except Exception as error:
            log.warning("cannot read job %s to check for cancelling (%s)", job_id,
                        describe(error))
            return False
        return found is None or found[0].status == jobs.CANCELLED

    def _update(self, job_id: str, change: Callable[[Job], Job | None],
                known: tuple[Job, str] | None = None) -> tuple[Job | None, str]:
        """Apply `change` to the record with an ETag-conditional write, re-reading and retrying
        when another worker wrote first: no lock, and no lost update. Starts from `known`
        (a record and its ETag) when given, saving a read. Returns the new record and ETag,
        or (None, "") when `change` declines."""
        found = known
        for attempt in range(_UPDATE_ATTEMPTS):
            if found is None:
                found = self.records.get(job_id)
                if found is None:
                    raise UnknownJob(f"no record for job {job_id}")
            changed = change(found[0])
            if changed is None:
                return None, ""
            try:
                return changed, self.records.replace(changed, found[1])
            except RecordConflict:
                found = None
                time.sleep(random.uniform(0, 0.05 * (attempt + 1)))
        raise RecordConflict(f"job {job_id} kept changing under {_UPDATE_ATTEMPTS} attempts")

    # Operating

    def stats(self) -> dict[str, object]:
        """Queue health and recent jobs: queue depth and dead letters (cached a few seconds),
        jobs by status over the last hour and day (read newest first, stopping at a day),
        end-to-end seconds and BLAST throughput over the newest finished jobs."""
        now = time.time()
        now_ms = int(now * 1000)
        day = self.records.since(jobs.ids_since(now_ms - 86_400_000), STATS_MAX_JOBS)
        hour_bound = jobs.ids_since(now_ms - 3_600_000)
        latest = self.records.recent(STATS_RECENT_JOBS)
        finished = [j for j in latest if j.finished_at and j.status in jobs.FINAL_STATUSES]
        totals = sorted(jobs.parse_time(j.finished_at).timestamp()
                        - jobs.parse_time(j.submitted_at).timestamp() for j in finished)
        searched = [j for j in finished if j.status == jobs.SUCCEEDED and j.cpu_seconds_blast > 0]
        cpu = sum(j.cpu_seconds_blast for j in searched)
        letters = sum(j.query_letters for j in searched)
        return {
            "generated_at": jobs.utc_now(),
            "queue": self._cached_queue_counts(),
            "jobs": {"last_hour": _by_status(j for j in day if j.id < hour_bound),
                     "last_day": _by_status(day),
                     "complete": len(day) < STATS_MAX_JOBS},
            "end_to_end": {
                "jobs": len(totals),
                "median_seconds": round(statistics.median(totals), 3) if totals else None,
                "p95_seconds": (round(totals[math.ceil(0.95 * len(totals)) - 1], 3)
                                if totals else None)},
            "throughput": {
                "jobs": len(searched), "query_letters": letters, "cpu_seconds": round(cpu, 3),
                "letters_per_cpu_second": round(letters / cpu, 1) if cpu > 0 else None},
        }

    def _cached_queue_counts(self) -> dict[str, object]:
        with self._queue_counts_lock:
            if (self._queue_counts is None or
                    time.monotonic() - self._queue_counts[0] >= QUEUE_COUNTS_CACHE_SECONDS):
                counts: dict[str, object] = {"transport": self.settings.queue_transport,
                                             "name": self.settings.queue_name}
                try:
                    found = self.transport.counts()
                    counts.update(depth=found.depth, dead_letters=found.dead_letters, error=None)
                except Exception as error:  # no Manage rights, network: say so, don't fail
                    log.warning("cannot read the queue counts: %s", describe(error))
                    counts.update(depth=None, dead_letters=None, error=describe(error))
                self._queue_counts = (time.monotonic(), counts)
            taken, counts = self._queue_counts
            return {**counts, "age_seconds": round(time.monotonic() - taken, 1)}

    # Retention

    def clean_up(self, limit: int = 10_000) -> int:
        """Delete up to `limit` expired jobs and return how many. They are the tail of the
        newest-first partition, read from the expiry bound on, so no younger job is read.
        Per page, the blobs go first and then the records in one transaction: a crash leaves
        records to find next time, never blobs that no record leads to."""
        if self.settings.retention_days <= 0:
            return 0
        bound = jobs.expired_ids_bound(int(time.time() * 1000), self.settings.retention_days)
        deleted = 0
        with ThreadPoolExecutor(CLEANUP_THREADS, thread_name_prefix="clean-up") as pool:
            for page in self.records.ids_from(bound, CLEANUP_PAGE):
                page = page[:limit - deleted]
                list(pool.map(self.results.delete_job, page))  # re-raises the first failure
                self.records.delete_many(page)
                deleted += len(page)
                if deleted >= limit:
                    break
        if deleted:
            log.info("clean-up: deleted %d expired jobs (retention %g days)", deleted,
                     self.settings.retention_days)
        return deleted

    # Stranded jobs

    def sweep(self, now: datetime | None = None) -> SweepReport:
        """End the open jobs that can no longer end by themselves, `failed` with the reason:
        those whose message the queue dead-lettered without our code failing them (a lock
        lost after a worker restart, the time to live, a last delivery that died), and those
        no message can still reach (`jobs.stranded_reason`). Runs in the timer function
        `sweep_stranded_jobs` and in `serve`; `now` lets tests look ahead."""
        ended = []
        for letter in self.transport.peek_dead_letters(SWEEP_DEAD_LETTERS):
            try:
                message = messages.decode(letter.body)
            except messages.MalformedMessage:
                continue
            reason = f"the queue dead-lettered its message ({letter.reason or 'no reason given'})"
            if self._fail_open_work(message, reason):
                ended.append(message.job_id)
        now = now or datetime.now(UTC)
        stranded = []
        limits = self.settings.limits
        quiet_since = now - timedelta(seconds=min(limits.running_stale_after,
                                                  limits.queued_stale_after))
        for job, _, changed_at in self.records.open_jobs_unchanged_since(quiet_since,
                                                                         SWEEP_STALE_JOBS):
            reason = jobs.stranded_reason(job, (now - changed_at).total_seconds(), limits)
            if reason and self._fail_stranded(job.id, reason):
                stranded.append(job.id)
        for job_id in (*ended, *stranded):
            job_log(job_id).warning("job %s ended by the sweep: %s", job_id,
                                    self.records.get(job_id)[0].error)
        return SweepReport(ended, stranded)

    def _fail_open_work(self, message: Message, reason: str) -> bool:
        """Fail the batch (or result format) a dead letter names, if it is still open."""
        if message.format is not None:
            self._safe_update(message.job_id, lambda job: job.format_failed(message.format, reason)
                              if job.format_state(message.format).state == jobs.FORMAT_QUEUED
                              else None)
            return False
        number = message.batch
        changed, _ = self._safe_update(message.job_id, lambda job: job.batch_failed(number, reason)
                                       if number < job.batches and job.batch_unfinished(number)
                                       else None)
        return changed is not None

    def _fail_stranded(self, job_id: str, reason: str) -> bool:
        def change(job: Job) -> Job | None:
            unfinished = [n for n in range(job.batches) if job.batch_unfinished(n)]
            return job.batch_failed(unfinished[0], reason) if unfinished else None

        changed, _ = self._safe_update(job_id, change)
        return changed is not None

    def _safe_update(self, job_id: str,
                     change: Callable[[Job], Job | None]) -> tuple[Job | None, str]:
        """`_update` for a job that may be gone (cleaned up): nothing to change then."""
        try:
            return self._update(job_id, change)
        except UnknownJob:
            return None, ""

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
        """Put dead-lettered jobs back in the queue; returns the requeued job ids and how many
        messages were left (unreadable, or naming no job).

        Order: reset the record, send a message for every unfinished batch, then remove the
        dead letter; a crash in between leaves at most duplicate messages, which processing
        ignores. The messages get fresh ids: under the first ones, Service Bus duplicate
        detection would accept the sends and drop the messages."""
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
            if found[0].status in (jobs.SUCCEEDED, jobs.CANCELLED) or self._expired(job_id):
                delivery.complete()  # nothing left to run
                continue
            if job_id not in requeued:
                job, etag = found
                self.records.replace(job.requeued(), etag)
                self._queue(job, job.unfinished_batches(), resend=True)
                requeued.append(job.id)
                job_log(job.id).info("job %s requeued from the dead letters", job.id)
            delivery.complete()
        for delivery in unreadable:
            delivery.abandon()
        return requeued, len(unreadable)

    def _job_of(self, body: bytes) -> tuple[str | None, tuple[Job, str] | None]:
        try:
            message = messages.decode(body)
        except messages.MalformedMessage:
            return None, None
        return message.job_id, self.records.get(message.job_id)


@dataclass(frozen=True)
class DeadLetterView:
    job_id: str | None
    status: str | None
    reason: str
    error: str | None


def _by_status(found: Iterable[Job]) -> dict[str, int]:
    counts = dict.fromkeys(jobs.STATUSES, 0)
    for job in found:
        counts[job.status] = counts.get(job.status, 0) + 1
    counts["total"] = sum(counts.values())
    return counts


def describe(error: Exception) -> str:
    """One line for a job record or a log: SDK errors carry whole response documents after it."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first_line}"[:500]


_default: BlastService | None = None
_default_lock = threading.Lock()


def default_service() -> BlastService:
    """The process-wide service, built from the environment on first use, once even when
    several threads (concurrent invocations) ask at the same moment. SettingsError when the
    settings are wrong: it is raised again on the next call, until they are fixed."""
    global _default
    with _default_lock:
        if _default is None:
            settings = Settings.from_env()
            telemetry.configure(settings)
            service = BlastService.from_settings(settings)
            service.ensure_storage()
            _default = service
        return _default


def reset_default_service() -> None:
    """Forget the process-wide service (tests change the environment between apps)."""
    global _default
    with _default_lock:
        _default = None
