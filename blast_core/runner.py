"""The BLAST run of a job: one search into an ASN.1 archive, then every format from it.

As SequenceServer does, the search runs once (`-outfmt 11`) and `blast_formatter` turns the
archive into each output format, so no format ever costs a second search.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from blast_core.jobs import Job
from blast_core.process import ToolError, ToolTimeout, run_tool
from blast_core.settings import Settings

TABULAR_COLUMNS = ("qseqid sseqid pident length mismatch gapopen qstart qend sstart send "
                   "evalue bitscore")


@dataclass(frozen=True)
class OutputFormat:
    name: str
    outfmt: str
    extension: str
    content_type: str


OUTPUT_FORMATS: dict[str, OutputFormat] = {f.name: f for f in (
    OutputFormat("tsv", f"6 {TABULAR_COLUMNS}", "tsv", "text/tab-separated-values; charset=utf-8"),
    OutputFormat("json", "15", "json", "application/json"),
    OutputFormat("xml", "5", "xml", "application/xml"),
    OutputFormat("text", "0", "txt", "text/plain; charset=utf-8"),
)}
ARCHIVE = OutputFormat("archive", "11", "asn", "text/plain; charset=utf-8")


class SearchRejected(Exception):
    """BLAST refused this job (bad query for the database, missing database, time limit):
    running it again would fail the same way."""


@dataclass(frozen=True)
class BlastTools:
    bin_dir: str
    threads: int
    time_limit: float

    @classmethod
    def from_settings(cls, settings: Settings) -> BlastTools:
        return cls(settings.bin_dir, settings.threads, settings.time_limit)

    def path(self, program: str) -> str:
        return os.path.join(self.bin_dir, program) if self.bin_dir else program


@dataclass(frozen=True)
class SearchResult:
    files: dict[str, str]
    hits: int
    blast_seconds: float


def search_arguments(job: Job, tools: BlastTools, query_path: str, db_path: str,
                     out_path: str) -> list[str]:
    """The BLAST command line; every value comes from a validated Job."""
    return [
        tools.path(job.program), "-task", job.task,
        "-query", query_path, "-db", db_path,
        "-evalue", repr(float(job.evalue)),
        "-max_target_seqs", str(int(job.max_target_seqs)),
        "-num_threads", str(tools.threads),
        "-outfmt", ARCHIVE.outfmt, "-out", out_path,
    ]


def run_search(job: Job, tools: BlastTools, query_path: str, db_path: str,
               workdir: str) -> SearchResult:
    """Search once, then write every output format; raises SearchRejected for permanent faults."""
    archive = os.path.join(workdir, f"result.{ARCHIVE.extension}")
    started = time.monotonic()
    try:
        run_tool(search_arguments(job, tools, query_path, db_path, archive),
                 timeout=tools.time_limit, cwd=workdir)
    except ToolTimeout as error:
        raise SearchRejected(f"BLAST {error.message}") from None
    except ToolError as error:
        if error.returncode is None or error.returncode < 0:
            raise  # not started, or killed by a signal: worth another attempt
        raise SearchRejected(f"BLAST rejected the search: {error.message}") from None
    blast_seconds = time.monotonic() - started
    files = {ARCHIVE.name: archive}
    with ThreadPoolExecutor(max_workers=len(OUTPUT_FORMATS)) as pool:
        outputs = {name: pool.submit(_format, tools, archive, fmt, workdir)
                   for name, fmt in OUTPUT_FORMATS.items()}
        files.update({name: future.result() for name, future in outputs.items()})
    with open(files["tsv"]) as tabular:
        hits = count_hits(tabular.read())
    return SearchResult(files=files, hits=hits, blast_seconds=blast_seconds)


def _format(tools: BlastTools, archive: str, fmt: OutputFormat, workdir: str) -> str:
    out = os.path.join(workdir, f"result.{fmt.extension}")
    run_tool([tools.path("blast_formatter"), "-archive", archive, "-outfmt", fmt.outfmt,
              "-out", out], timeout=tools.time_limit, cwd=workdir)
    return out


def count_hits(tabular: str) -> int:
    """Distinct (query, subject) pairs of a tabular result."""
    pairs = {tuple(line.split("\t", 2)[:2]) for line in tabular.splitlines()
             if line and not line.startswith("#")}
    return len(pairs)
