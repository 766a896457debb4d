"""`python -m blast_core` (installed as `blast-service`): run the service locally (`serve`,
`worker`, `clean-up`), or use a running one, local or in Azure, from a terminal (`submit`,
`status`, `cancel`, `results`, `recent`, `databases`, `sample`, `stats`).

The client commands talk HTTP only (`client.py`), to the URL and key given by `--url` and
`--api-key` or by BLAST_API_URL and BLAST_API_KEY. They print tables for people, JSON with
`--json`, and errors on stderr: exit status 1 when the service refuses or a job fails, 2 for
usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from blast_core.blast.process import ToolError
from blast_core.blast.samples import database_sequences, sample_fasta
from blast_core.cli.client import DEFAULT_URL, ApiProblem, BlastClient, Unreachable
from blast_core.logs import configure_logging
from blast_core.settings import STORAGE_CONNECTION, Settings, SettingsError

if TYPE_CHECKING:
    from blast_core.service.core import BlastService

# The queue of serve, worker and the operator commands, unless the settings name another. No
# storage default: serve without one starts its own Azurite, the others say what to set.
LOCAL_QUEUE_TRANSPORT = "storage"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where node_modules/ holds Azurite
# The sample set: SAMPLE_COUNT sequences of a real database from Debian's ncbi-rrna-data,
# picked and mutated (3 %) with a fixed seed, so that sample N is the same query everywhere.
SAMPLE_DATABASE = "Combined16SrRNA_2-12-2008"
SAMPLE_DB_DIR = "/usr/share/ncbi/data"
SAMPLE_COUNT = 20
SAMPLE_SEED = 2026
POLL_SECONDS = 0.5
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
PROG = "python -m blast_core"
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what shells report for a program stopped by Ctrl-C
CLIENT_COMMANDS = ("submit", "status", "cancel", "results", "recent", "databases", "sample",
                   "stats")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in CLIENT_COMMANDS:
        return run_client_command(parser, args)
    return run_service(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG,
                                     description="BLAST search service: run it locally, or use "
                                                 "a running one.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API and run queue workers")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7071)
    serve.add_argument("--db-dir", help="database directory (setting BLAST_DB_DIR)")
    serve.add_argument("--workers", type=int,
                       help="worker processes, each running one BLAST at a time (default: the "
                            "machine's cores divided by BLAST_THREADS)")
    serve.add_argument("--api-key", help="require this key on every route but health "
                                         "(setting BLAST_API_KEY)")
    worker = commands.add_parser("worker", help="run one queue worker in the foreground")
    worker.add_argument("--db-dir", help="database directory (setting BLAST_DB_DIR)")
    worker.add_argument("--wake-fd", type=int, help=argparse.SUPPRESS)  # from serve
    commands.add_parser("clean-up", help="delete the jobs older than BLAST_RETENTION_DAYS now "
                                         "(serve does so every BLAST_CLEANUP_SECONDS)")
    dead = commands.add_parser(
        "dead-letters", help="list the dead-lettered (or poisoned) jobs, or requeue them",
        description="Reads the queue named by the settings directly (not through the API).")
    dead.add_argument("--requeue", action="store_true",
                      help="put every dead-lettered job back in the queue")
    dead.add_argument("--json", action="store_true", help="print JSON, for scripts")
    database = commands.add_parser("db", help="BLAST databases").add_subparsers(
        dest="db_command", required=True)
    upload = database.add_parser(
        "upload", help="build a BLAST database from FASTA and upload it to the Azure Files share",
        description="Runs makeblastdb (-parse_seqids, version 5) and uploads the database's "
                    "files to the share that the function app mounts as BLAST_DB_DIR.")
    upload.add_argument("fasta", metavar="FASTA")
    upload.add_argument("--name", required=True, help="database name, as jobs will name it")
    upload.add_argument("--type", choices=("nucl", "prot"), required=True, dest="dbtype")
    upload.add_argument("--title", help="database title (default: the name)")
    upload.add_argument("--share", required=True, help="Azure Files share name")
    upload.add_argument("--directory", default="", help="folder in the share (default: its root)")
    upload.add_argument("--connection", help="storage connection string, or a file service URL "
                                             "(default: the BLAST_STORAGE connection string)")

    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--url", help="the service, e.g. https://APP.azurewebsites.net "
                                          f"(default: BLAST_API_URL, else {DEFAULT_URL})")
    connection.add_argument("--api-key", help="function key or `serve --api-key` key (default: "
                                              "BLAST_API_KEY)")
    client = argparse.ArgumentParser(add_help=False, parents=[connection])
    client.add_argument("--json", action="store_true", help="print JSON, for scripts")

    submit = commands.add_parser("submit", parents=[client], help="submit a FASTA file as a job")
    submit.add_argument("file", metavar="FILE", help="FASTA file with one or more queries; - "
                                                     "reads standard input")
    submit.add_argument("--database", required=True, action="append",
                        help="a database name (see `databases`); give it again to search "
                             "several together")
    submit.add_argument("--program", help="blastn (default), blastp, blastx, tblastn or tblastx")
    submit.add_argument("--task", help="BLAST+ task, e.g. megablast (blastn's default) or blastn")
    submit.add_argument("--evalue", type=float, help="e-value cut-off (default 10)")
    submit.add_argument("--max-target-seqs", type=int, help="hits kept per query (default 100)")
    submit.add_argument("--word-size", type=int, help="BLAST+ -word_size (default: the task's)")
    submit.add_argument("--filter", choices=("yes", "no"),
                        help="low-complexity filter, DUST or SEG (default: the program's)")
    submit.add_argument("--wait", action="store_true",
                        help="show progress until the job ends, then where its results are")

    status = commands.add_parser("status", parents=[client], help="show one job")
    status.add_argument("job_id", metavar="ID")
    cancel = commands.add_parser("cancel", parents=[client],
                                 help="cancel a queued or running job (its BLAST is stopped)")
    cancel.add_argument("job_id", metavar="ID")
    results = commands.add_parser("results", parents=[connection],
                                  help="fetch a finished job's result")
    results.add_argument("job_id", metavar="ID")
    results.add_argument("--format", default="tsv",
                         help="tsv (default), json, xml, xml2 or text")
    results.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
    recent = commands.add_parser("recent", parents=[client], help="list recent jobs, newest first")
    recent.add_argument("--limit", type=int, default=20, help="at most N jobs (default 20)")
    recent.add_argument("--minutes", type=float, help="only jobs submitted in the last M minutes")
    commands.add_parser("databases", parents=[client], help="list the searchable databases")
    commands.add_parser("stats", parents=[client],
                        help="queue depth, dead letters, recent jobs by status, end-to-end "
                             "times and BLAST throughput")
    sample = commands.add_parser(
        "sample", parents=[client],
        help=f"submit sample queries by number (1 to {SAMPLE_COUNT}), or a random one",
        description=f"Submits sample queries, one job each: sequences of {SAMPLE_DATABASE} "
                    "(ncbi-rrna-data) with a few mutations, the same for everyone. Needs "
                    "BLAST+ and that database on this machine.")
    sample.add_argument("numbers", metavar="N", type=int, nargs="*")
    sample.add_argument("--database", default=SAMPLE_DATABASE,
                        help=f"the sample database, here and on the service (default "
                             f"{SAMPLE_DATABASE})")
    sample.add_argument("--db-dir", default=SAMPLE_DB_DIR,
                        help=f"where that database is on this machine (default {SAMPLE_DB_DIR})")
    return parser


# serve and worker


def run_service(args: argparse.Namespace) -> int:
    configure_logging()
    if args.command == "db":
        return upload_database(args)
    os.environ.setdefault("BLAST_QUEUE_TRANSPORT", LOCAL_QUEUE_TRANSPORT)
    if getattr(args, "db_dir", None):
        os.environ["BLAST_DB_DIR"] = os.path.abspath(args.db_dir)
    if getattr(args, "api_key", None):
        os.environ["BLAST_API_KEY"] = args.api_key
    if args.command == "serve":
        return serve_command(args)
    from blast_core.storage.check import StorageUnusable

    if args.command == "worker":
        stop_on_signals()  # before anything else, so a stop at start-up is one too
    try:
        settings = Settings.from_env()
        if not storage_configured(settings):
            raise SettingsError([
                f"{STORAGE_CONNECTION} is not set: `{args.command}` works on the storage it "
                "names (UseDevelopmentStorage=true: an Azurite you run on its default ports); "
                "the Azurite that `serve` starts for itself is for it and its --workers only"])
        service = start_service(settings)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except StorageUnusable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.command == "dead-letters":
        return dead_letters(service, args.requeue, args.json)
    if args.command == "clean-up":
        service.ensure_storage()
        print(f"deleted {service.clean_up()} expired job(s)")
        return 0
    from blast_core import telemetry

    telemetry.configure(settings)
    run_worker(service, args.wake_fd)
    return 0


def storage_configured(settings: Settings) -> bool:
    try:
        settings.connection(STORAGE_CONNECTION)
    except SettingsError:
        return False
    return True


def start_service(settings: Settings, own_azurite_log: Path | None = None) -> BlastService:
    """The service on `settings`, once its storage has answered (StorageUnusable if not)."""
    from blast_core.service import bootstrap
    from blast_core.storage.check import check_storage

    check_storage(settings, own_azurite_log)
    return bootstrap.build(settings)


def serve_command(args: argparse.Namespace) -> int:
    """`serve`: with no storage configured, on an Azurite of its own that stops with it."""
    from blast_core import telemetry
    from blast_core.hosts.serve import CannotServe, StopSignals, serve
    from blast_core.storage.azurite import LocalStorageError, start_own_azurite
    from blast_core.storage.check import StorageUnusable

    stop = StopSignals()  # from here on, SIGINT and SIGTERM ask serve to stop, and it does
    own_azurite = None
    try:
        settings = Settings.from_env()
        if not storage_configured(settings):
            own_azurite = start_own_azurite(PROJECT_ROOT, Path(settings.azurite_dir))
            logging.getLogger("blast_core.hosts.serve").info(
                "no storage configured: serve's own Azurite keeps the jobs in %s",
                own_azurite.workdir)
            os.environ[STORAGE_CONNECTION] = own_azurite.connection_string  # workers inherit it
            settings = Settings.from_env()
        service = start_service(settings, own_azurite.log_path if own_azurite else None)
        telemetry.configure(settings)
        workers = args.workers if args.workers is not None else max(
            1, (os.cpu_count() or 1) // settings.threads)
        stopped_by = serve(service, args.host, args.port, max(0, workers), stop)
        # Ctrl-C: what shells report for a program stopped by SIGINT. SIGTERM, how service
        # managers ask a service to stop, is a clean stop.
        return {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: 0}.get(stopped_by, 1)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (LocalStorageError, StorageUnusable, CannotServe) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if own_azurite is not None:
            own_azurite.stop()  # after the workers, which serve has stopped


def dead_letters(service, requeue: bool, as_json: bool) -> int:
    if requeue:
        requeued, left = service.requeue_dead_letters()
        if as_json:
            print(json.dumps({"requeued": requeued, "left": left}))
        else:
            print(f"requeued {len(requeued)} job(s){': ' if requeued else ''}{' '.join(requeued)}")
            if left:
                print(f"left {left} message(s) that name no job", file=sys.stderr)
        return 0
    letters = service.dead_letters()
    if as_json:
        print(json.dumps([letter.__dict__ for letter in letters], indent=1))
    elif not letters:
        print("no dead letters")
    else:
        print(f"{'job':<20} {'status':<10} error")
        for letter in letters:
            print(f"{letter.job_id or '(unreadable)':<20} {letter.status or '-':<10} "
                  f"{letter.error or letter.reason}")
    return 0


def upload_database(args: argparse.Namespace) -> int:
    import tempfile

    from blast_core.blast.builder import DatabaseBuildError, build_database
    from blast_core.blast.builder import upload_database as upload

    connection = args.connection or os.environ.get(STORAGE_CONNECTION, "")
    if not connection:
        print(f"error: give --connection or set {STORAGE_CONNECTION}", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="blastdb-") as workdir:
            files = build_database(args.fasta, args.name, args.dbtype, args.title or args.name,
                                   workdir)
            uploaded = upload(files, connection, args.share, args.directory)
    except (DatabaseBuildError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"uploaded {len(uploaded)} files of database {args.name} to share {args.share}")
    return 0


def stop_on_signals() -> None:
    """SIGINT and SIGTERM end this process at once, with status 130 and 0: the running BLAST
    dies with it (parent-death signal) and its message comes back after the visibility
    timeout. Raising SystemExit from the handler instead could land in a finaliser or in the
    interpreter's own shut-down, where it is printed as "Exception ignored" and lost."""

    def leave_now(signum: int, frame: object) -> None:
        os._exit(EXIT_INTERRUPTED if signum == signal.SIGINT else 0)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, leave_now)


