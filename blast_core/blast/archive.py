"""Splitting the archive of one BLAST run over several members' queries into one archive per member.

Coalesced jobs (same program, database and options) are searched in one `blastn ... -outfmt 11`
run over their concatenated query files. The run writes ASN.1 text `Blast4-archive`s; this
module cuts them into one archive file per member, as if that member's queries had been searched
alone, so that `blast_formatter -archive member.asn` formats that member's results only. Pure
text: no BLAST, no files. How BLAST+ writes the archives, and how they are read: see
`archive_layout.py`.

A member's file holds the run's archives that hold its queries (one, unless its queries straddle
a batch boundary), each keeping only the member's `seq` entries, Seq-aligns, masks and query-mask
options, in the original order, with query ids renumbered `Query_1..Query_k` across the member's
archives (only `local str "Query_N"` tokens are rewritten, never titles). Its first archive
gets the run's messages that concern the member, from all archives: a message naming (by title)
a query of another member and none of this member's is dropped; messages naming no query go to
every member. The messages-only archive of -mt_mode 1 is dropped (its messages moved so).

`ka-blocks`, `search-stats` and `EffectiveSearchSpace` are kept as they are: BLAST+ archives one
set per archive, its first query's (effective search space, length adjustment, Karlin-Altschul
values), as any multi-query archive does. A member's archive thus reports the batch's first
query's effective search space and length adjustment in formats that show them (pairwise footer,
JSON/XML `stat`); hits, scores and e-values (computed per query by the search) are the member's
own.

Limits: messages are free text, kept verbatim (a `Query_N` in one keeps the combined run's
number); the FASTA reader's ("Ignoring invalid residues ... On line 4: ...") name a line of the
concatenated file and no title, so every member gets them. Coalescing itself is neutral for
blastn and megablast (each query's hits, scores and e-values are those of a search alone), not
quite for tblastx, whose sum-statistics e-values differ slightly in a multi-query run
(8.45e-42 for 8.48e-42): BLAST's doing, the same in the combined run's own output.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from blast_core.blast.archive_layout import QUERY_ID, Archive, no_queries, read_archives
from blast_core.blast.asn_text import Item, children, decode, label, named, with_items

__all__ = ["split_archive"]

# No \b before "ids": it would make every position a candidate, forty times slower; a match
# inside a longer word is skipped instead.
_FIRST_ID = re.compile(r'ids\s*\{\s*(?:local\s+str\s+"Query_(\d+)")?')
_STRING = re.compile(r'"([^"]*(?:""[^"]*)*)"')
_WORD = re.compile(r"\w")


def _names(message: str, title: str) -> bool:
    """Whether `message` names `title`: contains it, not glued to letters or digits on a side
    where the title itself begins or ends with one (`seq1` is not named by `seq10`)."""
    if not title:
        return False
    head, tail = bool(_WORD.match(title[0])), bool(_WORD.match(title[-1]))
    position = message.find(title)
    while position >= 0:
        after = position + len(title)
        if not (head and position > 0 and _WORD.match(message[position - 1])) and not (
                tail and after < len(message) and _WORD.match(message[after])):
            return True
        position = message.find(title, position + 1)
    return False


def _add_messages(text: str, ends: dict[int, int], archives: list[Archive],
                  titles: list[set[str]]) -> None:
    """Each member's messages, from every archive of the run, in its first archive (BLAST
    writes the application's messages in the first only). A message naming (by title) a
    query of another member and none of the member's is not its."""
    pooled: list[list[str]] = [[] for _ in range(len(titles))]
    for archive in archives:
        if archive.messages is None:
            continue
        for entry in children(text, archive.messages, "messages", ends):
            said = " ".join(decode(raw) for raw in _STRING.findall(text, entry.start, entry.end))
            naming = {member for member, own in enumerate(titles)
                      if any(_names(said, title) for title in own)}
            for member in range(len(titles)):
                if not naming or member in naming:
                    pooled[member].append(text[entry.start:entry.end])
    first: dict[int, Archive] = {}
    for archive in archives:
        for member in sorted(archive.members):
            first.setdefault(member, archive)
    for archive in archives:
        if not archive.entries:
            continue  # messages only: they are in the members' first archives
        # The messages item with the comma before it, or where it would go (at the end).
        if archive.messages is None:
            start = end = archive.top[-1].end
        else:
            index = archive.top.index(archive.messages)
            if index == 0:
                raise ValueError(f"the archive at offset {archive.start} begins with messages")
            start, end = archive.top[index - 1].end, archive.messages.end
        archive.edits.append((start, end, [
            ",\n  messages {\n    " + ",\n    ".join(pooled[member]) + "\n  }"
            if first.get(member) is archive and pooled[member] else ""
            for member in range(len(titles))]))


