"""Job records in Azure Table storage.

All jobs share one partition and the row key is the job id, whose prefix is inverted
milliseconds: a query of the partition returns the newest jobs first without scanning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)

from blast_core.domain.jobs import Job
from blast_core.settings import Connection
from blast_core.storage.clients import storage_client
from blast_core.storage.ports import RecordConflict, RecordExists, StoredJob, conditional_update

PARTITION = "job"
_FIELDS = [f.name for f in dataclasses.fields(Job)]


def to_entity(job: Job) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": job.id}
    entity.update({k: _typed(v) for k, v in job.to_dict().items() if k != "id" and v is not None})
    return entity


def _typed(value: Any) -> Any:
    """An int beyond 32 bits as Edm.Int64 (an upload's bytes, its letters): the SDK writes
    every int as Edm.Int32 and refuses a larger one."""
    if isinstance(value, int) and not isinstance(value, bool) and not -2**31 <= value < 2**31:
        return EntityProperty(value, EdmType.INT64)
    return value


def from_entity(entity: dict[str, Any]) -> Job:
    """A Job from its entity; properties absent from the entity keep the Job's defaults."""
    values = {name: entity[name] for name in _FIELDS if name != "id" and name in entity}
    values = {name: value.value if isinstance(value, EntityProperty) else value
              for name, value in values.items()}
    values["evalue"] = float(values["evalue"])
    return Job(id=entity["RowKey"], **values)


class JobRecords:
    def __init__(self, table: TableClient):
        self._table = table

    @classmethod
    def connect(cls, connection: Connection, table_name: str) -> JobRecords:
        service = storage_client(TableServiceClient, connection, "table")
        return cls(service.get_table_client(table_name))

    def ensure(self) -> None:
        try:
            self._table.create_table()
        except ResourceExistsError:
            pass

    def create(self, job: Job) -> None:
        try:
            self._table.create_entity(to_entity(job))
        except ResourceExistsError:
            raise RecordExists(f"job {job.id} has a record already") from None

    def get(self, job_id: str) -> StoredJob | None:
        """The job and its ETag, or None."""
        try:
            entity = self._table.get_entity(PARTITION, job_id)
        except ResourceNotFoundError:
            return None
        return StoredJob(from_entity(entity), entity.metadata["etag"])

    def update(self, job_id: str, change: Callable[[Job], Job | None],
               known: StoredJob | None = None) -> StoredJob | None:
        return conditional_update(self, job_id, change, known)

    def replace(self, job: Job, etag: str) -> str:
        """Write `job` only if the record is still at `etag`; returns the new ETag."""
        try:
            metadata = self._table.update_entity(
                to_entity(job), mode=UpdateMode.REPLACE, etag=etag,
                match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError) as error:
            raise RecordConflict(job.id) from error
        return metadata["etag"]

    def delete(self, job_id: str) -> None:
        self._table.delete_entity(PARTITION, job_id)

    def delete_many(self, job_ids: list[str]) -> None:
        """Delete up to 100 records in one transaction (one partition); when one is already
        gone (another clean-up got there), which fails the transaction, one by one."""
        if not job_ids:
            return
        try:
            self._table.submit_transaction(
                [("delete", {"PartitionKey": PARTITION, "RowKey": job_id}) for job_id in job_ids])
        except TableTransactionError:
            for job_id in job_ids:
                self.delete(job_id)

    def ids_from(self, bound: str, page_size: int) -> Iterator[list[str]]:
        """The ids that sort at or after `bound` (`jobs.expired_ids_bound`: the oldest jobs),
        a page at a time; only the keys are read."""
        pages = self._table.query_entities(
            f"PartitionKey eq '{PARTITION}' and RowKey ge @bound", parameters={"bound": bound},
            select=["RowKey"], results_per_page=page_size).by_page()
        for page in pages:
            yield [entity["RowKey"] for entity in page]

    def since(self, bound: str, limit: int) -> list[Job]:
        """The jobs whose ids sort below `bound` (`jobs.ids_since`: submitted since a time),
        newest first, at most `limit`: read page by page from the start of the partition and
        never past the bound, so no scan."""
        query = self._table.query_entities(
            f"PartitionKey eq '{PARTITION}' and RowKey lt @bound", parameters={"bound": bound},
            results_per_page=min(limit, 1000))
        found: list[Job] = []
        for entity in query:
            found.append(from_entity(entity))
            if len(found) >= limit:
                break
        return found

    def open_jobs_unchanged_since(self, moment: datetime,
                                  limit: int) -> list[tuple[Job, str, datetime]]:
        """Validating, queued and running jobs whose record has not been written since `moment` (the
        entity's own Timestamp, which every write sets), with their ETags and that time."""
        query = self._table.query_entities(
            f"PartitionKey eq '{PARTITION}' and (status eq 'queued' or status eq 'running' or "
            "status eq 'validating') "
            "and Timestamp lt @moment", parameters={"moment": moment},
            results_per_page=min(limit, 1000))
        found = []
        for entity in query:
            found.append((from_entity(entity), entity.metadata["etag"],
                          entity.metadata["timestamp"]))
            if len(found) >= limit:
                break
        return found

    def recent(self, limit: int) -> list[Job]:
        pages = self._table.query_entities(f"PartitionKey eq '{PARTITION}'",
                                           results_per_page=limit).by_page()
        first_page = next(pages, [])
        return [from_entity(e) for e in first_page][:limit]
