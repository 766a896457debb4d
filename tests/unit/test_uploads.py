"""Uploaded queries on fakes: the link, the job made of an upload (validating, its split
message queued), the worker's streaming check and split, and every way an upload is refused,
each leaving nothing queued and no batch behind. tests/test_uploads.py runs the same on
Azurite, real SAS links and blastn."""

import gzip
import random
from datetime import UTC, datetime, timedelta

import pytest

from blast_core.domain import batches, client_input, fasta, jobs, messages
from blast_core.service import upload_split
from blast_core.storage.ports import UPLOADS, query_blob, upload_blob
from unit.fakes import FAKE_DATABASE, query


def upload(world, content: bytes | str, upload_id: str | None = None) -> str:
    """An upload made through the service, and its content put as a client would."""
    made = world.service.new_upload()
    upload_id = upload_id or made.id
    data = content.encode() if isinstance(content, str) else content
    world.blobs.put_text(UPLOADS, upload_blob(upload_id), data.decode("latin-1"), "text/plain")
    if isinstance(content, bytes):  # put_text encodes as UTF-8: keep the bytes as given
        world.blobs._blobs[f"{UPLOADS}/{upload_blob(upload_id)}"] = (data, "text/plain")
    return upload_id


def submit(world, upload_id: str, **options):
    target = {} if "subject" in options else {"database": FAKE_DATABASE.name}
    return world.service.submit({"query_upload": upload_id, **target, **options})


def split(world, job_id: str) -> None:
    world.service.handle(messages.split_message(job_id), attempt=1)


def test_an_upload_link_is_for_one_blob_and_expires_with_the_setting(world):
    made = world.service.new_upload()
    assert jobs.is_job_id(made.id) and made.max_bytes == world.settings.max_upload_bytes
    [(folder, name, expiry)] = world.blobs.links
    assert (folder, name, expiry) == (UPLOADS, upload_blob(made.id), made.expires_at)
    minutes = (made.expires_at - datetime.now(UTC)).total_seconds() / 60
    assert world.settings.upload_link_minutes - 1 < minutes <= world.settings.upload_link_minutes
    assert "sp=cw" in made.url


def test_a_job_of_an_upload_is_validating_until_a_worker_splits_it_into_queued_batches(world):
    upload_id = upload(world, query(5))
    job = submit(world, upload_id)
    assert (job.id, job.status, job.batches, job.queries) == (upload_id, jobs.VALIDATING, 0, 0)
    assert job.upload_bytes == len(query(5))
    [(message_id, message)] = world.transport.waiting()
    assert (message_id, message.split, message.lane) == (f"{job.id}-split", True, messages.BULK)
    split(world, job.id)
    done = world.job(job.id)
    assert (done.status, done.batches, done.queries, done.query_letters) == (
        jobs.QUEUED, 5, 5, 5 * 40)
    assert "".join(world.blobs.get_text(job.id, query_blob(n)) for n in range(5)) == query(5)
    assert [m.batch for _, m in world.transport.waiting() if m.searches] == list(range(5))
    assert world.blobs.names(UPLOADS) == []


def test_the_split_equals_a_direct_submissions_batches(world):
    text = "GGGGCCCCAAAATTTT\n"  # headerless: Query_1, as BLAST names it
    text += "".join(f">r{n} read {n}\n" + "ACGT" * (n % 7 + 3) + "\r\n" for n in range(300))
    world.service.settings.__dict__["batch_letters"] = 200
    job = submit(world, upload(world, text))
    split(world, job.id)
    stored = [world.blobs.get_text(job.id, query_blob(n)) for n in range(world.job(job.id).batches)]
    direct = batches.split(fasta.named(fasta.parse(text)), 200)
    assert stored == [fasta.format_fasta(part) for part in direct]
    assert stored[0].startswith(">Query_1\nGGGG")


