"""Query sets of any size, sent straight to Blob storage: an upload link for one blob, and a
job made of what was uploaded, which a worker checks and splits (`upload_split.py`) since no
HTTP function could (100 MB and 230 s at most).

An upload's id has the form of a job id, and the job made of it takes that id: creating the
job's record claims the upload, so two jobs can never share one. The id also says when the
upload was made, hence until when a job may be made of it (`usable_until`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from blast_core import telemetry
from blast_core.domain import fasta, jobs, messages
from blast_core.domain.client_input import (
    ExpiredReference,
    FieldError,
    InvalidRequest,
    RequestConflict,
    UnknownReference,
)
from blast_core.domain.job_request import JobRequest
from blast_core.domain.jobs import Job
from blast_core.storage.ports import (
    SUBJECT_BLOB,
    UPLOADS,
    BlobChanged,
    Outgoing,
    RecordExists,
    StoredBlob,
    upload_blob,
)

if TYPE_CHECKING:
    from blast_core.service.core import BlastService

SUBMIT_GRACE = timedelta(hours=1)  # after its link expires, an upload can still be submitted
HEAD_BYTES = 64 * 1024  # read at submit, to refuse at once what is plainly no FASTA text


@dataclass(frozen=True)
class Upload:
    """Where to PUT a query (`url`, a write-only SAS for one block blob) before `expires_at`;
    `id` is then given as a job's `query_upload`."""

    id: str
    url: str
    expires_at: datetime
    max_bytes: int


def new_upload(service: BlastService) -> Upload:
    upload_id = jobs.new_job_id()
    expiry = link_expiry(service, upload_id)
    url = service.blobs.write_link(UPLOADS, upload_blob(upload_id), expiry)
    return Upload(upload_id, url, expiry, service.settings.max_upload_bytes)


def link_expiry(service: BlastService, upload_id: str) -> datetime:
    made = datetime.fromtimestamp(jobs.submitted_ms(upload_id) / 1000, UTC)
    return made + timedelta(minutes=service.settings.upload_link_minutes)


def usable_until(service: BlastService, upload_id: str) -> datetime:
    return link_expiry(service, upload_id) + SUBMIT_GRACE


def submit_upload(service: BlastService, request: JobRequest) -> Job:
    """A `validating` job of an upload, its message to a worker queued. InvalidRequest naming
    `query_upload` when the upload cannot be a job's query (its subclasses when it is gone,
    past its time, or a job's query already). The record is created first: it claims the id,
    so that nothing is written under another job's. On a storage or queue failure after
    that, the record and what was stored are removed."""
    stored = _usable(service, request.query_upload)
    job = Job.from_upload(request, stored.size, stored.etag,
                          traceparent=telemetry.inject().get("traceparent", ""))
    telemetry.annotate(job_id=job.id, program=job.program, database=job.database,
                       upload_bytes=job.upload_bytes)
    try:
        service.records.create(job)  # the claim: an upload is one job's only
    except RecordExists:
        raise _used(job.id) from None
    try:
        if request.subject:
            service.blobs.put_text(job.id, SUBJECT_BLOB, fasta.format_fasta(list(request.subject)),
                                   "text/x-fasta")
        message = messages.split_message(job.id, telemetry.inject())
        service.transport.send(Outgoing.of(message, message.first_id))
    except Exception:
        service.records.delete(job.id)
        service.blobs.delete_job(job.id)
        raise
    return job


def _usable(service: BlastService, upload_id: str) -> StoredBlob:
    """The upload, when a job can be made of it: not expired, not a job's already, holding
    something that may be FASTA, within the size limit."""
    until = usable_until(service, upload_id)
    if datetime.now(UTC) > until:
        raise ExpiredReference([FieldError("query_upload", (
            f"upload {upload_id} expired at {jobs.format_time(until)}; make a new one (POST "
            "/api/uploads)"))])
    if service.records.get(upload_id) is not None:
        raise _used(upload_id)
    stored = service.blobs.properties(UPLOADS, upload_blob(upload_id))
    if stored is None:
        raise UnknownReference([FieldError("query_upload", (
            f"nothing was uploaded as {upload_id}: PUT the FASTA to the url that POST "
            "/api/uploads gave first"))])
    limit = service.settings.max_upload_bytes
    if stored.size == 0:
        raise _refused("the upload is empty (0 bytes)")
    if stored.size > limit:
        raise _refused(f"the upload is {stored.size:,} bytes; the limit is {limit:,}")
    try:
        head = b"".join(service.blobs.stream(UPLOADS, upload_blob(upload_id), 0,
                                             min(HEAD_BYTES, stored.size), stored.etag) or ())
        fasta.check_beginning(head)
    except fasta.FastaError as error:
        raise _refused(f"the upload {error}") from None
    except BlobChanged:
        raise RequestConflict([FieldError("query_upload", (
            "the upload was being written while the job was submitted; submit it once it is "
            "complete"))]) from None
    return stored


def _refused(reason: str) -> InvalidRequest:
    return InvalidRequest([FieldError("query_upload", reason)])


def _used(upload_id: str) -> RequestConflict:
    return RequestConflict([FieldError("query_upload", f"upload {upload_id} is the query of "
                                                       f"job {upload_id} already")])
