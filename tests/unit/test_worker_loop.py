"""The worker loop of `serve` and `worker` (hosts/worker.py) on a FakeTransport and the real
service: every delivery settled once, as its outcome says. (tests/test_worker.py checks
`handle`'s decisions on a scripted service, and the loop against Azurite and blastn.)"""

import logging
import threading
import time

from blast_core.domain import jobs, messages
from blast_core.hosts.worker import retry_delay, run_worker, work_on
from blast_core.storage.ports import Outgoing, QueueCounts
from unit.fakes import build


def wait_for(condition, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.01)


def test_the_worker_loop_settles_each_delivery_as_its_outcome_says(blast):
    world = build(BLAST_MAX_DELIVERIES="2", BLAST_COALESCE_MESSAGES="1")
    transport = world.transport
    transport.send(Outgoing("this is not a job", "stray"))
    unknown = messages.batch_message(jobs.new_job_id(), 0)
    transport.send(Outgoing(unknown.encode(), unknown.first_id))
    good = world.submit(batches=2)
    failing = world.submit()
    world.blobs.fail("put_file", OSError("disk full"), job_id=failing.id)

    stop = threading.Event()
    # One lane's loop: the fakes' lanes share one queue, which two loops would race for.
    worker = threading.Thread(target=run_worker, args=(world.service, stop, None, messages.BULK))
    worker.start()
    try:
        # The failing batch's first attempt leaves a copy scheduled for later, and nothing
        # else waiting.
        wait_for(lambda: len(transport.settlements) == 5, "every first delivery settled")
        [(copy_id, copy)] = transport.waiting()
        assert transport.receive() is None, "the copy is not due yet"
        transport.clock.advance(retry_delay(1))
        wait_for(lambda: len(transport.settlements) == 6, "the copy's delivery settled")
    finally:
        stop.set()
        worker.join(timeout=10)
    assert not worker.is_alive()

    gave_up = "gave up after 2 attempts: OSError: disk full"
    assert transport.settlements == [
        ("dead-letter", "stray", "unreadable: message body is not JSON"),
        ("dead-letter", unknown.first_id, f"UnknownJob: no record for job {unknown.job_id}"),
        ("complete", f"{good.id}-0"),
        ("complete", f"{good.id}-1"),
        ("retry", f"{failing.id}-0", retry_delay(1), copy_id),
        ("dead-letter", copy_id, gave_up)]
    assert (copy.attempts, copy.job_id) == (1, failing.id)
    assert world.job(good.id).status == "succeeded"
    failed = world.job(failing.id)
    assert (failed.status, failed.error, failed.attempts) == ("failed", gave_up, 2)
    assert transport.counts() == QueueCounts(depth=0, dead_letters=3)


def test_a_settlement_that_fails_leaves_the_message_to_come_back_and_run_no_more(world, blast,
                                                                                 caplog):
    job = world.submit()
    delivery = world.transport.receive()
    blast.during = lambda _: delivery.lose_lock()  # the lock is lost while BLAST runs
    with caplog.at_level(logging.WARNING, logger="blast_core"):
        work_on(world.service, [delivery])  # does not raise
    assert "could not be settled (LockLost)" in caplog.text
    assert world.job(job.id).status == "succeeded"
    again = world.transport.receive()
    assert (again.message_id, again.delivery_count) == (f"{job.id}-0", 2)
    work_on(world.service, [again])
    assert again.outcome == ("complete",)
    assert len(blast.searches) == 1, "the redelivery found the batch done"
    assert world.job(job.id).attempts == 1
    assert world.transport.counts() == QueueCounts(depth=0, dead_letters=0)
