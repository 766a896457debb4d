"""Submitting a job: validate, refuse what cannot finish in time, store the query batches,
record the job, then queue every batch, so a worker never sees a job without a record. A
job of one small batch carries its query in its message (`limits.INLINE_QUERY_BYTES`) and
stores none in Blob storage."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from blast_core import telemetry
from blast_core.domain import batches, client_input, fasta, job_request, jobs, messages, tuning
from blast_core.domain.jobs import Job
from blast_core.domain.limits import INLINE_QUERY_BYTES, duration
from blast_core.domain.messages import Message
from blast_core.logs import job_log
from blast_core.service import lookup, uploads
from blast_core.storage.ports import BATCH_QUERIES_BLOB, SUBJECT_BLOB, Outgoing, query_blob

if TYPE_CHECKING:
    from blast_core.service.core import BlastService


def submit(service: BlastService, payload: object) -> Job:
    """Raises client_input.InvalidRequest before anything is stored; on a storage or queue failure
    removes what it stored and re-raises. Traced as `submit`, the trace that the batches'
    processing and formatting continue."""
    with telemetry.span("submit"):
        return _submit(service, payload)


def validate(service: BlastService, payload: object) -> job_request.JobRequest:
    """The request, validated as a submission validates it; InvalidRequest naming every bad
    field."""
    return job_request.parse_request(payload, service.query_limits, service.catalog.find,
                                     service.subject_limits)


def _submit(service: BlastService, payload: object) -> Job:
    request = validate(service, payload)
    if request.query_upload:
        job = uploads.submit_upload(service, request)
        job_log(job.id).info("job %s submitted: %s %s on %s, a %d-byte upload to check",
                             job.id, job.program, job.task, _searched(job), job.upload_bytes)
        service.wake_workers()
        return job
    sequences = list(request.sequences)
    database_letters = (request.subject_letters if request.subject else lookup.database_letters(
        service, jobs.database_names(request.database)) or 0)
    _refuse_what_cannot_finish(service, request, sequences, database_letters)
    parts = batches.split(sequences, tuning.batch_letters(
        request.program, request.task, database_letters, service.settings.threads,
        service.settings.batch_letters))
    job = Job.submitted(jobs.new_job_id(), request, batches=len(parts),
                        traceparent=telemetry.inject().get("traceparent", ""))
    telemetry.annotate(job_id=job.id, program=job.program, database=job.database,
                       batches=job.batches)
    texts = [fasta.format_fasta(part) for part in parts]
    inline = texts[0] if len(texts) == 1 and len(texts[0].encode()) <= INLINE_QUERY_BYTES \
        else None
    lane = lane_of(service, job, database_letters)
    try:
        if request.subject:
            service.blobs.put_text(job.id, SUBJECT_BLOB, fasta.format_fasta(request.subject),
                                   "text/x-fasta")
        if inline is None:
            for number, text in enumerate(texts):
                service.blobs.put_text(job.id, query_blob(number), text, "text/x-fasta")
            store_batch_queries(service, job.id, [len(part) for part in parts])
        service.records.create(job)
        try:
            if inline is None:
                queue(service, job, range(job.batches), lane=lane)
            else:
                send(service, messages.batch_message(job.id, 0, telemetry.inject(), inline, lane))
        except Exception:
            service.records.delete(job.id)
            raise
    except Exception:
        service.blobs.delete_job(job.id)
        raise
    job_log(job.id).info("job %s queued: %s %s on %s, %d queries in %d batches", job.id,
                         job.program, job.task, _searched(job), job.queries, job.batches)
    service.wake_workers()
    return job


def store_batch_queries(service: BlastService, job_id: str, counts: list[int]) -> None:
    """How many queries each batch of a job of several holds: which queries its results so
    far cover (`results.partial_table`)."""
    if len(counts) > 1:
        service.blobs.put_text(job_id, BATCH_QUERIES_BLOB, json.dumps(counts),
                               "application/json")


def _searched(job: Job) -> str:
    return f"{job.subjects} subject sequences" if job.searches_subject else job.database


def _refuse_what_cannot_finish(service: BlastService, request: job_request.JobRequest,
                               sequences: list[fasta.Sequence], database_letters: int) -> None:
    for index, sequence in enumerate(sequences, start=1):
        reason = cannot_finish(service, request.program, request.task, bool(request.subject),
                               index, sequence, database_letters)
        if reason:
            raise client_input.InvalidRequest([client_input.FieldError("query", reason)])


def cannot_finish(service: BlastService, program: str, task: str, searches_subject: bool,
                  index: int, sequence: fasta.Sequence, database_letters: int) -> str | None:
    """Why a sequence that no search here could get through within BLAST_TIME_LIMIT is
    refused now, by name, rather than stopped at the limit after the wait (tuning.py)."""
    limit = service.settings.limits.blast_time_limit
    least = tuning.least_search_seconds(program, task, len(sequence.residues), database_letters,
                                        service.settings.threads)
    if least is None or least <= limit:
        return None
    return (f"{fasta.describe(index, sequence)}: {len(sequence.residues):,} letters against "
            f"{database_letters:,} {'subject' if searches_subject else 'database'} letters "
            f"with task {task} take at least {duration(least)}, longer than the "
            f"{duration(limit)} one search may run here (BLAST_TIME_LIMIT): use task "
            "megablast, or split the sequence")


def queue(service: BlastService, job: Job, numbers: Iterable[int], resend: bool = False,
          lane: str | None = None) -> None:
    """Send a message per batch, to the job's lane: under its first id when submitting
    (duplicate detection drops a repeated send), under a fresh one when sending again (a
    requeue)."""
    trace, lane = telemetry.inject(), lane or lane_of(service, job)
    for number in numbers:
        send(service, messages.batch_message(job.id, number, trace, lane=lane), resend)


def lane_of(service: BlastService, job: Job, database_letters: int | None = None) -> str:
    """The lane of a job's messages, by its query letters (`messages.lane_for`)."""
    if database_letters is None:
        database_letters = lookup.searched_letters(service, job) or 0
    return messages.lane_for(job.query_letters, service.settings.interactive_letters,
                             tuning.batch_letters(job.program, job.task, database_letters,
                                                  service.settings.threads,
                                                  service.settings.batch_letters))


def send(service: BlastService, message: Message, resend: bool = False) -> None:
    service.transport.send(Outgoing.of(message, message.resend_id() if resend
                                       else message.first_id))
