"""Coalescing: which of the batches a worker received one BLAST process searches together, and
how that run's shared cost is shared out between their jobs. Pure logic, no I/O.

Batches that share the program, task, database(s) and every search option can be searched as
one multi-query run: each query's hits depend only on the query itself and the database, so
every job gets the hits its own run would give (`blast/archive.py` splits the run's archive
back per batch), and the BLAST process start and database open are paid once. Only blastn
batches are coalesced (`COALESCED_PROGRAMS`): for blastn that is proven against direct runs
(tests/test_archive_split.py), while tblastx's sum statistics give slightly different
e-values in a multi-query run, and the protein programs are untested here. A worker takes
on at most one batch's worth of work per invocation (`tuning.batch_letters` of each batch's
search), so that a coalesced run keeps within the time a batch may take, and less under a
batch trigger, whose locks the Functions host does not renew (`limits.BATCH_TRIGGER_SHARE`);
what does not fit is handed back to the queue untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from blast_core.domain.jobs import Job


@dataclass(frozen=True)
class SearchKey:
    """What must be equal for batches to share one BLAST run."""

    program: str
    task: str
    database: str
    evalue: float
    max_target_seqs: int
    word_size: int | None
    filter: str | None

    @classmethod
    def of(cls, job: Job) -> SearchKey:
        """A job's search; a job of subject sequences searches its own, shared with no
        other job's."""
        target = f"subject of {job.id}" if job.searches_subject else job.database
        return cls(job.program, job.task, target, job.evalue, job.max_target_seqs,
                   job.word_size, job.filter)


COALESCED_PROGRAMS = frozenset({"blastn"})


@dataclass(frozen=True)
class Candidate:
    """A received batch: its search, its query letters, and the most letters one batch of
    that search may have (`tuning.batch_letters`)."""

    key: SearchKey
    letters: int
    batch_letters: int


def plan(candidates: Sequence[Candidate],
         capacity: float = 1.0) -> tuple[list[list[int]], list[int]]:
    """The runs to make (each a list of candidate indexes, in the order received) and the
    candidates left for another worker. Candidates are taken in order while their letters,
    each as a fraction of its own search's batch letters, add up to at most `capacity`
    batches; the first is always taken (it may be a whole batch on its own). A run holds one
    search key, and one batch only for a program not in COALESCED_PROGRAMS."""
    runs: dict[SearchKey | int, list[int]] = {}
    left: list[int] = []
    used = 0.0
    for index, candidate in enumerate(candidates):
        share = candidate.letters / max(candidate.batch_letters, 1)
        if runs and used + share > capacity:
            left.append(index)
            continue
        used += share
        alone = candidate.key.program not in COALESCED_PROGRAMS
        runs.setdefault(index if alone else candidate.key, []).append(index)
    return list(runs.values()), left


def apportion(total: float, letters: Sequence[int]) -> list[float]:
    """`total` (a coalesced run's BLAST CPU seconds) shared out in proportion to each batch's
    query letters: BLAST's work grows with the letters it searches. Equal shares when no
    batch has letters."""
    whole = sum(letters)
    if whole <= 0:
        return [total / len(letters)] * len(letters) if letters else []
    return [total * count / whole for count in letters]
