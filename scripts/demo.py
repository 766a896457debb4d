"""`make demo`: the whole path once, as a newcomer sees it.

Starts `python -m blast_core serve` on a free local port with its own Azurite (its data in a
temporary folder, so the demo neither needs nor disturbs a `serve` you keep running), submits a
few real 16S queries over HTTP, waits for them, prints the best hits and saves every result
format under `demo-results/`. Stopping `serve` stops its Azurite too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from blast_core.blast.samples import database_sequences, sample_fasta  # noqa: E402
from blast_core.storage.azurite import free_port  # noqa: E402

DB_DIR = "/usr/share/ncbi/data"
DATABASE = "Combined16SrRNA_2-12-2008"
OUT = ROOT / "demo-results"


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="blast-demo-"))
    port = free_port()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("BLAST_STORAGE")}  # no storage settings: serve's own Azurite
    env.update(BLAST_AZURITE_DIR=str(workdir / "azurite"), BLAST_QUEUE_TRANSPORT="storage",
               BLAST_DB_DIR=DB_DIR)
    log = open(workdir / "serve.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "blast_core", "serve", "--port", str(port),
                               "--workers", "2"], cwd=ROOT, env=env, stdout=log, stderr=log)
    api = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_up(api, server)
        print(f"service up at {api} (its own Azurite keeps the jobs in {workdir / 'azurite'})")
        queries = sample_fasta(database_sequences(f"{DB_DIR}/{DATABASE}"), 3, seed=2026,
                               label="16S from " + DATABASE).split(">")[1:]
        jobs = []
        for query in queries:
            response = requests.post(f"{api}/jobs", json={
                "query": ">" + query, "database": DATABASE, "max_target_seqs": 5}, timeout=30)
            response.raise_for_status()
            jobs.append(response.json())
            print(f"submitted job {jobs[-1]['id']}: {query.splitlines()[0]}")
        OUT.mkdir(exist_ok=True)
        finished = [wait(api, job["id"]) for job in jobs]
        for job in finished:
            show(api, job)
        formats = ", ".join(finished[0]["results"])
        print(f"\nfull results ({formats} of each job) saved in {OUT}/")
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        print(f"stopped the service and its Azurite; the log is {workdir / 'serve.log'}")


def wait_until_up(api: str, server: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if server.poll() is not None:
            raise SystemExit(f"the service exited with status {server.returncode}; see its log")
        try:
            if requests.get(f"{api}/health", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise SystemExit("the service did not start; see its log")


def wait(api: str, job_id: str) -> dict:
    for _ in range(600):
        job = requests.get(f"{api}/jobs/{job_id}", timeout=10).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise SystemExit(f"job {job_id} did not finish in 2 minutes")


def show(api: str, job: dict) -> None:
    print(f"\njob {job['id']}: {job['status']}, {job['hits']} hits "
          f"({job['started_at']} to {job['finished_at']})")
    if job["status"] != "succeeded":
        print(f"  error: {job['error']}")
        return
    for name, url in job["results"].items():
        # wait: a worker makes each format when it is first asked for.
        content = requests.get(url, params={"wait": 60}, timeout=90).content
        (OUT / f"{job['id']}.{name}").write_bytes(content)
        if name == "tsv":
            print(f"  {'query':<6} {'subject':<34} {'identity':>8} {'length':>6} "
                  f"{'e-value':>9} {'bits':>6}")
            for line in content.decode().splitlines()[:5]:
                q, s, pident, length, *_, evalue, bits = line.split("\t")
                print(f"  {q:<6} {s[:34]:<34} {pident:>8} {length:>6} {evalue:>9} {bits:>6}")


if __name__ == "__main__":
    sys.exit(main())
