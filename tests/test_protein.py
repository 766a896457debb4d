"""Beyond blastn: blastp, blastx, tblastn and tblastx through `serve` on databases built here
with makeblastdb (no protein database ships with ncbi-rrna-data), compared with running each
program directly; and the checks that a program fits its query and database."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import fetch_result, service_env, start_server, wait_for_job

from blast_core.blast import search
from blast_core.domain.jobs import Job
from blast_core.domain.tabular import DEFAULT_COLUMNS

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
CODONS = {"A": "GCT", "C": "TGC", "D": "GAC", "E": "GAA", "F": "TTC", "G": "GGT", "H": "CAC",
          "I": "ATC", "K": "AAA", "L": "CTG", "M": "ATG", "N": "AAC", "P": "CCA", "Q": "CAG",
          "R": "CGT", "S": "TCT", "T": "ACC", "V": "GTT", "W": "TGG", "Y": "TAC"}
PROTEIN_DB, NUCLEOTIDE_DB = "test-proteins", "test-genes"


def mutated(residues: str, rng: random.Random, rate: float, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) if rng.random() < rate else r for r in residues)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    """Forty random proteins and their genes as two databases, and a query for each program."""
    rng = random.Random(6)
    db_dir = tmp_path_factory.mktemp("protein-dbs")
    proteins = ["".join(rng.choice(AMINO_ACIDS) for _ in range(rng.randint(150, 400)))
                for _ in range(40)]
    genes = ["ATG" + "".join(CODONS[a] for a in protein) + "TAA" for protein in proteins]
    for name, molecule, sequences in ((PROTEIN_DB, "prot", proteins),
                                      (NUCLEOTIDE_DB, "nucl", genes)):
        fasta = db_dir / f"{name}.fa"
        fasta.write_text("".join(f">{name[5:9]}{i} test {molecule} {i}\n{s}\n"
                                 for i, s in enumerate(sequences)))
        subprocess.run(["makeblastdb", "-in", str(fasta), "-dbtype", molecule, "-out",
                        str(db_dir / name), "-title", f"{name} of the tests", "-parse_seqids",
                        "-blastdb_version", "5"], check=True, capture_output=True)
    return {
        "db_dir": str(db_dir),
        "blastp": ">pq\n" + mutated(proteins[5][20:140], rng, 0.15, AMINO_ACIDS),
        "blastx": ">xq\n" + mutated(genes[7][60:420], rng, 0.05, "ACGT"),
        "tblastn": ">tq\n" + mutated(proteins[9][10:110], rng, 0.15, AMINO_ACIDS),
        "tblastx": ">txq\n" + mutated(genes[11][30:330], rng, 0.05, "ACGT"),
    }


@pytest.fixture(scope="module")
def server(azurite, blast_available, data, tmp_path_factory):
    running = start_server(service_env(azurite, db_dir=data["db_dir"]),
                           tmp_path_factory.mktemp("protein") / "serve.log")
    yield running
    running.stop()


def direct(program: str, query: str, database: str, db_dir: str, tmp_path: Path,
           *options: str) -> str:
    (tmp_path / f"{program}.fa").write_text(query)
    return subprocess.run([program, "-query", str(tmp_path / f"{program}.fa"),
                           "-db", f"{db_dir}/{database}",
                           "-outfmt", f"6 {' '.join(DEFAULT_COLUMNS)}", *options],
                          capture_output=True, text=True, check=True).stdout


CASES = [  # program, database, job options, the same as BLAST+ options
    ("blastp", PROTEIN_DB, {}, []),
    ("blastp", PROTEIN_DB, {"task": "blastp-fast", "word_size": 3, "filter": "yes"},
     ["-task", "blastp-fast", "-word_size", "3", "-seg", "yes"]),
    ("blastx", PROTEIN_DB, {}, []),
    ("tblastn", NUCLEOTIDE_DB, {"filter": "no"}, ["-seg", "no"]),
    ("tblastx", NUCLEOTIDE_DB, {"word_size": 2}, ["-word_size", "2"]),
]


def test_each_program_finds_what_running_it_directly_finds(server, data, tmp_path):
    submitted = []
    for program, database, options, _ in CASES:
        response = requests.post(f"{server.url}/jobs", json={
            "query": data[program], "database": database, "program": program, **options})
        assert response.status_code == 202, response.text
        submitted.append(response.json())
    assert [j["task"] for j in submitted] == ["blastp", "blastp-fast", "blastx", "tblastn",
                                              "tblastx"]
    for job, (program, database, _, blast_options) in zip(submitted, CASES, strict=True):
        done = wait_for_job(server.url, job["id"])
        assert done["status"] == "succeeded", done
        tsv = fetch_result(done["results"]["tsv"]).text
        assert tsv == direct(program, data[program], database, data["db_dir"], tmp_path,
                             *blast_options)
        assert done["hits"] >= 1 and "xml2" in done["results"]


@pytest.mark.parametrize(("program", "database"), [("blastp", PROTEIN_DB),
                                                    ("tblastn", NUCLEOTIDE_DB)])
def test_subject_sequences_of_the_molecule_each_program_searches(server, data, tmp_path,
                                                                  program, database):
    """A database's sequences given as `subject` instead: what `-subject` finds directly."""
    subject = subprocess.run(["blastdbcmd", "-db", f"{data['db_dir']}/{database}", "-entry",
                              "all"], capture_output=True, text=True, check=True).stdout
    response = requests.post(f"{server.url}/jobs", json={
        "query": data[program], "subject": subject, "program": program})
    assert response.status_code == 202, response.text
    done = wait_for_job(server.url, response.json()["id"])
    assert done["status"] == "succeeded" and done["subjects"] == 40, done
    (tmp_path / "query.fa").write_text(data[program])
    (tmp_path / "subject.fa").write_text(subject)
    expected = subprocess.run([program, "-query", str(tmp_path / "query.fa"), "-subject",
                               str(tmp_path / "subject.fa"), "-outfmt",
                               f"6 {' '.join(DEFAULT_COLUMNS)}"],
                              capture_output=True, text=True, check=True).stdout
    assert expected and fetch_result(done["results"]["tsv"]).text == expected


