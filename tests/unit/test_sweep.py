"""The sweep: open jobs that can no longer end by themselves end `failed` with the reason, those
whose message the queue dead-lettered, and those no message can still reach, past the bounds
of `settings.limits` only; nothing else is touched."""

from datetime import timedelta

import pytest

from blast_core.domain import jobs, messages
from blast_core.domain.limits import duration
from blast_core.storage.ports import Outgoing


def test_a_dead_letter_naming_an_open_batch_fails_it_with_the_reason_once(world):
    job = world.submit(batches=2)
    world.transport.add_dead_letter(world.message(job.id, 1).encode(),
                                    "MaxDeliveryCountExceeded: could not be consumed")
    report = world.service.sweep()
    assert (report.dead_lettered, report.stranded) == ([job.id], [])
    failed = world.job(job.id)
    assert (failed.status, failed.batch_states) == ("failed", ".F")
    assert failed.error == ("batch 2 of 2: the queue dead-lettered its message "
                            "(MaxDeliveryCountExceeded: could not be consumed)")
    ended = world.stored(job.id)
    assert world.service.sweep().dead_lettered == [], "ended once"
    assert world.stored(job.id) == ended
    assert len(world.transport.peek_dead_letters(10)) == 1, "the sweep only reads dead letters"


def test_dead_letters_of_finished_batches_unreadable_or_gone_jobs_change_nothing(world):
    job = world.submit(batches=2)
    world.change(job.id, lambda j: j.batch_started(0).batch_finished(
        0, 1, 1, jobs.BatchTimings(0, 0, 0, 0)))
    before = world.stored(job.id)
    for body in (world.message(job.id, 0).encode(),  # its batch is done
                 messages.batch_message(job.id, 5).encode(),  # no such batch
                 messages.batch_message(jobs.new_job_id(), 0).encode(),  # cleaned up
                 "not a message of ours"):
        world.transport.add_dead_letter(body, "some reason")
    assert world.service.sweep().dead_lettered == []
    assert world.stored(job.id) == before


def test_a_dead_lettered_format_message_fails_the_format_asked_for(world):
    job = world.add_job(status=jobs.SUCCEEDED, batch_states=jobs.BATCH_DONE)
    world.change(job.id, lambda j: j.format_queued("tsv"))
    world.transport.add_dead_letter(messages.format_message(job.id, "tsv").encode(),
                                    "TTLExpiredException: expired")
    world.transport.add_dead_letter(messages.format_message(job.id, "xml").encode(), "never asked")
    assert world.service.sweep().dead_lettered == []  # the job itself is not ended
    done = world.job(job.id)
    assert done.status == "succeeded"
    assert done.format_state("tsv").state == "failed"
    assert done.format_state("tsv").error == ("the queue dead-lettered its message "
                                              "(TTLExpiredException: expired)")
    assert done.format_state("xml").state is None


def test_stranded_jobs_are_failed_only_past_their_bounds_and_ended_ones_never(world):
    limits = world.settings.limits
    running = world.submit()
    world.change(running.id, lambda j: j.batch_started(0))
    queued = world.submit()
    ended = {status: world.add_job(status=status) for status in jobs.FINAL_STATUSES}
    before = {job.id: world.stored(job.id) for job in ended.values()}
    now = world.clock.now()

    soon = world.service.sweep(now + timedelta(seconds=limits.running_stale_after - 60))
    assert (soon.dead_lettered, soon.stranded) == ([], [])
    later = world.service.sweep(now + timedelta(seconds=limits.running_stale_after + 60))
    assert later.stranded == [running.id]
    assert world.job(running.id).status == "failed"
    assert world.job(running.id).error.startswith("stranded: its search was running")
    assert world.job(queued.id).status == "queued", "its message may still be waiting"
    last = world.service.sweep(now + timedelta(seconds=limits.queued_stale_after + 60))
    assert last.stranded == [queued.id]
    assert world.job(queued.id).error.startswith(
        "stranded: no queue message can still deliver its search")
    far = world.service.sweep(now + timedelta(days=365))
    assert far.stranded == []
    assert {job.id: world.stored(job.id) for job in ended.values()} == before


def test_a_job_is_stranded_by_the_time_its_record_last_changed_not_its_age(world):
    limits = world.settings.limits
    quiet, busy = world.submit(batches=2), world.submit(batches=2)
    for job in (quiet, busy):
        world.change(job.id, lambda j: j.batch_started(0).batch_started(1))
    world.clock.advance(limits.running_stale_after)
    world.change(busy.id, lambda j: j.batch_finished(0, 1, 0, jobs.BatchTimings(0, 0, 0, 0)))
    report = world.service.sweep(world.clock.now() + timedelta(seconds=60))
    assert report.stranded == [quiet.id]
    assert world.job(quiet.id).error.startswith(
        "batch 1 of 2: stranded: its search was running and nothing has happened for "
        f"{duration(limits.running_stale_after + 60)};")
    assert world.job(busy.id).status == "running"


class InstanceLost(BaseException):
    """The worker's instance is gone mid-search: no handler of ours runs."""


def test_a_job_whose_workers_all_died_ends_at_the_sweep_after_the_queue_gives_up(world, blast):
    """Each delivery's worker is lost mid-search (no exception handled, no settlement): the
    lock is lost, the message comes back, and after its last allowed delivery the queue
    dead-letters it by itself; the sweep then ends the job, which no code of ours saw fail."""
    job = world.submit()

    def lost(_: jobs.Job) -> None:
        raise InstanceLost

    blast.during = lost
    for _ in range(world.settings.max_deliveries):
        delivery = world.transport.receive()
        with pytest.raises(InstanceLost):
            world.service.handle(messages.decode(delivery.body), delivery.delivery_count)
        delivery.lose_lock()
    assert world.transport.receive() is None
    running = world.job(job.id)
    assert (running.status, running.attempts) == ("running", world.settings.max_deliveries)
    [letter] = world.transport.peek_dead_letters(10)
    assert letter.reason.startswith("MaxDeliveryCountExceeded")
    assert world.service.sweep().dead_lettered == [job.id]
    failed = world.job(job.id)
    assert failed.status == "failed"
    assert failed.error.startswith("the queue dead-lettered its message (MaxDeliveryCountExceeded")


def test_a_message_expired_in_the_queue_fails_its_job_at_the_next_sweep(world):
    job = world.submit()
    world.transport.send(Outgoing("not ours", "stray"))
    world.transport.expire_waiting()
    assert world.service.sweep().dead_lettered == [job.id]
    assert world.job(job.id).error == ("the queue dead-lettered its message "
                                       "(TTLExpiredException: The message expired and was "
                                       "dead lettered.)")
