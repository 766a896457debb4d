"""What the service layer needs of storage, as small interfaces: job records, blobs, a queue.
The Azure adapters (records, blobs, queues) implement them, and so do the tests' in-memory
fakes (tests/unit/fakes.py)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol

from blast_core.domain.jobs import Job
from blast_core.domain.messages import INTERACTIVE, Message


class StoredJob(NamedTuple):
    """A job record as read, with the ETag that a conditional write of it names."""

    job: Job
    etag: str


class RecordConflict(Exception):
    """The record changed since it was read (another worker got there first)."""


class RecordExists(Exception):
    """A record with this id exists already."""


class RecordMissing(LookupError):
    """No record of this job (never submitted here, or cleaned up)."""


class JobStore(Protocol):
    def ensure(self) -> None: ...
    def create(self, job: Job) -> None:
        """RecordExists when a job of that id has a record."""
    def get(self, job_id: str) -> StoredJob | None: ...
    def replace(self, job: Job, etag: str) -> str: ...
    def update(self, job_id: str, change: Callable[[Job], Job | None],
               known: StoredJob | None = None) -> StoredJob | None:
        """`change` applied with an ETag-conditional write, retried on conflict; None when
        `change` declines. RecordMissing when there is no record."""
    def delete(self, job_id: str) -> None: ...
    def delete_many(self, job_ids: list[str]) -> None: ...
    def ids_from(self, bound: str, page_size: int) -> Iterator[list[str]]: ...
    def since(self, bound: str, limit: int) -> list[Job]: ...
    def recent(self, limit: int) -> list[Job]: ...
    def open_jobs_unchanged_since(self, moment: datetime,
                                  limit: int) -> list[tuple[Job, str, datetime]]: ...


UPDATE_ATTEMPTS = 50


def conditional_update(store: JobStore, job_id: str, change: Callable[[Job], Job | None],
                       known: StoredJob | None = None) -> StoredJob | None:
    """Apply `change` with an ETag-conditional write, re-reading and retrying when another
    worker wrote first: no lock, and no lost update. Starts from `known` when given, saving a
    read. The new record, or None when `change` declines (returns None)."""
    found = known
    for attempt in range(UPDATE_ATTEMPTS):
        if found is None:
            found = store.get(job_id)
            if found is None:
                raise RecordMissing(f"no record for job {job_id}")
        changed = change(found.job)
        if changed is None:
            return None
        try:
            return StoredJob(changed, store.replace(changed, found.etag))
        except RecordConflict:
            found = None
            time.sleep(random.uniform(0, 0.05 * (attempt + 1)))
    raise RecordConflict(f"job {job_id} kept changing under {UPDATE_ATTEMPTS} attempts")


def query_blob(batch: int) -> str:
    return f"batch-{batch}.fasta"


SUBJECT_BLOB = "subject.fasta"  # a job's subject sequences, searched instead of a database


UPLOADS = "uploads"  # the folder of uploaded queries, beside the jobs' (which are hex ids)


def upload_blob(upload_id: str) -> str:
    """An uploaded query's name in the UPLOADS folder (`service/uploads.py`)."""
    return f"{upload_id}.fasta"


class StoredBlob(NamedTuple):
    size: int
    etag: str


class BlobChanged(Exception):
    """A blob read as one version was written since."""


def selection_blob(digest: str) -> str:
    """A hit selection asked for (`domain/hit_selection.py`), for the worker that makes it."""
    return f"hits-{digest}.json"


def archive_blob(batch: int) -> str:
    return f"batch-{batch}.asn"


def batch_table_blob(batch: int) -> str:
    """A batch's hits as the default tsv, made as soon as it is searched (jobs of several
    batches): the results so far, and the merged tsv without formatting again."""
    return f"batch-{batch}.tsv"


BATCH_QUERIES_BLOB = "batches.json"  # how many queries each batch of a job holds, in order


def result_blob(extension: str) -> str:
    return f"result.{extension}"


