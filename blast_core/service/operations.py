"""The operator's work: queue health and recent jobs (stats), the clean-up of expired jobs,
the sweep of stranded ones, and dead letters (list, requeue)."""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from blast_core.domain import jobs, messages
from blast_core.domain.jobs import Job
from blast_core.domain.messages import Message
from blast_core.logs import describe, job_log, log
from blast_core.service import lookup, submission, uploads
from blast_core.storage.ports import UPLOADS, RecordMissing, StoredJob

if TYPE_CHECKING:
    from blast_core.service.core import BlastService

QUEUE_COUNTS_CACHE_SECONDS = 10.0  # GET /api/stats reads the queue at most this often
STATS_RECENT_JOBS = 100  # end-to-end times and throughput over this many newest jobs
STATS_MAX_JOBS = 5000  # most job records read to count a day's jobs by status
CLEANUP_PAGE = 100  # expired jobs deleted per round: one Table transaction holds 100 deletes
CLEANUP_THREADS = 8  # jobs whose blobs are deleted at once: each blob is one round trip
SWEEP_DEAD_LETTERS = 1000  # dead letters a sweep reads, oldest first
SWEEP_STALE_JOBS = 1000  # open jobs a sweep ends at most


# Stats


class QueueCountsCache:
    """The queue's counts, read through the transport at most every few seconds, so that
    polling the stats costs little; a failure to read them is said, not raised."""

    def __init__(self) -> None:
        self._taken: tuple[float, dict[str, object]] | None = None
        self._lock = threading.Lock()

    def read(self, service: BlastService) -> dict[str, object]:
        with self._lock:
            if self._taken is None or \
                    time.monotonic() - self._taken[0] >= QUEUE_COUNTS_CACHE_SECONDS:
                counts: dict[str, object] = {"transport": service.settings.queue_transport,
                                             "name": service.settings.queue_name,
                                             "bulk_name": service.settings.bulk_queue_name}
                try:
                    found = service.transport.counts()
                    counts.update(depth=found.depth, dead_letters=found.dead_letters, error=None)
                except Exception as error:  # no Manage rights, network: say so, don't fail
                    log.warning("cannot read the queue counts: %s", describe(error))
                    counts.update(depth=None, dead_letters=None, error=describe(error))
                self._taken = (time.monotonic(), counts)
            taken, counts = self._taken
            return {**counts, "age_seconds": round(time.monotonic() - taken, 1)}

    def forget(self) -> None:
        with self._lock:
            self._taken = None


