"""Retention: the clean-up deletes exactly the expired jobs, blobs before records, reading no
younger one; a failed blob deletion leaves the records to find next time; retention 0 keeps
everything; expired jobs are gone from the listing before the clean-up has run."""

import pytest

from blast_core.domain import jobs
from blast_core.service.errors import JobExpired
from blast_core.storage.ports import query_blob
from unit.fakes import build

DAY = 86_400


@pytest.fixture
def world():
    return build(BLAST_RETENTION_DAYS="1")


def add(world, age_seconds: float) -> jobs.Job:
    job = world.add_job(age_seconds=age_seconds)
    world.blobs.put_text(job.id, query_blob(0), ">q\nACGT\n", "text/x-fasta")
    return job


def test_clean_up_deletes_exactly_the_expired_jobs_blobs_first_and_no_younger_one(world):
    # More expired jobs than one page of the clean-up, and younger ones up to the bound.
    expired = [add(world, DAY + 60 + n) for n in range(130)]
    young = [add(world, age) for age in (DAY - 60, 3600, 0)]
    listed: list[str] = []
    ids_from, delete_job, delete_many = (world.records.ids_from, world.blobs.delete_job,
                                         world.records.delete_many)

    def listing(bound: str, page_size: int):
        for page in ids_from(bound, page_size):
            listed.extend(page)
            yield page

    def blobs_deleted(job_id: str) -> None:
        assert world.records.get(job_id) is not None, "a record deleted before its blobs"
        delete_job(job_id)

    def records_deleted(job_ids: list[str]) -> None:
        assert all(world.blobs.names(job_id) == [] for job_id in job_ids), \
            "records deleted while their blobs remain"
        delete_many(job_ids)

    world.records.ids_from = listing
    world.blobs.delete_job = blobs_deleted
    world.records.delete_many = records_deleted

    assert world.service.clean_up(limit=100) == 100
    assert world.service.clean_up() == 30
    assert world.service.clean_up() == 0
    assert sorted(listed) == sorted(job.id for job in expired), "no younger job is even read"
    assert [len(ids) for ids in world.records.transactions] == [100, 30]
    for job in expired:
        assert world.records.get(job.id) is None and world.blobs.names(job.id) == []
        with pytest.raises(JobExpired):
            world.service.get(job.id)
    for job in young:
        assert world.service.get(job.id).status == "queued"
        assert world.blobs.names(job.id) == [query_blob(0)]


def test_a_failed_blob_deletion_leaves_every_record_of_its_page_for_next_time(world):
    expired = [add(world, DAY + 60 + n) for n in range(3)]
    world.blobs.fail("delete_job", OSError("storage is down"), job_id=expired[1].id)
    with pytest.raises(OSError, match="storage is down"):
        world.service.clean_up()
    assert all(world.records.get(job.id) is not None for job in expired)
    world.blobs.heal()
    assert world.service.clean_up() == 3
    assert world.records.ids() == []


def test_retention_zero_keeps_everything():
    forever = build(BLAST_RETENTION_DAYS="0")
    ancient = forever.add_job(age_seconds=10 * 365 * DAY)
    assert forever.service.clean_up() == 0
    assert forever.records.calls["ids_from"] == 0
    assert forever.service.get(ancient.id) == ancient
    assert forever.service.recent(10) == [ancient]
    kept_60_days = build()  # the default retention
    kept_60_days.records.create(ancient)
    with pytest.raises(JobExpired):
        kept_60_days.service.get(ancient.id)


def test_the_listing_leaves_out_expired_jobs_not_yet_cleaned_up(world):
    old = [add(world, DAY + 60 + n) for n in range(2)]
    young = [add(world, age) for age in (DAY - 60, 3600, 0)]
    assert len(world.records.recent(10)) == 5  # all still stored
    assert [job.id for job in world.service.recent(10)] == [job.id for job in reversed(young)]
    assert not {job.id for job in old} & {job.id for job in world.service.recent(10)}
