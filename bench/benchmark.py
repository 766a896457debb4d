"""The service against raw blastn, side by side in one run on one machine.

    .venv/bin/python bench/benchmark.py [--scale 1.0] [--cases a,b,c,d,e]

Cases (queries sampled from the rRNA databases of ncbi-rrna-data with 3 % random mutations,
fixed seeds, plus fragments of humrep.fsa):
  a  200 single-sequence jobs against Combined16SrRNA_2-12-2008 (8 Mbases)
  b  one job of 2,000 sequences, fanned out in batches
  c  500 tiny jobs against UniVec_Core, one at a time: the service's own overhead
  d  case a's workload with 1 and with 2 worker processes
  e  a one-query job behind a 1,500-query job: the one query's latency, submitted 3 s into
     the big job (bulk lane), against the same job's on an idle service (goal: at most 5 s more)

The raw floor is blastn itself with the best parallelism found for this machine: the query set
split over one process per core, or one process with -num_threads/-mt_mode 1 when that is
faster, writing the same ASN.1 archive a job keeps. The service path is HTTP submit, queue,
worker, blob, table, and for case b the fan-out and the merged tabular result. Ratios, not
seconds, are the point: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blast_core.blast.samples import database_sequences, sample_fasta  # noqa: E402
from blast_core.domain import fasta  # noqa: E402
from blast_core.domain.jobs import FINAL_STATUSES, parse_time  # noqa: E402
from blast_core.storage.azurite import LocalAzurite, free_port  # noqa: E402

DATA = Path("/usr/share/ncbi/data")
RRNA = "Combined16SrRNA_2-12-2008"
VECTORS = "UniVec_Core"
CORES = os.cpu_count() or 1


class Service:
    """Azurite plus `python -m blast_core serve` on free ports, for one case."""

    def __init__(self, workdir: Path, workers: int):
        self.azurite = LocalAzurite(ROOT, workdir / f"azurite-{workers}").start()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/api"
        env = {**os.environ, "BLAST_STORAGE": self.azurite.connection_string,
               "BLAST_QUEUE_TRANSPORT": "storage", "BLAST_DB_DIR": str(DATA)}
        self.log = open(workdir / f"serve-{workers}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "blast_core", "serve", "--port", str(port), "--workers",
             str(workers)], cwd=ROOT, env=env, stdout=self.log, stderr=self.log)
        self.session = requests.Session()
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))
        for _ in range(300):
            try:
                if self.session.get(f"{self.url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise SystemExit("serve did not start")
        self._wait_for_workers(workers * 2)  # a worker per lane

    def _wait_for_workers(self, count: int, timeout: float = 60) -> None:
        """Until every worker process has loaded and logged that it is ready: a deployed
        service's workers are warm."""
        deadline = time.monotonic() + timeout
        while Path(self.log.name).read_text().count(" lane ready") < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"{count} workers not ready after {timeout} s")
            time.sleep(0.1)

    def submit(self, query: str, database: str, **options: object) -> str:
        response = self.session.post(f"{self.url}/jobs", timeout=120,
                                     json={"query": query, "database": database, **options})
        response.raise_for_status()
        return response.json()["id"]

    def job(self, job_id: str) -> dict:
        return self.session.get(f"{self.url}/jobs/{job_id}", timeout=30).json()

    def wait_one(self, job_id: str, poll: float = 0.05, timeout: float = 600) -> dict:
        """The job once it has ended, however it ended."""
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id))["status"] not in FINAL_STATUSES:
            if time.monotonic() > deadline:
                raise SystemExit(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(poll)
        return job

    def wait_all(self, job_ids: list[str], poll: float = 0.2,
                 timeout: float = 3600) -> list[dict]:
        pending, done = set(job_ids), {}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(pending)} jobs still unfinished after {timeout} s")
            recent = self.session.get(f"{self.url}/jobs", params={"limit": 1000},
                                      timeout=60).json()["jobs"]
            for job in recent:
                if job["id"] in pending and job["status"] in FINAL_STATUSES:
                    done[job["id"]] = job
                    pending.discard(job["id"])
            if pending and len(job_ids) > 1000:
                raise SystemExit("wait_all reads the 1,000 most recent jobs only")
            if pending:
                time.sleep(poll)
        failed = [j for j in done.values() if j["status"] != "succeeded"]
        if failed:
            raise SystemExit(f"{len(failed)} jobs failed, e.g. {failed[0]['error']}")
        return [done[j] for j in job_ids]

    def cpu_seconds(self) -> dict:
        """CPU seconds used so far by Azurite, by serve's HTTP process and by its worker
        processes (without the BLAST processes they ran): what shares the cores with BLAST
        here. In Azure, storage runs elsewhere and HTTP requests spread over instances."""
        workers = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {"azurite_cpu_s": own_cpu_seconds(self.azurite.process.pid),
                "serve_http_cpu_s": own_cpu_seconds(self.process.pid),
                "workers_python_cpu_s": sum(map(own_cpu_seconds,
                                                map(int, workers.read_text().split())))}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.azurite.stop()
        self.log.close()


