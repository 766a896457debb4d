"""The results so far of a job of several batches: each batch stores its table of hits when it
is searched; the tables of the batches done stream in query order, with the queries they
cover; the merged tsv is those tables, formatted once; a job of one batch has none."""

import pytest

from blast_core.domain import client_input, jobs
from blast_core.service import partial_results
from blast_core.service.errors import ResultPending
from blast_core.storage.ports import batch_table_blob


def table(partial) -> list[str]:
    return [line.split("\t")[0] for line in b"".join(partial.chunks).decode().splitlines()]


def test_the_batches_done_so_far_stream_in_order_with_the_queries_they_cover(world, blast):
    job = world.submit(batches=4)
    nothing = world.service.partial_table(job.id)
    assert (table(nothing), nothing.batches_done, nothing.covered) == ([], 0, [])
    for batch in (2, 0, 3):
        world.service.handle(world.message(job.id, batch), 1)
    partial = world.service.partial_table(job.id)
    assert table(partial) == ["q1", "q1", "q3", "q3", "q4", "q4"]
    assert (partial.batches_done, partial.queries_done, partial.covered) == (3, 3, [(1, 1),
                                                                                    (3, 4)])
    assert world.job(job.id).status == jobs.RUNNING


def test_the_merged_tsv_is_the_batches_tables_formatted_once(world, blast):
    job = world.submit(batches=3)
    for batch in range(3):
        world.service.handle(world.message(job.id, batch), 1)
    assert len(blast.formatted) == 3  # each batch's table, when it was searched
    so_far = b"".join(world.service.partial_table(job.id).chunks)
    with pytest.raises(ResultPending):
        world.service.result(job.id, "tsv")
    [format_message] = [s.message for s in world.transport.sent if s.message.format]
    world.service.handle(format_message, 1)
    assert b"".join(world.service.result(job.id, "tsv").chunks) == so_far
    assert len(blast.formatted) == 3


def test_a_table_deleted_meanwhile_is_left_out(world, blast):
    job = world.submit(batches=2)
    for batch in range(2):
        world.service.handle(world.message(job.id, batch), 1)
    world.blobs.delete(job.id, batch_table_blob(0))
    assert table(world.service.partial_table(job.id)) == ["q2", "q2"]


def test_a_job_of_one_batch_has_no_results_so_far(world):
    job = world.submit(batches=1)
    with pytest.raises(client_input.RequestConflict, match="a job of one batch"):
        world.service.partial_table(job.id)
    older = world.add_job(batches=3)  # submitted before batches kept their query counts
    with pytest.raises(client_input.RequestConflict, match="submitted before batches kept"):
        world.service.partial_table(older.id)


@pytest.mark.parametrize("counts, done, ranges", [
    ([3, 3, 3], [0, 1, 2], [(1, 9)]),
    ([3, 3, 3], [0, 2], [(1, 3), (7, 9)]),
    ([1, 0, 2], [0, 1, 2], [(1, 3)]),
])
def test_covered_queries_are_ranges_joined_where_adjacent(counts, done, ranges):
    assert partial_results.covered(counts, done) == ranges
