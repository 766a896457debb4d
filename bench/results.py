"""Results of a big job: what a request costs, what making a format costs in the worker, and
how much memory it takes, against blast_formatter itself on the same archives.

    .venv/bin/python bench/results.py [--queries 400] [--batch-letters 100000]

One job of N sampled 16S queries against Combined16SrRNA_2-12-2008 (100 hits each, with
alignments: about half a megabyte of JSON per query), fanned out into batches, through `serve`
with one worker per lane on Azurite. Then, per format:
  request    seconds until the first GET answers (202: a worker makes the format);
  making     seconds from that answer until the format is ready (the worker downloads each
             batch's archive, runs blast_formatter, merges the parts, uploads the result);
  raw        blast_formatter over the same archives, run directly: the part of `making` that
             is BLAST+'s own;
  size       bytes of the merged result, and how the next GET answers (200, or 302 to Blob
             storage above BLAST_MAX_INLINE_RESULT_BYTES);
  tsv+       a tsv of columns of one's own (CHOSEN_COLUMNS), made from the same archives;
  download   the tsv downloaded whole, plain and gzip-compressed: bytes on the wire, seconds;
  hits.fasta the FASTA of hits (one query's, whole and aligned; up to 500 subjects): seconds
             from the first request until made (a worker reads every batch's archive);
  worker RSS the worker processes' largest peak resident memory (VmHWM) once every format
             is made.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving import start_serve  # noqa: E402

from blast_core.blast import search  # noqa: E402
from blast_core.blast.programs import stop_processes  # noqa: E402
from blast_core.blast.samples import database_sequences, sample_fasta  # noqa: E402
from blast_core.domain import tabular  # noqa: E402
from blast_core.settings import STORAGE_CONNECTION, Settings  # noqa: E402
from blast_core.storage.azurite import LocalAzurite  # noqa: E402
from blast_core.storage.blobs import AzureJobBlobs  # noqa: E402
from blast_core.storage.ports import archive_blob  # noqa: E402

DATA = Path("/usr/share/ncbi/data")
DATABASE = "Combined16SrRNA_2-12-2008"
# A researcher's usual table: the standard columns' essentials, coverage and the subject's title.
CHOSEN_COLUMNS = ("qseqid", "sseqid", "pident", "length", "evalue", "bitscore", "qcovs",
                  "qcovhsp", "slen", "stitle")


def children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return found


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def downloads(url: str) -> None:
    """The tsv result downloaded whole, plain and gzip-compressed: bytes on the wire, and
    seconds (compressing as it streams costs the HTTP side CPU)."""
    for encoding in ("identity", "gzip"):
        started = time.monotonic()
        response = requests.get(url, headers={"Accept-Encoding": encoding}, stream=True,
                                timeout=230)
        wire = len(response.raw.read(decode_content=False))
        print(f"download tsv, {encoding:<8}: {wire / 1e6:6.2f} MB on the wire in "
              f"{time.monotonic() - started:.2f} s")


def once_made(url: str, params: dict[str, str]) -> requests.Response:
    """The answer once a worker has made what is asked for (no longer 202)."""
    while (response := requests.get(url, params=params, timeout=230)).status_code == 202:
        time.sleep(0.2)
    return response


def hit_sequences(url: str) -> None:
    """The FASTA of the hits of one query, whole and aligned, and of the first 500 subjects
    hit: seconds from the first request until made, and size."""
    table = once_made(url.replace("hits.fasta", "results"),
                      {"format": "tsv", "columns": "qseqid,sseqid"}).text.splitlines()
    subjects = ",".join(list(dict.fromkeys(line.split("\t")[1] for line in table))[:500])
    for label, params in (("one query, whole", {"query": "q1"}),
                          ("one query, aligned", {"query": "q1", "region": "aligned"}),
                          (f"{subjects.count(',') + 1} subjects", {"subjects": subjects})):
        started = time.monotonic()
        response = once_made(url, params)
        print(f"hits.fasta, {label}: {response.status_code} in {time.monotonic() - started:.1f} s, "
              f"{len(response.content) / 1e6:.2f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--batch-letters", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-results-") as temp:
        workdir = Path(temp)
        azurite = LocalAzurite(ROOT, workdir / "azurite").start()
        env = {**os.environ, STORAGE_CONNECTION: azurite.connection_string,
               "BLAST_QUEUE_TRANSPORT": "storage", "BLAST_DB_DIR": str(DATA),
               "BLAST_QUEUE_NAME": f"bench-{uuid.uuid4().hex[:8]}",
               "BLAST_BATCH_LETTERS": str(args.batch_letters)}
        serve, url = start_serve(env, workdir)
        try:
            query = sample_fasta(database_sequences(str(DATA / DATABASE)), args.queries,
                                 seed=11, label="bench")
            job = requests.post(f"{url}/jobs", timeout=120, json={
                "query": query, "database": DATABASE, "max_target_seqs": 100}).json()
            print(f"job {job['id']}: {job['queries']} queries in {job['batches']} batches")
            while job["status"] not in ("succeeded", "failed", "cancelled"):
                time.sleep(1)
                job = requests.get(f"{url}/jobs/{job['id']}", timeout=30).json()
            print(f"searched: {job['status']} in {job['timings']['total']} s")
            workers = children(serve.pid)  # one per lane
            settings = Settings.from_env(env)
            store = AzureJobBlobs.connect(settings.connection(STORAGE_CONNECTION),
                                          settings.results_container)
            archives = []
            for number in range(job["batches"]):
                path = workdir / archive_blob(number)
                store.download(job["id"], archive_blob(number), str(path))
                archives.append(path)
            print(f"{'format':<6} {'request s':>9} {'making s':>9} {'raw s':>7} "
                  f"{'ratio':>6} {'MB':>8}  next GET")
            chosen = search.output_format(tabular.result_key(CHOSEN_COLUMNS))
            for name, fmt in [*search.OUTPUT_FORMATS.items(), ("tsv+", chosen)]:
                params = {"format": fmt.name, **({"columns": ",".join(fmt.columns)}
                                                 if fmt.key != fmt.name else {})}
                asked = time.monotonic()
                first = requests.get(f"{url}/jobs/{job['id']}/results", timeout=230,
                                     params=params, allow_redirects=False)
                answered = time.monotonic()
                while True:
                    again = requests.get(f"{url}/jobs/{job['id']}/results", timeout=230,
                                         params=params, allow_redirects=False,
                                         stream=True)
                    if again.status_code != 202:
                        break
                    time.sleep(0.2)
                made = time.monotonic()
                again.close()
                started = time.monotonic()
                for path in archives:
                    search.format_archive(search.BlastTools("", 1, 3600), str(path), fmt,
                                          str(DATA), str(workdir / f"raw.{fmt.extension}"))
                raw = time.monotonic() - started
                state = requests.get(f"{url}/jobs/{job['id']}", timeout=30).json()
                size = store._container.get_blob_client(
                    f"{job['id']}/result.{fmt.stored_as}").get_blob_properties().size
                print(f"{name:<6} {answered - asked:>9.3f} {made - answered:>9.1f} {raw:>7.1f} "
                      f"{raw / (made - answered):>6.2f} {size / 1e6:>8.1f}  "
                      f"{first.status_code} then {again.status_code} "
                      f"({state['formats'][fmt.key]})")
            downloads(f"{url}/jobs/{job['id']}/results?format=tsv")
            hit_sequences(f"{url}/jobs/{job['id']}/hits.fasta")
            print(f"worker peak RSS: {max(map(peak_rss_mb, workers)):.0f} MB; serve peak RSS: "
                  f"{peak_rss_mb(serve.pid):.0f} MB")
        finally:
            stop_processes([serve])
            azurite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
