"""Fan-out and fan-in of large jobs: pure functions, no I/O.

A job's queries are split into batches by letters (`tuning.batch_letters`: ElasticBLAST's
batch-len, and the time a batch may take; a sequence is never split), and each batch is
searched on its own. Because a query's
e-values depend only on its own length and the database's size, splitting the QUERIES leaves
every hit unchanged. The per-batch results of one format are merged back in query order, with
BLAST's own query numbering (Query_1, Query_2, ...) continued across batches, so that the
merge reads as one search over the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from blast_core.domain.fasta import Sequence


def split(sequences: list[Sequence], max_letters: int) -> list[list[Sequence]]:
    """Consecutive batches of at most `max_letters` letters; a longer sequence is alone."""
    return list(split_stream(sequences, max_letters))


def split_stream(sequences: Iterable[Sequence], max_letters: int) -> Iterator[list[Sequence]]:
    """`split` of sequences read one at a time, holding one batch at most."""
    current: list[Sequence] = []
    letters = 0
    for sequence in sequences:
        if current and letters + len(sequence.residues) > max_letters:
            yield current
            current, letters = [], 0
        current.append(sequence)
        letters += len(sequence.residues)
    if current:
        yield current


def merge(format_name: str, parts: list[Iterable[str]], queries_before: list[int]) -> Iterator[str]:
    """Lines of one result format merged from per-batch parts (each an iterable of lines with
    their line ends, read once, front to back); `queries_before[i]` is how many queries come
    before batch i. Streams: it holds a part's closing lines, never a whole part."""
    if len(parts) == 1:
        yield from parts[0]
        return
    start, end, separator = _LAYOUT[format_name]
    tail: list[str] = []
    for index, (part, offset) in enumerate(zip(parts, queries_before, strict=True)):
        lines = iter(part)
        if index:
            if separator:
                yield separator
            lines = _from_first(lines, start)
        body = _until_last(lines, end, tail if index == 0 else [])
        yield from (_renumber(line, offset, format_name) for line in body)
    yield from tail


# format -> (the line that opens a batch's own part, the line that opens the closing lines
# every part repeats, what goes between two parts). Each is whole and unindented in BLAST+'s
# output, so nothing inside a report matches it.
_LAYOUT: dict[str, tuple[Callable[[str], bool], Callable[[str], bool], str]] = {
    "tsv": (lambda line: True, lambda line: False, ""),
    "json": (lambda line: line.rstrip("\n") == "{", lambda line: line.rstrip("\n") == "]",
             ",\n"),
    "xml": (lambda line: line.rstrip("\n") == "<Iteration>",
            lambda line: line.rstrip("\n") == "</BlastOutput_iterations>", ""),
    "xml2": (lambda line: line.rstrip("\n") == "<BlastOutput2>",
             lambda line: line.rstrip("\n") == "</BlastXML2>", "\n"),
    "text": (lambda line: line.startswith("Query="),
             lambda line: line.startswith("  Database:"), ""),
}


def _from_first(lines: Iterator[str], wanted: Callable[[str], bool]) -> Iterator[str]:
    """The lines from the first that is `wanted` on (a JSON part's first report opens after
    its own first line, which is also "{")."""
    first = True
    for line in lines:
        if wanted(line) and not (first and line.rstrip("\n") == "{"):
            yield line
            yield from lines
            return
        first = False


def _until_last(lines: Iterable[str], closing: Callable[[str], bool],
                tail: list[str]) -> Iterator[str]:
    """The lines before the last `closing` one; that line and the rest go into `tail`. Only
    the lines since the latest `closing` line are held back."""
    held: list[str] = []
    for line in lines:
        if closing(line):
            yield from held
            held = [line]
        elif held:
            held.append(line)
        else:
            yield line
    tail.extend(held)


_QUERY_NUMBER = re.compile(r"Query_(\d+)")
_ITERATION_NUMBER = re.compile(r"<Iteration_iter-num>(\d+)</Iteration_iter-num>")


def _renumber(line: str, offset: int, format_name: str) -> str:
    """BLAST numbers a batch's queries from Query_1 (and XML iterations from 1): continue the
    numbering of the batches before."""
    if not offset or format_name in ("tsv", "text"):
        return line
    if format_name == "xml" and "<Iteration_iter-num>" in line:
        line = _ITERATION_NUMBER.sub(
            lambda m: f"<Iteration_iter-num>{int(m.group(1)) + offset}</Iteration_iter-num>", line)
    if "Query_" not in line:
        return line
    return _QUERY_NUMBER.sub(lambda m: f"Query_{int(m.group(1)) + offset}", line)
