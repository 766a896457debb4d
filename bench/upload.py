"""A query set far beyond a request body, uploaded straight to Blob storage and run through the
service, against one raw blastn run over the same file, in the same run on one machine.

    .venv/bin/python bench/upload.py [--reads 1000000] [--length 150] [--database UniVec_Core]

The reads: pieces of `--length` letters of Combined16SrRNA_2-12-2008's sequences (one in 50 of
the database's own, so that some hit it), three letters of each replaced, fixed seed. Then,
through `serve` on Azurite with one bulk worker per core (BLAST_THREADS 1):
  upload     the file PUT in 8 MiB blocks to the link POST /api/uploads gave (the CLI's way)
  submit     POST /api/jobs with query_upload: seconds until it answers 202
  validate   until a worker has read, checked and split the upload and queued its batches
  search     until every batch is searched (succeeded)
  merge      the tsv result asked for, made by a worker from every batch's archive, and read
against raw blastn over the whole file (-num_threads per core, -mt_mode 1, the same e-value
and max_target_seqs), whose tabular output the merged tsv must equal byte for byte. Peak
resident memory of every process of the service (serve, its workers, blastn, blast_formatter)
is sampled throughout (Azurite's too, which is no part of the service in Azure). The goal: none
over 500 MB, submit under 1 s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving import start_serve  # noqa: E402

from blast_core.blast.programs import stop_processes  # noqa: E402
from blast_core.blast.samples import database_sequences, sample_reads  # noqa: E402
from blast_core.cli.client import BlastClient  # noqa: E402
from blast_core.settings import STORAGE_CONNECTION  # noqa: E402
from blast_core.storage.azurite import LocalAzurite  # noqa: E402

DATA = Path("/usr/share/ncbi/data")
SOURCE = "Combined16SrRNA_2-12-2008"
MAX_RSS_MB = 500
OPTIONS = ("-evalue", "10", "-max_target_seqs", "100")


def write_reads(path: Path, count: int, length: int, database: str) -> None:
    with open(path, "w") as out:
        out.writelines(sample_reads(database_sequences(str(DATA / SOURCE)),
                                    database_sequences(str(DATA / database)), count, length))


class PeakMemory:
    """The largest resident memory seen, by kind of process, among `root`'s descendants and
    Azurite, sampled every 0.2 s (and each long-lived process's own high-water mark)."""

    def __init__(self, root: int, azurite: int):
        self.root, self.azurite = root, azurite
        self.peaks: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        parents: dict[int, int] = {}
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
        for pid in parents:
            kind = self._kind(pid, parents)
            if kind:
                self.peaks[kind] = max(self.peaks.get(kind, 0.0), _rss_mb(pid))

    def _kind(self, pid: int, parents: dict[int, int]) -> str | None:
        ancestor, chain = pid, 0
        while ancestor not in (self.root, self.azurite, 0, 1) and chain < 10:
            ancestor, chain = parents.get(ancestor, 0), chain + 1
        if ancestor == self.azurite or pid == self.azurite:
            return "azurite (emulator)"
        if pid == self.root:
            return "serve (HTTP)"
        if ancestor != self.root:
            return None
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        name = os.path.basename(command[0].decode(errors="replace"))
        return "worker" if name.startswith("python") else name


def _rss_mb(pid: int) -> float:
    """The larger of a process's resident memory now and its high-water mark."""
    try:
        with open(f"/proc/{pid}/status") as status:
            found = [int(line.split()[1]) for line in status
                     if line.startswith(("VmRSS:", "VmHWM:"))]
    except OSError:
        return 0.0
    return max(found, default=0) / 1024


def raw_blastn(reads: Path, database: str, out: Path) -> float:
    started = time.monotonic()
    subprocess.run(["blastn", "-query", str(reads), "-db", str(DATA / database), "-outfmt",
                    "6", "-num_threads", str(os.cpu_count() or 1), "-mt_mode", "1", *OPTIONS,
                    "-out", str(out)], check=True)
    return time.monotonic() - started


def until(url: str, done: Callable[[dict], bool], poll: float = 0.2) -> dict:
    while True:
        job = requests.get(url, timeout=30).json()
        if done(job):
            return job
        time.sleep(poll)


def through_service(url: str, reads: Path, database: str, out: Path) -> dict[str, float]:
    phases: dict[str, float] = {}
    started = time.monotonic()
    upload_id = BlastClient(url, timeout=300).upload(str(reads))
    phases["upload"] = time.monotonic() - started
    mark = time.monotonic()
    submitted = requests.post(f"{url}/jobs", timeout=60, json={
        "query_upload": upload_id, "database": database, "evalue": 10, "max_target_seqs": 100})
    phases["submit"] = time.monotonic() - mark
    assert submitted.status_code == 202, submitted.text
    job_url = f"{url}/jobs/{upload_id}"
    mark = time.monotonic()
    job = until(job_url, lambda job: job["status"] != "validating")
    phases["validate"] = time.monotonic() - mark
    print(f"  {job['queries']:,} queries in {job['batches']} batches", flush=True)
    mark = time.monotonic()
    job = until(job_url, lambda job: job["status"] in ("succeeded", "failed", "cancelled"), 1.0)
    assert job["status"] == "succeeded", job
    phases["search"] = time.monotonic() - mark
    mark = time.monotonic()
    while (response := requests.get(f"{job_url}/results", params={"format": "tsv"},
                                    stream=True, timeout=600)).status_code == 202:
        time.sleep(0.5)
    with open(out, "wb") as result:
        for chunk in response.iter_content(1 << 20):
            result.write(chunk)
    phases["merge"] = time.monotonic() - mark
    phases["total"] = time.monotonic() - started
    return phases


def digest(path: Path) -> str:
    with open(path, "rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=1_000_000)
    parser.add_argument("--length", type=int, default=150)
    parser.add_argument("--database", default="UniVec_Core")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as temp:
        workdir = Path(temp)
        reads = workdir / "reads.fasta"
        write_reads(reads, args.reads, args.length, args.database)
        print(f"{args.reads:,} reads of {args.length} letters: {reads.stat().st_size / 1e6:.0f} MB "
              f"against {args.database}; {cores} cores", flush=True)
        raw = raw_blastn(reads, args.database, workdir / "raw.tsv")
        print(f"raw blastn: {raw:.1f} s", flush=True)
        azurite = LocalAzurite(ROOT, workdir / "azurite").start()
        env = {**os.environ, STORAGE_CONNECTION: azurite.connection_string,
               "BLAST_QUEUE_TRANSPORT": "storage", "BLAST_DB_DIR": str(DATA),
               "BLAST_QUEUE_NAME": f"bench-{uuid.uuid4().hex[:8]}",
               "BLAST_BULK_QUEUE_NAME": f"bench-bulk-{uuid.uuid4().hex[:8]}",
               "BLAST_THREADS": "1"}
        serve, url = start_serve(env, workdir, cores)
        memory = PeakMemory(serve.pid, azurite.process.pid if azurite.process else 0)
        try:
            memory.thread.start()
            phases = through_service(url, reads, args.database, workdir / "service.tsv")
            memory.stop.set()
            memory.sample()
        finally:
            stop_processes([serve])
            azurite.stop()
        same = digest(workdir / "service.tsv") == digest(workdir / "raw.tsv")
        lines = sum(1 for _ in open(workdir / "raw.tsv", "rb"))
        print(f"{'phase':<10} {'seconds':>8}")
        for name, seconds in phases.items():
            print(f"{name:<10} {seconds:>8.2f}")
        print(f"service total / raw blastn: {phases['total'] / raw:.2f} "
              f"(search alone: {phases['search'] / raw:.2f})")
        print(f"merged tsv {'identical to' if same else 'DIFFERENT from'} raw blastn's "
              f"({lines:,} lines, {(workdir / 'raw.tsv').stat().st_size / 1e6:.1f} MB)")
        for kind, peak in sorted(memory.peaks.items()):
            print(f"peak RSS {kind:<20} {peak:>7.0f} MB")
        service_peak = max(peak for kind, peak in memory.peaks.items() if "azurite" not in kind)
        print(f"goals: every service process <= {MAX_RSS_MB} MB: "
              f"{'met' if service_peak <= MAX_RSS_MB else 'MISSED'}; submit < 1 s: "
              f"{'met' if phases['submit'] < 1 else 'MISSED'}; identical tsv: "
              f"{'met' if same else 'MISSED'}")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
