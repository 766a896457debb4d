"""The command line's parser: the operator's commands (`serve`, `worker`, `clean-up`,
`dead-letters`, `db upload`) and the client commands, with their options."""

from __future__ import annotations

import argparse

from blast_core.cli.client import DEFAULT_URL
from blast_core.domain.limits import UPLOAD_ABOVE_BYTES
from blast_core.domain.messages import LANES

# The sample set: SAMPLE_COUNT sequences of a real database from Debian's ncbi-rrna-data,
# picked and mutated (3 %) with a fixed seed, so that sample N is the same query everywhere.
SAMPLE_DATABASE = "Combined16SrRNA_2-12-2008"


SAMPLE_DB_DIR = "/usr/share/ncbi/data"


SAMPLE_COUNT = 20


SAMPLE_SEED = 2026


PROG = "python -m blast_core"
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what shells report for a program stopped by Ctrl-C


CLIENT_COMMANDS = ("submit", "status", "cancel", "results", "recent", "databases", "sample",
                   "stats")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG,
                                     description="BLAST search service: run it locally, or use "
                                                 "a running one.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_operator_commands(commands)
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--url", help="the service, e.g. https://APP.azurewebsites.net "
                                          f"(default: BLAST_API_URL, else {DEFAULT_URL})")
    connection.add_argument("--api-key", help="function key or `serve --api-key` key (default: "
                                              "BLAST_API_KEY)")
    client = argparse.ArgumentParser(add_help=False, parents=[connection])
    client.add_argument("--json", action="store_true", help="print JSON, for scripts")
    _add_job_commands(commands, connection, client)
    _add_listing_commands(commands, client)
    return parser


def _add_operator_commands(commands) -> None:
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
    worker.add_argument("--lane", choices=("all", *LANES), default="all",
                        help="the lane to work on: interactive, bulk, or both (default)")
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


def _add_job_commands(commands, connection: argparse.ArgumentParser,
                      client: argparse.ArgumentParser) -> None:
    submit = commands.add_parser("submit", parents=[client], help="submit a FASTA file as a job")
    submit.add_argument("file", metavar="FILE", help="FASTA file with one or more queries; - "
                                                     "reads standard input")
    target = submit.add_mutually_exclusive_group(required=True)
    target.add_argument("--database", action="append",
                        help="a database name (see `databases`); give it again to search "
                             "several together")
    target.add_argument("--subject", metavar="FASTA",
                        help="a FASTA file of sequences to align the queries with, instead of "
                             "a database (blastn -subject)")
    submit.add_argument("--program", help="blastn (default), blastp, blastx, tblastn or tblastx")
    submit.add_argument("--task", help="BLAST+ task, e.g. megablast (blastn's default) or blastn")
    submit.add_argument("--evalue", type=float, help="e-value cut-off (default 10)")
    submit.add_argument("--max-target-seqs", type=int, help="hits kept per query (default 100)")
    submit.add_argument("--word-size", type=int, help="BLAST+ -word_size (default: the task's)")
    submit.add_argument("--filter", choices=("yes", "no"),
                        help="low-complexity filter, DUST or SEG (default: the program's)")
    submit.add_argument("--upload", action="store_true",
                        help="send FILE straight to Blob storage (what a file of over "
                             f"{UPLOAD_ABOVE_BYTES // 1_000_000} MB always does): for query "
                             "sets of any size, checked and split by a worker")
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
    results.add_argument("--columns", metavar="NAMES",
                         help="the tsv result's columns, BLAST+ -outfmt 6 specifiers separated "
                              "by commas or spaces, e.g. 'qseqid sseqid pident qcovs stitle' "
                              "(default: the 12 standard ones; the README lists them all)")
    results.add_argument("--partial", action="store_true",
                         help="a running (or failed) job of several batches: the tsv of the "
                              "batches searched so far; stderr says which queries it covers")
    results.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
    fasta = results.add_argument_group(
        "hit sequences", "--fasta: the FASTA of the hits, from the job's databases, instead of "
                         "a result (give --query or --subjects)")
    fasta.add_argument("--fasta", action="store_true", help="the sequences of hits")
    fasta.add_argument("--query", metavar="ID", help="every subject hit by this query")
    fasta.add_argument("--subjects", metavar="IDS",
                       help="these subjects, as the tsv result names them, separated by commas")
    fasta.add_argument("--aligned", action="store_true",
                       help="only the region of each alignment (default: whole sequences)")
    fasta.add_argument("--flank", type=int, help="with --aligned: letters either side")


def _add_listing_commands(commands, client: argparse.ArgumentParser) -> None:
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
