"""The unit tests' fakes keep the real adapters' rules: the tests of tests/unit/test_fakes.py
that take a `store` or `blobs` fixture, run here on the Table and Blob adapters against
Azurite. A rule the fake keeps and the adapter breaks (or the other way round) fails here."""

import uuid

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from unit.test_fakes import (  # noqa: F401  collected here, on the fixtures below
    test_a_blob_is_read_at_one_version_with_its_size_and_listed_by_folder,
    test_a_record_is_written_only_at_its_etag_and_each_write_has_a_new_one,
    test_a_record_reads_back_as_its_table_entity_does,
    test_an_update_re_reads_and_reapplies_its_change_when_another_write_came_first,
    test_blobs_of_a_job_are_read_streamed_and_deleted_by_job,
    test_open_jobs_are_the_queued_and_running_ones_unchanged_since_a_moment,
    test_queries_return_the_newest_jobs_first_and_stop_at_their_bounds,
)

from blast_core.settings import Settings
from blast_core.storage.blobs import AzureJobBlobs
from blast_core.storage.records import JobRecords


@pytest.fixture
def store(azurite):
    settings = Settings.from_env({"BLAST_STORAGE": azurite.connection_string})
    table = f"contract{uuid.uuid4().hex[:10]}"
    records = JobRecords.connect(settings.connection("BLAST_STORAGE"), table)
    records.ensure()
    yield records
    TableServiceClient.from_connection_string(azurite.connection_string).delete_table(table)


@pytest.fixture
def blobs(azurite):
    settings = Settings.from_env({"BLAST_STORAGE": azurite.connection_string})
    container = f"contract-{uuid.uuid4().hex[:10]}"
    adapter = AzureJobBlobs.connect(settings.connection("BLAST_STORAGE"), container)
    adapter.ensure()
    yield adapter
    BlobServiceClient.from_connection_string(azurite.connection_string).delete_container(
        container)
