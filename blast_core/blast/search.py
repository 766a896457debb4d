"""The BLAST run of a job: one search into an ASN.1 archive, and each format from it.

As SequenceServer and NCBI's own service do, the search runs once (`-outfmt 11`) and
`blast_formatter` turns the archive into an output format when one is first asked for, so no
format ever costs a second search and a job costs one BLAST process.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from blast_core.blast.programs import (
    StopCheck,
    ToolError,
    ToolStopped,
    ToolTimeout,
    run_measured,
    run_tool,
)
from blast_core.domain import tabular
from blast_core.domain.client_input import InvalidRequest
from blast_core.domain.jobs import Job
from blast_core.settings import Settings


@dataclass(frozen=True)
class OutputFormat:
    name: str
    outfmt: str
    extension: str
    content_type: str
    columns: tuple[str, ...] = ()  # a tabular result's
    selection: str = ""  # a hit selection's digest (`domain/hit_selection.py`)

    @property
    def key(self) -> str:
        """What this result is asked for and recorded under: a tabular result's names its
        columns, unless they are the default ones; hit sequences', their selection."""
        if self.selection:
            return f"{self.name}-{self.selection}"
        return tabular.result_key(self.columns) if self.columns else self.name

    @property
    def stored_as(self) -> str:
        """The extension of its result blob, one for each key."""
        if self.key == self.name:
            return self.extension
        return f"{self.selection or '-'.join(self.columns)}.{self.extension}"


def _tabular(columns: tuple[str, ...]) -> OutputFormat:
    return OutputFormat(tabular.TSV, f"6 {' '.join(columns)}", "tsv",
                        "text/tab-separated-values; charset=utf-8", columns)


OUTPUT_FORMATS: dict[str, OutputFormat] = {f.name: f for f in (
    _tabular(tabular.DEFAULT_COLUMNS),
    OutputFormat("json", "15", "json", "application/json"),
    OutputFormat("xml", "5", "xml", "application/xml"),
    OutputFormat("xml2", "16", "xml2.xml", "application/xml"),
    OutputFormat("text", "0", "txt", "text/plain; charset=utf-8"),
)}
ARCHIVE = OutputFormat("archive", "11", "asn", "text/plain; charset=utf-8")
HIT_SEQUENCES = "fasta"
_SELECTION_KEY = re.compile(rf"{HIT_SEQUENCES}-([0-9a-f]{{16}})")


def hit_sequences_format(selection: str) -> OutputFormat:
    """The FASTA of a job's hits that a selection's digest names."""
    return OutputFormat(HIT_SEQUENCES, "", "fasta", "text/x-fasta; charset=utf-8",
                        selection=selection)


def output_format(key: str) -> OutputFormat:
    """The format a result key names: a format's name, or `tsv:` and columns
    (`domain/tabular.py`); raises KeyError for any other key."""
    if key in OUTPUT_FORMATS:
        return OUTPUT_FORMATS[key]
    if found := _SELECTION_KEY.fullmatch(key):
        return hit_sequences_format(found.group(1))
    if not tabular.is_column_set(key):
        raise KeyError(key)
    try:
        return _tabular(tabular.columns_of(key))
    except InvalidRequest:
        raise KeyError(key) from None

PROGRAMS_WITHOUT_TASK = frozenset({"tblastx"})  # `tblastx -task` is an error in BLAST+ 2.12
_YES_NO = {"yes": "yes", "no": "no"}  # the -dust / -seg values, never the request's own text


class SearchCancelled(Exception):
    """The job was cancelled while BLAST ran; BLAST was stopped after running `blast_seconds`
    and using `cpu_seconds`."""

    def __init__(self, message: str, blast_seconds: float, cpu_seconds: float):
        super().__init__(message)
        self.blast_seconds = blast_seconds
        self.cpu_seconds = cpu_seconds


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
    archive: str
    hits: int
    blast_seconds: float
    cpu_seconds: float = 0.0


def search_arguments(job: Job, tools: BlastTools, query_path: str, db: str,
                     out_path: str, queries: int = 1, subject_path: str | None = None) -> list[str]:
    """The BLAST command line; every value comes from a validated Job (`db`: one or more
    database names, space-separated: BLAST searches them as one; or, with `subject_path`, the
    job's subject sequences instead). With several threads and at least as many queries,
    BLAST threads by query (`-mt_mode 1`, BLAST+ 2.12), which keeps every thread busy on a
    small database where splitting the database cannot. A search of subject sequences runs
    on one thread: BLAST+ 2.12 ignores `-num_threads` with `-subject`, and says so."""
    args = [tools.path(job.program)]
    if job.program not in PROGRAMS_WITHOUT_TASK:
        args += ["-task", job.task]
    target = ["-subject", subject_path] if subject_path else ["-db", db]
    threads = [] if subject_path else ["-num_threads", str(tools.threads)]
    args += [
        "-query", query_path, *target,
        "-evalue", repr(float(job.evalue)),
        "-max_target_seqs", str(int(job.max_target_seqs)),
        *threads,
        "-outfmt", ARCHIVE.outfmt, "-out", out_path,
    ]
    if job.word_size is not None:
        args += ["-word_size", str(int(job.word_size))]
    if job.filter is not None:
        args += ["-dust" if job.program == "blastn" else "-seg", _YES_NO[job.filter]]
    if tools.threads > 1 and queries >= tools.threads and not subject_path:
        args += ["-mt_mode", "1"]
    return args


