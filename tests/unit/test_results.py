"""Results: the first request for a format of a succeeded job asks a worker to make it, once;
a made one streams, or is a link when large; one whose blob is gone is made again; a format
that failed says why when asked again."""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from blast_core.domain import jobs, messages
from blast_core.service import results
from blast_core.service.errors import ResultNotReady, ResultPending
from blast_core.service.results import ResultBody, ResultLink
from blast_core.storage.ports import result_blob
from unit.fakes import FakeJobBlobs, build

TSV = "q1\tsubject\t99.5\n" * 40


def succeeded(world, batches: int = 1) -> jobs.Job:
    return world.add_job(status=jobs.SUCCEEDED, batches=batches,
                         batch_states=jobs.BATCH_DONE * batches, hits=3,
                         finished_at=jobs.utc_now())


def made(world, job: jobs.Job, content: str = TSV, size: int | None = None) -> None:
    """The tsv format made, as a worker leaves it: its blob, then its state on the record."""
    world.blobs.put_text(job.id, result_blob("tsv"), content, "text/tab-separated-values")
    world.change(job.id, lambda j: j.format_ready("tsv", 0.5, len(content) if size is None
                                                  else size))


def format_messages(world) -> list[tuple[str, messages.Message]]:
    return [(s.message_id, s.message) for s in world.transport.sent
            if s.message.format is not None]


def test_the_first_request_asks_a_worker_once_and_says_pending(world):
    job = succeeded(world)
    with pytest.raises(ResultPending) as pending:
        world.service.result(job.id, "tsv")
    assert (pending.value.format_name, pending.value.last_error) == ("tsv", None)
    assert format_messages(world) == [(f"{job.id}-format-tsv",
                                       messages.format_message(job.id, "tsv",
                                                                   lane=messages.BULK))]
    assert world.job(job.id).format_state("tsv").state == "queued"
    assert world.woken, "serve's idle workers are woken"
    for _ in range(3):
        with pytest.raises(ResultPending):
            world.service.result(job.id, "tsv")
    assert len(format_messages(world)) == 1, "asked again soon: no other message"
    with pytest.raises(ResultPending):
        world.service.result(job.id, "json")
    assert [m.format for _, m in format_messages(world)] == ["tsv", "json"]


def test_a_format_asked_for_long_ago_and_not_made_is_asked_for_again(world):
    job = succeeded(world)
    with pytest.raises(ResultPending):
        world.service.result(job.id, "tsv")
    long_ago = jobs.format_time(datetime.now(UTC) - timedelta(
        seconds=results.FORMAT_REQUEST_SECONDS + 1))
    world.change(job.id, lambda j: replace(j, formats=json.dumps(
        {"tsv": {"state": "queued", "at": long_ago}})))
    with pytest.raises(ResultPending):
        world.service.result(job.id, "tsv")
    [first, again] = [message_id for message_id, _ in format_messages(world)]
    assert again.startswith(first + "-"), "a fresh id: duplicate detection would drop the first"
    assert world.transport.sent[-1].accepted


def test_a_made_format_streams_from_its_blob(world):
    world.blobs.chunk_size = 100
    job = succeeded(world)
    made(world, job)
    body = world.service.result(job.id, "tsv")
    assert isinstance(body, ResultBody)
    chunks = list(body.chunks)
    assert len(chunks) == 7 and b"".join(chunks).decode() == TSV  # 640 bytes
    assert (body.filename, body.content_type) == (
        f"{job.id}.tsv", "text/tab-separated-values; charset=utf-8")
    assert world.transport.sent == []


def test_a_format_larger_than_the_inline_limit_is_a_link_that_ends_with_the_job():
    world = build(BLAST_MAX_INLINE_RESULT_BYTES="1000", BLAST_RETENTION_DAYS="0.5",
                  BLAST_RESULT_LINK_HOURS="24")
    job = succeeded(world)
    made(world, job, size=1001)
    link = world.service.result(job.id, "tsv")
    assert isinstance(link, ResultLink)
    assert link.url.startswith(f"{FakeJobBlobs.LINK_PREFIX}{job.id}/{result_blob('tsv')}?")
    expiry = jobs.parse_time(parse_qs(urlsplit(link.url).query)["se"][0])
    assert expiry == jobs.expires_at(job.id, 0.5), "never past the job's own expiry"
    assert world.blobs.calls["stream"] == 0
    made(world, job, size=1000)
    assert isinstance(world.service.result(job.id, "tsv"), ResultBody)


def test_a_link_lasts_the_link_hours_when_the_job_outlives_them():
    world = build(BLAST_MAX_INLINE_RESULT_BYTES="1000", BLAST_RESULT_LINK_HOURS="2")
    job = succeeded(world)
    made(world, job, size=5000)
    asked = datetime.now(UTC)
    assert isinstance(world.service.result(job.id, "tsv"), ResultLink)
    [(_, _, expiry)] = world.blobs.links
    assert timedelta(hours=2) <= expiry - asked < timedelta(hours=2, seconds=5)


def test_a_made_format_whose_blob_is_gone_is_made_again(world):
    job = succeeded(world)
    made(world, job)
    world.blobs.delete(job.id, result_blob("tsv"))
    with pytest.raises(ResultPending):
        world.service.result(job.id, "tsv")
    [(message_id, message)] = format_messages(world)
    assert message.format == "tsv" and message_id.startswith(f"{job.id}-format-tsv-")
    assert world.job(job.id).format_state("tsv").state == "queued"


def test_a_format_that_failed_says_why_and_is_asked_for_again(world):
    job = succeeded(world)
    message = messages.format_message(job.id, "tsv")
    with pytest.raises(ResultPending):
        world.service.result(job.id, "tsv")
    with pytest.raises(Exception, match="does not exist"):  # no archive: fails before BLAST
        world.service.handle(message, 5, last_attempt=True)
    failed = world.job(job.id).format_state("tsv")
    assert failed.state == "failed"
    assert failed.error.startswith("gave up after 5 attempts: ResourceNotFoundError")
    with pytest.raises(ResultPending) as pending:
        world.service.result(job.id, "tsv")
    assert pending.value.last_error == failed.error
    assert len(format_messages(world)) == 2


@pytest.mark.parametrize("status", [jobs.QUEUED, jobs.RUNNING, jobs.FAILED, jobs.CANCELLED])
def test_a_job_that_did_not_succeed_has_no_results(world, status):
    job = world.add_job(status=status)
    with pytest.raises(ResultNotReady):
        world.service.result(job.id, "tsv")
    assert world.transport.sent == []


def test_a_worker_makes_the_format_from_every_batch_in_order(world, blast):
    job = world.submit(batches=3)
    for batch in range(3):
        world.service.handle(world.message(job.id, batch), 1)
    with pytest.raises(ResultPending):
        world.service.result(job.id, "tsv")
    [(_, message)] = format_messages(world)
    world.service.handle(message, 1)
    state = world.job(job.id).format_state("tsv")
    body = world.service.result(job.id, "tsv")
    text = b"".join(body.chunks).decode()
    assert [line.split("\t")[0] for line in text.splitlines()] == \
        ["q1", "q1", "q2", "q2", "q3", "q3"]
    assert (state.state, state.size) == ("ready", len(text))
    world.service.handle(message, 2)  # a redelivery: made already, not made again
    assert len(blast.formatted) == 3
