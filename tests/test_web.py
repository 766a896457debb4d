"""The web page in a real headless Chromium (Debian's `chromium`, driven by Playwright) against
`serve`, Azurite and the real blastn: a search through the form, its graphical overview, hit
table, alignments and queries checked against a direct blastn run; a search of two databases;
cancelling a running search; an expired job; field errors; the key."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func
import pytest
import requests
from conftest import (
    ROOT,
    SMALL_DB,
    Server,
    direct_blastn,
    fetch_result,
    processes_running,
    sample_queries,
    service_env,
    start_server,
    wait_for_job,
    wait_until,
)

from blast_core.api.routes import ROUTES
from blast_core.cli.client import BlastClient
from blast_core.domain import jobs
from blast_core.hosts import azure_functions
from blast_core.service.bootstrap import reset_default_service

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="Playwright for Python is not installed (requirements-dev.txt)")
expect = sync_api.expect
expect.set_options(timeout=20_000)  # CI machines are slow and busy: waits end as soon as they can

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed: apt-get install chromium",
                allow_module_level=True)

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
API_KEY = "web-page-key"
SCREENSHOT = ROOT / "test-artifacts" / "web-results.png"
HOSTILE = "<img src=x onerror=window.pwned=1>"
PROTEIN = ">not_dna\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTEVLKQ\n"
BIG_DB = "SSURef_93.fasta"  # 204,065 sequences: 20 queries with task blastn take minutes
TWO_DBS = ("16SCore", "UniVec_Core")


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(azurite, blast_available, tmp_path_factory) -> Iterator[Server]:
    running = start_server(service_env(azurite), tmp_path_factory.mktemp("web") / "serve.log")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def locked(azurite, blast_available, tmp_path_factory) -> Iterator[Server]:
    running = start_server(service_env(azurite), tmp_path_factory.mktemp("web-key") / "serve.log",
                           extra=["--api-key", API_KEY])
    yield running
    running.stop()


@contextlib.contextmanager
def watched_page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    """A page in a fresh context (no session storage) that fails the test on a script error or a
    Content Security Policy refusal."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    opened.on("console", lambda message: problems.append(message.text)
              if "Content Security Policy" in message.text else None)
    yield opened
    context.close()
    assert not problems, problems


@pytest.fixture
def page(browser) -> Iterator[sync_api.Page]:
    with watched_page(browser) as opened:
        yield opened