class _Split:
    """The archives of a run read once; `member_text(m)` writes member m's."""

    def __init__(self, text: str, counts: list[int]) -> None:
        if not counts or any(not isinstance(count, int) or count < 1 for count in counts):
            raise ValueError(f"counts must be positive query counts, not {counts!r}")
        self.text = text
        self.members = len(counts)
        self.owner: list[int] = []  # query index in the run -> member
        self.renumbered: list[int] = []  # query index in the run -> its number in its member
        for member, count in enumerate(counts):
            self.owner += [member] * count
            self.renumbered += range(1, count + 1)
        self.titles: list[set[str]] = [set() for _ in counts]
        self.archives, self.ends = read_archives(text)
        searches = [archive for archive in self.archives if archive.entries]
        total = sum(len(archive.entries) for archive in searches)
        if total != len(self.owner):
            raise ValueError(f"the archive holds {total} queries, the counts add up to "
                             f"{len(self.owner)}")
        base = 0
        for archive in searches:
            archive.base = base
            base += len(archive.entries)
            self._search(archive)
        _add_messages(text, self.ends, self.archives, self.titles)

    # -- a search's archive ---------------------------------------------------------------

    def _search(self, archive: Archive) -> None:
        """Each member's part of a search's archive: its queries, options, alignments, masks."""
        text = self.text
        self.archive = archive
        request = named(text, archive.top, "request")
        results = named(text, archive.top, "results")
        for item in archive.top:
            if item not in (request, results, archive.messages):
                no_queries(text, item, "archive")
        parts = self._children(request, "request")
        body = named(text, parts, "body")
        for part in parts:
            if part != body:
                no_queries(text, part, "request")
        for part in self._children(body, "queue-search"):
            words = label(text, part)
            if words and words[0] == "queries":
                self._seqs(part)
            elif words and words[0].endswith("-options") and part.brace >= 0:
                self._filter(part, "option", self._options_owner)
            else:
                no_queries(text, part, "queue-search")
        if results is not None:
            for part in self._children(results, "results"):
                words = label(text, part)
                if words == ["alignments"]:
                    self._alignments(part)
                elif words == ["masks"]:
                    self._filter(part, "mask", self._entry_owner)
                else:
                    no_queries(text, part, "results")

    def _seqs(self, queries: Item) -> None:
        text, archive = self.text, self.archive
        bioseq_set = self._children(queries, "queries")
        seq_set = named(text, bioseq_set, "seq-set")
        for part in bioseq_set:
            if part != seq_set:
                no_queries(text, part, "queries")
        pieces: list[list[str]] = [[] for _ in range(self.members)]
        for index, entry in enumerate(archive.entries):
            member = self.owner[archive.base + index]
            archive.members.add(member)
            fields = self._children(entry, "seq")
            ids = named(text, fields, "id")
            descr = named(text, fields, "descr")
            if descr is not None and descr.brace >= 0:
                for item in self._children(descr, "descr"):
                    if label(text, item)[:1] == ["title"]:
                        raw = _STRING.search(text, item.start, item.end)
                        if raw is not None and raw.group(1):
                            self.titles[member].add(decode(raw.group(1)))
            pieces[member].append(text[entry.start:ids.start] + self._renumber(
                text[ids.start:ids.end]) + text[ids.end:entry.end])
        self._edit(seq_set, archive.entries, pieces)

    def _alignments(self, alignments: Item) -> None:
        text = self.text
        entries = self._children(alignments, "alignments")
        pieces: list[list[str]] = [[] for _ in range(self.members)]
        for entry in entries:
            queries = set()
            for found in _FIRST_ID.finditer(text, entry.start, entry.end):
                if text[found.start() - 1].isalnum():
                    continue
                if found.group(1) is None:
                    raise ValueError(f"the alignment at offset {entry.start} names no query first "
                                     "in its ids")
                queries.add(int(found.group(1)))
            if not queries:
                raise ValueError(f"the alignment at offset {entry.start} has no ids")
            member = self._owner(queries, "the alignment", entry.start)
            # Only the query's own tokens: a subject may have a local id that looks alike.
            pieces[member].append(self._renumber(text[entry.start:entry.end], queries))
        self._edit(alignments, entries, pieces)

    # -- helpers --------------------------------------------------------------------------

    def _children(self, item: Item, what: str) -> list[Item]:
        return children(self.text, item, what, self.ends)

    def _owner(self, queries: set[int], what: str, offset: int) -> int:
        """The one member the queries of numbers `queries` (in the current archive) belong to."""
        archive, members = self.archive, set()
        for number in queries:
            if not archive.first <= number < archive.first + len(archive.entries):
                raise ValueError(f"{what} at offset {offset} names Query_{number}, not a query "
                                 "of its archive")
            members.add(self.owner[archive.base + number - archive.first])
        if len(members) > 1:
            raise ValueError(f"{what} at offset {offset} names queries of several members: "
                             + ", ".join(f"Query_{n}" for n in sorted(queries)))
        return members.pop()

    def _entry_owner(self, entry: Item, what: str) -> int | None:
        """The member whose queries an entry (a mask, a query-mask option) names."""
        queries = {int(found.group(2)) for found in QUERY_ID.finditer(self.text, entry.start, entry.end)}
        if not queries:
            raise ValueError(f"the {what} at offset {entry.start} names no query")
        return self._owner(queries, f"the {what}", entry.start)

    def _options_owner(self, entry: Item, what: str) -> int | None:
        """An option naming queries (an LCaseMask) belongs to their member; others to all."""
        if QUERY_ID.search(self.text, entry.start, entry.end) is None:
            return None
        return self._entry_owner(entry, what)

    def _filter(self, block: Item, what: str, owner_of: Callable[[Item, str], int | None]) -> None:
        """Each member keeps the block's entries that are its own (renumbered) or everyone's."""
        text = self.text
        entries = self._children(block, f"{what}s")
        pieces: list[list[str]] = [[] for _ in range(self.members)]
        for entry in entries:
            member = owner_of(entry, what)
            if member is None:
                for chosen in pieces:
                    chosen.append(text[entry.start:entry.end])
            else:
                pieces[member].append(self._renumber(text[entry.start:entry.end]))
        self._edit(block, entries, pieces)

    def _renumber(self, piece: str, only: set[int] | None = None) -> str:
        """`piece` with its `local str "Query_N"` (those of `only` if given) numbered in their
        member."""
        archive = self.archive

        def replace(found: re.Match[str]) -> str:
            number = int(found.group(2))
            if only is not None and number not in only:
                return found.group()
            index = archive.base + number - archive.first
            return f"{found.group(1)}{self.renumbered[index]}{found.group(3)}"
        return QUERY_ID.sub(replace, piece)

    def _edit(self, block: Item, entries: list[Item], pieces: list[list[str]]) -> None:
        self.archive.edits.append((block.brace, block.brace_end + 1,
                                   [with_items(self.text, block, entries, chosen) for chosen in pieces]))

    def member_text(self, member: int) -> str:
        """Member `member`'s archives: those of its queries, each with its edits for it."""
        out = [self.text[:self.archives[0].start]]
        for archive in self.archives:
            if member not in archive.members:
                continue
            position = archive.start
            for start, end, replacements in sorted(archive.edits, key=lambda edit: edit[0]):
                out += [self.text[position:start], replacements[member]]
                position = end
            out.append(self.text[position:archive.end])
        return "".join(out)


def split_archive(text: str, counts: list[int]) -> list[str]:
    """The combined archive `text` of one run over consecutive members' queries, split into one
    archive per member; `counts[i]` is how many queries member i has, in the order they were
    concatenated. Raises ValueError when the archive is not as expected (query count mismatch,
    an alignment or mask naming an unknown query, ...).

    `text` is the whole `-outfmt 11` output, which may hold several archives (one per query
    batch); so may a member's."""
    split = _Split(text, list(counts))
    return [split.member_text(member) for member in range(split.members)]