def test_hit_sequences_of_a_protein_database_are_blastdbcmds(server, data):
    """A database built with -parse_seqids: the archive names hits by id, which blastdbcmd
    looks up; each whole sequence, and each aligned region, is blastdbcmd's own."""
    response = requests.post(f"{server.url}/jobs", json={
        "query": data["blastp"], "database": PROTEIN_DB, "program": "blastp"})
    job = wait_for_job(server.url, response.json()["id"])
    table = fetch_result(f"{server.url}/jobs/{job['id']}/results", params={
        "format": "tsv", "columns": "sseqid sstart send"}).text
    hits = [line.split("\t") for line in table.splitlines()]
    assert hits
    whole = fetch_result(f"{server.url}/jobs/{job['id']}/hits.fasta", params={"query": "pq"})
    aligned = fetch_result(f"{server.url}/jobs/{job['id']}/hits.fasta", params={
        "query": "pq", "region": "aligned"})

    def blastdbcmd(database: str, *options: str) -> str:
        return subprocess.run(["blastdbcmd", "-db", f"{data['db_dir']}/{database}", *options],
                              capture_output=True, text=True, check=True).stdout

    subjects = list(dict.fromkeys(subject for subject, _, _ in hits))
    assert whole.text == "".join(blastdbcmd(PROTEIN_DB, "-entry", subject)
                                 for subject in subjects)
    assert aligned.text == "".join(blastdbcmd(PROTEIN_DB, "-entry", subject, "-range",
                                              f"{start}-{end}") for subject, start, end in hits)

    # tblastx: each Seq-align has `std` segments, one `ids` each; still one tabular line.
    response = requests.post(f"{server.url}/jobs", json={
        "query": data["tblastx"], "database": NUCLEOTIDE_DB, "program": "tblastx"})
    job = wait_for_job(server.url, response.json()["id"])
    table = fetch_result(f"{server.url}/jobs/{job['id']}/results", params={
        "format": "tsv", "columns": "sseqid"}).text
    translated = fetch_result(f"{server.url}/jobs/{job['id']}/hits.fasta", params={
        "query": "txq"})
    assert translated.text == "".join(blastdbcmd(NUCLEOTIDE_DB, "-entry", subject) for subject
                                      in dict.fromkeys(table.split()))