def open_page(page: sync_api.Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def choose_databases(page: sync_api.Page, *names: str) -> None:
    """Exactly these databases checked in the form's list."""
    checked = page.locator("#field-database input:checked")
    while checked.count():
        checked.first.uncheck()
    for name in names:
        page.check(f"#field-database input[value='{name}']")


def hsps_by_query(tsv: str) -> dict[str, list[list[str]]]:
    """Tabular lines per query id, in BLAST's order (best hit first)."""
    found: dict[str, list[list[str]]] = {}
    for line in csv.reader(io.StringIO(tsv), delimiter="\t"):
        found.setdefault(line[0], []).append(line)
    return found


def column(page: sync_api.Page, index: int) -> list[str]:
    return page.locator(f"#hits tbody tr td:nth-child({index})").all_inner_texts()


def reverse_complement_second(fasta: str) -> str:
    """The FASTA with its second sequence reverse-complemented: its hits are on the minus strand."""
    lines = fasta.splitlines()
    lines[3] = lines[3][::-1].translate(str.maketrans("ACGT", "TGCA"))
    return "\n".join(lines) + "\n"


def test_a_search_through_the_form_shows_what_blastn_finds(page, server, tmp_path):
    query = reverse_complement_second(sample_queries(SMALL_DB, 2, seed=31)).replace(
        ">q1 ", f">q1 {HOSTILE} ", 1)
    open_page(page, f"{server.url}/ui")
    page.fill("#field-query", query)
    choose_databases(page, SMALL_DB)
    page.select_option("#field-task", "megablast")
    page.fill("#field-evalue", "1e-20")
    page.fill("#field-max_target_seqs", "20")
    page.click("#submit-button")
    status = page.locator("#job-summary .badge")
    expect(status).to_have_text(re.compile(r"^(succeeded|failed)$"), timeout=120_000)
    assert status.inner_text() == "succeeded", page.locator("#job-error").inner_text()
    expect(page.locator("#hits tbody tr").first).to_be_visible()
    expect(page.locator("#job-summary")).to_contain_text(
        re.compile(r"time: queued [\d.]+ s, BLAST [\d.]+ s, transfer [\d.]+ s"))
    expect(page.locator("#job-summary .job-databases")).to_have_text(SMALL_DB)
    expect(page.locator("#job-summary .job-expiry")).to_contain_text("results kept until")
    assert page.locator("#job-actions").is_hidden()  # nothing to cancel

    expected = hsps_by_query(direct_blastn(query, SMALL_DB, tmp_path, "-evalue", "1e-20",
                                           "-max_target_seqs", "20"))
    q1 = expected["q1"]
    job_id = page.locator("#jobs tbody tr.current a").inner_text()
    assert page.url.endswith(f"#job={job_id}")
    # The list of recent jobs refreshes itself until the job it showed queued has finished.
    expect(page.locator("#jobs tbody tr.current .badge")).to_have_text("succeeded")
    expect(page.locator("#query-title")).to_contain_text(f"q1 {HOSTILE}")
    assert page.evaluate("window.pwned") is None
    assert page.locator("#job-view img").count() == 0

    # The table: the best hit first, with the identity and score blastn reports.
    subjects = column(page, 2)
    assert subjects == list(dict.fromkeys(line[1] for line in q1))
    top = page.locator("#hits tbody tr").first.locator("td").all_inner_texts()
    assert top[3] == f"{float(q1[0][2]):.1f} %"
    assert round(float(top[6])) == round(float(q1[0][11]))

    # The overview: one bar per HSP, placed on the query ruler, coloured by bit score.
    bars = page.locator("#overview svg rect.hsp")
    expect(bars).to_have_count(len(q1))
    first_hit = page.locator("#overview svg g.hit").first
    assert first_hit.locator("title").text_content().startswith(q1[0][1])
    ruler = page.locator("#overview svg rect.query-bar")
    ruler_x, ruler_width = (float(ruler.get_attribute(a)) for a in ("x", "width"))
    query_length = int(page.locator("#query-title").inner_text().rsplit("(", 1)[1].split()[0]
                       .replace(",", ""))
    bar = first_hit.locator("rect.hsp").first
    start = (float(bar.get_attribute("x")) - ruler_x) / ruler_width * query_length + 1
    end = start + float(bar.get_attribute("width")) / ruler_width * query_length - 1
    assert abs(start - int(q1[0][6])) < 1 and abs(end - int(q1[0][7])) < 1
    assert bar.get_attribute("fill") == "#e0242b"  # bit score >= 200
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Sorting: by identity, highest first, then lowest first; back to BLAST's order by rank.
    page.click("#hits button[data-sort=identity]")
    identities = [float(v.split()[0]) for v in column(page, 4)]
    assert identities == sorted(identities, reverse=True)
    expect(page.locator("#hits th[aria-sort=descending]")).to_contain_text("Identity")
    page.click("#hits button[data-sort=identity]")
    assert [float(v.split()[0]) for v in column(page, 4)] == sorted(identities)
    page.click("#hits button[data-sort=rank]")
    assert column(page, 2) == subjects

    # The alignments of the second hit, numbered as blastn numbers them.
    page.locator("#hits tbody tr").nth(1).locator("button.link").click()
    expect(page.locator("#alignment h3")).to_contain_text(subjects[1])
    check_alignment(page, next(line for line in q1 if line[1] == subjects[1]), "Plus/Plus")

    # The second query, with its own best hit, on the minus strand of the subject.
    page.click("#query-next")
    expect(page.locator("#query-title")).to_contain_text("Query 2 of 2: q2")
    assert page.url.endswith(f"#job={job_id}&query=2")
    q2 = expected["q2"]
    expect(page.locator("#hits tbody tr td:nth-child(2)").first).to_have_text(q2[0][1])
    expect(page.locator("#overview svg rect.hsp")).to_have_count(len(q2))
    expect(page.locator("#alignment h3")).to_contain_text(q2[0][1])
    check_alignment(page, q2[0], "Plus/Minus")
    formats = page.locator("#downloads a[data-format]").evaluate_all(
        "links => links.map(a => a.dataset.format)")
    assert set(formats) == set(requests.get(f"{server.url}/jobs/{job_id}").json()["results"])


def check_alignment(page: sync_api.Page, hsp: list[str], strands: str) -> None:
    """The first pairwise alignment shown starts and ends where blastn's tabular line says."""
    expect(page.locator("#alignment .hsp-stats").first).to_contain_text(f"strand {strands}")
    lines = page.locator("#alignment pre.pairwise").first.inner_text().splitlines()
    query_lines = [line.split() for line in lines if line.startswith("Query")]
    subject_lines = [line.split() for line in lines if line.startswith("Sbjct")]
    assert (query_lines[0][1], query_lines[-1][-1]) == (hsp[6], hsp[7])
    assert (subject_lines[0][1], subject_lines[-1][-1]) == (hsp[8], hsp[9])


def test_field_errors_from_the_page_checks_and_from_the_api(page, server):
    def recent_jobs() -> list[str]:
        return [job["id"] for job in requests.get(f"{server.url}/jobs").json()["jobs"]]

    before = recent_jobs()
    open_page(page, f"{server.url}/ui")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    page.fill("#field-query", "ACGT1234")
    page.fill("#field-evalue", "0")
    page.click("#submit-button")
    expect(page.locator("#error-evalue")).to_have_text("must be above 0 and at most 1000, not 0")
    expect(page.locator("#error-query")).to_contain_text("not sequence letters: '1' '2' '3' '4'")
    expect(page.locator("#error-database")).to_have_text("choose at least one database")
    expect(page.locator("#field-evalue")).to_have_attribute("aria-invalid", "true")
    page.fill("#field-query", ">q " + "h" * 10_000 + "\nACGT\n")  # BLAST_MAX_HEADER_CHARS
    page.click("#submit-button")
    expect(page.locator("#error-query")).to_have_text(
        "sequence 1 (q): header has 10002 characters; the limit is 10000")
    assert posts == []

    # Only databases of the program's molecule are offered (all of these are nucleotide), and
    # at most max_per_search of them can be chosen.
    listed = requests.get(f"{server.url}/databases").json()
    nucleotide = [d["name"] for d in listed["databases"] if d["molecule"] == "nucleotide"]
    boxes = page.locator("#field-database input")
    assert boxes.evaluate_all("all => all.map(b => b.value)") == nucleotide
    limit = listed["max_per_search"]
    assert len(nucleotide) > limit
    choose_databases(page, *nucleotide[:limit])
    expect(page.locator("#field-database input:disabled")).to_have_count(len(nucleotide) - limit)
    expect(page.locator("#database-hint")).to_contain_text(f"{limit} chosen (choose up to {limit};")
    page.uncheck(f"#field-database input[value='{nucleotide[0]}']")
    expect(page.locator("#field-database input:disabled")).to_have_count(0)

    page.fill("#field-query", PROTEIN)
    page.fill("#field-evalue", "10")
    choose_databases(page, SMALL_DB)
    page.click("#submit-button")
    expect(page.locator("#error-query")).to_have_text(
        "sequence 1 (not_dna) looks like a protein sequence; this program needs nucleotides "
        "(IUPAC codes)")
    expect(page.locator("#error-evalue")).to_have_text("")
    expect(page.locator("#error-database")).to_have_text("")
    assert posts == [f"{server.url}/jobs"]

    # The API's word on a database, next to the list: one that went away since the page loaded.
    page.fill("#field-query", sample_queries(SMALL_DB, 1, seed=33))
    page.locator(f"#field-database input[value='{SMALL_DB}']").evaluate(
        "box => { box.value = 'Gone_since_loading'; }")
    page.check(f"#field-database input[value='{TWO_DBS[0]}']")
    page.click("#submit-button")
    expect(page.locator("#error-database")).to_have_text(
        "no database named 'Gone_since_loading'; GET /api/databases lists them")
    expect(page.locator("#field-database")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#error-query")).to_have_text("")
    assert len(posts) == 2
    assert recent_jobs() == before


def test_a_search_of_two_databases_finds_hits_in_each(page, server):
    first, second = TWO_DBS
    query = (sample_queries(first, 1, seed=1)
             + sample_queries(second, 1, seed=1).replace(">q1 ", ">q2 ", 1))
    open_page(page, f"{server.url}/ui")
    page.fill("#field-query", query)
    choose_databases(page, first, second)
    expect(page.locator("#database-hint")).to_contain_text("2 chosen")
    posted: list[dict] = []
    page.on("request", lambda r: posted.append(r.post_data_json) if r.method == "POST" else None)
    page.click("#submit-button")
    status = page.locator("#job-summary .badge")
    expect(status).to_have_text(re.compile(r"^(succeeded|failed)$"), timeout=120_000)
    assert status.inner_text() == "succeeded", page.locator("#job-error").inner_text()
    assert posted[0]["database"] == [first, second]  # several: a list

    expect(page.locator("#job-summary")).to_contain_text(f"databases {first}, {second}")
    job_id = page.locator("#jobs tbody tr.current a").inner_text()
    expect(page.locator("#jobs tbody tr.current td").nth(1)).to_have_text(f"{first}, {second}")
    job = requests.get(f"{server.url}/jobs/{job_id}").json()
    assert job["databases"] == [first, second] and job["database"] == f"{first} {second}"
    assert job["hits"] > 0

    # Each query finds its own database's sequences: 16S genes, then UniVec's vectors.
    expect(page.locator("#query-title")).to_contain_text(f"q1 of {first}")
    expect(page.locator("#hits tbody tr").first).to_be_visible()
    assert column(page, 2)[0].startswith("gi|")
    page.click("#query-next")
    expect(page.locator("#query-title")).to_contain_text(f"q2 of {second}")
    expect(page.locator("#hits tbody tr td:nth-child(2)").first).to_contain_text("gnl|uv|")


def test_a_tsv_of_the_columns_ticked_downloads_as_blastn_writes_it(page, server, tmp_path):
    query = sample_queries(SMALL_DB, 2, seed=34)
    job = requests.post(f"{server.url}/jobs", json={
        "query": query, "database": SMALL_DB, "evalue": 1e-30}).json()
    assert wait_for_job(server.url, job["id"])["status"] == "succeeded"
    open_page(page, f"{server.url}/ui#job={job['id']}")
    expect(page.locator("#hits tbody tr").first).to_be_visible()
    page.click("#columns-picker summary")
    picker = page.locator("#columns-picker")
    for name in ("pident", "length", "mismatch", "gapopen", "qstart", "qend", "sstart", "send",
                 "bitscore"):
        picker.locator(f"input[value={name}]").uncheck()
    for name in ("qcovs", "stitle"):
        picker.locator(f"input[value={name}]").check()
    assert picker.locator("label[title='Query Coverage Per Subject']").inner_text().strip() == \
        "qcovs"
    with page.expect_download() as download:
        page.click("#columns-download")
    assert download.value.suggested_filename == f"{job['id']}.tsv"
    columns = ("qseqid", "sseqid", "evalue", "stitle", "qcovs")  # in the order listed
    assert Path(download.value.path()).read_text() == direct_blastn(
        query, SMALL_DB, tmp_path, "-evalue", "1e-30", "-max_target_seqs", "100",
        columns=columns)

    for name in ("qseqid", "sseqid", "evalue", "stitle", "qcovs"):
        picker.locator(f"input[value={name}]").uncheck()
    expect(picker.locator("input:checked")).to_have_count(0)
    expect(page.locator("#columns-download")).to_have_attribute("aria-disabled", "")


def test_a_search_of_subject_sequences_through_the_form(page, server, tmp_path):
    """NCBI's "Align two or more sequences": subject FASTA instead of databases; the hits
    shown are those `blastn -subject` finds, with each subject's alignment."""
    query = sample_queries(SMALL_DB, 1, seed=35)
    subject = (query.replace(">q1", ">same", 1)
               + sample_queries(SMALL_DB, 2, seed=36).replace(">q", ">other"))
    open_page(page, f"{server.url}/ui")
    page.fill("#field-query", query)
    page.check("#target-subject")
    expect(page.locator("#field-database")).to_be_hidden()
    page.fill("#field-subject", ">bad\nACGT$\n")
    page.click("#submit-button")
    expect(page.locator("#error-subject")).to_have_text(
        "sequence 1 (bad) has characters that are not sequence letters: '$'")
    (tmp_path / "subject.fasta").write_text(subject)
    page.set_input_files("#subject-file", str(tmp_path / "subject.fasta"))
    expect(page.locator("#field-subject")).to_have_value(subject)
    page.select_option("#field-task", "blastn")
    page.click("#submit-button")
    status = page.locator("#job-summary .badge")
    expect(status).to_have_text("succeeded", timeout=120_000)
    expect(page.locator("#job-summary .job-databases")).to_have_text("3 subject sequences")
    expect(page.locator("#jobs tbody tr.current td:nth-child(2)")).to_have_text(
        "3 subject sequences")
    (tmp_path / "q.fa").write_text(query)
    (tmp_path / "s.fa").write_text(subject)
    expected = hsps_by_query(subprocess.run(
        ["blastn", "-task", "blastn", "-query", str(tmp_path / "q.fa"), "-subject",
         str(tmp_path / "s.fa"), "-outfmt", "6", "-max_target_seqs", "100"],
        capture_output=True, text=True, check=True).stdout)["q1"]
    expect(page.locator("#hits tbody tr").first).to_be_visible()
    assert column(page, 2) == list(dict.fromkeys(line[1] for line in expected))
    assert column(page, 2)[0] == "same"
    page.locator("#hits tbody tr").first.locator("button.link").click()
    check_alignment(page, expected[0], "Plus/Plus")


@pytest.fixture(scope="module")
def small_bodies(azurite, blast_available, tmp_path_factory) -> Iterator[Server]:
    """A service whose request bodies hold at most 5,000 bytes of query: the page uploads any
    larger file."""
    running = start_server(service_env(azurite, BLAST_MAX_QUERY_BYTES="5000",
                                       BLAST_BATCH_LETTERS="4000"),
                           tmp_path_factory.mktemp("web-upload") / "serve.log")
    yield running
    running.stop()


def test_a_query_file_too_large_for_a_body_is_uploaded_to_storage(page, small_bodies, tmp_path):
    """The file goes to Blob storage (Azurite, another origin: CORS and the page's CSP allow
    it) with a bar of its progress; the job validates, then runs as any other."""
    query = sample_queries(SMALL_DB, 6, seed=37)
    assert len(query) > 5000
    (tmp_path / "big.fasta").write_text(query)
    open_page(page, f"{small_bodies.url}/ui")
    choose_databases(page, SMALL_DB)
    page.fill("#field-evalue", "1e-20")
    page.set_input_files("#query-file", str(tmp_path / "big.fasta"))
    expect(page.locator("#upload-note")).to_contain_text("big.fasta (0.0 MB) will be uploaded")
    expect(page.locator("#field-query")).to_be_disabled()
    page.click("#submit-button")
    status = page.locator("#job-summary .badge")
    expect(status).to_have_text(re.compile(r"^(succeeded|failed)$"), timeout=120_000)
    assert status.inner_text() == "succeeded", page.locator("#job-error").inner_text()
    progress = page.locator("#upload-progress")
    assert progress.get_attribute("value") == progress.get_attribute("max") == str(len(query))
    expect(page.locator("#job-summary")).to_contain_text("6 queries")
    job_id = page.locator("#jobs tbody tr.current a").inner_text()
    job = requests.get(f"{small_bodies.url}/jobs/{job_id}", timeout=10).json()
    assert job["upload_bytes"] == len(query) and job["batches"] > 1
    tsv = fetch_result(f"{small_bodies.url}/jobs/{job_id}/results?format=tsv").text
    assert tsv == direct_blastn(query, SMALL_DB, tmp_path, "-evalue", "1e-20",
                                "-max_target_seqs", "100")


def test_a_running_job_shows_and_downloads_its_hits_so_far(page, small_bodies, tmp_path):
    """A sensitive search of 20 queries in batches of two (uploaded: too large for this
    service's bodies): once some are done, the page says how many queries are searched, shows
    the first hits and downloads them all, each line one of the whole result's."""
    (tmp_path / "q.fasta").write_text(sample_queries(SMALL_DB, 20, seed=38))
    upload_id = BlastClient(small_bodies.url).upload(str(tmp_path / "q.fasta"))
    job = requests.post(f"{small_bodies.url}/jobs", timeout=30, json={
        "query_upload": upload_id, "database": SMALL_DB, "task": "blastn",
        "evalue": 1e-30}).json()
    open_page(page, f"{small_bodies.url}/ui#job={job['id']}")
    partial = page.locator("#partial")
    expect(partial).to_contain_text(re.compile(r"Results so far: \d+ of 20 queries searched "
                                               r"\(\d+ of \d+ batches\)"), timeout=120_000)
    rows = page.locator("#partial-hits tbody tr")
    expect(rows.first).to_be_visible()
    shown = [row.split("\t") for row in rows.all_inner_texts()]
    with page.expect_download() as downloaded:
        partial.get_by_text("Download TSV so far").click()
    so_far = Path(downloaded.value.path()).read_text()
    # More batches may be done by the time of the download: each row shown is one of its lines.
    downloaded_rows = [[line.split("\t")[i] for i in (0, 1, 2, 3, 10, 11)]
                       for line in so_far.splitlines()]
    assert all(row in downloaded_rows for row in shown)
    assert downloaded.value.suggested_filename == f"{job['id']}.partial.tsv"
    assert wait_for_job(small_bodies.url, job["id"], timeout=300)["status"] == "succeeded"
    expect(partial).to_be_hidden()
    whole = fetch_result(f"{small_bodies.url}/jobs/{job['id']}/results?format=tsv").text
    assert so_far and set(so_far.splitlines()) <= set(whole.splitlines())


def test_ticked_hits_download_as_fasta(page, server, tmp_path):
    """Tick hits in the table, on two pages of it, then download their sequences: those the
    API gives for those subjects, whole or aligned."""
    job = requests.post(f"{server.url}/jobs", json={
        "query": sample_queries(SMALL_DB, 1, seed=37), "database": SMALL_DB,
        "max_target_seqs": 120}).json()
    assert wait_for_job(server.url, job["id"])["status"] == "succeeded"
    open_page(page, f"{server.url}/ui#job={job['id']}")
    expect(page.locator("#hits tbody tr").first).to_be_visible()
    assert page.locator("#picked").is_hidden()
    page.locator("#hits tbody tr").nth(0).locator("input.pick").check()
    page.locator("#hits tbody tr").nth(2).locator("input.pick").check()
    page.click("#page-next")
    page.locator("#hits tbody tr").nth(0).locator("input.pick").check()
    subjects = [page.locator("#hits tbody tr").nth(0).locator("td").nth(1).inner_text()]
    page.click("#page-prev")
    subjects = [page.locator("#hits tbody tr").nth(n).locator("td").nth(1).inner_text()
                for n in (0, 2)] + subjects
    expect(page.locator("#picked")).to_contain_text("FASTA of the 3 ticked hits")
    for region in ("whole", "aligned"):
        with page.expect_download() as download:
            page.click(f"#picked a[data-region={region}]")
        assert download.value.suggested_filename == f"{job['id']}-hits.fasta"
        params = {"subjects": ",".join(subjects), **({"region": region}
                                                     if region == "aligned" else {})}
        assert Path(download.value.path()).read_text() == fetch_result(
            f"{server.url}/jobs/{job['id']}/hits.fasta", params=params).text
    page.click("#picked button")
    expect(page.locator("#picked")).to_be_hidden()
    expect(page.locator("#hits input.pick:checked")).to_have_count(0)


def test_an_expired_job_says_so(page, server):
    sixty_one_days_ago = datetime.now(UTC) - timedelta(days=61)  # retention: 60 days by default
    old = jobs.new_job_id(int(sixty_one_days_ago.timestamp() * 1000))
    gone = requests.get(f"{server.url}/jobs/{old}")
    assert gone.status_code == 410 and gone.json()["expired_at"]
    open_page(page, f"{server.url}/ui#job={old}")
    expect(page.locator("#job-error")).to_contain_text("This job has expired on ")
    expect(page.locator("#job-error")).to_contain_text("deleted with their results")
    assert page.locator("#job-actions").is_hidden() and page.locator("#results").is_hidden()


@pytest.fixture
def quick_cancel(azurite, blast_available, tmp_path) -> Iterator[Server]:
    """A serve whose worker checks every half second whether its job was cancelled."""
    running = start_server(service_env(azurite, BLAST_CANCEL_CHECK_SECONDS="0.5"),
                           tmp_path / "serve.log")
    yield running
    running.stop()


def test_cancel_stops_a_running_search(page, quick_cancel):
    server = quick_cancel
    open_page(page, f"{server.url}/ui")
    page.fill("#field-query", sample_queries(BIG_DB, 20, seed=1))
    choose_databases(page, BIG_DB)
    page.select_option("#field-task", "blastn")
    page.click("#submit-button")
    expect(page.locator("#job-summary .badge")).to_have_text(re.compile(r"^running"), timeout=60_000)
    job_id = page.locator("#jobs tbody tr.current a").inner_text()
    wait_until(lambda: processes_running(job_id), 60, "blastn to start")
    expect(page.locator("#jobs tbody tr.current .badge")).to_have_text(re.compile(r"^running"))

    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/jobs" in r.url else None)
    page.click("#job-cancel")
    expect(page.locator("#job-summary .badge")).to_have_text("cancelled")
    expect(page.locator("#job-summary .badge")).to_have_class(re.compile(r"\bstatus-cancelled\b"))
    expect(page.locator("#job-notice")).to_contain_text("Cancelled")
    expect(page.locator("#job-actions")).to_be_hidden()
    expect(page.locator("#jobs tbody tr.current .badge")).to_have_text("cancelled")
    job = requests.get(f"{server.url}/jobs/{job_id}").json()
    assert job["status"] == "cancelled" and job["finished_at"]
    assert requests.get(f"{server.url}/jobs/{job_id}/results").status_code == 409
    wait_until(lambda: not processes_running(job_id), 20, "blastn to be stopped")

    # Cancelled is final: neither the job nor the list of recent jobs is polled any more.
    page.wait_for_timeout(500)
    seen = len(polls)
    page.wait_for_timeout(2500)
    assert polls[seen:] == []
    assert page.locator("#results").is_hidden() and page.locator("#downloads").is_hidden()

    # A job that ended while the page still showed it running: DELETE answers 409, the page
    # says so and shows the job as it is now. (The page is shown a stale job until it cancels.)
    done = requests.post(f"{server.url}/jobs", json={
        "query": sample_queries(SMALL_DB, 1, seed=34), "database": SMALL_DB}).json()
    assert wait_for_job(server.url, done["id"])["status"] == "succeeded"
    deleted: list[bool] = []

    def stale(route: sync_api.Route) -> None:
        if route.request.method == "DELETE" or deleted:
            deleted.append(route.request.method == "DELETE")
            route.continue_()
            return
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "status": "running",
                                               "finished_at": None, "hits": None})

    page.route(f"**/jobs/{done['id']}", stale)
    page.goto(f"{server.url}/ui#job={done['id']}")
    expect(page.locator("#job-summary .badge")).to_have_text(re.compile(r"^running"))
    page.click("#job-cancel")
    expect(page.locator("#job-notice")).to_have_text(
        "The job was not cancelled: it had already ended (succeeded).")
    expect(page.locator("#job-summary .badge")).to_have_text("succeeded")
    expect(page.locator("#hits tbody tr").first).to_be_visible()
    expect(page.locator("#job-actions")).to_be_hidden()
    assert deleted[0] is True


