"""A succeeded job's results: asked for by a request, made by a worker (never inside the
request: a result may be hundreds of megabytes), then streamed, or linked when large."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from blast_core.blast import search
from blast_core.domain import batches, byte_ranges, fasta, hit_selection, jobs, messages, tabular
from blast_core.domain.byte_ranges import ByteSpan, RangeSpec
from blast_core.domain.client_input import FieldError, InvalidRequest
from blast_core.domain.hit_selection import HitSelection, UnknownHits
from blast_core.domain.jobs import Job
from blast_core.logs import describe, job_log
from blast_core.service import concurrently, hit_sequences, lookup, submission
from blast_core.service.errors import ResultNotReady, ResultPending, UnknownJob
from blast_core.storage.ports import (
    BATCH_QUERIES_BLOB,
    RecordMissing,
    archive_blob,
    batch_table_blob,
    query_blob,
    result_blob,
    selection_blob,
)

if TYPE_CHECKING:
    from blast_core.service.core import BlastService

FORMAT_REQUEST_SECONDS = 600  # a result format asked for this long ago and not made: ask again
RESULT_RETRY_AFTER = 1  # seconds a client waits before asking again for a result being made
RESULT_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class ResultBody:
    """A result's content, or the part of it asked for (`span`), and its whole size."""

    chunks: Iterator[bytes]
    content_type: str
    filename: str
    size: int | None = None
    span: ByteSpan | None = None


@dataclass(frozen=True)
class ResultLink:
    """A result too large to pass through a worker: a read-only link to it in Blob storage."""

    url: str


def result(service: BlastService, job_id: str, key: str, wait: float = 0.0,
           wanted: RangeSpec | None = None) -> ResultBody | ResultLink:
    """The result in one format (`key`: a format's name, or a tabular result's key naming
    its columns, `domain/tabular.py`): its content (the `wanted` range of it: a range beyond
    it raises RangeNotSatisfiable), or a link when it is larger than
    BLAST_MAX_INLINE_RESULT_BYTES. The first request for a format asks a worker to make it;
    meanwhile ResultPending, after waiting up to `wait` seconds for the worker (for clients
    that cannot ask again, such as a browser's download link)."""
    fmt = search.output_format(key)
    return _result(service, _succeeded(service, job_id), fmt, wait, wanted)


def _result(service: BlastService, job: Job, fmt: search.OutputFormat, wait: float,
            wanted: RangeSpec | None) -> ResultBody | ResultLink:
    deadline = time.monotonic() + wait
    while True:
        made = _made(service, job, fmt, wanted)
        if made is not None:
            return made
        pending = _ask_for_format(service, job, fmt)
        if time.monotonic() >= deadline:
            raise pending
        time.sleep(RESULT_POLL_SECONDS)
        job = _succeeded(service, job.id)


def result_link(service: BlastService, job_id: str, key: str) -> str:
    """A read-only link to a result, which expires after BLAST_RESULT_LINK_HOURS or when the
    job does, whichever comes first: a link never outlives its result."""
    fmt = search.output_format(key)
    job = _succeeded(service, job_id)
    if job.format_state(fmt.key).state != jobs.FORMAT_READY or \
            not service.blobs.exists(job.id, result_blob(fmt.stored_as)):
        raise _ask_for_format(service, job, fmt)
    return _link(service, job, fmt)


def _made(service: BlastService, job: Job, fmt: search.OutputFormat,
          wanted: RangeSpec | None) -> ResultBody | ResultLink | None:
    made = job.format_state(fmt.key)
    if made.state == jobs.FORMAT_REFUSED:  # a hit selection naming ids not in the job
        field, _, reason = (made.error or "").partition(": ")
        raise UnknownHits([FieldError(field, reason)])
    if made.state != jobs.FORMAT_READY:
        return None
    if (made.size or 0) > service.settings.max_inline_result_bytes:
        return ResultLink(_link(service, job, fmt))
    span = byte_ranges.resolve(wanted, made.size) if wanted and made.size is not None else None
    chunks = service.blobs.stream(job.id, result_blob(fmt.stored_as), *(
        (span.start, span.length) if span else ()))
    stem = f"{job.id}-hits" if fmt.selection else job.id
    return None if chunks is None else ResultBody(chunks, fmt.content_type,
                                                  f"{stem}.{fmt.extension}", made.size, span)