def own_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of one process, without its children's (proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def records(text: str) -> list[str]:
    return [">" + record for record in text.split(">")[1:]]


def run_raw(queries: list[str], database: str, workdir: Path, options: list[str],
            processes: int, threads: int = 1) -> float:
    """Seconds for blastn over `queries` split across `processes` parallel processes."""
    parts = [queries[i::processes] for i in range(processes)]
    commands = []
    for index, part in enumerate(p for p in parts if p):
        query = workdir / f"raw-{index}.fasta"
        query.write_text("".join(part))
        command = ["blastn", "-query", str(query), "-db", str(DATA / database), "-outfmt", "11",
                   "-out", str(workdir / f"raw-{index}.asn"), *options]
        if threads > 1:
            command += ["-num_threads", str(threads), "-mt_mode", "1"]
        commands.append(command)
    started = time.monotonic()
    running = [subprocess.Popen(c, stderr=subprocess.DEVNULL) for c in commands]
    for process in running:
        if process.wait() != 0:
            raise SystemExit(f"raw blastn failed: {process.args}")
    return time.monotonic() - started


def best_raw(queries: list[str], database: str, workdir: Path, options: list[str]) -> tuple:
    """The faster of one process per core and one multi-threaded process."""
    per_core = run_raw(queries, database, workdir, options, processes=CORES)
    threaded = run_raw(queries, database, workdir, options, processes=1, threads=CORES)
    return min((per_core, f"{CORES} processes"), (threaded, f"1 process, {CORES} threads"))


def timed_jobs(service: Service, queries: list[str], database: str,
               options: dict) -> tuple[float, list[dict]]:
    """Seconds from the first submission until the last job finished, by the jobs' own
    `finished_at`: the poll for them is slow, so that it takes little CPU from BLAST."""
    started = time.time()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda q: service.submit(q, database, **options), queries))
    jobs = service.wait_all(ids, poll=1.0)
    return max(parse_time(job["finished_at"]).timestamp() for job in jobs) - started, jobs


def overheads_ms(jobs: list[dict], backlog: bool = False) -> dict:
    """Per job: end-to-end time (submission to success) minus the time BLAST itself ran, as
    the job records them; with a `backlog` of jobs, waiting behind other jobs is not overhead,
    so the time queued is left out too."""
    values = sorted(1000 * (j["timings"]["total"] - j["timings"]["blast"]
                            - (j["timings"]["queued"] if backlog else 0)) for j in jobs)
    return {"overhead_median_ms": statistics.median(values),
            "overhead_p95_ms": values[int(0.95 * (len(values) - 1))]}


def case_a(workdir: Path, scale: float, workers: int = CORES) -> dict:
    count = max(4, int(200 * scale))
    queries = records(sample_fasta(database_sequences(str(DATA / RRNA)), count, seed=101))
    raw, how = best_raw(queries, RRNA, workdir, ["-max_target_seqs", "100"])
    service = Service(workdir, workers)
    try:
        before = service.cpu_seconds()
        elapsed, jobs = timed_jobs(service, queries, RRNA, {"max_target_seqs": 100})
        cpu = {name: seconds - before[name] for name, seconds in service.cpu_seconds().items()}
    finally:
        service.stop()
    return {"case": f"a: {count} single-sequence jobs, {RRNA}, {workers} workers",
            "raw_s": raw, "raw_how": how, "service_s": elapsed, "throughput_ratio": raw / elapsed,
            "blast_cpu_s": sum(j["summary"]["cpu_seconds"] for j in jobs), **cpu,
            **overheads_ms(jobs, backlog=True)}


def case_b(workdir: Path, scale: float) -> dict:
    count = max(20, int(2000 * scale))
    text = sample_fasta(database_sequences(str(DATA / RRNA)), count, seed=202)
    queries = records(text)
    raw, how = best_raw(queries, RRNA, workdir, ["-max_target_seqs", "20"])
    service = Service(workdir, CORES)
    try:
        started = time.monotonic()
        job = service.wait_one(service.submit(text, RRNA, max_target_seqs=20), poll=0.5)
        if job["status"] != "succeeded":
            raise SystemExit(f"the job {job['status']}: {job['error']}")
        searched = time.monotonic() - started
        tsv = service.session.get(job["results"]["tsv"], params={"wait": 60}, timeout=600)
        tsv.raise_for_status()
        merged = time.monotonic() - started
    finally:
        service.stop()
    return {"case": f"b: one job of {count} sequences ({job['batches']} batches)",
            "raw_s": raw, "raw_how": how, "service_s": searched,
            "throughput_ratio": raw / searched, "with_merged_tsv_s": merged,
            "timings": job["timings"]}


