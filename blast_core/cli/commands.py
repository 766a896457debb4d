"""The client commands: they talk HTTP only (`client.py`), to the URL and key given by `--url`
and `--api-key` or by BLAST_API_URL and BLAST_API_KEY, and print tables for people, JSON with
`--json`, and errors on stderr: exit status 1 when the service refuses or a job fails, 2 for
usage errors."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from blast_core.blast.programs import ToolError
from blast_core.blast.samples import database_sequences, sample_fasta
from blast_core.cli.client import DEFAULT_URL, ApiProblem, BlastClient, Unreachable
from blast_core.cli.output import DownloadProgress, Progress, table
from blast_core.cli.parser import (
    EXIT_INTERRUPTED,
    PROG,
    SAMPLE_COUNT,
    SAMPLE_DATABASE,
    SAMPLE_DB_DIR,
    SAMPLE_SEED,
)
from blast_core.domain.jobs import FINAL_STATUSES
from blast_core.domain.limits import UPLOAD_ABOVE_BYTES

POLL_SECONDS = 0.5


class CommandFailed(Exception):
    """The command could not do its work; the message says why, for stderr."""


def run_client_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    client = BlastClient(args.url or os.environ.get("BLAST_API_URL") or DEFAULT_URL,
                         args.api_key or os.environ.get("BLAST_API_KEY"))
    commands: dict[str, Callable[[BlastClient, argparse.Namespace], None]] = {
        "submit": submit_command, "status": status_command, "cancel": cancel_command,
        "results": results_command,
        "recent": recent_command, "databases": databases_command, "sample": sample_command,
        "stats": stats_command}
    if args.command == "recent" and not 1 <= args.limit <= 1000:
        parser.error("--limit must be from 1 to 1000")
    if args.command == "sample" and any(not 1 <= n <= SAMPLE_COUNT for n in args.numbers):
        parser.error(f"sample numbers are 1 to {SAMPLE_COUNT}")
    try:
        commands[args.command](client, args)
    except ApiProblem as problem:
        print(f"error: {problem.detail} (HTTP {problem.status})", file=sys.stderr)
        for field, reason in problem.errors:
            print(f"  {field}: {reason}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (Unreachable, CommandFailed, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; a submitted job goes on (see `status ID`; `cancel ID` stops it)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def submit_command(client: BlastClient, args: argparse.Namespace) -> None:
    if args.file != "-" and (args.upload or os.path.getsize(args.file) > UPLOAD_ABOVE_BYTES):
        progress = DownloadProgress(sys.stderr, os.path.getsize(args.file), verb="uploaded")
        query: dict[str, str] = {"query_upload": client.upload(args.file, progress.add)}
        progress.end()
    else:
        query = {"query": sys.stdin.read() if args.file == "-" else _read_text(args.file)}
    options = {"program": args.program, "task": args.task, "evalue": args.evalue,
               "max_target_seqs": args.max_target_seqs, "word_size": args.word_size,
               "filter": args.filter}
    if args.subject:
        target = {"subject": _read_text(args.subject)}
    else:
        target = {"database": args.database[0] if len(args.database) == 1 else args.database}
    payload = {**query, **target,
               **{name: value for name, value in options.items() if value is not None}}
    job = client.submit(payload)
    if not args.wait:
        print(json.dumps(job, indent=1) if args.json else job["id"])
        return
    if not args.json:
        print(job["id"], flush=True)
    job = wait_for(client, job["id"], Progress(sys.stderr))
    if args.json:
        print(json.dumps(job, indent=1))
    if job["status"] == "failed":
        raise CommandFailed(f"job {job['id']} failed: {job['error']}")
    if job["status"] == "cancelled":
        raise CommandFailed(f"job {job['id']} was cancelled")
    if not args.json:
        print(f"{job['hits']} hits for {job['queries']} queries; results:")
        print(table([[name, url] for name, url in job["results"].items()]))
        print(f"to fetch one: {PROG} results {job['id']} --format tsv -o hits.tsv")


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise CommandFailed(f"{path} is not UTF-8 text (FASTA)") from None


def wait_for(client: BlastClient, job_id: str, progress: Progress) -> dict[str, Any]:
    """Poll the job until it ends, showing its progress."""
    started = time.monotonic()
    while True:
        job = client.job(job_id)
        progress.show(job, time.monotonic() - started)
        if job["status"] in FINAL_STATUSES:
            progress.end()
            return job
        time.sleep(POLL_SECONDS)


def status_command(client: BlastClient, args: argparse.Namespace) -> None:
    job = client.job(args.job_id)
    if args.json:
        print(json.dumps(job, indent=1))
        return
    rows = []
    for name, value in job.items():
        if isinstance(value, dict) and name != "results":  # timings, summary: one row each
            rows += [[f"{name}.{key}", str(item)] for key, item in value.items()
                     if item is not None]
        elif isinstance(value, list):
            rows.append([name, ", ".join(map(str, value))])
        elif name != "results" and value is not None:
            rows.append([name, str(value)])
    rows += [[f"results ({name})", url] for name, url in job["results"].items()]
    print(table(rows))


def cancel_command(client: BlastClient, args: argparse.Namespace) -> None:
    job = client.cancel(args.job_id)
    print(json.dumps(job, indent=1) if args.json else f"job {job['id']} cancelled")


def results_command(client: BlastClient, args: argparse.Namespace) -> None:
    what = "the hit sequences are" if args.fasta else f"the {args.format} result is"

    def waiting(seconds: float) -> None:
        print(f"\r{what} being made ({seconds:.0f} s)", end="", file=sys.stderr, flush=True)

    if args.partial:
        download = client.partial(args.job_id)
        print(f"results so far: {download.note}", file=sys.stderr)
    elif args.fasta:
        selection = {name: str(value) for name, value in (
            ("query", args.query), ("subjects", args.subjects), ("flank", args.flank),
            ("region", "aligned" if args.aligned else None)) if value is not None}
        download = client.hit_sequences(args.job_id, selection, waiting=waiting
                                        if sys.stderr.isatty() else None)
    else:
        download = client.result(args.job_id, args.format, waiting=waiting
                                 if sys.stderr.isatty() else None, columns=args.columns)
    if not args.output:
        for chunk in download.chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        return
    progress = DownloadProgress(sys.stderr, download.size)
    with open(args.output, "wb") as out:
        try:
            for chunk in download.chunks:
                out.write(chunk)
                progress.add(len(chunk))
        except BaseException:
            out.close()
            os.remove(args.output)  # no truncated result left behind
            raise
        finally:
            progress.end()


def recent_command(client: BlastClient, args: argparse.Namespace) -> None:
    jobs = client.recent(args.limit)
    if args.minutes is not None:
        since = datetime.now(UTC) - timedelta(minutes=args.minutes)
        jobs = [j for j in jobs if datetime.fromisoformat(j["submitted_at"]) >= since]
    if args.json:
        print(json.dumps(jobs, indent=1))
        return
    if not jobs:
        print("no jobs" + (f" in the last {args.minutes:g} minutes" if args.minutes else ""))
        return
    print(table([["ID", "STATUS", "SUBMITTED (UTC)", "PROGRAM", "TASK", "DATABASE", "QUERIES",
                  "HITS"]] +
                [[j["id"], j["status"], j["submitted_at"][:19].replace("T", " "), j["program"],
                  j["task"], j["database"], str(j["queries"]),
                  "" if j["hits"] is None else str(j["hits"])] for j in jobs], numeric=(6, 7)))


def stats_command(client: BlastClient, args: argparse.Namespace) -> None:
    stats = client.stats()
    if args.json:
        print(json.dumps(stats, indent=1))
        return
    queue, jobs, times, work = (stats["queue"], stats["jobs"], stats["end_to_end"],
                                stats["throughput"])
    if queue["error"]:
        queue_text = f"cannot read it: {queue['error']}"
    else:
        queue_text = f"{queue['depth']} waiting, {queue['dead_letters']} dead-lettered"
    queue_text += f" ({queue['transport']} queue {queue['name']}, read {queue['age_seconds']:g} s ago)"

    def by_status(counts: dict[str, int]) -> str:
        return ", ".join(f"{count} {status}" for status, count in counts.items()
                         if status != "total") + f" ({counts['total']} in all)"

    rows = [["queue", queue_text],
            ["jobs, last hour", by_status(jobs["last_hour"])],
            ["jobs, last day", by_status(jobs["last_day"]) +
             ("" if jobs["complete"] else ", counted up to a limit")]]
    if times["jobs"]:
        rows.append(["end to end", f"median {times['median_seconds']:.1f} s, p95 "
                                   f"{times['p95_seconds']:.1f} s over the last {times['jobs']} "
                                   "finished jobs"])
    else:
        rows.append(["end to end", "no finished jobs"])
    if work["letters_per_cpu_second"] is not None:
        rows.append(["BLAST throughput", f"{work['letters_per_cpu_second']:,.0f} query letters "
                                         f"per CPU second ({work['query_letters']:,} letters, "
                                         f"{work['cpu_seconds']:.2f} CPU s, {work['jobs']} jobs)"])
    else:
        rows.append(["BLAST throughput", "no succeeded jobs"])
    print(table(rows))


def databases_command(client: BlastClient, args: argparse.Namespace) -> None:
    databases = client.databases()
    if args.json:
        print(json.dumps(databases, indent=1))
        return
    print(table([["NAME", "MOLECULE", "SEQUENCES", "LETTERS", "TITLE"]] +
                [[d["name"], d["molecule"], f"{d['sequences']:,}", f"{d['letters']:,}",
                  d["title"]] for d in databases], numeric=(2, 3)))


def sample_command(client: BlastClient, args: argparse.Namespace) -> None:
    queries = sample_set(args.database, args.db_dir)
    numbers = args.numbers or [random.randint(1, SAMPLE_COUNT)]
    submitted = []
    for number in numbers:
        job = client.submit({"query": queries[number - 1], "database": args.database})
        submitted.append({"sample": number, "job": job})
        if not args.json:
            print(f"sample {number}: job {job['id']}", flush=True)
    if args.json:
        print(json.dumps(submitted, indent=1))


def sample_set(database: str = SAMPLE_DATABASE, db_dir: str = SAMPLE_DB_DIR) -> list[str]:
    """The numbered sample queries (FASTA each), the same wherever they are built."""
    try:
        sequences = database_sequences(os.path.join(db_dir, database))
    except ToolError as error:
        raise CommandFailed(f"cannot read the sample database {database} in {db_dir} "
                            f"({error.message}); it comes with ncbi-rrna-data and BLAST+ "
                            "(`make setup`)") from None
    if len(sequences) < SAMPLE_COUNT:
        raise CommandFailed(f"{database} holds {len(sequences)} sequences; samples need "
                            f"{SAMPLE_COUNT}")
    fasta = sample_fasta(sequences, SAMPLE_COUNT, seed=SAMPLE_SEED,
                         label=f"sample of {database}, sequence")
    return [">" + entry for entry in fasta.split(">")[1:]]