def _link(service: BlastService, job: Job, fmt: search.OutputFormat) -> str:
    expiry = datetime.now(UTC) + timedelta(hours=service.settings.result_link_hours)
    job_expiry = jobs.expires_at(job.id, service.settings.retention_days)
    return service.blobs.read_link(job.id, result_blob(fmt.stored_as),
                                   min(expiry, job_expiry) if job_expiry else expiry)


def _succeeded(service: BlastService, job_id: str) -> Job:
    job = lookup.get(service, job_id)
    if job.status != jobs.SUCCEEDED:
        raise ResultNotReady(job)
    return job


def _ask_for_format(service: BlastService, job: Job, fmt: search.OutputFormat) -> ResultPending:
    """Queue the making of a format unless it is already queued (and recently), and record
    that it is; returns the ResultPending to raise. Also when the record says ready but the
    blob is gone: it is made again. A job has at most MAX_COLUMN_SETS sets of columns other
    than the default, and MAX_SELECTIONS hit selections, made: this bounds its record."""
    made = job.format_state(fmt.key)
    if made.state == jobs.FORMAT_QUEUED and made.at and (datetime.now(UTC) - jobs.parse_time(
            made.at)).total_seconds() < FORMAT_REQUEST_SECONDS:
        return ResultPending(job, fmt.key)
    if made.state is None and fmt.key != fmt.name:
        _refuse_beyond_bound(job, fmt)
    trace = {"traceparent": job.traceparent} if job.traceparent else {}
    submission.send(service, messages.format_message(
        job.id, fmt.key, trace, submission.lane_of(service, job)),
        resend=made.state is not None)
    with contextlib.suppress(RecordMissing):
        service.records.update(job.id, lambda current: current.format_queued(fmt.key)
                               if current.format_state(fmt.key) == made else None)
    job_log(job.id).info("job %s: %s result asked for", job.id, fmt.key)
    service.wake_workers()
    return ResultPending(job, fmt.key, made.error)


def _refuse_beyond_bound(job: Job, fmt: search.OutputFormat) -> None:
    if fmt.selection:
        selections = [key for key in job.format_keys() if key.startswith(f"{fmt.name}-")]
        if len(selections) >= hit_selection.MAX_SELECTIONS:
            raise InvalidRequest([FieldError("selection", (
                f"this job has {len(selections)} hit selections made, the most one job may "
                "have; ask again for one of those"))])
        return
    made = [key for key in job.format_keys() if tabular.is_column_set(key)]
    if len(made) >= tabular.MAX_COLUMN_SETS:
        raise InvalidRequest([FieldError("columns", (
            f"this job has {len(made)} sets of columns made, the most one job may have; "
            f"ask for one of them: {'; '.join(key.partition(':')[2] for key in made)}"))])


def hit_sequences_result(service: BlastService, job_id: str, selection: HitSelection,
                         wait: float = 0.0,
                         wanted: RangeSpec | None = None) -> ResultBody | ResultLink:
    """The FASTA of the hits a selection asks for, made by a worker as a format is (its key
    names the selection, which is stored for the worker); UnknownHits once the worker has
    found an id it names is not among the job's hits."""
    job = _succeeded(service, job_id)
    fmt = search.hit_sequences_format(selection.digest)
    if job.format_state(fmt.key).state is None:  # first asked for: nothing stored if refused
        _refuse_beyond_bound(job, fmt)
        service.blobs.put_text(job_id, selection_blob(selection.digest), selection.to_json(),
                               "application/json")
    return _result(service, job, fmt, wait, wanted)