def case_c(workdir: Path, scale: float) -> dict:
    count = max(10, int(500 * scale))
    vectors = database_sequences(str(DATA / VECTORS))
    pieces = [fasta.Sequence(f"v{i}", s.residues[:120]) for i, s in enumerate(
        fasta.parse(sample_fasta(vectors, count - count // 10, seed=303, max_length=120)))]
    repeats = fasta.parse((DATA / "humrep.fsa").read_text())
    pieces += [fasta.Sequence(f"h{i}", r.residues[:120]) for i, r in enumerate(repeats)]
    queries = [fasta.format_fasta([piece]) for piece in pieces[:count]]
    service = Service(workdir, 1)
    jobs, observed, submits = [], [], []
    try:
        for query in queries:
            started = time.monotonic()
            job_id = service.submit(query, VECTORS)
            submits.append(1000 * (time.monotonic() - started))
            job = service.wait_one(job_id, poll=0.005)
            observed.append(1000 * (time.monotonic() - started - job["timings"]["blast"]))
            jobs.append(job)
    finally:
        service.stop()
    observed.sort()
    phases = {f"median_{name}_ms": 1000 * statistics.median(j["timings"][name] for j in jobs)
              for name in ("queued", "blast", "transfer")}
    return {"case": f"c: {count} tiny jobs, {VECTORS}, one at a time", **overheads_ms(jobs),
            "client_overhead_median_ms": statistics.median(observed),
            "client_overhead_p95_ms": observed[int(0.95 * (len(observed) - 1))],
            "median_submit_response_ms": statistics.median(submits), **phases}


def case_d(workdir: Path, scale: float) -> dict:
    one = case_a(workdir, scale / 2, workers=1)
    two = case_a(workdir, scale / 2, workers=2)
    beside_blast = ("azurite_cpu_s", "serve_http_cpu_s", "workers_python_cpu_s")
    return {"case": "d: case a's workload, 1 vs 2 workers", "one_worker_s": one["service_s"],
            "two_workers_s": two["service_s"], "speedup": one["service_s"] / two["service_s"],
            "cpu_beside_blast_s": [sum(one[name] for name in beside_blast),
                                   sum(two[name] for name in beside_blast)]}


def case_e(workdir: Path, scale: float) -> dict:
    count = max(50, int(1500 * scale))
    sequences = database_sequences(str(DATA / RRNA))
    big = sample_fasta(sequences, count, seed=505)
    [small] = records(sample_fasta(sequences, 1, seed=506))
    options = {"max_target_seqs": 100}
    service = Service(workdir, CORES)

    def latency() -> tuple[float, dict]:
        """Seconds from submitting the one-query job to seeing it succeeded, and the job."""
        started = time.monotonic()
        job = service.wait_one(service.submit(small, RRNA, **options), timeout=300)
        if job["status"] != "succeeded":
            raise SystemExit(f"the one-query job {job['status']}: {job['error']}")
        return time.monotonic() - started, job

    try:
        idle = min(latency()[0] for _ in range(3))
        started = time.monotonic()
        big_id = service.submit(big, RRNA, **options)
        time.sleep(3)
        big_status_then = service.job(big_id)["status"]
        behind, small_job = latency()
        [big_job] = service.wait_all([big_id], poll=0.5)
        big_s = time.monotonic() - started
    finally:
        service.stop()
    # finished_at: ISO 8601 UTC, milliseconds, one format, so the strings order as times do
    void = big_job["finished_at"] <= small_job["finished_at"]
    return {"case": f"e: a one-query job behind a {count}-query job ({big_job['batches']} "
                    f"batches), {RRNA}, {CORES} workers",
            "idle_s": idle, "behind_bulk_s": behind, "difference_s": behind - idle,
            "goal": "behind <= idle + 5 s", "met": behind <= idle + 5,
            "big_status_when_small_submitted": big_status_then,
            "void_big_finished_first": void, "big_job_s": big_s}


CASES = {"a": case_a, "b": case_b, "c": case_c, "d": case_d, "e": case_e}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of each case's job count (default 1: the full cases)")
    parser.add_argument("--cases", default="a,b,c,d,e")
    args = parser.parse_args()
    print(f"# {os.uname().nodename}: {CORES} cores, "
          f"{subprocess.run(['blastn', '-version'], capture_output=True, text=True).stdout.split()[1]}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="blast-bench-") as workdir:
        for name in args.cases.split(","):
            result = CASES[name](Path(workdir), args.scale)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                              for k, v in result.items()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