class JobBlobs(Protocol):
    """A job's blobs by job id and name: its query batches (`query_blob`), their search
    archives (`archive_blob`), and the results made from them (`result_blob`); and uploaded
    queries, by `UPLOADS` and `upload_blob`."""

    def ensure(self) -> None: ...
    def put_text(self, job_id: str, name: str, text: str, content_type: str) -> None: ...
    def put_file(self, job_id: str, name: str, path: str, content_type: str) -> None: ...
    def get_text(self, job_id: str, name: str) -> str: ...
    def download(self, job_id: str, name: str, path: str) -> None: ...
    def exists(self, job_id: str, name: str) -> bool: ...
    def stream(self, job_id: str, name: str, offset: int = 0, length: int | None = None,
               etag: str | None = None) -> Iterator[bytes] | None:
        """With `etag`: BlobChanged when the blob is no longer that version."""
    def properties(self, job_id: str, name: str) -> StoredBlob | None: ...
    def names(self, job_id: str) -> list[str]: ...
    def delete(self, job_id: str, name: str) -> None: ...
    def delete_job(self, job_id: str) -> None: ...
    def origin(self) -> str:
        """Where links point (scheme://host[:port]), for the web page's CSP."""
    def read_link(self, job_id: str, name: str, expiry: datetime) -> str: ...
    def write_link(self, job_id: str, name: str, expiry: datetime) -> str: ...


@dataclass(frozen=True)
class Outgoing:
    """A message to send: its body, its id (what Service Bus duplicate detection compares),
    application properties (Service Bus only; the body carries them too) and its lane."""

    body: str
    message_id: str
    properties: Mapping[str, str] = field(default_factory=dict)
    lane: str = INTERACTIVE

    @classmethod
    def of(cls, message: Message, message_id: str) -> Outgoing:
        return cls(message.encode(), message_id, dict(message.trace), message.lane)


class Delivery(Protocol):
    """One received message, held (hidden or locked) until it is settled."""

    body: bytes
    delivery_count: int

    def renew(self) -> None: ...
    def complete(self) -> None: ...
    def retry_later(self, seconds: int, copy: Outgoing) -> None:
        """Have the message come back after `seconds`: the same message hidden that long
        where the queue can, else `copy` (its next attempt) scheduled, and this one settled."""
    def dead_letter(self, reason: str) -> None: ...
    def release(self, copy: Outgoing) -> None:
        """Hand the message back unworked, as `copy`, for another worker."""


class ReceivedDelivery(Delivery, Protocol):
    """A delivery this process received itself (not the Functions host)."""

    def abandon(self) -> None:
        """Put it back at once, as it was (a dead letter left where it is)."""


@dataclass(frozen=True)
class DeadLetter:
    body: bytes
    reason: str  # why it was dead-lettered, with the broker's description when it gave one


@dataclass(frozen=True)
class QueueCounts:
    """Messages waiting in the queue (Service Bus: active; Storage: approximate, which
    includes messages being worked on) and in its dead-letter or poison queue."""

    depth: int
    dead_letters: int


class Transport(Protocol):
    """The job queue (and its dead-letter or poison queue)."""

    def ensure(self) -> None: ...
    def counts(self) -> QueueCounts: ...
    def send(self, message: Outgoing, delay: float = 0) -> None: ...
    def receive(self) -> Delivery | None: ...
    def receive_many(self, max_messages: int) -> list[Delivery]: ...
    def peek_dead_letters(self, limit: int) -> list[DeadLetter]: ...
    def receive_dead_letter(self) -> ReceivedDelivery | None: ...
    def close(self) -> None: ...


class Lanes:
    """The job queues, one per lane (`messages.LANES`), as one: a message is sent to its
    lane's queue, workers receive from one lane, and counts and dead letters are those of
    all lanes together. Two lanes may share one queue (the unit tests' fakes do)."""

    def __init__(self, queues: Mapping[str, Transport]):
        self.queues = dict(queues)
        self._distinct = list({id(queue): queue for queue in self.queues.values()}.values())

    def lane(self, name: str) -> Transport:
        return self.queues[name]

    def ensure(self) -> None:
        for queue in self._distinct:
            queue.ensure()

    def counts(self) -> QueueCounts:
        counted = [queue.counts() for queue in self._distinct]
        return QueueCounts(sum(c.depth for c in counted), sum(c.dead_letters for c in counted))

    def send(self, message: Outgoing, delay: float = 0) -> None:
        self.queues[message.lane].send(message, delay)

    def receive(self) -> Delivery | None:
        """The next message of any lane, the interactive lane's first (workers receive from
        their own lane's queue: `lane`)."""
        return next(filter(None, (queue.receive() for queue in self._distinct)), None)

    def peek_dead_letters(self, limit: int) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        for queue in self._distinct:
            found += queue.peek_dead_letters(limit - len(found)) if len(found) < limit else []
        return found

    def receive_dead_letter(self) -> ReceivedDelivery | None:
        return next(filter(None, (queue.receive_dead_letter() for queue in self._distinct)),
                    None)

    def close(self) -> None:
        for queue in self._distinct:
            queue.close()

