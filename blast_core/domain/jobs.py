"""The job record: its states and its batches', ids that sort newest first and say when a job
expires, the result formats asked for, and when an open job is stranded. Pure logic."""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from blast_core.domain.limits import MESSAGE_TTL, RunLimits, duration

if TYPE_CHECKING:
    from blast_core.domain.job_request import JobRequest

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued", "running", "succeeded", "failed", "cancelled")
VALIDATING = "validating"  # its query is an upload that a worker is checking and splitting


STATUSES = (VALIDATING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)


FINAL_STATUSES = frozenset({SUCCEEDED, FAILED, CANCELLED})


BATCH_PENDING, BATCH_RUNNING, BATCH_DONE, BATCH_FAILED = ".", "R", "D", "F"


UNFINISHED_BATCH_STATES = frozenset({BATCH_PENDING, BATCH_RUNNING})


# A result format's state on the record: asked for (its message is queued), made, failed, or
# refused (what it asks for is not in the job: a hit selection's ids; asking again is no use).
FORMAT_QUEUED, FORMAT_READY, FORMAT_FAILED = "queued", "ready", "failed"
FORMAT_REFUSED = "refused"


JOB_ID_PATTERN = r"^[0-9a-f]{19}$"


_JOB_ID = re.compile(JOB_ID_PATTERN)


_INVERTED_EPOCH_MS = 0xFFFFFFFFFFF  # 11 hex digits: room until the year 2527


