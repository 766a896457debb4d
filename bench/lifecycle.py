"""Job lifecycle numbers: how fast a cancel stops BLAST, what searching several databases
together costs against raw blastn, and how fast the clean-up deletes expired jobs.

    .venv/bin/python bench/lifecycle.py [--cancels 5] [--queries 100] [--expired 1000]

  cancel   serve with the default BLAST_CANCEL_CHECK_SECONDS; a long search (20 queries of
           SSURef_93.fasta, task blastn) is cancelled once its blastn runs: seconds from the
           DELETE's answer until no blastn of the job is left.
  multi    one job of N sampled queries against two databases together, through serve (one
           worker, one thread), against one raw `blastn -db "A B"` on the same query file:
           the ratio of raw time to the job's end-to-end time.
  cleanup  N expired jobs (a record and two blobs each) in Azurite: jobs deleted per second
           by one clean-up call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving import start_serve  # noqa: E402

from blast_core.blast.programs import stop_processes  # noqa: E402
from blast_core.blast.samples import database_sequences, sample_fasta  # noqa: E402
from blast_core.domain import jobs  # noqa: E402
from blast_core.domain.fasta import Sequence, format_fasta  # noqa: E402
from blast_core.domain.job_request import JobRequest  # noqa: E402
from blast_core.domain.jobs import Job  # noqa: E402
from blast_core.service import bootstrap  # noqa: E402
from blast_core.settings import Settings  # noqa: E402
from blast_core.storage.azurite import LocalAzurite  # noqa: E402

DATA = Path("/usr/share/ncbi/data")
LONG_DB = "SSURef_93.fasta"
DATABASES = ("Combined16SrRNA_2-12-2008", "16SCore")


def serve(azurite: LocalAzurite, workdir: Path) -> tuple[subprocess.Popen, str]:
    return start_serve({**os.environ, "BLAST_STORAGE": azurite.connection_string,
                        "BLAST_QUEUE_TRANSPORT": "storage", "BLAST_DB_DIR": str(DATA),
                        "BLAST_QUEUE_NAME": f"bench-{uuid.uuid4().hex[:8]}"}, workdir)


def blastn_of(job_id: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if job_id.encode() in cmdline.read():
                    return True
        except OSError:
            pass
    return False


def wait(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("gave up waiting")
        time.sleep(0.05)


def cancel_case(url: str, count: int) -> list[float]:
    sequences = database_sequences(str(DATA / LONG_DB))
    latencies = []
    for run in range(count):
        query = sample_fasta(sequences, 20, seed=100 + run)
        job_id = requests.post(f"{url}/jobs", json={"query": query, "database": LONG_DB,
                                                    "task": "blastn"}, timeout=60).json()["id"]
        wait(lambda job_id=job_id: blastn_of(job_id), 300)
        time.sleep(1.0 + run * 0.7)  # cancel at different points of the check interval
        requests.delete(f"{url}/jobs/{job_id}", timeout=60).raise_for_status()
        answered = time.monotonic()
        wait(lambda job_id=job_id: not blastn_of(job_id), 60)
        latencies.append(time.monotonic() - answered)
    return latencies


def multi_case(url: str, queries: int, workdir: Path) -> tuple[float, float]:
    sequences = [s for name in DATABASES for s in database_sequences(str(DATA / name))]
    query = sample_fasta(sequences, queries, seed=7)
    query_path = workdir / "multi.fasta"
    query_path.write_text(query)
    started = time.monotonic()
    subprocess.run(["blastn", "-query", str(query_path), "-db", " ".join(DATABASES),
                    "-outfmt", "11", "-out", str(workdir / "raw.asn"), "-max_target_seqs", "100"],
                   check=True, env={**os.environ, "BLASTDB": str(DATA)})
    raw = time.monotonic() - started
    started = time.monotonic()
    job = requests.post(f"{url}/jobs", json={"query": query, "database": list(DATABASES)},
                        timeout=60).json()
    wait(lambda: requests.get(f"{url}/jobs/{job['id']}", timeout=60).json()["status"]
         in jobs.FINAL_STATUSES, 3600)
    return raw, time.monotonic() - started


def cleanup_case(azurite: LocalAzurite, count: int) -> tuple[int, float]:
    unique = uuid.uuid4().hex[:8]
    service = bootstrap.build(Settings.from_env({
        "BLAST_STORAGE": azurite.connection_string, "BLAST_QUEUE_TRANSPORT": "storage",
        "BLAST_DB_DIR": str(DATA), "BLAST_RETENTION_DAYS": "1",
        "BLAST_RESULTS_CONTAINER": f"bench-{unique}", "BLAST_JOBS_TABLE": f"bench{unique}",
        "BLAST_QUEUE_NAME": f"bench-{unique}"}))
    service.ensure_storage()
    request = JobRequest(sequences=(Sequence("q", "ACGT"),), database=DATABASES[0],
                         program="blastn", task="megablast", evalue=10.0, max_target_seqs=10)
    old_ms = int(time.time() * 1000) - 2 * 86_400_000
    for n in range(count):
        job = Job.submitted(jobs.new_job_id(old_ms - n), request)
        service.records.create(job)
        service.blobs.put_text(job.id, "batch-0.fasta", format_fasta(request.sequences),
                               "text/x-fasta")
        service.blobs.put_text(job.id, "batch-0.asn", "archive", "text/plain")
    started = time.monotonic()
    deleted = service.clean_up(limit=count)
    return deleted, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cancels", type=int, default=5)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--expired", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lifecycle-") as temp:
        workdir = Path(temp)
        azurite = LocalAzurite(ROOT, workdir / "azurite").start()
        process, url = serve(azurite, workdir)
        try:
            latencies = cancel_case(url, args.cancels)
            print(f"cancel: BLAST gone {statistics.median(latencies):.2f} s (median), "
                  f"{max(latencies):.2f} s (max) after the DELETE answered, over {len(latencies)} "
                  f"cancels; check interval {Settings.from_env({}).cancel_check_seconds:g} s")
            raw, service = multi_case(url, args.queries, workdir)
            print(f"multi: {args.queries} queries against {' + '.join(DATABASES)}: raw blastn "
                  f"{raw:.2f} s, job end to end {service:.2f} s, ratio {raw / service:.2f}")
            deleted, seconds = cleanup_case(azurite, args.expired)
            print(f"cleanup: {deleted} expired jobs (2 blobs each) deleted in {seconds:.2f} s, "
                  f"{deleted / seconds:.0f} jobs/s")
        finally:
            stop_processes([process])
            azurite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
