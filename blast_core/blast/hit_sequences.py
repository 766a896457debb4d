"""The sequences of a job's hits, from its databases with `blastdbcmd -entry_batch` (a range
for a region), or from its own subject sequences.

A tabular line does not say how blastdbcmd finds its subject: in a database built without
`-parse_seqids` its `sseqid` is the first word of a title, which blastdbcmd cannot look up.
The archive does: each Seq-align names its subject second in its first `ids`, by ordinal
(`general { db "BL_ORD_ID", tag id N }`, across the databases searched together, in the order
named, as blastdbcmd numbers them too), by accession, or as `local str "Subject_N"` for
`-subject` sequences. blast_formatter writes the tabular lines in the archive's order of
query and subject, one per HSP (a Seq-align for blastn and blastp; several HSPs may share one
for tblastx); so the runs of lines of one query and subject are read beside the runs of
Seq-aligns of one query and subject."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from blast_core.blast.archive_layout import read_archives
from blast_core.blast.asn_text import block_end, children, items, label, named
from blast_core.blast.programs import run_tool
from blast_core.blast.search import BlastTools
from blast_core.domain import fasta
from blast_core.domain.hit_selection import Hit, Region

TABLE_COLUMNS = ("qseqid", "sseqid", "sstart", "send", "slen")
_FIRST_IDS = re.compile(r"ids\s*\{")  # no \b: see blast/archive.py
_ORDINAL = re.compile(r'general \{ db "BL_ORD_ID", tag id (\d+) \}')
_GENERAL = re.compile(r'general \{ db "([^"|]+)", tag (?:id (\d+)|str "([^"|]+)") \}')
_LOCAL = re.compile(r'local (?:str "([^"|]+)"|id (\d+))')
_GI = re.compile(r"gi (\d+)")
_ACCESSION = re.compile(r'[a-z-]+ \{ (?:name "[^"]*", )?accession "([^"|]+)"'
                        r'(?:, (?:release "[^"]*", )?version (\d+))?')
SUBJECT = re.compile(r"lcl\|Subject_(\d+)")


def alignment_ids(text: str) -> list[tuple[str, str]]:
    """The query and subject Seq-ids of each Seq-align of an archive's text, in order (ASN.1
    text, white space collapsed)."""
    archives, ends = read_archives(text)
    found = []
    for archive in archives:
        results = named(text, archive.top, "results")
        if results is None:
            continue
        for part in children(text, results, "results", ends):
            if label(text, part) != ["alignments"]:
                continue
            for entry in children(text, part, "alignments", ends):
                match = _FIRST_IDS.search(text, entry.start, entry.end)
                while match and text[match.start() - 1].isalnum():
                    match = _FIRST_IDS.search(text, match.end(), entry.end)
                if match is None:
                    raise ValueError(f"the alignment at offset {entry.start} has no ids")
                brace = match.end() - 1
                ids = items(text, brace, block_end(text, brace, ends), ends)
                found.append(tuple(" ".join(text[item.start:item.end].split())
                                   for item in ids[:2]))
    return found


def entry_of(seq_id: str) -> str:
    """How blastdbcmd's -entry names a Seq-id of an archive (`lcl|Subject_N` for the Nth
    `-subject` sequence); ValueError for a kind it cannot look up."""
    if found := _ORDINAL.fullmatch(seq_id):
        return f"gnl|BL_ORD_ID|{found.group(1)}"
    if found := _GENERAL.fullmatch(seq_id):
        return f"gnl|{found.group(1)}|{found.group(2) or found.group(3)}"
    if found := _LOCAL.fullmatch(seq_id):
        return f"lcl|{found.group(1) or found.group(2)}"
    if found := _GI.fullmatch(seq_id):
        return f"gi|{found.group(1)}"
    if found := _ACCESSION.match(seq_id):
        return found.group(1) + (f".{found.group(2)}" if found.group(2) else "")
    raise ValueError(f"a subject id blastdbcmd cannot look up: {seq_id[:80]}")


def hits_of(archive_text: str, table: str) -> list[Hit]:
    """The hits of one archive: its tabular lines (TABLE_COLUMNS), each run of one query and
    subject beside the archive's run of Seq-aligns of one query and subject."""
    subjects = [subject for _, subject in _runs(alignment_ids(archive_text))]
    lines = [line.split("\t") for line in table.splitlines()]
    runs = _runs((query, subject) for query, subject, *_ in lines)
    if len(runs) != len(subjects):
        raise ValueError(f"{len(runs)} query-subject pairs in the tabular lines, "
                         f"{len(subjects)} in the archive")
    entries = [entry_of(subject) for subject in subjects]
    hits, run = [], -1
    for position, (query, subject, sstart, send, slen) in enumerate(lines):
        if position == 0 or lines[position - 1][:2] != [query, subject]:
            run += 1
        hits.append(Hit(query, subject, int(sstart), int(send), int(slen), entries[run]))
    return hits


def _runs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs with each run of equal ones made one."""
    runs: list[tuple[str, str]] = []
    for pair in pairs:
        if not runs or runs[-1] != pair:
            runs.append(pair)
    return runs


def fetch(tools: BlastTools, regions: list[Region], db_paths: list[str], workdir: str,
          out_path: str) -> None:
    """The FASTA of these regions of the databases searched together, as blastdbcmd writes
    it, in their order."""
    batch = os.path.join(workdir, "entries.txt")
    with open(batch, "w") as lines:
        lines.writelines(f"{region.entry}\n" if region.start is None else
                         f"{region.entry} {region.start}-{region.end}\n" for region in regions)
    db_dirs = list(dict.fromkeys(os.path.dirname(path) for path in db_paths))
    run_tool([tools.path("blastdbcmd"), "-db", " ".join(map(os.path.basename, db_paths)),
              "-entry_batch", batch, "-out", out_path], timeout=tools.time_limit,
             env={"BLASTDB": ":".join(db_dirs)})


def cut_subjects(subject_fasta: str, regions: list[Region], out_path: str) -> None:
    """The FASTA of these regions of a job's own subject sequences (`lcl|Subject_N`, the Nth),
    headed as blastdbcmd heads a range (`>:from-to title`)."""
    sequences = fasta.parse(subject_fasta)
    with open(out_path, "w") as out:
        for region in regions:
            found = SUBJECT.fullmatch(region.entry)
            if not found:
                raise ValueError(f"not a subject sequence: {region.entry}")
            sequence = sequences[int(found.group(1)) - 1]
            residues = sequence.residues
            header = sequence.header
            if region.start is not None:
                residues = residues[region.start - 1:region.end]
                header = f":{region.start}-{region.end} {header}"
            out.write(fasta.format_fasta([fasta.Sequence(header, residues)]))