@pytest.mark.parametrize("text, reason", [
    (query(2) + ">bad one\nACGT1ACGT\n" + query(1),
     "query_upload: sequence 3 (bad) has characters that are not sequence letters: '1'"),
    (query(2) + ">empty\n>next\nACGT\n", "query_upload: sequence 3 (empty) is empty"),
    (query(1) + ">prot\n" + "MKVLAAGIVQEWLL" * 3 + "\n",
     "query_upload: sequence 2 (prot) looks like a protein sequence"),
    (query(2000) + ">x\nACGT\xff\n", "query_upload: the upload is not UTF-8 text"),
])
def test_a_bad_sequence_fails_the_job_by_name_and_leaves_no_batch_queued(world, text, reason):
    world.service.settings.__dict__["batch_letters"] = 40
    content = text.encode("latin-1") if "\xff" in text else text.encode()
    job = submit(world, upload(world, content))
    world.transport.sent.clear()
    split(world, job.id)
    failed = world.job(job.id)
    assert failed.status == jobs.FAILED and failed.error.startswith(reason.replace(
        "the upload is", "is")), failed.error
    assert world.blobs.names(job.id) == [] and world.blobs.names(UPLOADS) == []
    assert world.transport.sent == []


def test_more_sequences_than_the_limit_fail_the_job(world):
    world.service.upload_limits = fasta.QueryLimits(10**6, 3, 1000, 100)
    job = submit(world, upload(world, query(4)))
    split(world, job.id)
    assert world.job(job.id).error == "query_upload: holds more than 3 sequences, the limit"


def test_an_upload_written_again_after_submission_fails_its_job(world):
    upload_id = upload(world, query(2))
    job = submit(world, upload_id)
    upload(world, query(3), upload_id)
    split(world, job.id)
    assert world.job(job.id).error == ("query_upload: the upload was written again after the "
                                       "job was submitted")


@pytest.mark.parametrize("content, reason", [
    (b"", "the upload is empty (0 bytes)"),
    (gzip.compress(query(2).encode()), "the upload is gzip-compressed; upload it uncompressed"),
    (b"\x00\x01\x02binary", "the upload is not text (it holds NUL bytes)"),
    (b">q\n\xc3\x28ACGT\n", "the upload is not UTF-8 text (byte 4)"),
    (b"# a table\tof\tthings\n", "the upload is not FASTA: its first line begins '# a table\\tof\\tthings'"),
])
def test_what_is_plainly_no_fasta_is_refused_at_submission(world, content, reason):
    upload_id = upload(world, content)
    with pytest.raises(client_input.InvalidRequest) as refused:
        submit(world, upload_id)
    assert refused.value.errors == [client_input.FieldError("query_upload", reason)]
    assert world.records.ids() == [] and world.transport.sent == []


def test_an_upload_is_one_jobs_query_only(world):
    upload_id = upload(world, query(1))
    submit(world, upload_id)
    with pytest.raises(client_input.RequestConflict) as refused:
        submit(world, upload_id)
    assert refused.value.errors[0].reason == f"upload {upload_id} is the query of job " \
                                             f"{upload_id} already"
    assert len(world.transport.sent) == 1


def test_an_expired_or_missing_upload_is_refused(world):
    long_ago = int((datetime.now(UTC) - timedelta(hours=3)).timestamp() * 1000)
    old = jobs.new_job_id(long_ago)
    upload(world, query(1), old)
    with pytest.raises(client_input.InvalidRequest, match=f"upload {old} expired at"):
        submit(world, old)
    with pytest.raises(client_input.InvalidRequest, match="nothing was uploaded as"):
        submit(world, jobs.new_job_id())
    assert world.records.ids() == [] and world.transport.sent == []


def test_a_query_and_an_upload_together_are_refused(world):
    with pytest.raises(client_input.InvalidRequest, match="query_upload: give the query in the "
                                                          "request or as an upload, not both"):
        world.service.submit({"query": query(1), "query_upload": jobs.new_job_id(),
                              "database": FAKE_DATABASE.name})


def test_a_job_cancelled_while_validating_gets_no_batch(world):
    job = submit(world, upload(world, query(3)))
    world.service.cancel(job.id)
    world.transport.sent.clear()
    split(world, job.id)
    assert world.job(job.id).status == jobs.CANCELLED
    assert world.blobs.names(job.id) == [] and world.transport.sent == []
    assert world.blobs.names(UPLOADS) == []


def test_a_redelivered_split_sends_the_pending_batches_again_and_writes_nothing(world):
    job = submit(world, upload(world, query(2)))
    split(world, job.id)
    puts = world.blobs.calls["put_text"]
    split(world, job.id)
    assert world.blobs.calls["put_text"] == puts
    sent = [sent.message.batch for sent in world.transport.sent if not sent.message.split]
    assert sent == [0, 1, 0, 1]  # under their first ids: duplicate detection drops them


