"""The ASN.1 text `Blast4-archive`s of one BLAST run, located and their queries checked, for
`archive.py` to split. Pure text: no BLAST, no files.

What BLAST+ 2.12 writes (checked against real runs, see tests/test_archive_split.py):

- One `Blast4-archive ::= {...}` per batch of queries, one after the other in query order in
  the same file (blast_formatter reads them all). The first batches are small: 20 queries of 900
  bases make two archives (6 + 14 queries), 6,000 make five. Query ids go on from one batch to
  the next (`Query_7` starts the second) except with `-mt_mode 1`, where they start again from
  `Query_1` in each thread's batches, and where one more archive (`body get-request-info
  {request-id "Error"}`, empty results) may end the file with messages.
- `request { ..., body queue-search { ..., queries bioseq-set { seq-set { seq {...}, ... } },
  subject database "...", algorithm-options {...}, program-options {...} } }`. Without
  `-parse_deflines` every query's id is `local str "Query_N"`, N from 1 in file order, whatever
  its defline (`>Query_1 x`, `>lcl|abc`, `>gi|123|ref|NC_1.1|` alike); the defline is only in
  `descr` (`title "..."` and a `CFastaReader` user object). Users' deflines may therefore
  collide across members; the ids never do.
- `program-options` holds one `LCaseMask` entry per masked query (its `query-mask` names the
  query); `algorithm-options` holds `EffectiveSearchSpace`, the first query's.
- `results { alignments { {Seq-align}, ... }, masks { {locations {...}, frame plus1}, ... },
  ka-blocks {...}, search-stats {...} }`. `alignments { }` and `masks { }` are written even when
  empty (no query hit anything; nothing was masked); a query without hits just has no Seq-align.
  A Seq-align names its query first in every `ids { }` (`denseg` for blastn, `std` segs, one
  `ids` per segment, for tblastx), its subject second.
- `messages { {code N, message "..."}, ... }`, absent when there is none: the application's
  warnings (option checks, the FASTA reader's complaints, "[Query 1-20] ..." with -mt_mode 1),
  in the first archive only. BLAST+ 2.12 does not archive per-query search warnings
  ("Query_1 x: Could not calculate ungapped Karlin-Altschul ...").
- Strings longer than the line are wrapped with a bare newline, which is not part of the value;
  `""` is an escaped quote (never split by a wrap). Braces may occur inside strings; hex strings
  (`'0F1A'H`) hold hex digits and newlines only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from blast_core.blast.asn_text import Item, children, index_blocks, items, label, named

__all__ = ["QUERY_ID", "Archive", "no_queries", "read_archives"]

QUERY_ID = re.compile(r'(local\s+str\s+"Query_)(\d+)(")')
_HEADER = re.compile(r"\s*Blast4-archive\s*::=\s*\{")
# Blocks indexed in the one pass over the archive: it, results, alignments, each Seq-align.
_INDEXED_DEPTH = 4


@dataclass
class Archive:
    """One `Blast4-archive ::= {...}` of the text, from its first letter to the next one's (or
    the end). A search's: its queries are those of numbers first.. (`local str "Query_N"`) and
    global indices base.. of the run; an archive of messages only has none."""

    start: int
    end: int
    top: list[Item]
    entries: list[Item] = field(default_factory=list)  # its `seq` entries
    base: int = 0
    first: int = 1
    messages: Item | None = None
    members: set[int] = field(default_factory=set)  # the members it goes to
    edits: list[tuple[int, int, list[str]]] = field(default_factory=list)


def read_archives(text: str) -> tuple[list[Archive], dict[int, int]]:
    """The run's archives, and where each block indexed in them closes (for `asn_text`).
    BLAST+ writes one per batch of queries (the first batches are small: 20 queries of 900
    bases make two), and with -mt_mode 1 one more of messages."""
    archives: list[Archive] = []
    ends: dict[int, int] = {}
    position = 0
    while True:
        header = _HEADER.match(text, position)
        if header is None:
            if archives and not text[position:].strip():
                break
            raise ValueError("not an ASN.1 text Blast4-archive" if not archives else
                             f"text follows the archive at offset {position}")
        brace = header.end() - 1
        close, indexed = index_blocks(text, brace, _INDEXED_DEPTH)
        ends.update(indexed)
        start = header.end() - len(header.group().lstrip())
        if archives:
            archives[-1].end = start
        archives.append(_archive(text, ends, start, brace, close))
        position = close + 1
    archives[-1].end = len(text)
    return archives, ends


def _archive(text: str, ends: dict[int, int], start: int, brace: int, close: int) -> Archive:
    top = items(text, brace, close, ends)
    archive = Archive(start, close + 1, top)
    request = named(text, top, "request")
    if request is None:
        raise ValueError(f"the archive at offset {start} has no request")
    archive.messages = named(text, top, "messages")
    body = named(text, children(text, request, "request", ends), "body")
    if body is not None and label(text, body) == ["body", "queue-search"]:
        _queries(text, ends, archive, body)
        return archive
    # Not a search (-mt_mode 1's `get-request-info` "Error"): only its messages count.
    results = named(text, top, "results")
    if results is not None and children(text, results, "results", ends):
        raise ValueError(f"the archive at offset {start} has results but no search")
    for item in top:
        no_queries(text, item, "an archive without search")
    return archive


def _queries(text: str, ends: dict[int, int], archive: Archive, body: Item) -> None:
    """The search's `seq` entries into `archive`, checked numbered `Query_N` in sequence."""
    queries = named(text, children(text, body, "queue-search", ends), "queries")
    if queries is None:
        raise ValueError(f"the archive at offset {archive.start} has no queries")
    if label(text, queries) != ["queries", "bioseq-set"]:
        raise ValueError(f"queries are not a bioseq-set: {' '.join(label(text, queries))}")
    seq_set = named(text, children(text, queries, "queries", ends), "seq-set")
    if seq_set is None:
        raise ValueError("the queries have no seq-set")
    archive.entries = children(text, seq_set, "seq-set", ends)
    for index, entry in enumerate(archive.entries):
        if label(text, entry) != ["seq"]:
            raise ValueError(f"a query is not a seq: {' '.join(label(text, entry))}")
        ids = named(text, children(text, entry, "seq", ends), "id")
        found = None if ids is None else QUERY_ID.fullmatch(
            " ".join(text[ids.brace + 1:ids.brace_end].split()))
        if index == 0 and found is not None:
            archive.first = int(found.group(2))
        if found is None or int(found.group(2)) != archive.first + index:
            raise ValueError(f"query {index + 1} of the archive at offset {archive.start} has "
                             "not the id local str \"Query_N\" in sequence (were the queries "
                             "read with -parse_deflines?)")


def no_queries(text: str, item: Item, where: str) -> None:
    """Raise ValueError if `item` names a query: the split would leave it unchanged."""
    if QUERY_ID.search(text, item.start, item.end):
        raise ValueError(f"unexpected query reference in {where}: "
                         f"{' '.join(label(text, item)) or 'an item'}")
