"""Splitting the archive of one coalesced BLAST run per member (blast_core.blast.archive), against
real BLAST+: each member's archive must format as a direct search of that member's queries alone."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import RRNA_DATA, SMALL_DB

from blast_core.blast import archive, asn_text
from blast_core.blast.archive import split_archive
from blast_core.blast.samples import database_sequences

DB = str(RRNA_DATA / SMALL_DB)
MATK_DB = str(RRNA_DATA / "64-matK-FINAL-aligned-DNA.fas")  # 64 sequences: quick for tblastx
RBCL_DB = str(RRNA_DATA / "64-rbcL-FINAL-aligned-DNA.fas")
TABULAR = "6 qseqid sseqid pident length mismatch gapopen qstart qend sstart send evalue bitscore"
OPTIONS = ("-max_target_seqs", "5", "-evalue", "10")
ODD_TITLE = 'odd "title" {with} braces, Query_1 and }} "" inside'


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, check=True)


def _fasta(queries: list[tuple[str, str]]) -> str:
    return "".join(f">{title}\n{residues}\n" for title, residues in queries)


def _sample(sequences: list[str], rng: random.Random, length: int) -> str:
    """A stretch of a real sequence with about 3 % of its letters replaced."""
    source = rng.choice([s for s in sequences if len(s) > length + 100])
    start = rng.randrange(len(source) - length)
    return "".join(rng.choice("ACGT") if rng.random() < 0.03 else letter
                   for letter in source[start:start + length])


@dataclass
class Search:
    """One combined run over members' queries, its archive split, and the members' files."""

    program: str
    db: str
    options: tuple[str, ...]
    members: list[list[tuple[str, str]]]  # each member's (title, residues)
    text: str  # the combined archive
    parts: list[str]
    dir: Path

    def fasta(self, member: int) -> Path:
        return self.dir / f"member{member}.fa"

    def part(self, member: int) -> Path:
        return self.dir / f"member{member}.asn"

    def direct(self, member: int, outfmt: str) -> str:
        """The member's queries searched alone, as the service would without coalescing."""
        return _run(self.program, "-query", str(self.fasta(member)), "-db", self.db, *self.options,
                    "-outfmt", outfmt).stdout

    def formatted(self, member: int, outfmt: str) -> str:
        return _run("blast_formatter", "-archive", str(self.part(member)), "-outfmt", outfmt).stdout


def _search(workdir: Path, members: list[list[tuple[str, str]]], program: str = "blastn",
            db: str = DB, options: tuple[str, ...] = OPTIONS) -> Search:
    workdir.mkdir(parents=True, exist_ok=True)
    combined = workdir / "combined.fa"
    combined.write_text("".join(_fasta(queries) for queries in members))
    _run(program, "-query", str(combined), "-db", db, *options, "-outfmt", "11",
         "-out", str(workdir / "combined.asn"))
    text = (workdir / "combined.asn").read_text()
    parts = split_archive(text, [len(queries) for queries in members])
    search = Search(program, db, options, members, text, parts, workdir)
    for member, (queries, part) in enumerate(zip(members, parts, strict=True)):
        search.fasta(member).write_text(_fasta(queries))
        search.part(member).write_text(part)
    return search


def _reports(json_text: str) -> list[dict]:
    """The JSON reports, one per query, without the two `stat` numbers a split archive cannot
    have as a search alone: BLAST+ archives one effective search space and length adjustment
    per run, the first query's (as in any multi-query archive), so a member's archive reports
    the combined run's first query's, whereas the direct search reports its own first query's."""
    reports = [entry["report"] for entry in json.loads(json_text)["BlastOutput2"]]
    for report in reports:
        stat = report["results"]["search"].get("stat", {})
        stat.pop("eff_space", None)
        stat.pop("hsp_len", None)
    return reports


def _block(text: str, name: str) -> str:
    """The text of the first `name { ... }` of an archive, found by indentation (BLAST+
    pretty-prints with stable two-space indentation)."""
    found = re.search(rf"^( *){name} \{{\n(.*?)^\1\}}", text, re.S | re.M)
    assert found, name
    return found.group(0)