def test_databases_report_their_molecule(server):
    listed = {d["name"]: d for d in requests.get(f"{server.url}/databases").json()["databases"]}
    assert (listed[PROTEIN_DB]["molecule"], listed[NUCLEOTIDE_DB]["molecule"]) == \
        ("protein", "nucleotide")
    assert listed[PROTEIN_DB]["title"] == f"{PROTEIN_DB} of the tests"


DNA = ">dna\nATGGCTAAACTGGTTCGTGGTACCTCTGCAGAAATCGGT\n"
PROTEIN = ">protein\nMKVLAAGIVALLLAAGCSSSKEETGTQAPRW\n"


@pytest.mark.parametrize("request_fields, field, reason", [
    ({"program": "blastp", "database": NUCLEOTIDE_DB, "query": PROTEIN}, "database",
     f"'{NUCLEOTIDE_DB}' is a nucleotide database; blastp needs protein"),
    ({"program": "tblastn", "database": PROTEIN_DB, "query": PROTEIN}, "database",
     f"'{PROTEIN_DB}' is a protein database; tblastn needs nucleotide"),
    ({"program": "blastn", "database": PROTEIN_DB, "query": DNA}, "database",
     f"'{PROTEIN_DB}' is a protein database; blastn needs nucleotide"),
    ({"program": "tblastx", "database": PROTEIN_DB, "query": DNA}, "database",
     f"'{PROTEIN_DB}' is a protein database; tblastx needs nucleotide"),
    ({"program": "blastp", "database": PROTEIN_DB, "query": DNA}, "query",
     "sequence 1 (dna) looks like a nucleotide sequence; blastp needs a protein query"),
    ({"program": "blastx", "database": PROTEIN_DB, "query": PROTEIN}, "query",
     "sequence 1 (protein) looks like a protein sequence; this program needs nucleotides "
     "(IUPAC codes)"),
    ({"program": "tblastx", "database": NUCLEOTIDE_DB, "query": DNA, "task": "megablast"},
     "task", "'megablast' is not a task of tblastx; choose one of tblastx"),
    ({"program": "blastp", "database": PROTEIN_DB, "query": PROTEIN, "task": "blastx"},
     "task", "'blastx' is not a task of blastp; choose one of blastp, blastp-fast, blastp-short"),
    ({"program": "blastp", "database": PROTEIN_DB, "query": PROTEIN, "word_size": 8},
     "word_size", "must be from 2 to 7 for task blastp, not 8"),
    ({"program": "tblastx", "database": NUCLEOTIDE_DB, "query": DNA, "word_size": 6},
     "word_size", "must be from 2 to 5 for task tblastx, not 6"),
    ({"database": NUCLEOTIDE_DB, "query": DNA, "task": "dc-megablast", "word_size": 16},
     "word_size", "must be from 11 to 12 for task dc-megablast, not 16"),
    ({"database": NUCLEOTIDE_DB, "query": DNA, "word_size": "11"}, "word_size",
     'must be a whole number, not "11"'),
    ({"database": NUCLEOTIDE_DB, "query": DNA, "filter": "off"}, "filter",
     '"off" is not one of yes, no'),
])
def test_a_program_must_fit_its_query_and_database(server, request_fields, field, reason):
    refused = requests.post(f"{server.url}/jobs", json=request_fields)
    assert refused.status_code == 400
    assert {"field": field, "reason": reason} in refused.json()["errors"], refused.json()


def job(**fields: object) -> Job:
    values: dict = {"id": "0" * 19, "status": "running", "database": "db", "program": "blastn",
                    "task": "megablast", "evalue": 10.0, "max_target_seqs": 100, "queries": 1,
                    "query_letters": 1, "submitted_at": "now"}
    return Job(**{**values, **fields})


def test_tblastx_gets_no_task_and_the_filter_is_dust_or_seg_by_program():
    tools = search.BlastTools("", 1, 60)
    tblastx = search.search_arguments(job(program="tblastx", task="tblastx", filter="no",
                                          word_size=3), tools, "q.fa", "db", "r.asn")
    assert tblastx[:3] == ["tblastx", "-query", "q.fa"] and "-task" not in tblastx
    assert tblastx[-4:] == ["-word_size", "3", "-seg", "no"]
    blastn = search.search_arguments(job(filter="yes"), tools, "q.fa", "db", "r.asn")
    assert blastn[:3] == ["blastn", "-task", "megablast"] and blastn[-2:] == ["-dust", "yes"]
