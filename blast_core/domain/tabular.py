"""The columns of a tabular (`tsv`) result: BLAST+ 2.12's `-outfmt 6` format specifiers, the
only names a request may give, and the result key that a chosen set of columns is stored and
asked for under. Pure logic."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from blast_core.domain.client_input import FieldError, InvalidRequest

# Every `-outfmt 6` specifier of BLAST+ 2.12 (`blastn -help`), with what it means there.
# The taxonomy names (ssciname ... sskingdoms) need NCBI's taxdb beside the databases, and
# taxonomy ids need databases built with them: without, BLAST+ writes N/A and 0.
COLUMNS: dict[str, str] = {
    "qseqid": "Query Seq-id",
    "qgi": "Query GI",
    "qacc": "Query accession",
    "qaccver": "Query accession.version",
    "qlen": "Query sequence length",
    "sseqid": "Subject Seq-id",
    "sallseqid": "All subject Seq-id(s), separated by a ';'",
    "sgi": "Subject GI",
    "sallgi": "All subject GIs",
    "sacc": "Subject accession",
    "saccver": "Subject accession.version",
    "sallacc": "All subject accessions",
    "slen": "Subject sequence length",
    "qstart": "Start of alignment in query",
    "qend": "End of alignment in query",
    "sstart": "Start of alignment in subject",
    "send": "End of alignment in subject",
    "qseq": "Aligned part of query sequence",
    "sseq": "Aligned part of subject sequence",
    "evalue": "Expect value",
    "bitscore": "Bit score",
    "score": "Raw score",
    "length": "Alignment length",
    "pident": "Percentage of identical matches",
    "nident": "Number of identical matches",
    "mismatch": "Number of mismatches",
    "positive": "Number of positive-scoring matches",
    "gapopen": "Number of gap openings",
    "gaps": "Total number of gaps",
    "ppos": "Percentage of positive-scoring matches",
    "frames": "Query and subject frames separated by a '/'",
    "qframe": "Query frame",
    "sframe": "Subject frame",
    "btop": "Blast traceback operations (BTOP)",
    "staxid": "Subject Taxonomy ID",
    "ssciname": "Subject Scientific Name",
    "scomname": "Subject Common Name",
    "sblastname": "Subject Blast Name",
    "sskingdom": "Subject Super Kingdom",
    "staxids": "unique Subject Taxonomy ID(s), separated by a ';' (in numerical order)",
    "sscinames": "unique Subject Scientific Name(s), separated by a ';'",
    "scomnames": "unique Subject Common Name(s), separated by a ';'",
    "sblastnames": "unique Subject Blast Name(s), separated by a ';' (in alphabetical order)",
    "sskingdoms": "unique Subject Super Kingdom(s), separated by a ';' (in alphabetical order)",
    "stitle": "Subject Title",
    "salltitles": "All Subject Title(s), separated by a '<>'",
    "sstrand": "Subject Strand",
    "qcovs": "Query Coverage Per Subject",
    "qcovhsp": "Query Coverage Per HSP",
    "qcovus": "Query Coverage Per Unique Subject (blastn only)",
}

DEFAULT_COLUMNS: tuple[str, ...] = (
    "qseqid", "sseqid", "pident", "length", "mismatch", "gapopen", "qstart", "qend", "sstart",
    "send", "evalue", "bitscore")

TSV = "tsv"
MAX_COLUMN_SETS = 10  # sets of columns other than the default made for one job
_SEPARATORS = re.compile(r"[ ,]+")
_NAME = f"(?:{'|'.join(COLUMNS)})"
# What parse_columns reads, for the API document: names and separators (duplicates aside).
COLUMNS_PATTERN = f"^[ ,]*{_NAME}(?:[ ,]+{_NAME})*[ ,]*$"


def parse_columns(value: str | Iterable[str]) -> tuple[str, ...]:
    """The columns a request names, in its order: a list of names, or one text of names
    separated by commas or spaces (no other white space). Raises InvalidRequest (field
    `columns`) for a name that is not a specifier, a name given twice, or none at all."""
    names = ([name for name in _SEPARATORS.split(value) if name] if isinstance(value, str)
             else list(value))
    if not names:
        raise _invalid("must name at least one column")
    if not all(isinstance(name, str) for name in names):
        raise _invalid("must be a list of column names")
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        shown = unknown[0] if len(unknown[0]) <= 40 else unknown[0][:37] + "..."
        raise _invalid(f"{shown!r} is not a column; choose from {', '.join(COLUMNS)}")
    repeated = sorted(name for name, times in Counter(names).items() if times > 1)
    if repeated:
        raise _invalid(f"names {', '.join(repeated)} more than once")
    return tuple(names)


def result_key(columns: tuple[str, ...] | None) -> str:
    """What a tabular result with these columns is asked for and recorded under: `tsv` for
    the default columns (so that they are made and stored once), else `tsv:` and the
    columns, comma-separated."""
    if not columns or columns == DEFAULT_COLUMNS:
        return TSV
    return f"{TSV}:{','.join(columns)}"


def columns_of(key: str) -> tuple[str, ...]:
    """The columns of a tabular result key (`result_key`'s inverse); raises InvalidRequest
    for a key whose columns are not valid."""
    if key == TSV:
        return DEFAULT_COLUMNS
    if not is_column_set(key):
        raise _invalid(f"{key!r} is not a tabular result")
    return parse_columns(key.partition(":")[2])


def is_column_set(key: str) -> bool:
    """A key of a tabular result with columns other than the default."""
    return key.startswith(f"{TSV}:")


def _invalid(reason: str) -> InvalidRequest:
    return InvalidRequest([FieldError("columns", reason)])
