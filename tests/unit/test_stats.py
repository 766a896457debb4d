"""The operator's stats: jobs by status over the last hour and day, read newest first, and the
queue's counts read through the transport at most every few seconds."""

from blast_core.domain import jobs
from blast_core.storage.ports import Outgoing

HOUR = 3600


def test_jobs_are_counted_by_status_over_the_last_hour_and_day(world):
    for age, status in ((60, jobs.SUCCEEDED), (2 * HOUR, jobs.FAILED), (3 * HOUR, jobs.QUEUED),
                        (2 * 24 * HOUR, jobs.SUCCEEDED)):
        world.add_job(age_seconds=age, status=status)
    stats = world.service.stats()
    assert stats["jobs"]["last_hour"] == {"validating": 0, "queued": 0, "running": 0, "succeeded": 1,
                                          "failed": 0, "cancelled": 0, "total": 1}
    assert stats["jobs"]["last_day"] == {"validating": 0, "queued": 1, "running": 0, "succeeded": 1,
                                         "failed": 1, "cancelled": 0, "total": 3}
    assert stats["jobs"]["complete"] is True


def test_the_queue_counts_are_read_through_the_transport_with_a_short_cache(world):
    for number in range(3):
        world.transport.send(Outgoing("{}", f"m{number}"))
    world.transport.add_dead_letter("{}")
    queue = world.service.stats()["queue"]
    assert (queue["transport"], queue["depth"], queue["dead_letters"], queue["error"]) == \
        ("servicebus", 3, 1, None)
    world.transport.send(Outgoing("{}", "m3"))
    assert world.service.stats()["queue"]["depth"] == 3, "read again within the cache time"
    world.service.queue_counts.forget()
    assert world.service.stats()["queue"]["depth"] == 4


def test_queue_counts_that_cannot_be_read_are_said_not_raised(world):
    def refuse():
        raise PermissionError("no Manage rights")

    world.transport.counts = refuse
    queue = world.service.stats()["queue"]
    assert (queue["depth"], queue["dead_letters"]) == (None, None)
    assert queue["error"] == "PermissionError: no Manage rights"