def test_clean_up_deletes_the_uploads_no_job_can_be_made_of_any_more(world):
    stale = jobs.new_job_id(int((datetime.now(UTC) - timedelta(hours=3)).timestamp() * 1000))
    upload(world, query(1), stale)
    fresh = upload(world, query(1))
    world.service.clean_up()
    assert world.blobs.names(UPLOADS) == [upload_blob(fresh)]


def test_the_streaming_reader_reads_any_chunking_as_parse_reads_the_whole(world):
    rng = random.Random(15)
    text = "; comment\r\n>a  one\u00e9\r\nAC GT\r\nnn\r>b\n\nTTTT\n>c \u2028x\nacgu\n"
    for _ in range(200):
        data, chunks, at = text.encode(), [], 0
        while at < len(data):
            size = rng.randint(1, 7)
            chunks.append(data[at:at + size])
            at += size
        assert list(fasta.sequences_of(fasta.lines_of(chunks, 100))) == fasta.parse(text)


def test_the_streaming_reader_refuses_a_line_longer_than_its_bound(world):
    with pytest.raises(fasta.FastaError, match="line 2 is longer than 10 characters"):
        list(fasta.lines_of([b">a\nACGTACGTAC", b"GT\n"], 10))


def test_the_split_holds_no_more_than_one_batch(world):
    produced = []

    def sequences():
        for n in range(1, 50):
            produced.append(n)
            yield fasta.Sequence(f"s{n}", "ACGT" * 5)

    for part in batches.split_stream(sequences(), 40):
        assert len(produced) <= int(part[-1].header[1:]) + 1


def test_the_worker_sizes_batches_so_that_a_job_has_at_most_max_batches(world, monkeypatch):
    monkeypatch.setattr(upload_split, "MAX_BATCHES", 2)
    job = submit(world, upload(world, query(6)))
    split(world, job.id)
    assert world.job(job.id).batches == 2


def test_a_split_message_round_trips_and_a_mixed_one_is_malformed(world):
    message = messages.split_message("0" * 19, {"traceparent": "00-ab-cd-01"})
    assert messages.decode(message.encode()) == message
    assert (message.first_id, message.lane, message.searches) == ("0" * 19 + "-split",
                                                                  messages.BULK, False)
    for body in ('{"job_id": "%s", "split": 1}', '{"job_id": "%s", "split": true, "batch": 0}',
                 '{"job_id": "%s", "split": true, "format": "tsv"}'):
        with pytest.raises(messages.MalformedMessage, match="no valid split"):
            messages.decode(body % ("0" * 19))


def test_a_dead_lettered_split_fails_its_job_and_a_requeue_makes_it_validate_again(world):
    job = submit(world, upload(world, query(2)))
    world.transport.add_dead_letter(messages.split_message(job.id).encode(), "lock lost")
    world.service.sweep()
    failed = world.job(job.id)
    assert (failed.status, failed.error) == (jobs.FAILED, "query_upload: the queue "
                                                          "dead-lettered its message (lock lost)")
    world.transport.sent.clear()
    assert world.service.requeue_dead_letters() == ([job.id], 0)
    assert world.job(job.id).status == jobs.VALIDATING
    [resent] = world.transport.sent
    assert resent.message.split and resent.message_id.startswith(f"{job.id}-split-")
    split(world, job.id)
    assert world.job(job.id).status == jobs.QUEUED


def test_a_validating_job_no_message_can_reach_is_failed_by_the_sweep(world):
    job = submit(world, upload(world, query(1)))
    later = world.clock.now() + timedelta(seconds=world.settings.limits.queued_stale_after + 60)
    assert world.service.sweep(now=later).stranded == [job.id]
    assert world.job(job.id).error.startswith("stranded: its upload was never checked")


