"""Working on a queue message: search a batch of a job (or have a result format made), record
the outcome once, and tell the host whether another attempt should follow."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from blast_core import telemetry
from blast_core.blast import search
from blast_core.domain import fasta, jobs, messages
from blast_core.domain.jobs import Job
from blast_core.domain.messages import Message
from blast_core.logs import describe, job_log, log
from blast_core.service import lookup, results
from blast_core.service.errors import BatchStopped, NoTimeLeft, UnknownJob
from blast_core.storage.ports import RecordMissing, StoredJob, archive_blob, query_blob

if TYPE_CHECKING:
    from blast_core.service.core import BlastService


def handle(service: BlastService, message: Message, attempt: int, last_attempt: bool) -> None:
    """Handle one delivery; `attempt` counts the message's deliveries, earlier copies included,
    and `last_attempt` says no other follows (the host decides it, `hosts/worker.py`).

    Returns normally when the message is done with: the work succeeded or failed for good, or
    was already done (a redelivery). Raises UnknownJob or MalformedMessage when the message can
    never succeed, and anything else when another attempt should follow; the last attempt
    first records the failure, so no job stays open. Traced as `process batch` or `format`,
    continuing the trace the message carries."""
    if message.format is None:
        with telemetry.span("process batch", parent=message.trace, job_id=message.job_id,
                            batch=message.batch, attempt=attempt):
            _process_batch(service, message.job_id, message.batch, attempt, last_attempt)
    else:
        with telemetry.span("format", parent=message.trace, job_id=message.job_id,
                            format=message.format, attempt=attempt):
            results.make(service, message.job_id, message.format, attempt, last_attempt)


def _process_batch(service: BlastService, job_id: str, number: int, attempt: int,
                   last_attempt: bool) -> None:
    invocation_started = time.monotonic()
    jlog = job_log(job_id, number, attempt)
    if lookup.expired(service, job_id):
        jlog.info("job %s has expired; delivery %d ignored", job_id, attempt)
        return

    def start(job: Job) -> Job | None:
        if number >= job.batches:
            raise messages.MalformedMessage(f"job {job_id} has no batch {number}")
        return job.batch_started(number) if job.batch_unfinished(number) else None

    try:
        started = service.records.update(job_id, start)
    except RecordMissing:
        raise UnknownJob(f"no record for job {job_id}") from None
    if started is None:
        jlog.info("job %s batch %d already finished; delivery %d ignored", job_id, number,
                  attempt)
        return
    jlog.info("job %s batch %d running, attempt %d", job_id, number, attempt)
    try:
        queries, hits, timings = _run(service, started.job, number, invocation_started)
    except search.SearchRejected as error:
        rejected = str(error)
        _end_batch(service, started, number, lambda job: job.batch_failed(number, rejected), jlog)
        return
    except BatchStopped as stopped:
        spent = stopped.timings  # on the cancelled record: its CPU time was spent
        with contextlib.suppress(RecordMissing):  # deleted meanwhile: nothing to record on
            service.records.update(job_id, lambda job: job.timed(spent)
                                   if job.status == jobs.CANCELLED else None)
        jlog.info("job %s batch %d: BLAST stopped after %.1f s, the job was cancelled",
                  job_id, number, spent.blast)
        return
    except Exception as error:
        if _cancelled(service, job_id):  # BLAST stopped, or the query deleted under it
            jlog.info("job %s batch %d stopped: the job was cancelled (%s)", job_id, number,
                      describe(error))
            return
        if last_attempt:
            reason = f"gave up after {attempt} attempts: {describe(error)}"
            _end_batch(service, started, number, lambda job: job.batch_failed(number, reason),
                       jlog)
        raise
    jlog.info("job %s batch %d searched: %d queries, %d hits, BLAST %.2f s (%.2f CPU s)",
              job_id, number, queries, hits, timings.blast, timings.blast_cpu)
    _end_batch(service, started, number,
               lambda job: job.batch_finished(number, queries, hits, timings), jlog)


def _run(service: BlastService, job: Job, number: int,
         invocation_started: float) -> tuple[int, int, jobs.BatchTimings]:
    """Search one batch and store its archive; the caller records the batch done only after.
    BLAST may run for what the invocation has left before the function timeout (less the time
    to store results), and at most BLAST_TIME_LIMIT. Returns the batch's query and hit counts
    and where its time went."""
    queued = time.time() - jobs.parse_time(job.submitted_at).timestamp()
    traced = {"job_id": job.id, "batch": number, "program": job.program,
              "database": job.database}
    telemetry.annotate(**traced)
    with tempfile.TemporaryDirectory(prefix=f"blast-{job.id}-{number}-") as workdir:
        clock = time.monotonic()
        query_path = os.path.join(workdir, "query.fasta")
        service.blobs.download(job.id, query_blob(number), query_path)
        transfer = time.monotonic() - clock
        clock = time.monotonic()
        with telemetry.span("staging", **traced):
            databases = [service.catalog.local_path(name) for name in job.databases]
        staging = time.monotonic() - clock
        search_seconds = service.settings.limits.search_seconds(
            time.monotonic() - invocation_started)
        if search_seconds is None:
            raise NoTimeLeft(f"staging and download took {staging + transfer:.0f} s, "
                             "leaving too little of this invocation for BLAST")
        with open(query_path) as query:
            queries = fasta.count_sequences(query)
        cancelled = search.StopCheck(lambda: _cancelled(service, job.id),
                                     service.settings.cancel_check_seconds)
        with telemetry.span("blast", queries=queries, **traced):
            try:
                found = search.run_search(job, service.tools, query_path, databases, workdir,
                                          queries, cancelled, search_seconds)
            except search.SearchCancelled as stopped:
                raise BatchStopped(jobs.BatchTimings(
                    queued, staging, stopped.blast_seconds, transfer,
                    stopped.cpu_seconds)) from None
            telemetry.annotate(hits=found.hits, cpu_seconds=found.cpu_seconds)
        clock = time.monotonic()
        with telemetry.span("upload", **traced):
            service.blobs.put_file(job.id, archive_blob(number), found.archive,
                                   search.ARCHIVE.content_type)
        transfer += time.monotonic() - clock
    return queries, found.hits, jobs.BatchTimings(queued, staging, found.blast_seconds,
                                                  transfer, found.cpu_seconds)


def _end_batch(service: BlastService, known: StoredJob, number: int,
               outcome: Callable[[Job], Job], jlog: logging.LoggerAdapter) -> None:
    """Record a batch's outcome unless the job ended meanwhile (another batch failed it).
    `known` is the record as this worker last wrote it: usually still current."""
    job_id = known.job.id
    current: Job | None = known.job

    def change(job: Job) -> Job | None:
        nonlocal current
        current = job
        return outcome(job) if job.batch_unfinished(number) else None

    try:
        stored = service.records.update(job_id, change, known)
    except RecordMissing:
        stored, current = None, None
    ended = stored.job if stored else None
    if ended is None and (current is None or current.status == jobs.CANCELLED):
        service.blobs.delete(job_id, archive_blob(number))  # cancelled as BLAST ended
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


def _cancelled(service: BlastService, job_id: str) -> bool:
    """Whether the job was cancelled, or deleted: its workers stop. False when the record
    cannot be read (the worker carries on)."""
    try:
        found = service.records.get(job_id)
    except Exception as error:
        log.warning("cannot read job %s to check for cancelling (%s)", job_id, describe(error))
        return False
    return found is None or found.job.status == jobs.CANCELLED