def _seq_ids(text: str) -> list[str]:
    return re.findall(r'^ {10}seq \{\n {12}id \{\n {14}local str "(Query_\d+)"', text, re.M)


def _titles(text: str) -> list[str]:
    return [asn_text.decode(raw) for raw in re.findall(r'^ {14}title "((?:[^"]|"")*)"', text, re.M)]


@pytest.fixture(scope="module")
def sequences(blast_available: None) -> list[str]:
    return database_sequences(DB)


@pytest.fixture(scope="module")
def megablast(sequences: list[str], tmp_path_factory: pytest.TempPathFactory) -> Search:
    """Five members of 1, 2, 3, 1 and 1 queries: deflines colliding across members (`Query_1 ...`,
    `seq1`), a quoted title with braces, a random query that hits nothing, a query with a
    low-complexity stretch that dust masks."""
    rng = random.Random(20240611)
    members = [
        [("Query_1 alpha", _sample(sequences, rng, 600))],
        [("Query_1 beta", _sample(sequences, rng, 500)), ("lcl|abc", _sample(sequences, rng, 700))],
        [("gi|123|ref|NC_1.1|", _sample(sequences, rng, 400)), ("seq1", _sample(sequences, rng, 800)),
         (ODD_TITLE, _sample(sequences, rng, 450))],
        [("seq1 random", "".join(rng.choice("ACGT") for _ in range(400)))],
        [("dusty", _sample(sequences, rng, 300) + "AC" * 20 + _sample(sequences, rng, 300))],
    ]
    return _search(tmp_path_factory.mktemp("megablast"), members)


def test_blast_names_every_query_query_n_whatever_its_defline(megablast: Search):
    # Without -parse_deflines, `>Query_1 x`, `>lcl|abc`, `>gi|123|ref|NC_1.1|` all get the
    # local id Query_N (N from 1 in file order); the defline is only the title.
    queries = [query for member in megablast.members for query in member]
    assert _seq_ids(megablast.text) == [f"Query_{n}" for n in range(1, len(queries) + 1)]
    assert _titles(megablast.text) == [title for title, _ in queries]
    for member, part in zip(megablast.members, megablast.parts, strict=True):
        assert _seq_ids(part) == [f"Query_{n}" for n in range(1, len(member) + 1)]
        assert _titles(part) == [title for title, _ in member]


def test_each_member_formats_as_its_own_search_in_tabular(megablast: Search):
    hits = []
    for member in range(len(megablast.members)):
        direct = megablast.direct(member, TABULAR)
        assert megablast.formatted(member, TABULAR) == direct, member
        hits.append(len(direct.splitlines()))
    assert hits[0] and hits[1] and hits[2] and hits[4] and not hits[3]
    # The colliding deflines stay each member's own.
    assert {line.split("\t")[0] for line in megablast.formatted(1, TABULAR).splitlines()} == {
        "Query_1", "lcl|abc"}


def test_each_member_formats_as_its_own_search_in_json(megablast: Search):
    for member, queries in enumerate(megablast.members):
        direct, split = (_reports(megablast.direct(member, "15")),
                         _reports(megablast.formatted(member, "15")))
        assert [(r["results"]["search"]["query_title"], r["results"]["search"]["query_len"])
                for r in split] == [(title, len(residues)) for title, residues in queries]
        for mine, theirs in zip(split, direct, strict=True):
            assert mine["results"]["search"].get("hits") == theirs["results"]["search"].get("hits")
        assert split == direct, member


def test_only_the_dusted_member_has_masks(megablast: Search):
    masked = re.findall(r'id local str "(Query_\d+)"', _block(megablast.text, "masks"))
    assert set(masked) == {"Query_8"}  # the dusty query, last of eight
    for member, part in enumerate(megablast.parts):
        if member == 4:
            _run("blastn", "-query", str(megablast.fasta(4)), "-db", DB, *OPTIONS, "-outfmt", "11",
                 "-out", str(megablast.dir / "dusty-direct.asn"))
            direct_text = (megablast.dir / "dusty-direct.asn").read_text()
            assert _block(part, "masks") == _block(direct_text, "masks")
            assert _block(part, "program-options") == _block(direct_text, "program-options")
            assert 'id local str "Query_1"' in _block(part, "masks")
        else:
            assert _block(part, "masks") == "    masks {\n    }"
            assert "LCaseMask" not in part


