"""A batch received to search: its job record and query as read, and how each outcome of its
search is recorded on its own job, once, whatever else ended the job meanwhile."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from blast_core.domain import fasta, jobs, messages
from blast_core.domain.jobs import BatchTimings, Job
from blast_core.logs import describe, job_log, log
from blast_core.service import lookup
from blast_core.service.errors import UnknownJob
from blast_core.storage.ports import RecordMissing, StoredJob, archive_blob, query_blob

if TYPE_CHECKING:
    from blast_core.service.core import BlastService
    from blast_core.service.processing import Outcome, Work


@dataclass
class ReceivedBatch:
    """A batch received to search: its job record as read, and its query."""

    index: int
    work: Work
    stored: StoredJob
    query: str
    queries: int
    letters: int
    fetch_seconds: float

    @property
    def job_id(self) -> str:
        return self.stored.job.id

    @property
    def number(self) -> int:
        return self.work.message.batch or 0

    @property
    def log(self) -> logging.LoggerAdapter:
        return job_log(self.job_id, self.number, self.work.attempt)


def receive(service: BlastService, index: int, item: Work) -> ReceivedBatch | None:
    """The batch a message names, with its query (from the message, or Blob storage); None
    when its job expired or the batch is already finished."""
    message = item.message
    job_id, number = message.job_id, message.batch or 0
    jlog = job_log(job_id, number, item.attempt)
    if lookup.expired(service, job_id):
        jlog.info("job %s has expired; delivery %d ignored", job_id, item.attempt)
        return None
    stored = service.records.get(job_id)
    if stored is None:
        raise UnknownJob(f"no record for job {job_id}")
    if number >= stored.job.batches:
        raise messages.MalformedMessage(f"job {job_id} has no batch {number}")
    if not stored.job.batch_unfinished(number):
        jlog.info("job %s batch %d already finished; delivery %d ignored", job_id, number,
                  item.attempt)
        return None
    clock = time.monotonic()
    try:
        query = message.query if message.query is not None else service.blobs.get_text(
            job_id, query_blob(number))
    except Exception as error:
        failed = attempt_failed(service, ReceivedBatch(index, item, stored, "", 0, 0, 0.0), error)
        if failed is None:
            return None
        raise
    lines = query.splitlines()
    return ReceivedBatch(index, item, stored, query, fasta.count_sequences(lines),
                  sum(len(line.strip()) for line in lines if not line.startswith(">")),
                  time.monotonic() - clock)


def attempt_failed(service: BlastService, batch: ReceivedBatch, error: Exception) -> Outcome:
    """The outcome of a failed attempt: nothing more to do when the job was cancelled
    meanwhile; else the error, recorded on the job first when no attempt follows."""
    if cancelled(service, batch.job_id):  # BLAST stopped, or the query deleted under it
        batch.log.info("job %s batch %d stopped: the job was cancelled (%s)", batch.job_id,
                       batch.number, describe(error))
        return None
    if batch.work.last_attempt:
        reason, number = f"gave up after {batch.work.attempt} attempts: {describe(error)}", \
            batch.number
        with contextlib.suppress(Exception):  # the message is dead-lettered all the same
            end_batch(service, batch, lambda job: job.batch_failed(number, reason))
    return error


def cancelled_while_running(service: BlastService, batch: ReceivedBatch, spent: BatchTimings) -> None:
    """BLAST was stopped for a cancel: its CPU time was spent all the same."""
    with contextlib.suppress(RecordMissing):  # deleted meanwhile: nothing to record on
        service.records.update(batch.job_id, lambda job: job.timed(spent)
                               if job.status == jobs.CANCELLED else None)
    batch.log.info("job %s batch %d: BLAST stopped after %.1f s, the job was cancelled",
                   batch.job_id, batch.number, spent.blast)


def end_batch(service: BlastService, batch: ReceivedBatch, outcome: Callable[[Job], Job]) -> None:
    """Record a batch's outcome unless the job ended meanwhile (another batch failed it).
    `batch.stored` is the record as this worker last wrote it: usually still current."""
    job_id, number, jlog = batch.job_id, batch.number, batch.log
    current: Job | None = batch.stored.job

    def change(job: Job) -> Job | None:
        nonlocal current
        current = job
        return outcome(job) if job.batch_unfinished(number) else None

    try:
        stored = service.records.update(job_id, change, batch.stored)
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


def cancelled(service: BlastService, job_id: str) -> bool:
    """Whether the job was cancelled, or deleted: its workers stop. False when the record
    cannot be read (the worker carries on)."""
    try:
        found = service.records.get(job_id)
    except Exception as error:
        log.warning("cannot read job %s to check for cancelling (%s)", job_id, describe(error))
        return False
    return found is None or found.job.status == jobs.CANCELLED
