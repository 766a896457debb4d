"""Database staging: first-job and later-job latency with and without a local copy, from a cold
or a warm page cache.

    .venv/bin/python bench/staging.py [--db-dir DIR] [--database NAME] [--jobs N] [--rounds R]
                                      [--json FILE]

Each case starts as a new worker process would (a new `DatabaseCatalog`) and times the steps of
`BlastService._run` that the database affects: `DatabaseCatalog.local_path` (staging or pre-reading
when configured) and `search.run_search` (one megablast into an ASN.1 archive). Every job of every
case searches the same 1.2 kb 16S query, so that jobs differ only in where the database is read
from; "first" is job 1, "later" jobs 2..N. The cases run in turn, R rounds of them, and each
figure is a median over the rounds (BLAST's own time varies by a tenth or more on a shared VM).
"cold" drops the database's pages from the page cache first (`posix_fadvise(DONTNEED)` on the
source files, and on the staged copy when the case keeps one); "warm" reads them once beforehand.
The directory given by --db-dir plays the share: point it at a mounted Azure Files share to
measure a real one. `measure` is importable for other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blast_core.blast import search, staging
from blast_core.blast.databases import DatabaseCatalog
from blast_core.blast.samples import database_sequences, sample_fasta
from blast_core.domain import fasta, job_request, jobs

QUERY_SOURCE = "Combined16SrRNA_2-12-2008"  # 16S sequences: close hits in the SSU databases


@dataclass(frozen=True)
class Case:
    name: str
    staged: bool
    preload: bool = False
    cold: bool = True
    keep_copy: bool = False  # start from the copy a previous case left on disk


@dataclass(frozen=True)
class JobTiming:
    locate_seconds: float  # DatabaseCatalog.local_path: staging or pre-reading, if any
    blast_seconds: float   # search.run_search
    blast_cpu_seconds: float  # blastn's user + system time; the rest of blast_seconds is waiting

    @property
    def total_seconds(self) -> float:
        return self.locate_seconds + self.blast_seconds

    @property
    def blast_wait_seconds(self) -> float:
        """Wall time blastn did not spend on a CPU: mostly page faults that read the disk."""
        return max(0.0, self.blast_seconds - self.blast_cpu_seconds)


@dataclass(frozen=True)
class CaseResult:
    """Medians over rounds (first job) and over every later job of every round."""
    case: str
    first_seconds: float
    first_locate_seconds: float
    first_blast_seconds: float
    first_blast_wait_seconds: float
    later_seconds: float
    later_blast_wait_seconds: float


CASES = (
    Case("share, cold", staged=False),
    Case("share, warm", staged=False, cold=False),
    Case("share + preload, cold", staged=False, preload=True),
    Case("staged, cold share", staged=True),
    Case("staged, warm share", staged=True, cold=False),
    Case("staged copy on disk, cold", staged=True, keep_copy=True),
)


def evict(directory: str, name: str) -> None:
    """Drop a database's pages from the page cache (clean, unmapped pages: no BLAST runs now)."""
    for file in staging.database_files(directory, name):
        descriptor = os.open(os.path.join(directory, file), os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def measure(case: Case, db_dir: str, database: str, cache_dir: str, queries: list[str],
            blastdbcmd: str = "blastdbcmd") -> list[JobTiming]:
    """Run `queries` as consecutive one-query jobs in a fresh catalog, as a new worker would."""
    copy_dir = os.path.join(cache_dir, database, staging.COPY)
    if not case.keep_copy:
        shutil.rmtree(cache_dir, ignore_errors=True)
        os.makedirs(cache_dir)
    if case.cold:
        evict(db_dir, database)
        if case.keep_copy:
            evict(copy_dir, database)
    else:
        staging.read_once(db_dir, database)
    catalog = DatabaseCatalog(db_dir, blastdbcmd, cache_dir=cache_dir if case.staged else "",
                              preload=case.preload)
    tools = search.BlastTools(bin_dir="", threads=1, time_limit=3600)
    limits = fasta.QueryLimits(10_000_000, 25_000, 1_000_000)
    timings = []
    for query in queries:
        request = job_request.parse_request({"query": query, "database": database}, limits,
                                            catalog.find)
        job = jobs.Job.submitted(jobs.new_job_id(), request)
        with tempfile.TemporaryDirectory(prefix="bench-staging-") as workdir:
            query_path = os.path.join(workdir, "query.fasta")
            Path(query_path).write_text(query)
            started = time.monotonic()
            path = catalog.local_path(database)
            located = time.monotonic()
            cpu_before = _children_cpu()
            search.run_search(job, tools, query_path, [path], workdir)
            timings.append(JobTiming(located - started, time.monotonic() - located,
                                     _children_cpu() - cpu_before))
    return timings


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summarize(case: Case, rounds: list[list[JobTiming]]) -> CaseResult:
    firsts = [timings[0] for timings in rounds]
    later = [t for timings in rounds for t in timings[1:]]
    return CaseResult(
        case=case.name,
        first_seconds=statistics.median(t.total_seconds for t in firsts),
        first_locate_seconds=statistics.median(t.locate_seconds for t in firsts),
        first_blast_seconds=statistics.median(t.blast_seconds for t in firsts),
        first_blast_wait_seconds=statistics.median(t.blast_wait_seconds for t in firsts),
        later_seconds=statistics.median(t.total_seconds for t in later),
        later_blast_wait_seconds=statistics.median(t.blast_wait_seconds for t in later))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    blast = subprocess.run(["blastn", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return f"{cpu}, {os.cpu_count()} cores, {memory_kb / 2**20:.0f} GiB RAM, {platform.platform()}, {blast}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db-dir", default="/usr/share/ncbi/data", help="the 'share'")
    parser.add_argument("--database", default="SSURef_93.fasta")
    parser.add_argument("--jobs", type=int, default=5, help="jobs per case (at least 2)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every case")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.jobs < 2:
        parser.error("--jobs must be at least 2: one first job and later ones")

    sequences = database_sequences(os.path.join(args.db_dir, QUERY_SOURCE))
    queries = [sample_fasta(sequences, 1, seed=1, max_length=1200, label=QUERY_SOURCE)] * args.jobs
    size = sum(os.path.getsize(os.path.join(args.db_dir, f))
               for f in staging.database_files(args.db_dir, args.database))
    print(f"{args.database} in {args.db_dir}: {size / 1e6:.0f} MB of files; "
          f"{args.rounds} rounds of {args.jobs} jobs per case, each one 1.2 kb megablast query")
    print(machine())
    cache_dir = tempfile.mkdtemp(prefix="blastdb-cache-bench-")
    timings: dict[Case, list[list[JobTiming]]] = {case: [] for case in CASES}
    try:
        for _ in range(args.rounds):
            for case in CASES:
                timings[case].append(measure(case, args.db_dir, args.database, cache_dir, queries))
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    results = [summarize(case, rounds) for case, rounds in timings.items()]

    print(f"\n{'':27} {'first job':>40} {'later jobs':>22}")
    print(f"{'case':27} {'total':>8} {'locate':>8} {'blast':>8} {'blast waits':>12} "
          f"{'total':>8} {'blast waits':>12}")
    for r in results:
        print(f"{r.case:27} {r.first_seconds:7.2f}s {r.first_locate_seconds:7.2f}s "
              f"{r.first_blast_seconds:7.2f}s {r.first_blast_wait_seconds:11.2f}s "
              f"{r.later_seconds:7.2f}s {r.later_blast_wait_seconds:11.2f}s")
    print("\nlocate: DatabaseCatalog.local_path (staging copy or pre-read); blast waits: blastn's "
          "wall time minus its CPU time (reading the database through page faults).")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