def make(service: BlastService, job_id: str, key: str, attempt: int,
         last_attempt: bool) -> None:
    """A worker's part: make one format of a succeeded job, unless it is made already. On
    the last attempt a failure is recorded (the format's state says why) before it raises."""
    try:
        fmt = search.output_format(key)
    except KeyError:
        raise messages.MalformedMessage(f"no result format {key!r}") from None
    jlog = job_log(job_id, None, attempt)
    if lookup.expired(service, job_id):
        return
    found = service.records.get(job_id)
    if found is None:
        raise UnknownJob(f"no record for job {job_id}")
    job = found.job
    if job.status != jobs.SUCCEEDED or (
            job.format_state(key).state == jobs.FORMAT_READY
            and service.blobs.exists(job.id, result_blob(fmt.stored_as))):
        jlog.info("job %s: %s result not to be made (job %s); delivery ignored", job_id,
                  key, job.status)
        return
    try:
        _make(service, job, fmt)
    except UnknownHits as refused:  # a hit selection's ids: asking again is no use
        [error] = refused.errors
        with contextlib.suppress(RecordMissing):
            service.records.update(job_id, lambda current: current.format_refused(
                key, error.field, error.reason))
        jlog.info("job %s: %s refused: %s", job_id, key, refused)
    except Exception as error:
        if last_attempt:
            reason = f"gave up after {attempt} attempts: {describe(error)}"
            with contextlib.suppress(RecordMissing):
                service.records.update(job_id, lambda current: current.format_failed(
                    key, reason))
            jlog.warning("job %s: %s result failed: %s", job_id, key, reason)
        raise


def _make(service: BlastService, job: Job, fmt: search.OutputFormat) -> None:
    """Format every batch's archive, merge them in query order, streaming, and store the
    result; the time it took goes on the job's record. Idempotent: two workers making the
    same format write the same blob."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"format-{job.id}-") as workdir:
        merged = os.path.join(workdir, f"result.{fmt.extension}")
        if fmt.selection:
            hit_sequences.write(service, job, fmt.selection, workdir, merged)
        else:
            _merge_formatted(service, job, fmt, workdir, merged)
        service.blobs.put_file(job.id, result_blob(fmt.stored_as), merged, fmt.content_type)
        size = os.path.getsize(merged)
    seconds = time.monotonic() - started
    service.records.update(job.id, lambda current: current.format_ready(fmt.key, seconds, size))
    job_log(job.id).info("job %s: %s result made in %.2f s", job.id, fmt.key, seconds)


def _merge_formatted(service: BlastService, job: Job, fmt: search.OutputFormat, workdir: str,
                     merged: str) -> None:
    """Each batch's part, then the parts merged: the default tsv is the table each batch
    stored when it was searched; any other format is made from its archive, one
    blast_formatter per core at once (a job of hundreds of batches spends most of its merge
    there)."""

    def formatted(number: int) -> tuple[str, int]:
        part = os.path.join(workdir, f"batch-{number}.{fmt.extension}")
        if not (fmt.key == tabular.TSV and _stored_table(service, job, number, part)):
            archive = os.path.join(workdir, archive_blob(number))
            service.blobs.download(job.id, archive_blob(number), archive)
            search.format_archive(service.tools, archive, fmt, service.settings.db_dir, part)
            os.unlink(archive)
        if counts or number + 1 == job.batches:  # a job of one batch may have no query blob
            return part, 0
        return part, fasta.count_sequences(  # a job from before BATCH_QUERIES_BLOB
            service.blobs.get_text(job.id, query_blob(number)).splitlines())

    counts = batch_queries(service, job)
    done = concurrently.each(formatted, range(job.batches), os.cpu_count() or 1)
    parts = [part for part, _ in done]
    queries_before = list(itertools.accumulate([0, *(counts or [c for _, c in done])[:-1]]))
    with contextlib.ExitStack() as files, open(merged, "w") as out:
        out.writelines(batches.merge(fmt.name, [files.enter_context(open(part))
                                                for part in parts], queries_before))


def _stored_table(service: BlastService, job: Job, number: int, path: str) -> bool:
    """Whether the batch's table of hits was stored when it was searched (a job of several
    batches); if so, it is downloaded to `path`."""
    chunks = service.blobs.stream(job.id, batch_table_blob(number)) if job.batches > 1 else None
    if chunks is None:
        return False
    with open(path, "wb") as out:
        out.writelines(chunks)
    return True


def batch_queries(service: BlastService, job: Job) -> list[int] | None:
    """How many queries each batch of a job of several holds, as stored at submission."""
    chunks = service.blobs.stream(job.id, BATCH_QUERIES_BLOB) if job.batches > 1 else None
    return json.loads(b"".join(chunks)) if chunks is not None else None
