"""In-memory fakes of the storage ports (`blast_core/storage/ports.py`) and of the database
catalog, and a stand-in for BLAST+, so that the service's logic is tested in milliseconds,
without Azurite, Service Bus or blastn (after cosmicpython's tests/unit/fakes.py).

Each fake keeps the semantics of the real adapter that the service relies on, and nothing
more; what it keeps, and what it leaves out, is said on each class. The end-to-end tests
(tests/test_*.py) still run the real adapters against Azurite, the emulated Service Bus and
the real blastn.

`build()` assembles a `BlastService` on the fakes with real `Settings`, and returns it with
the fakes, so a test arranges and inspects the state behind the service directly.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from blast_core.blast import archive, search
from blast_core.domain import jobs, messages
from blast_core.domain.database import DatabaseInfo
from blast_core.domain.jobs import Job
from blast_core.domain.messages import Message
from blast_core.service.core import BlastService
from blast_core.settings import Settings
from blast_core.storage.ports import (
    BlobChanged,
    DeadLetter,
    Lanes,
    Outgoing,
    QueueCounts,
    RecordConflict,
    RecordExists,
    StoredBlob,
    StoredJob,
    conditional_update,
)
from blast_core.storage.records import from_entity, to_entity


class FakeClock:
    """The time the fakes see: when a record last changed (the Table's `Timestamp`), when a
    scheduled message becomes visible, a duplicate-detection window. Starts at the real time
    and moves only when told."""

    def __init__(self, start: datetime | None = None):
        self._now = start or datetime.now(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


# Job records


@dataclass
class _Row:
    entity: dict[str, Any]
    etag: str
    changed_at: datetime


class FakeJobStore:
    """Job records in a dict, as the Table adapter (`storage/records.py`) keeps them.

    Kept: a record is stored as its Table entity (`to_entity`, read back with `from_entity`,
    so what the entity drops, None values, comes back as the Job's defaults); every write
    gets a new ETag and the clock's time as its change time (the entity's `Timestamp`);
    `replace` raises RecordConflict for a stale ETag and for a missing record, as the Table
    answers 412 and 404; `update` is the shared `conditional_update`; queries return rows in
    RowKey order (ordinal, as Table storage sorts keys), so job ids, which are inverted
    milliseconds, come newest first; `ids_from` pages lazily from the last key returned (a
    continuation token), so deleting a page does not shift the next; `delete` and
    `delete_many` ignore a missing record, as the adapter ends up doing; `create` of an
    existing id raises RecordExists. Each write and read is atomic (one lock).

    Not kept: latency, throttling, the 100-operation and 4 MB transaction limits, the
    property size limits (64 KiB per string, 1 MiB per entity), the 1,000-row query pages.

    For tests: `calls` counts each method called, `written` lists every Job written (create
    and replace) in order, `changed_at(id)` is a record's change time, `transactions` the id
    lists given to `delete_many`."""

    def __init__(self, clock: FakeClock | None = None):
        self.clock = clock or FakeClock()
        self._rows: dict[str, _Row] = {}
        self._lock = threading.RLock()
        self._etags = itertools.count(1)
        self.calls: Counter[str] = Counter()
        self.written: list[Job] = []
        self.transactions: list[list[str]] = []
        self.ensured = False

    def _write(self, job: Job) -> str:
        etag = f'W/"datetime\'{next(self._etags)}\'"'
        self._rows[job.id] = _Row(to_entity(job), etag, self.clock.now())
        self.written.append(job)
        return etag

    def _job(self, row: _Row) -> Job:
        return from_entity(dict(row.entity))

    def _sorted(self) -> list[tuple[str, _Row]]:
        return sorted(self._rows.items())

    def ensure(self) -> None:
        self.calls["ensure"] += 1
        self.ensured = True

    def create(self, job: Job) -> None:
        with self._lock:
            self.calls["create"] += 1
            if job.id in self._rows:
                raise RecordExists(f"job {job.id} has a record already")
            self._write(job)

    def get(self, job_id: str) -> StoredJob | None:
        with self._lock:
            self.calls["get"] += 1
            row = self._rows.get(job_id)
            return None if row is None else StoredJob(self._job(row), row.etag)

    def replace(self, job: Job, etag: str) -> str:
        with self._lock:
            self.calls["replace"] += 1
            row = self._rows.get(job.id)
            if row is None or row.etag != etag:
                raise RecordConflict(job.id)
            return self._write(job)

    def update(self, job_id: str, change: Callable[[Job], Job | None],
               known: StoredJob | None = None) -> StoredJob | None:
        self.calls["update"] += 1
        return conditional_update(self, job_id, change, known)

    def delete(self, job_id: str) -> None:
        with self._lock:
            self.calls["delete"] += 1
            self._rows.pop(job_id, None)

    def delete_many(self, job_ids: list[str]) -> None:
        with self._lock:
            self.calls["delete_many"] += 1
            if not job_ids:
                return
            self.transactions.append(list(job_ids))
            for job_id in job_ids:
                self._rows.pop(job_id, None)

    def ids_from(self, bound: str, page_size: int) -> Iterator[list[str]]:
        self.calls["ids_from"] += 1
        after: str | None = None
        while True:
            with self._lock:
                page = [job_id for job_id, _ in self._sorted()
                        if job_id >= bound and (after is None or job_id > after)][:page_size]
            if not page:
                return
            yield page
            after = page[-1]

    def since(self, bound: str, limit: int) -> list[Job]:
        with self._lock:
            self.calls["since"] += 1
            return [self._job(row) for job_id, row in self._sorted() if job_id < bound][:limit]

    def recent(self, limit: int) -> list[Job]:
        with self._lock:
            self.calls["recent"] += 1
            return [self._job(row) for _, row in self._sorted()[:limit]]

    def open_jobs_unchanged_since(self, moment: datetime,
                                  limit: int) -> list[tuple[Job, str, datetime]]:
        with self._lock:
            self.calls["open_jobs_unchanged_since"] += 1
            found = [(self._job(row), row.etag, row.changed_at) for _, row in self._sorted()
                     if row.entity["status"] in (jobs.VALIDATING, jobs.QUEUED, jobs.RUNNING)
                     and row.changed_at < moment]
            return found[:limit]

    # For tests

    def changed_at(self, job_id: str) -> datetime:
        with self._lock:
            return self._rows[job_id].changed_at

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(self._rows)


# Blobs


def _blob_missing() -> ResourceNotFoundError:
    """What the Blob SDK raises for a blob that does not exist (its first line, as
    `logs.describe` keeps it, and the error code)."""
    return ResourceNotFoundError("The specified blob does not exist.\nErrorCode:BlobNotFound")


class FakeJobBlobs:
    """A job's blobs in a dict, named `<job id>/<name>` as in the container.

    Kept: writes overwrite; `get_text` and `download` of a missing blob raise the SDK's
    ResourceNotFoundError (`download` after creating the empty file, as the adapter opens it
    first); `stream` is None for a missing blob, else the content as it was when asked, in
    chunks of `chunk_size` bytes; `delete` and `delete_job` ignore what is missing;
    `read_link` returns a recognisable URL (https://fakeblobs.invalid/...) whatever exists,
    as a SAS is signed without looking, with its expiry in the query (`se`) as a SAS has.

    Not kept: content settings beyond the content type, leases, the SAS signature.

    For tests: `fail(operation, error, job_id=None)` makes an operation raise (for one job,
    or every one) until `heal()`; `calls` counts each method; `links` lists the links made
    as (job id, name, expiry)."""

    LINK_PREFIX = "https://fakeblobs.invalid/"

    def __init__(self, chunk_size: int = 64):
        self.chunk_size = chunk_size
        self._blobs: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._faults: dict[tuple[str, str | None], Exception] = {}
        self.calls: Counter[str] = Counter()
        self.links: list[tuple[str, str, datetime]] = []
        self.ensured = False

    def fail(self, operation: str, error: Exception, job_id: str | None = None) -> None:
        self._faults[(operation, job_id)] = error

    def heal(self) -> None:
        self._faults.clear()

    def _call(self, operation: str, job_id: str) -> None:
        self.calls[operation] += 1
        error = self._faults.get((operation, job_id)) or self._faults.get((operation, None))
        if error is not None:
            raise error

    def _read(self, job_id: str, name: str) -> bytes:
        with self._lock:
            found = self._blobs.get(f"{job_id}/{name}")
        if found is None:
            raise _blob_missing()
        return found[0]

    def ensure(self) -> None:
        self.calls["ensure"] += 1
        self.ensured = True

    def put_text(self, job_id: str, name: str, text: str, content_type: str) -> None:
        self._call("put_text", job_id)
        with self._lock:
            self._blobs[f"{job_id}/{name}"] = (text.encode(), content_type)

    def put_file(self, job_id: str, name: str, path: str, content_type: str) -> None:
        self._call("put_file", job_id)
        with open(path, "rb") as data, self._lock:
            self._blobs[f"{job_id}/{name}"] = (data.read(), content_type)

    def get_text(self, job_id: str, name: str) -> str:
        self._call("get_text", job_id)
        return self._read(job_id, name).decode()

    def download(self, job_id: str, name: str, path: str) -> None:
        self._call("download", job_id)
        with open(path, "wb") as out:
            out.write(self._read(job_id, name))

    def exists(self, job_id: str, name: str) -> bool:
        self._call("exists", job_id)
        with self._lock:
            return f"{job_id}/{name}" in self._blobs

    def stream(self, job_id: str, name: str, offset: int = 0, length: int | None = None,
               etag: str | None = None) -> Iterator[bytes] | None:
        self._call("stream", job_id)
        try:
            content = self._read(job_id, name)
        except ResourceNotFoundError:
            return None
        if etag is not None and etag != _etag(content):
            raise BlobChanged(f"{job_id}/{name}")
        content = content[offset:None if length is None else offset + length]
        return (content[start:start + self.chunk_size]
                for start in range(0, len(content), self.chunk_size))

    def properties(self, job_id: str, name: str) -> StoredBlob | None:
        self._call("properties", job_id)
        try:
            content = self._read(job_id, name)
        except ResourceNotFoundError:
            return None
        return StoredBlob(len(content), _etag(content))

    def delete(self, job_id: str, name: str) -> None:
        self._call("delete", job_id)
        with self._lock:
            self._blobs.pop(f"{job_id}/{name}", None)

    def delete_job(self, job_id: str) -> None:
        self._call("delete_job", job_id)
        with self._lock:
            for key in [key for key in self._blobs if key.startswith(f"{job_id}/")]:
                del self._blobs[key]

    def read_link(self, job_id: str, name: str, expiry: datetime) -> str:
        self._call("read_link", job_id)
        self.links.append((job_id, name, expiry))
        return f"{self.LINK_PREFIX}{job_id}/{name}?sp=r&se={jobs.format_time(expiry)}"

    def origin(self) -> str:
        return self.LINK_PREFIX.rstrip("/")

    def write_link(self, job_id: str, name: str, expiry: datetime) -> str:
        self._call("write_link", job_id)
        self.links.append((job_id, name, expiry))
        return f"{self.LINK_PREFIX}{job_id}/{name}?sp=cw&se={jobs.format_time(expiry)}"

    def names(self, job_id: str) -> list[str]:
        """The names of a job's blobs."""
        self._call("names", job_id)
        with self._lock:
            return sorted(key.split("/", 1)[1] for key in self._blobs
                          if key.startswith(f"{job_id}/"))

    def content_type(self, job_id: str, name: str) -> str:
        with self._lock:
            return self._blobs[f"{job_id}/{name}"][1]


def _etag(content: bytes) -> str:
    return '"' + hashlib.sha256(content).hexdigest()[:16] + '"'


# The queue


MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"
EXPIRED_REASON = "TTLExpiredException"


class LockLost(Exception):
    """Settling or renewing a delivery that was settled already, or whose lock was lost
    (the SDK raises MessageAlreadySettled or MessageLockLostError)."""


@dataclass(frozen=True)
class Sent:
    """One call of `send`: what was sent, and whether duplicate detection dropped it."""

    body: str
    message_id: str
    delay: float
    properties: dict[str, str]
    accepted: bool

    @property
    def message(self) -> Message:
        return messages.decode(self.body)


@dataclass
class _Entry:
    sequence: int
    body: bytes
    message_id: str
    properties: dict[str, str]
    visible_at: datetime
    deliveries: int = 0
    locked: bool = False
    reason: str | None = None  # in the dead-letter queue: why it is there


class FakeTransport:
    """The job queue and its dead-letter queue, in lists, with the rules of a Service Bus
    queue as the service depends on them (tests/emulation/servicebus.py has them all, at
    the SDK's level; docs/reliability.md their sources).

    Kept: a send is recorded (`sent`: body, message id, delay, properties) and enqueued,
    unless duplicate detection drops it (its message id was sent within
    `duplicate_window` seconds: the send still succeeds); a delayed message is invisible
    until the clock reaches its time; `receive` locks the first visible message (peek-lock)
    and counts its deliveries from 1, as `ServiceBusDelivery` reports them; a delivery is
    settled once: `complete` removes it, `abandon` and a lost lock (`FakeDelivery.lose_lock`,
    a worker gone) put it back, or, once it has been delivered `max_delivery_count` times,
    move it to the dead letters as `MaxDeliveryCountExceeded`; `retry_later` schedules its
    copy and completes it (Service Bus cannot delay an abandoned message), `release` sends its
    copy at once and completes it; `dead_letter`
    keeps the reason, which `peek_dead_letters` (oldest first, nothing removed) returns;
    `receive_dead_letter` locks a dead letter until it is completed or abandoned (left
    where it was); a dead letter cannot be dead-lettered again; `counts` are the visible
    messages (locked ones included, scheduled ones not) and the dead letters.

    Not kept: lock durations (a lock holds until settled or `lose_lock`), time to live
    (`expire_waiting` expires the waiting messages when a test says so), sessions, the
    Storage Queue's different rules (hidden messages, no message ids, no reasons).

    For tests: `sent`, `settlements` (what each delivery's settlement did), `waiting()`,
    `add_dead_letter()`, `dead_letter_bodies()`, `send_error` (every send raises it)."""

    def __init__(self, clock: FakeClock | None = None, max_delivery_count: int = 5,
                 duplicate_window: float = 3600.0):
        self.clock = clock or FakeClock()
        self.max_delivery_count = max_delivery_count
        self.duplicate_window = timedelta(seconds=duplicate_window)
        self.sent: list[Sent] = []
        self.settlements: list[tuple[Any, ...]] = []
        self.queue: list[_Entry] = []
        self.dead: list[_Entry] = []
        self._seen: dict[str, datetime] = {}
        self._sequence = itertools.count(1)
        self._lock = threading.RLock()
        self.send_error: Exception | None = None  # raised by every send while set
        self.ensured = False
        self.closed = False

    def ensure(self) -> None:
        self.ensured = True

    def counts(self) -> QueueCounts:
        with self._lock:
            now = self.clock.now()
            return QueueCounts(sum(1 for e in self.queue if e.visible_at <= now), len(self.dead))

    def send(self, message: Outgoing, delay: float = 0) -> None:
        with self._lock:
            if self.send_error is not None:
                raise self.send_error
            now = self.clock.now()
            first_seen = self._seen.get(message.message_id)
            accepted = first_seen is None or now - first_seen >= self.duplicate_window
            self.sent.append(Sent(message.body, message.message_id, delay,
                                  dict(message.properties), accepted))
            if not accepted:
                return
            self._seen[message.message_id] = now
            self.queue.append(_Entry(next(self._sequence), message.body.encode(),
                                     message.message_id, dict(message.properties),
                                     now + timedelta(seconds=delay) if delay > 0 else now))

    def receive(self) -> FakeDelivery | None:
        found = self.receive_many(1)
        return found[0] if found else None

    def receive_many(self, max_messages: int) -> list[FakeDelivery]:
        """The first `max_messages` visible messages, locked, in the order they were sent."""
        with self._lock:
            now = self.clock.now()
            visible = [e for e in self.queue if not e.locked and e.visible_at <= now]
            return [self._deliver(entry, dead_letter=False) for entry in visible[:max_messages]]

    def peek_dead_letters(self, limit: int) -> list[DeadLetter]:
        with self._lock:
            return [DeadLetter(e.body, e.reason or "") for e in self.dead[:limit]]

    def receive_dead_letter(self) -> FakeDelivery | None:
        with self._lock:
            entry = next((e for e in self.dead if not e.locked), None)
            return None if entry is None else self._deliver(entry, dead_letter=True)

    def close(self) -> None:
        self.closed = True

    def _deliver(self, entry: _Entry, dead_letter: bool) -> FakeDelivery:
        entry.deliveries += 1
        entry.locked = True
        return FakeDelivery(self, entry, dead_letter)

    def _release(self, entry: _Entry, dead_letter: bool) -> None:
        """Back where it was after an abandon or a lost lock; from the queue to the dead
        letters once delivered `max_delivery_count` times."""
        entry.locked = False
        if not dead_letter and entry.deliveries >= self.max_delivery_count:
            self._move_to_dead_letters(entry, f"{MAX_DELIVERY_REASON}: Message could not be "
                                              f"consumed after {entry.deliveries} delivery "
                                              "attempts.")

    def _move_to_dead_letters(self, entry: _Entry, reason: str) -> None:
        self.queue.remove(entry)
        entry.locked, entry.reason = False, reason
        self.dead.append(entry)

    # For tests

    def waiting(self) -> list[tuple[str, Message]]:
        """The messages in the queue (visible, locked or scheduled): id and content."""
        with self._lock:
            return [(e.message_id, messages.decode(e.body)) for e in self.queue]

    def add_dead_letter(self, body: str | bytes, reason: str = "dead-lettered by a test",
                        message_id: str = "") -> None:
        with self._lock:
            self.dead.append(_Entry(next(self._sequence), body.encode() if isinstance(
                body, str) else body, message_id or f"dead-{len(self.dead)}", {},
                self.clock.now(), reason=reason))

    def dead_letter_bodies(self) -> list[bytes]:
        with self._lock:
            return [e.body for e in self.dead]

    def expire_waiting(self) -> None:
        """Every unlocked message in the queue outlived its time to live: Service Bus moves
        it to the dead letters (once a receiver pulls, which this stands for)."""
        with self._lock:
            for entry in [e for e in self.queue if not e.locked]:
                self._move_to_dead_letters(entry, f"{EXPIRED_REASON}: The message expired "
                                                  "and was dead lettered.")


class FakeDelivery:
    """A message received from a FakeTransport, locked until it is settled once."""

    def __init__(self, transport: FakeTransport, entry: _Entry, dead_letter: bool):
        self._transport = transport
        self._entry = entry
        self._dead_letter_queue = dead_letter
        self._settled = False
        self.body = entry.body
        self.delivery_count = entry.deliveries
        self.message_id = entry.message_id
        self.renewals = 0
        self.outcome: tuple[Any, ...] | None = None

    def _settle(self, outcome: tuple[Any, ...]) -> None:
        if self._settled:
            raise LockLost(f"message {self.message_id}: settled already, or its lock was lost")
        self._settled = True
        self.outcome = outcome
        self._transport.settlements.append((*outcome[:1], self.message_id, *outcome[1:]))

    def renew(self) -> None:
        with self._transport._lock:
            if self._settled:
                raise LockLost(f"message {self.message_id}: its lock is gone")
            self.renewals += 1

    def complete(self) -> None:
        with self._transport._lock:
            self._settle(("complete",))
            (self._transport.dead if self._dead_letter_queue
             else self._transport.queue).remove(self._entry)

    def abandon(self) -> None:
        with self._transport._lock:
            self._settle(("abandon",))
            self._transport._release(self._entry, self._dead_letter_queue)

    def retry_later(self, seconds: int, copy: Outgoing) -> None:
        with self._transport._lock:
            if self._settled:
                raise LockLost(f"message {self.message_id}: settled already")
            self._transport.send(copy, delay=seconds)
            self._settle(("retry", seconds, copy.message_id))
            self._transport.queue.remove(self._entry)

    def release(self, copy: Outgoing) -> None:
        with self._transport._lock:
            if self._settled:
                raise LockLost(f"message {self.message_id}: settled already")
            self._transport.send(copy)
            self._settle(("release", copy.message_id))
            self._transport.queue.remove(self._entry)

    def dead_letter(self, reason: str) -> None:
        with self._transport._lock:
            if self._dead_letter_queue:
                raise ValueError("a dead-lettered message cannot be dead-lettered again")
            self._settle(("dead-letter", reason))
            self._transport._move_to_dead_letters(self._entry, reason[:4096])

    def lose_lock(self) -> None:
        """The lock expires with no settlement (the worker's instance is gone): the message
        comes back, or goes to the dead letters after its last allowed delivery; settling
        this delivery afterwards raises LockLost."""
        with self._transport._lock:
            self._settle(("lock-lost",))
            self._transport._release(self._entry, self._dead_letter_queue)


# The database catalog and BLAST+


FAKE_DATABASE = DatabaseInfo("16SCore", "16S core (fake)", "nucleotide", 1787, 142_950)


class FakeCatalog:
    """`DatabaseCatalog`'s answers without `blastdbcmd`: the databases given, found by
    name; `local_path` says where a search would read one and stages nothing."""

    def __init__(self, databases: list[DatabaseInfo] | None = None,
                 db_dir: str = "/fake/blastdb"):
        self.databases = {d.name: d for d in databases or [FAKE_DATABASE]}
        self.db_dir = db_dir

    def list(self) -> list[DatabaseInfo]:
        return sorted(self.databases.values(), key=lambda d: d.name.lower())

    def find(self, name: str) -> DatabaseInfo | None:
        return self.databases.get(name)

    def path(self, name: str) -> str:
        return os.path.join(self.db_dir, name)

    def local_path(self, name: str) -> str:
        return self.path(name)


class FakeBlast:
    """Stands in for BLAST+ where the service runs it (`search.run_search`,
    `search.format_archive`); `install(monkeypatch)` puts it there. A search's "archive"
    lists its queries' names, and each query has `hits_per_query` hits; the tsv format has
    one line per hit. `reject` makes searches fail for good (SearchRejected); `during(job)`
    runs while BLAST would (a cancel arriving then, say); a search whose stop check says
    stop raises SearchCancelled, as BLAST stopped by the check does."""

    ARCHIVE_HEADER = "fake archive\n"

    def __init__(self, hits_per_query: int = 2):
        self.hits_per_query = hits_per_query
        self.reject: str | None = None
        self.during: Callable[[Job], None] | None = None
        self.searches: list[tuple[str, list[str], int]] = []  # job id, databases, queries
        self.formatted: list[tuple[str, str]] = []  # archive content's first query, format
        self._lock = threading.Lock()

    def install(self, monkeypatch: Any) -> FakeBlast:
        monkeypatch.setattr(search, "run_search", self.run_search)
        monkeypatch.setattr(search, "format_archive", self.format_archive)
        monkeypatch.setattr(archive, "split_archive", self.split_archive)
        monkeypatch.setattr(search, "count_archive_hits", self.count_archive_hits)
        return self

    def split_archive(self, text: str, counts: list[int]) -> list[str]:
        """A coalesced run's fake archive, split per batch as `archive.split_archive` does."""
        names = text.removeprefix(self.ARCHIVE_HEADER).split()
        if sum(counts) != len(names):
            raise ValueError(f"{len(names)} queries in the archive, {sum(counts)} expected")
        starts = list(itertools.accumulate([0, *counts]))
        return [self.ARCHIVE_HEADER + "".join(f"{name}\n" for name in names[a:b])
                for a, b in itertools.pairwise(starts)]

    def count_archive_hits(self, text: str) -> int:
        return self.hits_per_query * len(text.removeprefix(self.ARCHIVE_HEADER).split())

    def run_search(self, job: Job, tools: search.BlastTools, query_path: str,
                   db_paths: list[str], workdir: str, queries: int = 1,
                   stop: Any = None, time_limit: float | None = None,
                   subject_path: str | None = None) -> search.SearchResult:
        with self._lock:
            self.searches.append((job.id, [subject_path] if subject_path else list(db_paths),
                                  queries))
        if self.during is not None:
            self.during(job)
        if stop is not None and stop.should_stop():
            raise search.SearchCancelled("BLAST stopped: the job was cancelled", 0.5, 0.25)
        if self.reject is not None:
            raise search.SearchRejected(self.reject)
        with open(query_path) as query:
            names = [line[1:].split()[0] for line in query if line.startswith(">")]
        archive = os.path.join(workdir, "fake.asn")
        with open(archive, "w") as out:
            out.write(self.ARCHIVE_HEADER + "".join(f"{name}\n" for name in names))
        return search.SearchResult(archive, hits=self.hits_per_query * len(names),
                                   blast_seconds=0.01, cpu_seconds=0.01)

    def format_archive(self, tools: search.BlastTools, archive: str, fmt: search.OutputFormat,
                       db_dir: str, out_path: str) -> None:
        if fmt.name != "tsv":
            raise NotImplementedError(f"FakeBlast formats tsv only, not {fmt.name}")
        with open(archive) as text:
            names = text.read().removeprefix(self.ARCHIVE_HEADER).split()
        with self._lock:
            self.formatted.append((names[0] if names else "", fmt.name))
        with open(out_path, "w") as out:
            for name in names:
                out.writelines(f"{name}\tsubject{hit}\t100.000\n"
                               for hit in range(1, self.hits_per_query + 1))


# The service on the fakes


QUERY_LETTERS = 40
DEFAULT_ENV = {
    "BLAST_QUEUE_TRANSPORT": "servicebus",
    "BLAST_DB_DIR": "/fake/blastdb",
    "BLAST_BATCH_LETTERS": str(QUERY_LETTERS),  # one query of `query()` per batch
}


def query(sequences: int = 1) -> str:
    """FASTA of `sequences` distinct nucleotide queries of QUERY_LETTERS letters each."""
    bases = "ACGT"
    return "".join(f">q{n}\n" + "".join(bases[(n + i * (n % 3 + 1)) % 4]
                                        for i in range(QUERY_LETTERS)) + "\n"
                   for n in range(1, sequences + 1))


@dataclass
class FakeWorld:
    """A BlastService on fakes, and the fakes behind it."""

    service: BlastService
    records: FakeJobStore
    blobs: FakeJobBlobs
    transport: FakeTransport
    catalog: FakeCatalog
    clock: FakeClock
    woken: list[bool] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.service.settings

    def submit(self, batches: int = 1, **options: Any) -> Job:
        """A job submitted through the service: one query per batch."""
        return self.service.submit({"query": query(batches), "database": FAKE_DATABASE.name,
                                    **options})

    def message(self, job_id: str, batch: int) -> Message:
        """A batch's message as submission sent it (a small job's carries its query); one
        made here for a batch that no message was sent for."""
        for sent in self.transport.sent:
            message = messages.decode(sent.body)
            if (message.job_id, message.batch) == (job_id, batch):
                return message
        return messages.batch_message(job_id, batch)

    def job(self, job_id: str) -> Job:
        found = self.records.get(job_id)
        assert found is not None, f"no record for job {job_id}"
        return found.job

    def stored(self, job_id: str) -> StoredJob:
        found = self.records.get(job_id)
        assert found is not None, f"no record for job {job_id}"
        return found

    def add_job(self, age_seconds: float = 0.0, batches: int = 1, **fields: Any) -> Job:
        """A record created directly (not submitted), for a job submitted `age_seconds` ago:
        its id says when, as a real one does."""
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        job = Job(id=jobs.new_job_id(now_ms - round(age_seconds * 1000)), status=jobs.QUEUED,
                  database=FAKE_DATABASE.name, program="blastn", task="megablast", evalue=10.0,
                  max_target_seqs=100, queries=batches, query_letters=QUERY_LETTERS * batches,
                  submitted_at=jobs.utc_now(), batches=batches,
                  batch_states=jobs.BATCH_PENDING * batches)
        if fields:
            job = Job(**{**job.to_dict(), **fields})
        self.records.create(job)
        return job

    def change(self, job_id: str, change: Callable[[Job], Job]) -> Job:
        """Write a change to a record as a worker would (ETag-conditional)."""
        stored = self.records.update(job_id, change)
        assert stored is not None
        return stored.job


def build(**env: str) -> FakeWorld:
    """A BlastService on fresh fakes, with real Settings from DEFAULT_ENV and `env` (never
    from this process's environment)."""
    settings = Settings.from_env({**DEFAULT_ENV, **env})
    clock = FakeClock()
    records, blobs = FakeJobStore(clock), FakeJobBlobs()
    transport = FakeTransport(clock, max_delivery_count=settings.max_deliveries)
    catalog = FakeCatalog(db_dir=settings.db_dir)
    service = BlastService(settings, catalog, records, blobs,
                           Lanes({lane: transport for lane in messages.LANES}))  # type: ignore[arg-type]
    world = FakeWorld(service, records, blobs, transport, catalog, clock)
    service.on_queued = lambda: world.woken.append(True)
    return world