def test_a_member_without_hits_has_empty_alignments(megablast: Search):
    # What BLAST writes when no query hits anything: empty alignments and masks blocks.
    alone = megablast.dir / "random-direct.asn"
    _run("blastn", "-query", str(megablast.fasta(3)), "-db", DB, *OPTIONS, "-outfmt", "11",
         "-out", str(alone))
    for text in (alone.read_text(), megablast.parts[3]):
        assert _block(text, "alignments") == "    alignments {\n    }"
        assert _block(text, "masks") == "    masks {\n    }"
    assert "No hits found" in megablast.formatted(3, "15")
    # Queries without hits in a run where others hit have no Seq-align: no empty entries.
    aligned = set(re.findall(r'ids \{\s*local str "(Query_\d+)"', megablast.text))
    assert "Query_7" not in aligned and {"Query_1", "Query_8"} <= aligned


def test_one_member_gets_the_archive_unchanged(megablast: Search):
    count = sum(len(member) for member in megablast.members)
    assert split_archive(megablast.text, [count]) == [megablast.text]
    whole = megablast.dir / "whole.asn"
    whole.write_text(split_archive(megablast.text, [count])[0])
    assert (_run("blast_formatter", "-archive", str(whole), "-outfmt", TABULAR).stdout
            == _run("blast_formatter", "-archive", str(megablast.dir / "combined.asn"),
                    "-outfmt", TABULAR).stdout)


@pytest.mark.parametrize("counts", [[1, 2, 3, 1], [1, 2, 3, 1, 2], [8, 1], [], [0, 8], [9, -1]])
def test_counts_must_add_up(megablast: Search, counts: list[int]):
    with pytest.raises(ValueError):
        split_archive(megablast.text, counts)


def test_task_blastn(megablast: Search, tmp_path: Path):
    members = [megablast.members[0], megablast.members[1], megablast.members[4]]
    search = _search(tmp_path, members, options=("-task", "blastn", *OPTIONS))
    for member in range(len(members)):
        assert search.formatted(member, TABULAR) == search.direct(member, TABULAR), member
        assert _reports(search.formatted(member, "15")) == _reports(search.direct(member, "15"))


@pytest.mark.parametrize("options", [OPTIONS, ("-max_target_seqs", "1", "-evalue", "10",
                                                 "-num_threads", "2", "-mt_mode", "1")],
                         ids=["batches", "mt_mode"])
def test_a_run_written_as_several_archives(sequences: list[str], tmp_path: Path,
                                           options: tuple[str, ...]):
    # BLAST+ writes an archive per query batch, the first batches small: ten queries of 900
    # bases make two (6 + 4), the second numbering on from Query_7. With -mt_mode 1 (the
    # service's with several threads) a messages-only archive may end the file; with
    # -max_target_seqs 1 the first archive says "Examining 5 or more matches is recommended".
    rng = random.Random(11)
    queries = [(f"Query_1 r{i}" if i % 2 else f"seq{i}", _sample(sequences, rng, 900)) for i in range(10)]
    members = [queries[:2], queries[2:8], queries[8:]]  # the second straddles the batches
    search = _search(tmp_path, members, options=options)
    searches = re.findall(r"^Blast4-archive ::= \{\n  request \{\n    ident \S+\n    body queue-search",
                          search.text, re.M)
    assert len(searches) == 2
    assert [len(re.findall("^Blast4-archive", part, re.M)) for part in search.parts] == [1, 2, 1]
    assert _seq_ids(search.parts[1]) == [f"Query_{n}" for n in range(1, 7)]
    if "-mt_mode" not in options:
        assert "messages" not in search.text
    for member in range(len(members)):
        assert search.formatted(member, TABULAR) == search.direct(member, TABULAR), member
        if "-mt_mode" not in options:  # (slow: some 3 s a run here, against 1 s without)
            assert _reports(search.formatted(member, "15")) == _reports(search.direct(member, "15"))
        else:
            # Each member's first archive has the run's messages, whichever archive had them.
            assert len(re.findall("^  messages", search.parts[member], re.M)) == 1
            warned = _run("blast_formatter", "-archive", str(search.part(member)), "-outfmt",
                          TABULAR).stderr
            assert "[blastn] Examining 5 or more matches is recommended" in warned
            assert "get-request-info" not in search.parts[member]


