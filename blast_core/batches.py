"""Fan-out and fan-in of large jobs: pure functions, no I/O.

A job's queries are split into batches by letters, in the spirit of ElasticBLAST's batch-len
(a sequence is never split), and each batch is searched on its own. Because a query's
e-values depend only on its own length and the database's size, splitting the QUERIES leaves
every hit unchanged. The per-batch results of one format are merged back in query order, with
BLAST's own query numbering (Query_1, Query_2, ...) continued across batches, so that the
merge reads as one search over the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from blast_core.fasta import Sequence

# Letters per batch when BLAST_BATCH_LETTERS is 0: ElasticBLAST's batch-len for the protein
# programs; for blastn, a tenth of its 5,000,000, so that a big 16S set spreads over instances.
DEFAULT_BATCH_LETTERS = {"blastn": 500_000, "blastp": 10_000, "blastx": 20_000,
                         "tblastn": 10_000, "tblastx": 20_000}


def batch_letters(program: str, setting: int) -> int:
    return setting or DEFAULT_BATCH_LETTERS.get(program, DEFAULT_BATCH_LETTERS["blastn"])


def split(sequences: list[Sequence], max_letters: int) -> list[list[Sequence]]:
    """Consecutive batches of at most `max_letters` letters; a longer sequence is alone."""
    batches: list[list[Sequence]] = []
    current: list[Sequence] = []
    letters = 0
    for sequence in sequences:
        if current and letters + len(sequence.residues) > max_letters:
            batches.append(current)
            current, letters = [], 0
        current.append(sequence)
        letters += len(sequence.residues)
    if current:
        batches.append(current)
    return batches


def merge(format_name: str, parts: list[Iterable[str]], queries_before: list[int]) -> Iterator[str]:
    """Lines of one result format merged from per-batch parts (each an iterable of lines with
    their line ends); `queries_before[i]` is how many queries come before batch i."""
    if len(parts) == 1:
        yield from parts[0]
        return
    merger = {"tsv": _merge_tsv, "json": _merge_json, "xml": _merge_xml,
              "xml2": _merge_xml2, "text": _merge_text}[format_name]
    yield from merger([list(part) for part in parts], queries_before)


def _merge_tsv(parts: list[list[str]], queries_before: list[int]) -> Iterator[str]:
    for part in parts:
        yield from part


_QUERY_NUMBER = re.compile(r"Query_(\d+)")


def _renumber(line: str, offset: int) -> str:
    if not offset or "Query_" not in line:
        return line
    return _QUERY_NUMBER.sub(lambda m: f"Query_{int(m.group(1)) + offset}", line)


def _merge_json(parts: list[list[str]], queries_before: list[int]) -> Iterator[str]:
    """`{"BlastOutput2": [report, ...]}`: the reports of every batch in one list."""
    for index, (part, offset) in enumerate(zip(parts, queries_before, strict=True)):
        if index:
            yield ",\n"
        start = 0 if index == 0 else _first(part, lambda line: line.strip() == "{", after=1)
        yield from (_renumber(line, offset) for line in part[start:_last_line(part, "]")])
    yield from parts[0][_last_line(parts[0], "]"):]


_ITERATION_NUMBER = re.compile(r"<Iteration_iter-num>(\d+)</Iteration_iter-num>")


def _merge_xml(parts: list[list[str]], queries_before: list[int]) -> Iterator[str]:
    """BLAST XML: the first batch's head, every batch's `<Iteration>`s renumbered, the tail."""
    for index, (part, offset) in enumerate(zip(parts, queries_before, strict=True)):
        start = 0 if index == 0 else _first_line(part, "<Iteration>")
        for line in part[start:_first_line(part, "</BlastOutput_iterations>")]:
            line = _ITERATION_NUMBER.sub(
                lambda m, shift=offset: f"<Iteration_iter-num>{int(m.group(1)) + shift}"
                                        "</Iteration_iter-num>", line)
            yield _renumber(line, offset)
    yield from parts[0][_first_line(parts[0], "</BlastOutput_iterations>"):]


def _merge_xml2(parts: list[list[str]], queries_before: list[int]) -> Iterator[str]:
    """BLAST XML2: the first batch's head, every batch's `<BlastOutput2>` reports, the tail."""
    for index, (part, offset) in enumerate(zip(parts, queries_before, strict=True)):
        if index:
            yield "\n"
        start = 0 if index == 0 else _first_line(part, "<BlastOutput2>")
        yield from (_renumber(line, offset) for line in part[start:_last_line(part, "</BlastXML2>")])
    yield from parts[0][_last_line(parts[0], "</BlastXML2>"):]


def _merge_text(parts: list[list[str]], queries_before: list[int]) -> Iterator[str]:
    """Pairwise text: the first batch's header, every batch's `Query=` sections, one footer."""
    def footer(part: list[str]) -> int:
        return _last(part, lambda line: line.startswith("  Database:"))

    for index, part in enumerate(parts):
        start = 0 if index == 0 else _first(part, lambda line: line.startswith("Query="))
        yield from part[start:footer(part)]
    yield from parts[0][footer(parts[0]):]


def _first(lines: list[str], wanted: Callable[[str], bool], after: int = 0) -> int:
    return next(i for i in range(after, len(lines)) if wanted(lines[i]))


def _last(lines: list[str], wanted: Callable[[str], bool]) -> int:
    return next(i for i in range(len(lines) - 1, -1, -1) if wanted(lines[i]))


def _first_line(lines: list[str], text: str) -> int:
    return _first(lines, lambda line: line.strip() == text)


def _last_line(lines: list[str], text: str) -> int:
    return _last(lines, lambda line: line.strip() == text)
