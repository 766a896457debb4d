"""Dead letters: listed with the job each names and its state; requeued by resetting the record
and sending every unfinished batch again under a fresh message id, once per job; those with
nothing left to run removed, those naming no job left where they are and counted."""

from blast_core.domain import jobs, messages
from blast_core.hosts.worker import work_on
from blast_core.storage.ports import QueueCounts
from unit.fakes import build


def given_up(world, batches: int = 3) -> jobs.Job:
    """A job whose batch 2 gave up (its message dead-lettered), batch 1 done and batch 3
    left running by the worker that was on it."""
    job = world.submit(batches=batches)
    world.change(job.id, lambda j: j.batch_started(0).batch_finished(
        0, 1, 4, jobs.BatchTimings(0, 0, 1, 0)).batch_started(2).batch_started(1)
        .batch_failed(1, "gave up after 5 attempts: OSError: down"))
    world.transport.add_dead_letter(world.message(job.id, 1).encode(),
                                    "gave up after 5 attempts: OSError: down")
    return world.job(job.id)


def test_dead_letters_are_listed_with_their_jobs_state(world):
    failed = given_up(world)
    unknown = jobs.new_job_id()
    world.transport.add_dead_letter(messages.batch_message(unknown, 0).encode(), "UnknownJob")
    world.transport.add_dead_letter("not json", "unreadable: message body is not JSON")
    views = world.service.dead_letters()
    assert [(v.job_id, v.status, v.reason, v.error) for v in views] == [
        (failed.id, "failed", "gave up after 5 attempts: OSError: down",
         "batch 2 of 3: gave up after 5 attempts: OSError: down"),
        (unknown, None, "UnknownJob", None),
        (None, None, "unreadable: message body is not JSON", None)]
    assert len(world.service.dead_letters(limit=1)) == 1


def test_a_requeue_resets_the_job_and_sends_each_unfinished_batch_under_a_fresh_id(world):
    failed = given_up(world)
    first_ids = {s.message_id for s in world.transport.sent}
    assert first_ids == {f"{failed.id}-{n}" for n in range(3)}  # at submit
    waiting_before = len(world.transport.waiting())
    world.woken.clear()

    assert world.service.requeue_dead_letters() == ([failed.id], 0)

    requeued = world.job(failed.id)
    assert (requeued.status, requeued.batch_states, requeued.error, requeued.finished_at) == \
        ("queued", "D..", None, None)
    assert requeued.attempts == failed.attempts, "attempts go on counting"
    resent = world.transport.sent[3:]
    assert sorted(s.message.batch for s in resent) == [1, 2]
    assert all(s.message_id.startswith(f"{failed.id}-{s.message.batch}-") for s in resent)
    assert all(s.accepted for s in resent), "under the first ids, duplicate detection drops them"
    assert len(world.transport.waiting()) == waiting_before + 2
    assert world.transport.peek_dead_letters(10) == []


def test_a_requeued_job_runs_again_to_the_end(world, blast):
    failed = given_up(world)
    for _, message in world.transport.waiting():  # the submit's first messages too
        world.service.handle(message, 1)
    before = world.stored(failed.id)
    assert before.job.status == "failed"  # the first messages found it ended
    world.service.requeue_dead_letters()
    for _, message in world.transport.waiting()[3:]:
        world.service.handle(message, 1)
    done = world.job(failed.id)
    assert (done.status, done.batch_states, done.queries_done) == ("succeeded", "DDD", 3)
    assert done.attempts == failed.attempts + 2


def test_several_dead_letters_of_one_job_requeue_it_once(world):
    failed = given_up(world)
    world.transport.add_dead_letter(world.message(failed.id, 2).encode(), "lock lost")
    assert world.service.requeue_dead_letters() == ([failed.id], 0)
    assert len(world.transport.sent) == 3 + 2, "one message per unfinished batch, once"
    assert world.transport.peek_dead_letters(10) == []


def test_dead_letters_with_nothing_left_to_run_are_removed_not_requeued():
    world = build(BLAST_RETENTION_DAYS="1")
    done = world.add_job(status=jobs.SUCCEEDED, batch_states=jobs.BATCH_DONE)
    cancelled = world.service.cancel(world.submit().id)
    expired = world.add_job(age_seconds=2 * 86_400, status=jobs.FAILED,
                            batch_states=jobs.BATCH_FAILED, error="gave up")
    before = {job.id: world.stored(job.id) for job in (done, cancelled, expired)}
    for job in (done, cancelled, expired):
        world.transport.add_dead_letter(world.message(job.id, 0).encode())
    sent = len(world.transport.sent)
    assert world.service.requeue_dead_letters() == ([], 0)
    assert {job_id: world.stored(job_id) for job_id in before} == before
    assert len(world.transport.sent) == sent
    assert world.transport.peek_dead_letters(10) == []
    assert [s[0] for s in world.transport.settlements] == ["complete"] * 3


def test_dead_letters_naming_no_job_are_left_where_they_are_and_counted_once(world):
    failed = given_up(world)
    world.transport.add_dead_letter("not json")
    world.transport.add_dead_letter(messages.batch_message(jobs.new_job_id(), 0).encode())
    assert world.service.requeue_dead_letters() == ([failed.id], 2)
    assert len(world.transport.peek_dead_letters(10)) == 2
    assert sorted(s[0] for s in world.transport.settlements) == ["abandon", "abandon", "complete"]
    assert world.service.requeue_dead_letters() == ([], 2), "and again next time"


def test_a_job_that_gave_up_runs_when_requeued_once_its_cause_is_fixed(blast):
    """The operator's way out of a give-up, through the worker and the queue: Blob storage
    refused the results, so the only attempt failed and its message was dead-lettered; the
    storage healed, the requeued job (its query in its message) runs to the end."""
    world = build(BLAST_MAX_DELIVERIES="1")
    job = world.submit()
    world.blobs.fail("put_file", OSError("disk full"))
    work_on(world.service, [world.transport.receive()])
    [letter] = world.service.dead_letters()
    assert (letter.job_id, letter.status) == (job.id, "failed")
    assert letter.reason == letter.error == "gave up after 1 attempts: OSError: disk full"
    world.blobs.heal()
    assert world.service.requeue_dead_letters() == ([job.id], 0)
    work_on(world.service, [world.transport.receive()])
    assert world.job(job.id).status == "succeeded"
    assert world.transport.counts() == QueueCounts(depth=0, dead_letters=0)