def test_a_running_fanned_out_job_shows_its_batches_done(page, server):
    open_page(page, f"{server.url}/ui")
    badge = page.evaluate("""statusBadge({status: "running", started_at: new Date().toISOString(),
        batches: 5, batches_done: 2, queries: 9, queries_done: 4}).textContent""")
    assert badge.startswith("running ") and badge.endswith("2/5 batches, 4/9 queries")
    single = page.evaluate("""statusBadge({status: "running", started_at: new Date().toISOString(),
        batches: 1, batches_done: 0, queries: 1, queries_done: 0}).textContent""")
    assert "batches" not in single
    for status, shown in (("failed", True), ("succeeded", False), ("cancelled", False)):
        page.evaluate(f"""showPartial({{id: "{"0" * 19}", status: "{status}", batches: 5,
            batches_done: 2, queries: 9, queries_done: 4, hits: 3,
            partial_results: "{server.url}/jobs/{"0" * 19}/partial.tsv"}})""")
        assert page.evaluate("document.getElementById('partial').hidden") != shown, status
    expect(page.locator("#partial-line")).to_contain_text(
        "Results so far: 4 of 9 queries searched (2 of 5 batches), 3 hits.")


def test_the_page_loads_without_a_key_and_its_api_calls_carry_one(browser, locked):
    key = {"x-functions-key": API_KEY}
    assert requests.get(f"{locked.url}/ui").headers["Content-Security-Policy"]
    assert requests.get(f"{locked.url}/ui/static/app.js").ok
    assert requests.get(f"{locked.url}/ui/static/web.py").status_code == 404
    assert requests.get(f"{locked.url}/ui/config").status_code == 401
    assert requests.get(f"{locked.url}/ui/config", headers=key).json()["programs"]["blastn"]

    # Asked for once: a wrong key is refused and asked for again, the right one opens the page.
    with watched_page(browser) as page:
        page.goto(f"{locked.url}/ui")
        expect(page.locator("#key-dialog")).to_be_visible()
        page.fill("#key-input", "wrong")
        page.click("#key-submit")
        expect(page.locator("#key-message")).to_contain_text("refused")
        page.fill("#key-input", API_KEY)
        page.click("#key-submit")
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        expect(page.locator(f"#field-database input[value='{SMALL_DB}']")).to_have_count(1)
        assert page.evaluate("sessionStorage.getItem('blast-function-key')") == API_KEY

    # Taken from the page's URL, then removed from it; downloads carry it too.
    job = requests.post(f"{locked.url}/jobs", headers=key, json={
        "query": sample_queries(SMALL_DB, 1, seed=32), "database": SMALL_DB,
        "max_target_seqs": 150}).json()
    done = wait_for_job(locked.url, job["id"], headers=key)
    assert done["status"] == "succeeded" and done["hits"] > 100
    with watched_page(browser) as page:
        page.goto(f"{locked.url}/ui?code={API_KEY}#job={job['id']}")
        expect(page.locator("#hits tbody tr").first).to_be_visible()
        assert "code=" not in page.url and not page.locator("#key-dialog").is_visible()

        # Beyond 100 hits, the table and the overview show 100 at a time.
        expect(page.locator("#hits tbody tr")).to_have_count(100)
        expect(page.locator("#overview svg g.hit")).to_have_count(100)
        expect(page.locator("#page-label")).to_have_text(f"Hits 1\u2013100 of {done['hits']}")
        page.click("#page-next")
        expect(page.locator("#hits tbody tr")).to_have_count(done["hits"] - 100)
        expect(page.locator("#hits tbody tr td:nth-child(1)").first).to_have_text("101")
        with page.expect_download() as download:
            page.click("#downloads a[data-format=tsv]")
        saved = Path(download.value.path()).read_text()
        assert saved == fetch_result(f"{locked.url}/jobs/{job['id']}/results", headers=key).text
        assert download.value.suggested_filename == f"{job['id']}.tsv"


def test_the_function_app_serves_the_page_and_its_files_without_a_key(monkeypatch, settings_env):
    routes = {route.name: route for route in ROUTES}
    assert routes["web"].anonymous and routes["web_asset"].anonymous
    assert not routes["web_config"].anonymous
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    reset_default_service()

    def get(name: str, path: str, **route_params: str) -> func.HttpResponse:
        request = func.HttpRequest("GET", f"https://blast.example.net/api/{path}", body=b"",
                                   route_params=route_params)
        return azure_functions.http_function(routes[name])(request)

    try:
        page = get("web", "ui")
        assert (page.status_code, page.mimetype) == (200, "text/html")
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert b'src="/api/ui/static/app.js"' in page.get_body()
        script = get("web_asset", "ui/static/app.js", asset="app.js")
        assert (script.status_code, script.mimetype) == (200, "text/javascript")
        assert get("web_asset", "ui/static/index.html", asset="index.html").status_code == 404
        config = json.loads(get("web_config", "ui/config").get_body())
        assert config["query"]["max_letters"] == 1_000_000
        assert config["options"]["evalue"]["maximum"] == 1000
    finally:
        reset_default_service()
