"""How big a batch should be, and whether a search can fit in the time a search may take at
all: pure functions, in the spirit of ElasticBLAST's tuner.

A batch is sized by letters (ElasticBLAST's batch-len) and, for the blastn tasks, also by the
time it is expected to take: work is query letters times database letters, and BLAST+ gets
through so many letter pairs per second and thread. The rates below were measured with
BLAST+ 2.12 on 16S queries against SSURef_93 (300 Mbases, page cache warm, one thread; see
docs/benchmarks.md, "Search rates"). They vary with how much the query hits, so:
- a batch is sized with half the slowest rate measured, to finish within the 10 minutes a
  platform update gives a running function (`limits.PLATFORM_UPDATE_GRACE`);
- a sequence is refused at submit only when even twice the fastest rate measured could not
  search it within BLAST_TIME_LIMIT: it cannot finish, whatever it hits.
The protein programs have no measured rate here (no protein database ships with the test
data): their batches are sized by letters only, and BLAST_TIME_LIMIT stops a search that
runs too long.
"""

from __future__ import annotations

from dataclasses import dataclass

from blast_core.domain.limits import PLATFORM_UPDATE_GRACE

# Letters per batch when BLAST_BATCH_LETTERS is 0: ElasticBLAST's batch-len for the protein
# programs; for blastn, a tenth of its 5,000,000, so that a big 16S set spreads over instances.
DEFAULT_BATCH_LETTERS = {"blastn": 500_000, "blastp": 10_000, "blastx": 20_000,
                         "tblastn": 10_000, "tblastx": 20_000}


@dataclass(frozen=True)
class SearchRate:
    """Letter pairs (query letters x database letters) one thread searches per second."""

    slowest: float
    fastest: float


SEARCH_RATES = {
    "megablast": SearchRate(slowest=2.2e11, fastest=1.2e12),
    "dc-megablast": SearchRate(slowest=5.2e10, fastest=6.1e10),
    "blastn": SearchRate(slowest=3.2e10, fastest=3.4e10),
    "blastn-short": SearchRate(slowest=3.2e10, fastest=3.4e10),  # blastn's, with shorter words
}


def batch_letters(program: str, task: str, database_letters: int, threads: int,
                  setting: int) -> int:
    """Query letters per batch: BLAST_BATCH_LETTERS when set; else the program's default,
    and no more than a blastn task is expected to search within a platform update's grace."""
    if setting:
        return setting
    default = DEFAULT_BATCH_LETTERS.get(program, DEFAULT_BATCH_LETTERS["blastn"])
    rate = SEARCH_RATES.get(task) if program == "blastn" else None
    if rate is None or database_letters <= 0:
        return default
    timed = int(PLATFORM_UPDATE_GRACE * rate.slowest / 2 * threads / database_letters)
    return max(1, min(default, timed))


def least_search_seconds(program: str, task: str, query_letters: int, database_letters: int,
                         threads: int) -> float | None:
    """The shortest a search of this many letters could take, at twice the fastest rate
    measured; None when there is no rate for the task."""
    rate = SEARCH_RATES.get(task) if program == "blastn" else None
    if rate is None:
        return None
    return query_letters * database_letters / (2 * rate.fastest * threads)
