"""FASTA parsing and query validation: pure functions, no I/O."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

NUCLEOTIDE_LETTERS = frozenset("ACGTURYSWKMBDHVN")
PROTEIN_LETTERS = frozenset("ABCDEFGHIKLMNPQRSTUVWYZXJO*")
_CORE_NUCLEOTIDES = frozenset("ACGTUN")
# A query at least this long and at least this share of A, C, G, T, U and N is taken for DNA
# (shorter peptides of only these letters are plausible proteins).
_MIN_LETTERS_TO_JUDGE = 20
_NUCLEOTIDE_SHARE = 0.9
# Control characters (C0, DEL, C1) and Unicode's line and paragraph separators: none stays in
# a header, so canonical FASTA has one line per header whoever splits it into lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_END = re.compile(r"\r\n?|\n")
_LINE_WIDTH = 80
_NAMED_ID_CHARS = 40  # a message names a sequence by at most this much of its id


class FastaError(ValueError):
    """The query is not acceptable; the message says why, for the user."""


@dataclass(frozen=True)
class Sequence:
    header: str
    residues: str

    @property
    def id(self) -> str:
        return self.header.split(maxsplit=1)[0] if self.header.strip() else ""


@dataclass(frozen=True)
class QueryLimits:
    max_bytes: int
    max_sequences: int
    max_letters: int
    max_header_chars: int


def parse(text: str) -> list[Sequence]:
    """Sequences of a FASTA text; a bare sequence without a header is one query. Lines end at
    LF, CR LF or CR only, as the web page reads them: str.splitlines() would also end one at a
    form feed, a file separator or U+2028, turning the rest of a header into residues."""
    return list(sequences_of(_LINE_END.split(text)))


def sequences_of(lines: Iterable[str]) -> Iterator[Sequence]:
    """The sequences of FASTA lines (line ends removed), one at a time (`parse`)."""
    header: str | None = None
    chunks: list[str] = []
    for raw in lines:
        line = raw.strip()
        if line.startswith(">"):
            if header is not None:
                yield Sequence(header, "".join(chunks))
            header = _CONTROL.sub(" ", line[1:]).strip()
            chunks = []
        elif line.startswith(";") or not line:
            continue
        else:
            if header is None:
                header = ""
            chunks.append("".join(line.split()).upper())
    if header is not None:
        yield Sequence(header, "".join(chunks))


def lines_of(chunks: Iterable[bytes], max_line: int) -> Iterator[str]:
    """The text lines of UTF-8 bytes that arrive in chunks, ended as `parse` ends them, never
    holding more than one line and one chunk: FastaError for bytes that are not UTF-8 and for
    a line longer than `max_line` characters. A CR LF split between two chunks makes an extra
    empty line, which FASTA ignores."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending, read, number = "", 0, 0
    for chunk in chunks:
        try:
            text = pending + decoder.decode(chunk)
        except UnicodeDecodeError as error:
            raise FastaError(f"is not UTF-8 text (byte {read + error.start + 1:,})") from None
        read += len(chunk)
        lines = _LINE_END.split(text)
        pending = lines.pop()
        for line in lines:
            number += 1
            if len(line) > max_line:
                raise FastaError(_too_long(number, max_line))
            yield line
        if len(pending) > max_line:
            raise FastaError(_too_long(number + 1, max_line))
    try:
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise FastaError("is not UTF-8 text (it ends inside a character)") from None
    if pending:
        yield pending


def _too_long(number: int, max_line: int) -> str:
    return f"line {number:,} is longer than {max_line:,} characters"


def validate(text: str, molecule: str, limits: QueryLimits) -> list[Sequence]:
    """Parse `text` and check it as a query of `molecule` (`nucleotide` or `protein`)."""
    size = len(text.encode())
    if size > limits.max_bytes:
        raise FastaError(f"is {size} bytes; the limit is {limits.max_bytes}")
    sequences = parse(text)
    if not sequences:
        raise FastaError("holds no sequence")
    if len(sequences) > limits.max_sequences:
        raise FastaError(f"holds {len(sequences)} sequences; the limit is {limits.max_sequences}")
    for index, sequence in enumerate(sequences, start=1):
        check(index, sequence, molecule, limits)
    return sequences