def test_a_split_that_fails_midway_is_tried_again_from_the_start_and_queues_each_batch_once(
        world):
    world.service.settings.__dict__["batch_letters"] = 40
    job = submit(world, upload(world, query(6)))
    written = []
    put_text = world.blobs.put_text

    def fail_at_the_fourth(job_id, name, text, content_type):
        written.append(name)
        if len(written) == 4:
            raise ConnectionError("storage went away")
        put_text(job_id, name, text, content_type)

    world.blobs.put_text = fail_at_the_fourth
    with pytest.raises(ConnectionError):
        world.service.handle(messages.split_message(job.id), attempt=1)
    assert world.job(job.id).status == jobs.VALIDATING
    assert [s for s in world.transport.sent if s.message.searches] == []
    split(world, job.id)
    done = world.job(job.id)
    assert (done.status, done.batches, done.queries) == (jobs.QUEUED, 6, 6)
    assert sorted(s.message.batch for s in world.transport.sent if s.message.searches) \
        == list(range(6))


def test_the_last_failed_attempt_fails_the_job_and_leaves_nothing(world):
    job = submit(world, upload(world, query(3)))
    world.blobs.fail("put_text", ConnectionError("storage went away"))
    with pytest.raises(ConnectionError):
        world.service.handle(messages.split_message(job.id), attempt=5, last_attempt=True)
    world.blobs.heal()
    failed = world.job(job.id)
    assert failed.status == jobs.FAILED and failed.error == (
        "query_upload: the upload could not be read and split (ConnectionError: storage went "
        "away)")
    assert world.blobs.names(job.id) == [] and world.blobs.names(UPLOADS) == []


def test_a_claim_lost_to_a_concurrent_submission_touches_nothing_of_the_other_job(world):
    upload_id = upload(world, query(1))
    first = submit(world, upload_id, subject=query(1))
    world.blobs.put_text(first.id, "result.tsv", "the first job's", "text/plain")
    sent = len(world.transport.sent)
    get = world.records.get
    world.records.get = lambda job_id: None if job_id == upload_id else get(job_id)  # raced
    with pytest.raises(client_input.RequestConflict):
        submit(world, upload_id, subject=">other\nGGGGGGGGGGGGGGGGGGGGGGGGG\n")
    world.records.get = get
    assert world.blobs.get_text(first.id, "result.tsv") == "the first job's"
    assert world.blobs.get_text(first.id, "subject.fasta") == fasta.format_fasta(
        fasta.named(fasta.parse(query(1))))
    assert len(world.transport.sent) == sent and world.job(first.id) == first


def test_the_bytes_checked_so_far_are_recorded_as_the_split_goes(world, monkeypatch):
    monkeypatch.setattr(upload_split, "PROGRESS_BATCHES", 2)
    world.service.settings.__dict__["batch_letters"] = 40
    world.blobs.chunk_size = 100
    job = submit(world, upload(world, query(7)))
    seen = []
    update = world.records.update

    def watched(job_id, change, known=None):
        stored = update(job_id, change, known)
        if stored is not None and stored.job.status == jobs.VALIDATING:
            seen.append(stored.job.upload_checked)
        return stored

    world.records.update = watched
    split(world, job.id)
    assert len(seen) == 3 and seen == sorted(seen) and 0 < seen[0] < job.upload_bytes
    assert world.job(job.id).upload_checked == job.upload_bytes


def test_a_job_cancelled_during_its_split_stops_it_with_nothing_queued(world, monkeypatch):
    monkeypatch.setattr(upload_split, "PROGRESS_BATCHES", 2)
    world.service.settings.__dict__["batch_letters"] = 40
    job = submit(world, upload(world, query(7)))
    put_text = world.blobs.put_text

    def cancel_at_the_second(job_id, name, text, content_type):
        put_text(job_id, name, text, content_type)
        if name == query_blob(1):
            world.service.cancel(job_id)

    world.blobs.put_text = cancel_at_the_second
    world.transport.sent.clear()
    split(world, job.id)
    assert world.job(job.id).status == jobs.CANCELLED
    assert world.blobs.names(job.id) == [] and world.transport.sent == []
    assert world.blobs.names(UPLOADS) == []


def test_an_upload_written_while_it_is_submitted_is_a_conflict(world):
    upload_id = upload(world, query(2))
    properties = world.blobs.properties

    def then_written(job_id, name):
        found = properties(job_id, name)
        upload(world, query(3), upload_id)
        return found

    world.blobs.properties = then_written
    with pytest.raises(client_input.RequestConflict, match="being written while the job"):
        submit(world, upload_id)
    assert world.records.ids() == [] and world.transport.sent == []