def new_job_id(now_ms: int | None = None) -> str:
    """Inverted milliseconds then randomness: ids sort newest first in Table storage."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{_INVERTED_EPOCH_MS - now_ms:011x}{secrets.token_hex(4)}"


def ids_since(since_ms: int) -> str:
    """The row key bound of jobs submitted at or after `since_ms`: their ids sort below it."""
    return f"{_INVERTED_EPOCH_MS - since_ms + 1:011x}"


def is_job_id(text: str) -> bool:
    return bool(_JOB_ID.match(text))


def submitted_ms(job_id: str) -> int:
    """When a job was submitted (milliseconds since the epoch), read from its id."""
    return _INVERTED_EPOCH_MS - int(job_id[:11], 16)


def expires_at(job_id: str, retention_days: float) -> datetime | None:
    """When a job expires: `retention_days` after its submission; None to keep it forever."""
    if retention_days <= 0:
        return None
    return (datetime.fromtimestamp(submitted_ms(job_id) / 1000, UTC)
            + timedelta(days=retention_days))


def expired_ids_bound(now_ms: int, retention_days: float) -> str:
    """The row key from which on (`ge`) every job has expired at `now_ms`: the jobs
    submitted before `now_ms` minus the retention, which sort last."""
    return ids_since(now_ms - round(retention_days * 86_400_000))


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> str:
    return format_time(datetime.now(UTC))


def database_names(database: str | list[str]) -> list[str]:
    """The names a request's `database` (one name, or a list) or a job's (names joined by
    spaces, as BLAST's `-db` takes them) stands for."""
    return list(database) if isinstance(database, list) else database.split()


@dataclass(frozen=True)
class Job:
    """The record of one job, as stored (without the query text, which is in Blob storage).

    A job is searched in `batches` batches; `batch_states` holds one letter per batch
    (`.` pending, `R` running, `D` done, `F` failed), so a batch's outcome and the job's
    counters change together in one ETag-conditional update of this record. `formats` holds
    the state of each result format asked for (JSON: name -> [state, since, error])."""

    id: str
    status: str
    database: str
    program: str
    task: str
    evalue: float
    max_target_seqs: int
    queries: int
    query_letters: int
    submitted_at: str
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 0
    hits: int | None = None
    error: str | None = None
    word_size: int | None = None
    filter: str | None = None
    batches: int = 1
    batch_states: str = ""
    queries_done: int = 0
    seconds_queued: float = 0.0
    seconds_staging: float = 0.0
    seconds_blast: float = 0.0
    seconds_transfer: float = 0.0
    seconds_format: float = 0.0
    cpu_seconds_blast: float = 0.0
    traceparent: str = ""  # the submit's trace, which formatting later continues
    formats: str = ""
    subjects: int = 0  # subject sequences searched instead of a database (`database` "")
    subject_letters: int = 0
    upload_bytes: int = 0  # the size of its uploaded query (`uploads.py`); 0: none
    upload_etag: str = ""  # the version of the upload it was submitted with
    upload_checked: int = 0  # bytes of the upload read and checked so far

    @classmethod
    def submitted(cls, job_id: str, request: JobRequest, batches: int = 1,
                  traceparent: str = "") -> Job:
        return cls(id=job_id, status=QUEUED, database=request.database,
                   program=request.program, task=request.task, evalue=request.evalue,
                   max_target_seqs=request.max_target_seqs, queries=request.queries,
                   query_letters=request.query_letters, submitted_at=utc_now(),
                   word_size=request.word_size, filter=request.filter, batches=batches,
                   batch_states=BATCH_PENDING * batches, traceparent=traceparent,
                   subjects=len(request.subject), subject_letters=request.subject_letters)

    @classmethod
    def from_upload(cls, request: JobRequest, upload_bytes: int, upload_etag: str,
                    traceparent: str = "") -> Job:
        """A job whose query is an upload, `validating` until a worker has checked and split
        it (`validated`): its queries and batches are not known before."""
        job = cls.submitted(request.query_upload, request, batches=0, traceparent=traceparent)
        return replace(job, status=VALIDATING, upload_bytes=upload_bytes, upload_etag=upload_etag)

    def checking(self, checked: int) -> Job:
        """`checked` bytes of its upload read, checked and stored as batches so far."""
        return replace(self, upload_checked=checked)

    def validated(self, batches: int, queries: int, query_letters: int) -> Job:
        """Its upload checked and split into `batches` stored batches: queued as any job."""
        return replace(self, status=QUEUED, batches=batches, batch_states=BATCH_PENDING * batches,
                       queries=queries, query_letters=query_letters,
                       upload_checked=self.upload_bytes)

    def refused(self, reason: str) -> Job:
        """Its upload is not an acceptable query (`reason` names the field and why): failed,
        with no batch ever queued."""
        return replace(self, status=FAILED, finished_at=utc_now(), error=reason)

    @property
    def databases(self) -> list[str]:
        return database_names(self.database)

    @property
    def searches_subject(self) -> bool:
        """Its queries are aligned with subject sequences of its own, not a database."""
        return self.subjects > 0

    def cancel(self) -> Job:
        """Cancelled by its owner: final, so no pending batch will run."""
        return replace(self, status=CANCELLED, finished_at=utc_now())

    def batch_state(self, batch: int) -> str:
        return self.batch_states[batch]

    @property
    def batches_done(self) -> int:
        return self.batch_states.count(BATCH_DONE)

    @property
    def batches_failed(self) -> int:
        return self.batch_states.count(BATCH_FAILED)

    def batch_started(self, batch: int) -> Job:
        """A delivery of one batch begins; `attempts` counts deliveries over all batches."""
        return replace(self, status=RUNNING, started_at=self.started_at or utc_now(),
                       attempts=self.attempts + 1,
                       batch_states=self._with_state(batch, BATCH_RUNNING))

    def batch_unfinished(self, batch: int) -> bool:
        return self.status not in FINAL_STATUSES and \
            self.batch_states[batch] in UNFINISHED_BATCH_STATES

    def batch_finished(self, batch: int, queries: int, hits: int, timings: BatchTimings) -> Job:
        """Batch done, its times added to the job's; the job succeeds with the last one."""
        job = replace(self.timed(timings), batch_states=self._with_state(batch, BATCH_DONE),
                      queries_done=self.queries_done + queries, hits=(self.hits or 0) + hits)
        if job.batches_done == job.batches:
            job = replace(job, status=SUCCEEDED, finished_at=utc_now(), error=None)
        return job

    def timed(self, timings: BatchTimings) -> Job:
        """A batch's times added to the job's: also those of a batch stopped by a cancel,
        whose CPU time was spent all the same."""
        return replace(self, seconds_queued=self.seconds_queued + timings.queued,
                       seconds_staging=self.seconds_staging + timings.staging,
                       seconds_blast=self.seconds_blast + timings.blast,
                       seconds_transfer=self.seconds_transfer + timings.transfer,
                       seconds_format=self.seconds_format + timings.formatting,
                       cpu_seconds_blast=self.cpu_seconds_blast + timings.blast_cpu)

    def batch_failed(self, batch: int, reason: str) -> Job:
        """A batch failed for good, and with it the job."""
        where = f"batch {batch + 1} of {self.batches}: " if self.batches > 1 else ""
        return replace(self, status=FAILED, finished_at=utc_now(), error=where + reason,
                       batch_states=self._with_state(batch, BATCH_FAILED))

    def requeued(self) -> Job:
        """Back to the queue after a give-up: failed and running batches become pending
        again; `attempts` keeps counting. A job whose upload was never split is validating
        again."""
        if self.upload_bytes and not self.batches:
            return replace(self, status=VALIDATING, finished_at=None, error=None)
        states = self.batch_states.replace(BATCH_FAILED, BATCH_PENDING)
        return replace(self, status=QUEUED, finished_at=None, error=None,
                       batch_states=states.replace(BATCH_RUNNING, BATCH_PENDING))

    def unfinished_batches(self) -> list[int]:
        return [n for n, state in enumerate(self.batch_states) if state != BATCH_DONE]

    def _with_state(self, batch: int, state: str) -> str:
        states = self.batch_states
        return states[:batch] + state + states[batch + 1:]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_state(self, name: str) -> FormatState:
        """Where a result format stands (state None: never asked for)."""
        found = json.loads(self.formats).get(name) if self.formats else None
        return FormatState(**found) if found else FormatState()

    def format_keys(self) -> list[str]:
        """The result formats ever asked for (a tabular result's key names its columns)."""
        return sorted(json.loads(self.formats)) if self.formats else []

    def _with_format(self, name: str, state: FormatState) -> str:
        states = json.loads(self.formats) if self.formats else {}
        states[name] = {k: v for k, v in state._asdict().items() if v is not None}
        return json.dumps(states, sort_keys=True)

    def format_queued(self, name: str) -> Job:
        return replace(self, formats=self._with_format(name, FormatState(FORMAT_QUEUED,
                                                                         utc_now())))

    def format_ready(self, name: str, seconds: float, size: int) -> Job:
        return replace(self, formats=self._with_format(name, FormatState(
            FORMAT_READY, utc_now(), size=size)), seconds_format=self.seconds_format + seconds)

    def format_failed(self, name: str, reason: str) -> Job:
        return replace(self, formats=self._with_format(name, FormatState(
            FORMAT_FAILED, utc_now(), error=reason)))

    def format_refused(self, name: str, field: str, reason: str) -> Job:
        """`reason` is kept as `field: reason`, the field a request is refused by."""
        return replace(self, formats=self._with_format(name, FormatState(
            FORMAT_REFUSED, utc_now(), error=f"{field}: {reason}")))


TIMED_PHASES = ("queued", "staging", "blast", "transfer", "format")


class FormatState(NamedTuple):
    """A result format of a job: `state` (queued, ready, failed) since `at`; `size` in bytes
    once ready; `error` once failed."""

    state: str | None = None
    at: str | None = None
    error: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class BatchTimings:
    """Seconds one batch spent waiting in the queue, staging its database, in BLAST, moving
    its query and archive to and from Blob storage, and making its table of hits;
    `blast_cpu`: CPU seconds BLAST used."""

    queued: float
    staging: float
    blast: float
    transfer: float
    blast_cpu: float = 0.0
    formatting: float = 0.0


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stranded_reason(job: Job, unchanged_seconds: float, limits: RunLimits) -> str | None:
    """Why an open job whose record has not changed for `unchanged_seconds` can no longer end
    by itself, or None while a message for it may still arrive (`limits` says how long one
    can take). The reason does not name the batch: `Job.batch_failed` does, in a job of several."""
    if job.status == VALIDATING:
        if unchanged_seconds <= limits.queued_stale_after:
            return None
        return (f"stranded: its upload was never checked (nothing has happened for "
                f"{duration(unchanged_seconds)}, and a message expires after "
                f"{duration(MESSAGE_TTL)})")
    unfinished = [n for n in range(job.batches) if job.batch_unfinished(n)]
    if not unfinished:
        return None
    quiet = duration(unchanged_seconds)
    if all(job.batch_states[n] == BATCH_RUNNING for n in unfinished) \
            and unchanged_seconds > limits.running_stale_after:
        return (f"stranded: its search was running and nothing has happened for {quiet}; its "
                "worker stopped (an instance lost, or restarted past its function timeout) "
                "and no new delivery followed")
    if unchanged_seconds > limits.queued_stale_after:
        return ("stranded: no queue message can still deliver its search (nothing has happened "
                f"for {quiet}, and a message expires after {duration(MESSAGE_TTL)})")
    return None