def run_worker(service: BlastService, wake_fd: int | None = None) -> None:
    from blast_core.hosts.worker import run_worker as work

    service.ensure_storage()
    logging.getLogger("blast_core.hosts.worker").info("worker %d listening on %s queue %s",
                                                os.getpid(), service.settings.queue_transport,
                                                service.settings.queue_name)
    work(service, threading.Event(), wake_fd)


# The client commands


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
    query = sys.stdin.read() if args.file == "-" else _read_text(args.file)
    options = {"program": args.program, "task": args.task, "evalue": args.evalue,
               "max_target_seqs": args.max_target_seqs, "word_size": args.word_size,
               "filter": args.filter}
    database = args.database[0] if len(args.database) == 1 else args.database
    payload = {"query": query, "database": database,
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
        print(_table([[name, url] for name, url in job["results"].items()]))
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


class Progress:
    """A progress bar of the queries done, redrawn in place on a terminal; elsewhere (a log, a
    pipe) one line each time the status or the count changes."""

    WIDTH = 30

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.live = stream.isatty()
        self.last = ("", -1)
        self.ticks = 0

    def show(self, job: dict[str, Any], elapsed: float) -> None:
        total, status = job["queries"], job["status"]
        # A service from before batching reports no queries_done: all are done on success.
        done = job.get("queries_done", total if status == "succeeded" else 0)
        counts = f"{done}/{total} queries"
        if job.get("batches", 1) > 1:
            counts += f", {job['batches_done']}/{job['batches']} batches"
        if self.live:
            filled = self.WIDTH * done // max(total, 1)
            spinner = " " if status in FINAL_STATUSES else "|/-\\"[self.ticks % 4]
            self.ticks += 1
            self.stream.write(f"\r{spinner} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                              f"{counts}  {status:<9}  {elapsed:5.1f} s")
        elif (status, done) != self.last:
            self.stream.write(f"job {job['id']} {status}: {counts} after {elapsed:.1f} s\n")
        self.last = (status, done)
        self.stream.flush()

    def end(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


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
    print(_table(rows))


def cancel_command(client: BlastClient, args: argparse.Namespace) -> None:
    job = client.cancel(args.job_id)
    print(json.dumps(job, indent=1) if args.json else f"job {job['id']} cancelled")


def results_command(client: BlastClient, args: argparse.Namespace) -> None:
    def waiting(seconds: float) -> None:
        print(f"\rthe {args.format} result is being made ({seconds:.0f} s)", end="",
              file=sys.stderr, flush=True)

    chunks = client.result(args.job_id, args.format, waiting=waiting if sys.stderr.isatty()
                           else None)
    if not args.output:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        return
    with open(args.output, "wb") as out:
        try:
            for chunk in chunks:
                out.write(chunk)
        except BaseException:
            out.close()
            os.remove(args.output)  # no truncated result left behind
            raise


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
    print(_table([["ID", "STATUS", "SUBMITTED (UTC)", "PROGRAM", "TASK", "DATABASE", "QUERIES",
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
    print(_table(rows))


def databases_command(client: BlastClient, args: argparse.Namespace) -> None:
    databases = client.databases()
    if args.json:
        print(json.dumps(databases, indent=1))
        return
    print(_table([["NAME", "MOLECULE", "SEQUENCES", "LETTERS", "TITLE"]] +
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


def _table(rows: list[list[str]], numeric: tuple[int, ...] = ()) -> str:
    """Aligned columns, those at the `numeric` indexes to the right."""
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    return "\n".join(
        "  ".join(cell.rjust(width) if index in numeric else cell.ljust(width)
                  for index, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip()
        for row in rows)
