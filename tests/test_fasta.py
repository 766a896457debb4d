"""FASTA parsing and query checks: pure functions."""

import pytest

from blast_core.domain import fasta

LIMITS = fasta.QueryLimits(max_bytes=10_000, max_sequences=3, max_letters=100,
                           max_header_chars=50)


def test_parses_headers_wrapped_lines_comments_and_case():
    text = ">s1 first one\nacgt\nAC GT\n;comment\n\n>s2\nNNNN\n"
    assert fasta.parse(text) == [fasta.Sequence("s1 first one", "ACGTACGT"),
                                 fasta.Sequence("s2", "NNNN")]
    assert fasta.parse(text)[0].id == "s1"


def test_a_bare_sequence_is_one_query_named_in_canonical_fasta():
    sequences = fasta.validate("ACGTACGT\nACGT\n", "nucleotide", LIMITS)
    assert fasta.format_fasta(sequences) == ">Query_1\nACGTACGTACGT\n"


@pytest.mark.parametrize("separator", ["\x0c", "\x0b", "\x1c", "\x1e", "\x85", "\u2028",
                                       "\u2029"])
def test_only_lf_and_cr_end_a_line_and_no_line_break_stays_in_a_header(separator):
    # str.splitlines() ends a line at each of these: the header's rest would become residues.
    text = f">q1 first{separator}MK@]\r\nACGT\rAC{separator}GT\n"
    assert fasta.parse(text) == [fasta.Sequence("q1 first MK@]", "ACGTACGT")]
    canonical = fasta.format_fasta(fasta.parse(text))
    assert canonical.splitlines() == [">q1 first MK@]", "ACGTACGT"]


def test_canonical_fasta_wraps_at_80_and_drops_control_characters():
    [sequence] = fasta.parse(">a\x00b\tc\n" + "A" * 170)
    assert sequence.header == "a b c"
    assert fasta.format_fasta([sequence]).splitlines()[1:] == ["A" * 80, "A" * 80, "A" * 10]


@pytest.mark.parametrize("text, reason", [
    ("", "holds no sequence"),
    ("   \n\n", "holds no sequence"),
    (">only a header\n", "sequence 1 (only) is empty"),
    (">a\nACGT\n>b\n", "sequence 2 (b) is empty"),
    (">a\nACGT-\n", "not sequence letters: '-'"),
    (">a\nAC1GT\n", "not sequence letters: '1'"),
    ("{\"query\": 1}", "not sequence letters"),
    (">p\nMKVLAAGIVALLLAAGCSSEQ\n", "looks like a protein"),
    (">p\nMKWVTHSRRKYDMVAAA\n", "looks like a protein"),
    (">a\n" + "A" * 101, "has 101 letters; the limit is 100"),
    ("".join(f">s{i}\nACGT\n" for i in range(4)), "holds 4 sequences; the limit is 3"),
    (">a\n" + "ACGT\n" * 2600, "bytes; the limit is 10000"),
    (">a\nACGT\n>b " + "x" * 49 + "\nACGT\n", "sequence 2 (b): header has 51 characters; the limit "
                                              "is 50"),
    (">" + "y" * 5000 + "\nACGT\n", "sequence 1 (" + "y" * 37 + "...): header has 5000 characters"),
])
def test_bad_nucleotide_queries_say_why(text, reason):
    with pytest.raises(fasta.FastaError, match=None) as caught:
        fasta.validate(text, "nucleotide", LIMITS)
    assert reason in str(caught.value)


def test_iupac_ambiguity_codes_are_nucleotides():
    [sequence] = fasta.validate(">amb\nACGTACGTACGTACGT RYSWKMBDHVN\n", "nucleotide", LIMITS)
    assert sequence.residues == "ACGTACGTACGTACGTRYSWKMBDHVN"


def test_protein_queries_use_the_protein_alphabet():
    assert fasta.validate(">p\nMKVLA*\n", "protein", LIMITS)[0].residues == "MKVLA*"
    with pytest.raises(fasta.FastaError, match="outside the protein alphabet"):
        fasta.validate(">p\nMK1\n", "protein", LIMITS)


def test_sequences_are_counted_by_header_lines_not_by_angle_brackets():
    text = fasta.format_fasta(fasta.parse(">a x>y\nACGT\n>b\nAAAA\nCCCC\n"))
    assert fasta.count_sequences(text.splitlines()) == 2


def test_a_header_at_the_limit_is_taken_and_one_of_a_megabyte_is_refused_by_number():
    header = "id " + "d" * 47
    assert fasta.validate(f">{header}\nACGT\n", "nucleotide", LIMITS)[0].header == header
    big = fasta.QueryLimits(max_bytes=2_000_000, max_sequences=3, max_letters=100,
                            max_header_chars=10_000)
    with pytest.raises(fasta.FastaError) as caught:
        fasta.validate(">q\nACGT\n>huge " + "z" * 1_000_000 + "\nACGT\n", "nucleotide", big)
    assert str(caught.value) == ("sequence 2 (huge): header has 1000005 characters; the limit "
                                 "is 10000")