def stats(service: BlastService) -> dict[str, object]:
    """Queue health and recent jobs: queue depth and dead letters (cached a few seconds),
    jobs by status over the last hour and day (read newest first, stopping at a day),
    end-to-end seconds and BLAST throughput over the newest finished jobs."""
    now_ms = int(time.time() * 1000)
    day = service.records.since(jobs.ids_since(now_ms - 86_400_000), STATS_MAX_JOBS)
    hour_bound = jobs.ids_since(now_ms - 3_600_000)
    latest = service.records.recent(STATS_RECENT_JOBS)
    finished = [j for j in latest if j.finished_at and j.status in jobs.FINAL_STATUSES]
    totals = sorted(jobs.parse_time(j.finished_at).timestamp()
                    - jobs.parse_time(j.submitted_at).timestamp() for j in finished)
    searched = [j for j in finished if j.status == jobs.SUCCEEDED and j.cpu_seconds_blast > 0]
    cpu = sum(j.cpu_seconds_blast for j in searched)
    letters = sum(j.query_letters for j in searched)
    return {
        "generated_at": jobs.utc_now(),
        "queue": service.queue_counts.read(service),
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


def _by_status(found: Iterable[Job]) -> dict[str, int]:
    counts = dict.fromkeys(jobs.STATUSES, 0)
    for job in found:
        counts[job.status] = counts.get(job.status, 0) + 1
    counts["total"] = sum(counts.values())
    return counts


# Retention


def clean_up(service: BlastService, limit: int = 10_000) -> int:
    """Delete up to `limit` expired jobs and return how many. They are the tail of the
    newest-first partition, read from the expiry bound on, so no younger job is read. Per
    page, the blobs go first and then the records in one transaction: a crash leaves records
    to find next time, never blobs that no record leads to."""
    _delete_stale_uploads(service)
    retention = service.settings.retention_days
    if retention <= 0:
        return 0
    bound = jobs.expired_ids_bound(int(time.time() * 1000), retention)
    deleted = 0
    with ThreadPoolExecutor(CLEANUP_THREADS, thread_name_prefix="clean-up") as pool:
        for page in service.records.ids_from(bound, CLEANUP_PAGE):
            page = page[:limit - deleted]
            list(pool.map(service.blobs.delete_job, page))  # re-raises the first failure
            service.records.delete_many(page)
            deleted += len(page)
            if deleted >= limit:
                break
    if deleted:
        log.info("clean-up: deleted %d expired jobs (retention %g days)", deleted, retention)
    return deleted


def _delete_stale_uploads(service: BlastService) -> None:
    """Uploads no job can be made of any more (`uploads.usable_until`): never submitted, or
    left by a job that ended before its worker deleted them."""
    now = datetime.now(UTC)
    for name in service.blobs.names(UPLOADS):
        upload_id = name.removesuffix(".fasta")
        if jobs.is_job_id(upload_id) and uploads.usable_until(service, upload_id) < now:
            service.blobs.delete(UPLOADS, name)
            log.info("clean-up: deleted upload %s, past its time", upload_id)


# Stranded jobs


@dataclass(frozen=True)
class SweepReport:
    dead_lettered: list[str]  # jobs ended because the queue dead-lettered their message
    stranded: list[str]  # jobs ended because no message for them can still arrive


def sweep(service: BlastService, now: datetime | None = None) -> SweepReport:
    """End the open jobs that can no longer end by themselves, `failed` with the reason:
    those whose message the queue dead-lettered without our code failing them (a lock lost
    after a worker restart, the time to live, a last delivery that died), and those no
    message can still reach (`jobs.stranded_reason`). Runs in the timer function
    `sweep_stranded_jobs` and in `serve`; `now` lets tests look ahead."""
    ended = []
    for letter in service.transport.peek_dead_letters(SWEEP_DEAD_LETTERS):
        with contextlib.suppress(messages.MalformedMessage):
            message = messages.decode(letter.body)
            reason = f"the queue dead-lettered its message ({letter.reason or 'no reason given'})"
            if _fail_open_work(service, message, reason):
                ended.append(message.job_id)
    now = now or datetime.now(UTC)
    limits = service.settings.limits
    quiet_since = now - timedelta(seconds=min(limits.running_stale_after,
                                              limits.queued_stale_after))
    stranded = []
    for job, _, changed_at in service.records.open_jobs_unchanged_since(quiet_since,
                                                                        SWEEP_STALE_JOBS):
        reason = jobs.stranded_reason(job, (now - changed_at).total_seconds(), limits)
        if reason and _fail_stranded(service, job.id, reason):
            stranded.append(job.id)
    for job_id, error in _errors(service, (*ended, *stranded)):
        job_log(job_id).warning("job %s ended by the sweep: %s", job_id, error)
    return SweepReport(ended, stranded)


def _fail_open_work(service: BlastService, message: Message, reason: str) -> bool:
    """Fail the batch (result format, upload) a dead letter names, if it is still open."""
    if message.split:
        return _update(service, message.job_id, lambda job: job.refused(
            f"query_upload: {reason}") if job.status == jobs.VALIDATING else None) is not None
    if message.format is not None:
        _update(service, message.job_id, lambda job: job.format_failed(message.format, reason)
                if job.format_state(message.format).state == jobs.FORMAT_QUEUED else None)
        return False
    number = message.batch
    return _update(service, message.job_id, lambda job: job.batch_failed(number, reason)
                   if number < job.batches and job.batch_unfinished(number) else None) is not None


def _fail_stranded(service: BlastService, job_id: str, reason: str) -> bool:
    def change(job: Job) -> Job | None:
        if job.status == jobs.VALIDATING:
            return job.refused(reason)
        unfinished = [n for n in range(job.batches) if job.batch_unfinished(n)]
        return job.batch_failed(unfinished[0], reason) if unfinished else None

    return _update(service, job_id, change) is not None


def _update(service: BlastService, job_id: str,
            change: Callable[[Job], Job | None]) -> StoredJob | None:
    """An update of a job that may be gone (cleaned up): nothing to change then."""
    try:
        return service.records.update(job_id, change)
    except RecordMissing:
        return None


def _errors(service: BlastService, job_ids: Iterable[str]) -> list[tuple[str, str | None]]:
    found = [(job_id, service.records.get(job_id)) for job_id in job_ids]
    return [(job_id, stored.job.error) for job_id, stored in found if stored]


# Dead letters


@dataclass(frozen=True)
class DeadLetterView:
    job_id: str | None
    status: str | None
    reason: str
    error: str | None


def dead_letters(service: BlastService, limit: int = 32) -> list[DeadLetterView]:
    """Messages that gave up, with the job each one names (if any) and its state."""
    views = []
    for letter in service.transport.peek_dead_letters(limit):
        job_id, found = _job_of(service, letter.body)
        views.append(DeadLetterView(job_id, found.job.status if found else None,
                                    letter.reason, found.job.error if found else None))
    return views


def requeue_dead_letters(service: BlastService, limit: int = 1000) -> tuple[list[str], int]:
    """Put dead-lettered jobs back in the queue; returns the requeued job ids and how many
    messages were left (unreadable, or naming no job).

    Order: reset the record, send a message for every unfinished batch, then remove the dead
    letter; a crash in between leaves at most duplicate messages, which processing ignores.
    The messages get fresh ids: under the first ones, Service Bus duplicate detection would
    accept the sends and drop the messages."""
    requeued: list[str] = []
    unreadable = []
    for _ in range(limit):
        delivery = service.transport.receive_dead_letter()
        if delivery is None:
            break
        message, found = _message_of(service, delivery.body)
        if message is None or found is None:
            unreadable.append(delivery)  # held until the loop ends, so it is seen once
            continue
        job_id = message.job_id
        if found.job.status in (jobs.SUCCEEDED, jobs.CANCELLED) or lookup.expired(service,
                                                                                  job_id):
            delivery.complete()  # nothing left to run
            continue
        if job_id not in requeued:
            service.records.replace(found.job.requeued(), found.etag)
            if message.query is not None or message.split:  # its one message says it all
                submission.send(service, replace(message, attempts=0), resend=True)
            else:
                submission.queue(service, found.job, found.job.unfinished_batches(),
                                 resend=True)
            requeued.append(job_id)
            job_log(job_id).info("job %s requeued from the dead letters", job_id)
        delivery.complete()
    for delivery in unreadable:
        delivery.abandon()
    return requeued, len(unreadable)


def _job_of(service: BlastService, body: bytes) -> tuple[str | None, StoredJob | None]:
    message, found = _message_of(service, body)
    return (message.job_id if message else None), found


def _message_of(service: BlastService,
                body: bytes) -> tuple[Message | None, StoredJob | None]:
    try:
        message = messages.decode(body)
    except messages.MalformedMessage:
        return None, None
    return message, service.records.get(message.job_id)
