"""The BLAST runner with the real blastn on the real rRNA databases."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import RRNA_DATA, SMALL_DB, direct_blastn, processes_running, sample_queries

from blast_core.blast import search
from blast_core.blast.programs import ToolError, run_tool
from blast_core.domain.jobs import Job

TOOLS = search.BlastTools(bin_dir="", threads=1, time_limit=120)


def job(**options) -> Job:
    values = {"id": "0" * 19, "status": "running", "database": SMALL_DB, "program": "blastn",
              "task": "megablast", "evalue": 10.0, "max_target_seqs": 100, "queries": 1,
              "query_letters": 1, "submitted_at": "now"}
    values.update(options)
    return Job(**values)


def test_the_command_line_is_an_argument_list_of_validated_values():
    args = search.search_arguments(job(evalue=1e-5, max_target_seqs=7),
                                   search.BlastTools("/opt/blast/bin", 2, 60),
                                   "/w/q.fa", "/db/x", "/w/r.asn")
    assert args == ["/opt/blast/bin/blastn", "-task", "megablast", "-query", "/w/q.fa",
                    "-db", "/db/x", "-evalue", "1e-05", "-max_target_seqs", "7",
                    "-num_threads", "2", "-outfmt", "11", "-out", "/w/r.asn"]
    threaded = search.search_arguments(job(), search.BlastTools("", 2, 60), "q", "d", "o",
                                       queries=2)
    assert threaded[-2:] == ["-mt_mode", "1"]
    subject = search.search_arguments(job(), search.BlastTools("", 2, 60), "q", "", "o",
                                      queries=2, subject_path="/w/subject.fasta")
    assert subject == ["blastn", "-task", "megablast", "-query", "q", "-subject",
                       "/w/subject.fasta", "-evalue", "10.0", "-max_target_seqs", "100",
                       "-outfmt", "11", "-out", "o"], "one thread: BLAST+ ignores more"


def test_one_search_gives_every_format_and_tabular_is_identical_to_direct_blastn(
        tmp_path, blast_available):
    query = sample_queries(SMALL_DB, 2, seed=3)
    (tmp_path / "q.fa").write_text(query)
    result = search.run_search(job(task="blastn", evalue=1e-30, max_target_seqs=10), TOOLS,
                               str(tmp_path / "q.fa"), [str(RRNA_DATA / SMALL_DB)], str(tmp_path))
    formatted = {}
    for name, fmt in search.OUTPUT_FORMATS.items():
        search.format_archive(TOOLS, result.archive, fmt, str(RRNA_DATA), str(tmp_path / name))
        formatted[name] = (tmp_path / name).read_text()
    assert formatted["tsv"] == direct_blastn(query, SMALL_DB, tmp_path, "-task", "blastn",
                                             "-evalue", "1e-30", "-max_target_seqs", "10")
    assert result.hits == distinct_pairs(formatted["tsv"]) > 10
    assert formatted["json"].count('"query_title"') == 2
    assert formatted["text"].count("Query= q") == 2


@pytest.mark.parametrize("database, task", [("UniVec_Core", "blastn"), ("16SCore", "megablast")])
def test_hits_counted_in_the_archive_equal_the_tabular_pairs(tmp_path, blast_available,
                                                             database, task):
    (tmp_path / "q.fa").write_text(sample_queries(database, 3, seed=5)
                                   + ">none\nACGTTGCAACGTTGCAACGTTGCA\n")
    result = search.run_search(job(task=task, database=database, max_target_seqs=50), TOOLS,
                               str(tmp_path / "q.fa"), [str(RRNA_DATA / database)], str(tmp_path))
    search.format_archive(TOOLS, result.archive, search.OUTPUT_FORMATS["tsv"], str(RRNA_DATA),
                          str(tmp_path / "out.tsv"))
    assert result.hits == distinct_pairs((tmp_path / "out.tsv").read_text()) > 0


def test_blast_refusing_the_search_is_a_permanent_error(tmp_path, blast_available):
    (tmp_path / "q.fa").write_text(">q\nACGTACGTACGTACGTACGT\n")
    with pytest.raises(search.SearchRejected) as caught:
        search.run_search(job(), TOOLS, str(tmp_path / "q.fa"), [str(tmp_path / "missing-db")],
                          str(tmp_path))
    assert str(caught.value) == (
        "BLAST rejected the search: BLAST Database error: No alias or index file found for "
        f"nucleotide database [missing-db] in search path [{tmp_path}:{tmp_path}:]")


def test_a_search_blast_refuses_fails_with_its_error_line_not_its_usage_text(tmp_path,
                                                                             blast_available):
    # Validation keeps this from happening; should a value slip through, BLAST+ prints its
    # usage text (about 3,000 characters) before the line that says what is wrong.
    (tmp_path / "q.fa").write_text(">q\nACGTACGTACGTACGTACGT\n")
    with pytest.raises(search.SearchRejected) as caught:
        search.run_search(job(task="blastn", word_size=3), TOOLS, str(tmp_path / "q.fa"),
                          [str(RRNA_DATA / SMALL_DB)], str(tmp_path))
    assert str(caught.value) == ('BLAST rejected the search: Error: Argument "word_size". '
                                 "Illegal value, expected >=4: `3'")


def blast_error(tmp_path, args: list[str]) -> str:
    """What a real BLAST+ run that fails says, as a ToolError carries it; its raw stderr is
    checked to be what the cleaning is for."""
    env = {"BLASTDB": str(RRNA_DATA)}
    raw = subprocess.run(args, cwd=tmp_path, env={**os.environ, **env}, capture_output=True,
                         text=True, check=False)
    assert raw.returncode != 0 and raw.stderr
    with pytest.raises(ToolError) as caught:
        run_tool(args, timeout=60, cwd=str(tmp_path), env=env)
    return str(caught.value)


def test_blast_errors_keep_the_error_lines_and_drop_the_usage_text(tmp_path, blast_available):
    (tmp_path / "q.fa").write_text(">q\nACGTACGTACGTACGTACGT\n")
    search = ["blastn", "-query", "q.fa", "-db", SMALL_DB, "-outfmt", "11", "-out", "r.asn"]
    raw = subprocess.run([*search, "-evalue", "abc"], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "BLASTDB": str(RRNA_DATA)}).stderr
    assert raw.startswith("USAGE") and len(raw) > 2000  # what users got before
    assert blast_error(tmp_path, [*search, "-evalue", "abc"]) == (
        "blastn: Error: Cannot convert string 'abc' to double (m_Pos = 0); "
        "Error: Argument \"evalue\". Argument cannot be converted: `abc'")
    assert blast_error(tmp_path, [*search, "-task", "dc-megablast", "-word_size", "20"]) == (
        "blastn: BLAST query/options error: Invalid discontiguous template parameters: word "
        "size must be either 11 or 12")
    assert blast_error(tmp_path, ["tblastx", "-task", "tblastx", *search[1:]]) == \
        'tblastx: Error: Unknown argument: "task"'
    assert blast_error(tmp_path, [*search[:4], "nope"]) == (
        "blastn: BLAST Database error: No alias or index file found for nucleotide database "
        f"[nope] in search path [{tmp_path}:{RRNA_DATA}:]")


def test_formatter_and_catalog_errors_are_their_error_lines(tmp_path, blast_available):
    (tmp_path / "garbage.asn").write_text("not an archive\n")
    assert blast_error(tmp_path, ["blast_formatter", "-archive", "garbage.asn", "-outfmt", "5"]) \
        == "blast_formatter: BLAST query/options error: Invalid input format for BLAST Archive."
    assert blast_error(tmp_path, ["blast_formatter", "-archive", "gone.asn", "-outfmt", "5"]) \
        == ("blast_formatter: Command line argument error: Argument \"archive\". File is not "
            "accessible: `gone.asn'")
    assert blast_error(tmp_path, ["blastdbcmd", "-db", "nope", "-info"]) == (
        "blastdbcmd: BLAST Database error: No alias or index file found for nucleotide database "
        f"[nope] in search path [{tmp_path}:{RRNA_DATA}:]")


def test_an_archive_whose_database_is_gone_names_the_failure_not_the_source_line(
        tmp_path, blast_available):
    (tmp_path / "q.fa").write_text(">q\nACGTACGTACGTACGTACGT\n")
    result = search.run_search(job(), TOOLS, str(tmp_path / "q.fa"), [str(RRNA_DATA / SMALL_DB)],
                               str(tmp_path))
    with pytest.raises(ToolError) as caught:
        search.format_archive(TOOLS, result.archive, search.OUTPUT_FORMATS["xml"],
                              str(tmp_path), str(tmp_path / "out.xml"))
    # BLAST+ writes "Error: NCBI C++ Exception:" and then the C++ source line of the failure.
    assert str(caught.value) == ("blast_formatter: Error: s_InitializeSubject() - Fail to "
                                 "initialize local or remote DB")


def test_the_time_limit_kills_blast_and_fails_the_job(tmp_path, blast_available):
    (tmp_path / "q.fa").write_text(sample_queries("SSURef_93.fasta", 20, seed=1))
    slow = search.BlastTools(bin_dir="", threads=1, time_limit=0.5)
    started = time.monotonic()
    with pytest.raises(search.SearchRejected, match=r"was stopped after 0\.5 s, the longest"):
        search.run_search(job(task="blastn", database="SSURef_93.fasta"), slow,
                          str(tmp_path / "q.fa"), [str(RRNA_DATA / "SSURef_93.fasta")], str(tmp_path))
    assert time.monotonic() - started < 10
    assert not blastn_running(str(tmp_path / "q.fa"))


def test_a_missing_program_is_not_a_permanent_error(tmp_path):
    (tmp_path / "q.fa").write_text(">q\nACGT\n")
    with pytest.raises(ToolError, match="program not found"):
        search.run_search(job(), search.BlastTools("/nonexistent", 1, 10), str(tmp_path / "q.fa"),
                          ["/db"], str(tmp_path))


def distinct_pairs(tabular: str) -> int:
    return len({tuple(line.split("\t")[:2]) for line in tabular.splitlines() if line})


def blastn_running(marker: str) -> bool:
    return bool(processes_running(marker))


def test_blast_dies_with_its_worker_even_on_kill_9(tmp_path, blast_available):
    query = tmp_path / "orphan-check.fa"
    query.write_text(sample_queries("SSURef_93.fasta", 20, seed=2))
    script = textwrap.dedent(f"""
        from blast_core.blast.programs import run_tool
        run_tool(["blastn", "-task", "blastn", "-query", {str(query)!r},
                  "-db", {str(RRNA_DATA / "SSURef_93.fasta")!r}], timeout=600)
    """)
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=os.getcwd())
    deadline = time.monotonic() + 20
    while not blastn_running(str(query)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert blastn_running(str(query)), "blastn did not start"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    deadline = time.monotonic() + 10
    while blastn_running(str(query)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not blastn_running(str(query)), "blastn outlived its killed worker"


def test_run_tool_returns_output_and_raises_with_stderr():
    assert run_tool(["echo", "hello"], timeout=5) == "hello\n"
    with pytest.raises(ToolError, match="exit code 3") as caught:
        run_tool(["sh", "-c", "exit 3"], timeout=5)
    assert caught.value.returncode == 3