def check(index: int, sequence: Sequence, molecule: str, limits: QueryLimits) -> None:
    """One sequence of a query (number `index`, from 1): FastaError naming it when its header
    or its letters are not acceptable."""
    name = describe(index, sequence)
    if len(sequence.header) > limits.max_header_chars:
        raise FastaError(f"{name}: header has {len(sequence.header)} characters; the limit "
                         f"is {limits.max_header_chars}")
    _check_residues(name, sequence.residues, molecule, limits.max_letters)


def describe(index: int, sequence: Sequence) -> str:
    """How messages name a sequence: by number (from 1) and id, a long id cut short."""
    if not sequence.id:
        return f"sequence {index}"
    shown = sequence.id if len(sequence.id) <= _NAMED_ID_CHARS else \
        sequence.id[:_NAMED_ID_CHARS - 3] + "..."
    return f"sequence {index} ({shown})"


def _check_residues(name: str, residues: str, molecule: str, max_letters: int) -> None:
    if not residues:
        raise FastaError(f"{name} is empty")
    if len(residues) > max_letters:
        raise FastaError(f"{name} has {len(residues)} letters; the limit is {max_letters}")
    letters = set(residues)
    if molecule == "nucleotide":
        foreign = letters - NUCLEOTIDE_LETTERS
        if foreign - PROTEIN_LETTERS:
            raise FastaError(f"{name} has characters that are not sequence letters: "
                             f"{_show(foreign - PROTEIN_LETTERS)}")
        if foreign or _core_share(residues) < 0.5:
            raise FastaError(f"{name} looks like a protein sequence; this program needs "
                             "nucleotides (IUPAC codes)")
    else:
        foreign = letters - PROTEIN_LETTERS
        if foreign:
            raise FastaError(f"{name} has characters outside the protein alphabet: "
                             f"{_show(foreign)}")


def looks_like_nucleotides(residues: str) -> bool:
    """Whether a sequence that passes the protein alphabet is (nearly) all A, C, G, T, U and
    N: blastp or tblastn would search DNA as protein without a word of warning."""
    return len(residues) >= _MIN_LETTERS_TO_JUDGE and _core_share(residues) >= _NUCLEOTIDE_SHARE


def _core_share(residues: str) -> float:
    return sum(residues.count(letter) for letter in _CORE_NUCLEOTIDES) / max(len(residues), 1)


def named(sequences: list[Sequence]) -> list[Sequence]:
    """Each headerless sequence named by its place in the whole query (Query_<n>), as BLAST
    names it, so that the name holds in whichever batch the sequence lands."""
    return [sequence if sequence.header else Sequence(f"Query_{index}", sequence.residues)
            for index, sequence in enumerate(sequences, start=1)]


def _show(characters: set[str]) -> str:
    return " ".join(repr(c) for c in sorted(characters)[:10])


def count_sequences(lines: Iterable[str]) -> int:
    """Sequences in canonical FASTA (as `format_fasta` writes it): one header line each."""
    return sum(1 for line in lines if line.startswith(">"))


def format_fasta(sequences: list[Sequence]) -> str:
    """Canonical FASTA; headerless queries are named Query_<n> so every hit names its query."""
    lines: list[str] = []
    for index, sequence in enumerate(sequences, start=1):
        lines.append(">" + (sequence.header or f"Query_{index}"))
        residues = sequence.residues
        lines.extend(residues[i:i + _LINE_WIDTH] for i in range(0, len(residues), _LINE_WIDTH))
    return "\n".join(lines) + "\n"


# What a file that is no FASTA text begins with, by kind: compressed ones first.
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
               b"\x28\xb5\x2f\xfd": "zstd", b"PK\x03\x04": "zip"}


def check_beginning(head: bytes) -> None:
    """FastaError when the first bytes of a file show it is no FASTA text: compressed,
    binary, not UTF-8, or text whose first line is neither a header nor sequence letters.
    What follows is checked as it is read (`lines_of`)."""
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            raise FastaError(f"is {kind}-compressed; upload it uncompressed")
    if b"\x00" in head:
        raise FastaError("is not text (it holds NUL bytes)")
    for raw in _LINE_END.split(head.decode("utf-8", "replace")):
        line = raw.strip()
        if line and not line.startswith(";"):
            if not (line.startswith(">") or line[0].isalpha() or line[0] in "*-"):
                raise FastaError(f"is not FASTA: its first line begins {line[:20]!r}")
            break
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError as error:
        raise FastaError(f"is not UTF-8 text (byte {error.start + 1:,})") from None