def test_mt_mode_numbers_each_threads_queries_anew(sequences: list[str], tmp_path: Path):
    # With -mt_mode 1 and 2.5 M letters or more a thread, each thread's batches number their
    # queries from Query_1 again: ids are unique within an archive only. 6,000 queries of 900
    # letters (16S stretches, every 100th an rbcL gene that hits) on the small rbcL database.
    if (os.cpu_count() or 1) < 2:
        pytest.skip("BLAST runs one thread on one CPU")
    rbcl = database_sequences(RBCL_DB)
    filler = "".join(sequences)
    queries = [(f"q{i}", rbcl[i // 100][:900] if i % 100 == 0 else filler[i * 900:(i + 1) * 900])
               for i in range(6000)]
    members = [queries[:1000], queries[1000:2900], queries[2900:]]
    search = _search(tmp_path, members, db=RBCL_DB, options=(
        "-max_target_seqs", "1", "-evalue", "1e-10", "-num_threads", "2", "-mt_mode", "1"))
    firsts = re.findall(r'^ {8}seq-set \{\n {10}seq \{\n {12}id \{\n {14}local str "Query_(\d+)"',
                        search.text, re.M)
    assert firsts.count("1") >= 2, firsts  # a restart (the batches vary from run to run)
    combined = _run("blast_formatter", "-archive", str(tmp_path / "combined.asn"), "-outfmt",
                    TABULAR).stdout
    assert {line.split("\t")[0] for line in combined.splitlines()} == {
        f"q{i}" for i in range(0, 6000, 100)}
    assert "".join(search.formatted(member, TABULAR) for member in range(3)) == combined
    for part, queries in zip(search.parts, members, strict=True):
        assert _seq_ids(part) == [f"Query_{n}" for n in range(1, len(queries) + 1)]


def test_tblastx_std_segs(blast_available: None, tmp_path: Path):
    # tblastx's Seq-aligns are std segs: one `ids` (query first) and `loc`s per segment.
    matk = database_sequences(MATK_DB)
    rng = random.Random(5)
    members = [[("Query_1 first", _sample(matk, rng, 300))],
               [("Query_1 second", _sample(matk, rng, 300)), ("m2", _sample(matk, rng, 240))]]
    search = _search(tmp_path, members, program="tblastx", db=MATK_DB, options=OPTIONS)
    assert "segs std" in search.text
    combined = _run("blast_formatter", "-archive", str(tmp_path / "combined.asn"), "-outfmt",
                    TABULAR).stdout
    assert search.formatted(0, TABULAR) + search.formatted(1, TABULAR) == combined
    # tblastx's e-values (sum statistics) differ slightly in a multi-query run from those of
    # a query searched alone (8.45e-42 for 8.48e-42): BLAST's doing, the same in the combined
    # run's own output. All else must be equal.
    for member in range(len(members)):
        split, direct = search.formatted(member, TABULAR), search.direct(member, TABULAR)
        assert [line.split("\t")[:10] + line.split("\t")[11:] for line in split.splitlines()] == [
            line.split("\t")[:10] + line.split("\t")[11:] for line in direct.splitlines()], member
        split_reports, direct_reports = (_reports(search.formatted(member, "15")),
                                         _reports(search.direct(member, "15")))
        for reports in (split_reports, direct_reports):
            for report in reports:
                # blast_formatter reports the gapped Karlin-Altschul block, -1s for the ungapped
                # tblastx, from any archive (a direct one too); blastn -outfmt 15 the ungapped one.
                for name in ("kappa", "lambda", "entropy"):
                    report["results"]["search"]["stat"].pop(name)
                for hit in report["results"]["search"]["hits"]:
                    for hsp in hit["hsps"]:
                        hsp.pop("evalue")
        assert split_reports == direct_reports, member


def _with_messages(text: str, messages: list[str]) -> str:
    """The archive with `messages` (raw ASN.1 string contents) as its messages."""
    entries = ",\n".join(f'    {{\n      code 1,\n      message "{raw}"\n    }}' for raw in messages)
    text = re.sub(r",\n  messages \{\n.*?\n  \}\n\}\n?$", "\n}\n", text, flags=re.S)
    assert text.endswith("  }\n}\n")
    return text[:-len("\n}\n")] + f",\n  messages {{\n{entries}\n  }}\n}}\n"


def test_messages_naming_another_members_query_are_dropped(megablast: Search, tmp_path: Path):
    odd = ODD_TITLE.replace('"', '""')
    messages = {
        "everyone": "Warning: [blastn] Examining 5 or more matches is recommended",
        "beta": "Warning: [blastn] Query_2 Query_1 beta: something about it",
        "alpha and beta": "Query_1 alpha and Query_1 beta",
        "seq1": "Query_5 seq1: a warning",  # member 2's title, a word of member 3's
        "seq1 random": "Query_7 seq1 random: names both",  # member 3's title, and seq1
        "seq10": "seq10 is nobody's title",  # does not name seq1
        # the odd title (quotes, braces), the message wrapped as BLAST wraps long strings
        "odd": f"Query_6 {odd[:20]}\n{odd[20:]}: wrapped",
    }
    text = _with_messages(megablast.text, list(messages.values()))
    parts = split_archive(text, [1, 2, 3, 1, 1])
    kept = {0: {"everyone", "alpha and beta", "seq10"},
            1: {"everyone", "beta", "alpha and beta", "seq10"},
            2: {"everyone", "seq1", "seq1 random", "seq10", "odd"},
            3: {"everyone", "seq1 random", "seq10"},
            4: {"everyone", "seq10"}}
    for member, part in enumerate(parts):
        assert [name for name, raw in messages.items() if raw in part] == [
            name for name in messages if name in kept[member]], member
        path = tmp_path / f"m{member}.asn"
        path.write_text(part)
        formatted = _run("blast_formatter", "-archive", str(path), "-outfmt", TABULAR)
        assert formatted.stdout == megablast.formatted(member, TABULAR)
        assert ("beta" in formatted.stderr) == (member in (0, 1))
    # Without any message left, a member's archive has no messages block, as BLAST writes it.
    only = split_archive(_with_messages(megablast.text, [messages["beta"]]), [1, 2, 3, 1, 1])
    assert "messages" in only[1] and "messages" not in only[0]
    assert "messages" not in megablast.text
    assert only[0] == megablast.parts[0]


def test_tokenizer_skips_braces_and_escaped_quotes_in_strings():
    text = ('{ title "a ""}"" {b} ,c", data \'0F1A\nBC\'H, nested { x "}", y { } },\n'
            '  last "say ""{""" }')
    close = asn_text.block_end(text, 0)
    assert close == len(text) - 1
    members = asn_text.items(text, 0, close)
    assert [text[m.start:m.end] for m in members] == [
        'title "a ""}"" {b} ,c"', "data '0F1A\nBC'H", 'nested { x "}", y { } }', 'last "say ""{"""']
    nested = members[2]
    assert text[nested.brace:nested.brace_end + 1] == '{ x "}", y { } }'
    assert asn_text.label(text, nested) == ["nested"]
    assert asn_text.decode('a ""}"" {b\n} ,c') == 'a "}" {b} ,c'
    with pytest.raises(ValueError):
        asn_text.block_end('{ "}', 0)
    with pytest.raises(ValueError):
        asn_text.block_end("{ { }", 0)


def test_a_title_never_matches_when_embedded_or_empty():
    assert archive._names("Query_3 seq1: warning", "seq1")
    assert not archive._names("Query_3 seq10: warning", "seq1")
    assert not archive._names("anything", "")
    assert archive._names('say "x" {y}', '"x" {y')


def test_malformed_archives_are_refused(megablast: Search, tmp_path: Path):
    counts = [1, 2, 3, 1, 1]
    text = megablast.text
    first_id = 'ids {\n            local str "Query_2"'
    unknown = text.replace(first_id, first_id.replace("Query_2", "Query_99"))
    assert unknown != text
    with pytest.raises(ValueError, match="Query_99"):
        split_archive(unknown, counts)
    # A mask naming queries of two members (the dusty query, last, and the first).
    masks = _block(text, "masks")
    interval = re.search(r' +\{\n +from \d+,\n +to \d+,\n +id local str "Query_8"\n +\}', masks).group()
    mixed = text.replace(masks, masks.replace(
        interval, interval + ",\n" + interval.replace('"Query_8"', '"Query_1"')))
    with pytest.raises(ValueError, match=r"the mask at offset \d+ names queries of several members: "
                                         r"Query_1, Query_8"):
        split_archive(mixed, counts)
    # The same in the request's query-mask option (LCaseMask: one entry per masked query).
    options = _block(text, "program-options")
    mixed = text.replace(options, options.replace('"Query_8"', '"Query_2"', 1))
    with pytest.raises(ValueError, match=r"the option at offset \d+ names queries of several members"):
        split_archive(mixed, counts)
    with pytest.raises(ValueError, match=r"not an ASN\.1"):
        split_archive("Seq-align ::= { }", [1])
    with pytest.raises(ValueError):
        split_archive(text[:-20], counts)
    # Queries read with -parse_deflines keep their own ids: no Query_N to renumber.
    _run("blastn", "-query", str(megablast.dir / "combined.fa"), "-db", DB, *OPTIONS,
         "-parse_deflines", "-outfmt", "11", "-out", str(tmp_path / "parsed.asn"))
    with pytest.raises(ValueError, match="parse_deflines"):
        split_archive((tmp_path / "parsed.asn").read_text(), counts)


def test_an_alignment_naming_two_members_queries_is_refused(blast_available: None, tmp_path: Path):
    matk = database_sequences(MATK_DB)
    rng = random.Random(6)
    search = _search(tmp_path, [[("a", _sample(matk, rng, 300))], [("b", _sample(matk, rng, 300))]],
                     program="tblastx", db=MATK_DB)
    # The first Seq-align's second segment renamed to the other member's query.
    first = search.text.index('ids {\n              local str "Query_1"')
    second = search.text.index('ids {\n              local str "Query_1"', first + 1)
    mixed = search.text[:second] + search.text[second:].replace('"Query_1"', '"Query_2"', 1)
    with pytest.raises(ValueError, match="several members"):
        split_archive(mixed, [1, 1])


def test_a_large_archive_splits_in_linear_time(megablast: Search):
    # The combined archive with its alignments repeated to some 20 MB.
    alignments = _block(megablast.text, "alignments")
    body = alignments[len("    alignments {\n"):-len("\n    }")]
    copies = 20_000_000 // len(body) + 1
    big = megablast.text.replace(alignments, "    alignments {\n" + ",\n".join([body] * copies) + "\n    }")
    clock = time.perf_counter()
    parts = split_archive(big, [1, 2, 3, 1, 1])
    elapsed = time.perf_counter() - clock
    # About 0.05 s a MB here: one indexing pass, then each Seq-align's ids read once.
    assert elapsed < 10, f"{len(big) / 1e6:.0f} MB split in {elapsed:.1f} s"
    aligns = [len(re.findall(r"^ {6}\{\n {8}type ", part, re.M)) for part in parts]
    assert aligns == [copies * len(re.findall(r"^ {6}\{\n {8}type ", _block(small, "alignments"), re.M))
                      for small in megablast.parts]