def run_search(job: Job, tools: BlastTools, query_path: str, db_paths: list[str],
               workdir: str, queries: int = 1, stop: StopCheck | None = None,
               time_limit: float | None = None, subject_path: str | None = None) -> SearchResult:
    """Search once into an ASN.1 archive, for at most `time_limit` seconds (default: the
    tools' BLAST_TIME_LIMIT); raises SearchRejected for permanent faults (the time limit
    among them) and SearchCancelled when `stop` stopped BLAST. With `subject_path` the
    queries are aligned with those sequences instead of `db_paths`; the archive holds them,
    so that it is formatted without any database.

    The databases are named relative to BLASTDB, so that the archive can be formatted later
    on any instance that sees the databases, wherever they are mounted or cached there; with
    several in different directories (each staged copy has its own), BLASTDB lists them all,
    separated by colons, as BLAST+ allows. BLAST+ searches a query file in chunks of its own
    choosing and writes one archive per chunk, one after another in the file
    (`blast/archive_layout.py`)."""
    archive = os.path.join(workdir, f"result.{ARCHIVE.extension}")
    db_dirs = list(dict.fromkeys(os.path.dirname(path) for path in db_paths))
    if any(":" in directory for directory in db_dirs):
        raise ValueError(f"a database directory holds ':', which BLASTDB cannot: {db_dirs}")
    db_names = " ".join(os.path.basename(path) for path in db_paths)
    limit = tools.time_limit if time_limit is None else time_limit
    started = time.monotonic()
    try:
        run = run_measured(search_arguments(job, tools, query_path, db_names, archive, queries,
                                            subject_path),
                           timeout=limit, cwd=workdir,
                           env={"BLASTDB": ":".join(db_dirs)}, stop=stop)
    except ToolStopped as stopped:
        raise SearchCancelled(f"job {job.id}: BLAST stopped, the job was cancelled",
                              time.monotonic() - started, stopped.cpu_seconds) from None
    except ToolTimeout:
        raise SearchRejected(
            f"BLAST was stopped after {round(limit, 1):g} s, the longest one search may run here "
            "(BLAST_TIME_LIMIT, within the platform's function timeout); submit fewer or "
            "shorter queries, or a faster task (megablast)") from None
    except ToolError as error:
        if error.returncode is None or error.returncode < 0:
            raise  # not started, or killed by a signal: worth another attempt
        raise SearchRejected(f"BLAST rejected the search: {error.message}") from None
    blast_seconds = time.monotonic() - started
    with open(archive) as text:
        hits = count_archive_hits(text.read())
    return SearchResult(archive=archive, hits=hits, blast_seconds=blast_seconds,
                        cpu_seconds=run.cpu_seconds)


def format_archive(tools: BlastTools, archive: str, fmt: OutputFormat, db_dir: str,
                   out_path: str) -> None:
    """Write one output format of a search from its archive (`blast_formatter`)."""
    run_tool([tools.path("blast_formatter"), "-archive", archive, "-outfmt", fmt.outfmt,
              "-out", out_path], timeout=tools.time_limit, env={"BLASTDB": db_dir})


_RESULTS = re.compile(r"^\s*results\s*\{", re.MULTILINE)
_IDS = re.compile(r"ids\s*\{")  # no \b, which is forty times slower (blast/archive.py)


def count_archive_hits(archive: str) -> int:
    """Distinct (query, subject) pairs among the alignments of an ASN.1 archive: the `ids`
    of every Seq-align name its query first and its subject second."""
    found = _RESULTS.search(archive)
    if not found:
        return 0
    pairs = set()
    for match in _IDS.finditer(archive, found.end()):
        if archive[match.start() - 1].isalnum():  # a longer word ending in "ids"
            continue
        query, subject = _top_level_items(archive, match.end())[:2]
        pairs.add((query, subject))
    return len(pairs)


def _top_level_items(text: str, start: int) -> list[str]:
    """The comma-separated items of the ASN.1 set that opens just before `start`."""
    items, depth, begin = [], 0, start
    for position in range(start, len(text)):
        char = text[position]
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                items.append(" ".join(text[begin:position].split()))
                return items
            depth -= 1
        elif char == "," and depth == 0:
            items.append(" ".join(text[begin:position].split()))
            begin = position + 1
    raise ValueError("unbalanced braces in the BLAST archive")
