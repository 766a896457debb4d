"""The service: the ports the use cases work through (settings, the database catalog, the
BLAST+ tools, job records, blobs, the queue) and the use cases themselves, one module each,
reached through one object so that both hosts and the API hold just that.

It names no Azure type: `bootstrap.py` connects the concrete adapters, and tests give it
in-memory fakes of the same small interfaces (`storage/ports.py`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from blast_core.blast.databases import DatabaseCatalog
from blast_core.blast.search import BlastTools
from blast_core.domain.byte_ranges import RangeSpec
from blast_core.domain.database import DatabaseInfo
from blast_core.domain.fasta import QueryLimits
from blast_core.domain.hit_selection import HitSelection
from blast_core.domain.job_request import JobRequest
from blast_core.domain.jobs import Job
from blast_core.domain.messages import Message
from blast_core.service import (
    cancel,
    lookup,
    operations,
    partial_results,
    processing,
    results,
    submission,
    uploads,
)
from blast_core.service.operations import DeadLetterView, QueueCountsCache, SweepReport
from blast_core.service.partial_results import PartialTable
from blast_core.service.processing import Outcome, Work
from blast_core.service.results import ResultBody, ResultLink
from blast_core.service.uploads import Upload
from blast_core.settings import Settings
from blast_core.storage.ports import JobBlobs, JobStore, Lanes


class BlastService:
    def __init__(self, settings: Settings, catalog: DatabaseCatalog, records: JobStore,
                 blobs: JobBlobs, transport: Lanes):
        self.settings = settings
        self.catalog = catalog
        self.records = records
        self.blobs = blobs
        self.transport = transport
        self.tools = BlastTools.from_settings(settings)
        self.query_limits = QueryLimits(settings.max_query_bytes, settings.max_queries,
                                        settings.max_sequence_letters, settings.max_header_chars)
        self.subject_limits = QueryLimits(settings.max_subject_bytes, settings.max_subjects,
                                          settings.max_subject_bytes, settings.max_header_chars)
        self.upload_limits = QueryLimits(settings.max_upload_bytes, settings.max_upload_queries,
                                         settings.max_sequence_letters, settings.max_header_chars)
        self.queue_counts = QueueCountsCache()
        self.on_queued: Callable[[], None] | None = None  # serve wakes its workers here

    def wake_workers(self) -> None:
        """Something was queued: `serve` wakes its idle workers (the Functions host needs no
        telling)."""
        if self.on_queued:
            self.on_queued()

    def ensure_storage(self) -> None:
        """Create the container, table and (Storage) queues if missing; idempotent."""
        self.blobs.ensure()
        self.records.ensure()
        self.transport.ensure()

    # The use cases, each in its own module.

    def submit(self, payload: object) -> Job:
        return submission.submit(self, payload)

    def validate(self, payload: object) -> JobRequest:
        return submission.validate(self, payload)

    def new_upload(self) -> Upload:
        return uploads.new_upload(self)

    def get(self, job_id: str) -> Job:
        return lookup.get(self, job_id)

    def recent(self, limit: int) -> list[Job]:
        return lookup.recent(self, limit)

    def databases(self) -> list[DatabaseInfo]:
        return lookup.databases(self)

    def searched_letters(self, job: Job) -> int | None:
        return lookup.searched_letters(self, job)

    def cancel(self, job_id: str) -> Job:
        return cancel.cancel(self, job_id)

    def result(self, job_id: str, key: str, wait: float = 0.0,
               wanted: RangeSpec | None = None) -> ResultBody | ResultLink:
        return results.result(self, job_id, key, wait, wanted)

    def hit_sequences(self, job_id: str, selection: HitSelection, wait: float = 0.0,
                      wanted: RangeSpec | None = None) -> ResultBody | ResultLink:
        return results.hit_sequences_result(self, job_id, selection, wait, wanted)

    def partial_table(self, job_id: str) -> PartialTable:
        return partial_results.partial_table(self, job_id)

    def result_link(self, job_id: str, key: str) -> str:
        return results.result_link(self, job_id, key)

    def handle(self, message: Message, attempt: int, last_attempt: bool = False) -> None:
        processing.handle(self, message, attempt, last_attempt)

    def handle_many(self, work: Sequence[Work], capacity: float = 1.0) -> list[Outcome]:
        return processing.handle_many(self, work, capacity)

    def stats(self) -> dict[str, object]:
        return operations.stats(self)

    def clean_up(self, limit: int = 10_000) -> int:
        return operations.clean_up(self, limit)

    def sweep(self, now: datetime | None = None) -> SweepReport:
        return operations.sweep(self, now)

    def dead_letters(self, limit: int = 32) -> list[DeadLetterView]:
        return operations.dead_letters(self, limit)

    def requeue_dead_letters(self, limit: int = 1000) -> tuple[list[str], int]:
        return operations.requeue_dead_letters(self, limit)
