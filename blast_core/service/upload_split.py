"""A worker's part of an uploaded query (`uploads.py`): read it as a stream, check every
sequence as a submission would, write its batches, then queue them, so that the job runs on
as any other. Memory holds one batch and one chunk of the upload, whatever its size.

A sequence that is not acceptable fails the job with the reason a direct submission would get,
under `query_upload`; the batches written until then are deleted and none is queued. The
upload is deleted once its job no longer needs it."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from blast_core.domain import batches, fasta, job_request, jobs, tuning
from blast_core.domain.jobs import Job
from blast_core.logs import describe, job_log
from blast_core.service import lookup, submission
from blast_core.service.errors import UnknownJob
from blast_core.storage.ports import UPLOADS, BlobChanged, query_blob, upload_blob

if TYPE_CHECKING:
    from blast_core.service.core import BlastService

MAX_BATCHES = 20_000  # per job: its record holds a letter per batch (Table: 64 KiB a value)
PROGRESS_BATCHES = 20  # batches written between two records of the bytes checked so far
LINE_SLACK = 1000  # characters of a line beyond the longest sequence (spaces, a header)


class Refused(Exception):
    """The upload cannot be the job's query; the message says why, for the user."""


class Cancelled(Exception):
    """The job was cancelled while its upload was being split."""


def split(service: BlastService, job_id: str, last_attempt: bool) -> None:
    """Check and split the upload of a `validating` job and queue its batches. A job past
    that (a redelivery) has its pending batches sent again, which duplicate detection or the
    batch's record drops when they were sent already. A failure other than the upload's own
    is raised for another attempt, and on the last one fails the job."""
    found = service.records.get(job_id)
    if found is None:
        raise UnknownJob(f"no record for job {job_id}")
    job = found.job
    if job.status != jobs.VALIDATING:
        if job.status == jobs.QUEUED and job.upload_bytes:
            submission.queue(service, job, [n for n in range(job.batches)
                                            if job.batch_state(n) == jobs.BATCH_PENDING])
        service.blobs.delete(UPLOADS, upload_blob(job_id))
        return
    started = time.monotonic()
    try:
        counts, letters = _write_batches(service, job)
    except (Refused, fasta.FastaError) as refusal:
        _end(service, job, f"query_upload: {refusal}")
        return
    except Cancelled:
        _end(service, job, None)
        return
    except Exception as error:
        if last_attempt:
            _end(service, job, f"query_upload: the upload could not be read and split "
                               f"({describe(error)})")
        raise
    _queue(service, job, len(counts), sum(counts), letters)
    job_log(job_id).info("job %s: its upload of %d bytes split into %d batches of %d queries "
                         "in %.1f s", job_id, job.upload_bytes, len(counts), sum(counts),
                         time.monotonic() - started)


def _write_batches(service: BlastService, job: Job) -> tuple[list[int], int]:
    """Store the upload's batches and how many queries each holds; those counts, and the
    letters of all."""
    try:
        chunks = service.blobs.stream(UPLOADS, upload_blob(job.id), etag=job.upload_etag)
        if chunks is None:
            raise Refused("the upload is gone (deleted, or past its time)")
        searched = lookup.searched_letters(service, job) or 0
        per_batch = max(tuning.batch_letters(job.program, job.task, searched,
                                             service.settings.threads,
                                             service.settings.batch_letters),
                        -(-job.upload_bytes // MAX_BATCHES))
        read = [0]
        chunks = _counted(chunks, read)
        counts: list[int] = []
        letters = 0
        checked = _checked(service, job, chunks, searched)
        for number, part in enumerate(batches.split_stream(checked, per_batch)):
            if number and number % PROGRESS_BATCHES == 0:
                _record_progress(service, job.id, read[0])
            service.blobs.put_text(job.id, query_blob(number), fasta.format_fasta(part),
                                   "text/x-fasta")
            counts.append(len(part))
            letters += sum(len(sequence.residues) for sequence in part)
        submission.store_batch_queries(service, job.id, counts)
        return counts, letters
    except BlobChanged:
        raise Refused("the upload was written again after the job was submitted") from None


def _checked(service: BlastService, job: Job, chunks: Iterable[bytes],
             searched: int) -> Iterator[fasta.Sequence]:
    """The upload's sequences, each checked as a submission checks a query's against
    `searched` letters (headerless ones named by their place, Query_<n>); FastaError at the
    first that is not acceptable."""
    limits = service.upload_limits
    _, _, molecule, _ = job_request.PROGRAMS[job.program]
    lines = fasta.lines_of(chunks, limits.max_letters + limits.max_header_chars + LINE_SLACK)
    index = 0
    for index, sequence in enumerate(fasta.sequences_of(lines), start=1):
        if index > limits.max_sequences:
            raise fasta.FastaError(f"holds more than {limits.max_sequences:,} sequences, the "
                                   "limit")
        fasta.check(index, sequence, molecule, limits)
        if molecule == "protein":
            job_request.refuse_nucleotides(index, sequence, job.program)
        reason = submission.cannot_finish(service, job.program, job.task, job.searches_subject,
                                          index, sequence, searched)
        if reason:
            raise Refused(reason)
        yield sequence if sequence.header else fasta.Sequence(f"Query_{index}", sequence.residues)
    if not index:
        raise fasta.FastaError("holds no sequence")


def _counted(chunks: Iterable[bytes], read: list[int]) -> Iterator[bytes]:
    for chunk in chunks:
        read[0] += len(chunk)
        yield chunk


def _record_progress(service: BlastService, job_id: str, checked: int) -> None:
    """The bytes of the upload read so far, on the record for the job's owner to see;
    Cancelled when the job is no longer validating (cancelled meanwhile)."""
    if service.records.update(job_id, lambda job: job.checking(checked)
                              if job.status == jobs.VALIDATING else None) is None:
        raise Cancelled()


def _queue(service: BlastService, job: Job, count: int, queries: int, letters: int) -> None:
    """Record the batches, then queue them (a job cancelled meanwhile gets none)."""
    updated = service.records.update(job.id, lambda current: current.validated(
        count, queries, letters) if current.status == jobs.VALIDATING else None)
    if updated is None:
        _end(service, job, None)
        return
    submission.queue(service, updated.job, range(count))
    service.blobs.delete(UPLOADS, upload_blob(job.id))
    service.wake_workers()


def _end(service: BlastService, job: Job, reason: str | None) -> None:
    """No batch of this job will run: delete what was stored for it and the upload, and with
    a `reason`, fail the job (unless it has ended otherwise meanwhile)."""
    service.blobs.delete_job(job.id)
    if reason is not None:
        service.records.update(job.id, lambda current: current.refused(reason)
                               if current.status == jobs.VALIDATING else None)
        job_log(job.id).info("job %s failed: %s", job.id, reason)
    service.blobs.delete(UPLOADS, upload_blob(job.id))
