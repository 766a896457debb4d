"""Database staging: which files make a database, one copy per machine under racing processes,
restaging when the share changes, crashes mid-copy, and searches on the copy."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    ROOT,
    RRNA_DATA,
    SMALL_DB,
    direct_blastn,
    queued_message,
    result_text,
    sample_queries,
    service_env,
)

from blast_core.blast import staging
from blast_core.blast.databases import DatabaseCatalog
from blast_core.domain import jobs
from blast_core.domain.tabular import DEFAULT_COLUMNS
from blast_core.service import bootstrap
from blast_core.settings import Settings, SettingsError

BIG_DB = "SSURef_93.fasta"  # 204,065 sequences, 111 MB of files: copying it takes a while

# One staging process as a worker runs it: logs to stderr, prints the path it got. It waits
# for the file `go` so that every racer starts at the same moment.
RACER = """
import logging, os, sys, time
from blast_core.blast import staging
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
source, name, cache, ready, go = sys.argv[1:]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
print(staging.stage(source, name, cache))
"""


def share_of(tmp_path: Path, *databases: str, link: bool = False) -> Path:
    """A "share" holding real databases: copies, or symbolic links to spare the disk."""
    share = tmp_path / "share"
    share.mkdir(exist_ok=True)
    for database in databases:
        for file in staging.database_files(str(RRNA_DATA), database):
            if link:
                (share / file).symlink_to(RRNA_DATA / file)
            else:
                shutil.copy2(RRNA_DATA / file, share / file)
    return share


def db_info(prefix: str) -> str:
    """`blastdbcmd -info` without the path it names its volumes by."""
    return subprocess.run(["blastdbcmd", "-db", prefix, "-info"], capture_output=True,
                          text=True, check=True).stdout.replace(prefix, "DB")


def staged_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("blast_core.blast.staging staged ")]


def logged(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


def evict(directory: Path) -> None:
    """Drop the files' pages (through links too) from the page cache: copying reads the disk."""
    for file in directory.iterdir():
        descriptor = os.open(file, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


def test_a_database_is_its_own_files_volumes_and_alias_only(tmp_path):
    names = ["SSURef_93.nhr", "SSURef_93.nin", "SSURef_93.nsq", "SSURef_93.ndb", "SSURef_93.not",
             "SSURef_93.00.nsq", "SSURef_93.12.nhr", "SSURef_93.nal",
             "SSURef_93.fasta.nhr", "SSURef_93.fasta.nsq", "SSURef_93.fasta.00.nsq",
             "SSURef_93.nsq.bak", "SSURef_93.NHR", "SSURef_93.txt", "SSURef_93x.nhr",
             "xSSURef_93.nhr", "a+b.pin", "aab.pin"]
    for name in names:
        (tmp_path / name).touch()
    (tmp_path / "SSURef_93.nxx").mkdir()
    assert staging.database_files(str(tmp_path), "SSURef_93") == [
        "SSURef_93.00.nsq", "SSURef_93.12.nhr", "SSURef_93.nal", "SSURef_93.ndb",
        "SSURef_93.nhr", "SSURef_93.nin", "SSURef_93.not", "SSURef_93.nsq"]
    assert staging.database_files(str(tmp_path), "SSURef_93.fasta") == [
        "SSURef_93.fasta.00.nsq", "SSURef_93.fasta.nhr", "SSURef_93.fasta.nsq"]
    assert staging.database_files(str(tmp_path), "a+b") == ["a+b.pin"]
    assert staging.database_files(str(RRNA_DATA), BIG_DB) == [
        f"{BIG_DB}.nhr", f"{BIG_DB}.nin", f"{BIG_DB}.nsq"]


def test_a_multi_volume_database_is_staged_with_its_alias(tmp_path, blast_available):
    share = tmp_path / "share"
    share.mkdir()
    fasta = tmp_path / "in.fasta"
    with open(fasta, "w") as out:
        subprocess.run(["blastdbcmd", "-db", str(RRNA_DATA / SMALL_DB), "-entry", "all"],
                       stdout=out, check=True)
    subprocess.run(["makeblastdb", "-in", str(fasta), "-dbtype", "nucl", "-out", str(share / "multi"),
                    "-max_file_sz", "1MB", "-blastdb_version", "5"], capture_output=True, check=True)
    files = staging.database_files(str(share), "multi")
    assert {"multi.nal", "multi.00.nsq", "multi.02.nsq", "multi.ndb"} <= set(files)

    prefix = staging.stage(str(share), "multi", str(tmp_path / "cache"))

    assert prefix == str(tmp_path / "cache" / "multi" / "db" / "multi")
    assert sorted(os.listdir(Path(prefix).parent)) == files
    assert "5,681 sequences" in db_info(prefix)


def test_an_alias_naming_other_databases_is_searched_on_the_share(tmp_path, caplog, blast_available):
    share = share_of(tmp_path, "16SCore", "UniVec_Core")
    (share / "both.nal").write_text("TITLE both\nDBLIST 16SCore UniVec_Core\n")
    caplog.set_level(logging.INFO, "blast_core.blast.staging")

    prefix = staging.stage(str(share), "both", str(tmp_path / "cache"))

    assert prefix == str(share / "both")
    assert "both.nal names files outside the database" in caplog.text
    assert not (tmp_path / "cache" / "both" / "db").exists()


def test_four_racing_processes_copy_once(tmp_path, blast_available):
    share = share_of(tmp_path, BIG_DB, link=True)
    cache = tmp_path / "cache"
    racers = []
    for number in range(4):
        racers.append(subprocess.Popen(
            [sys.executable, "-c", RACER, str(share), BIG_DB, str(cache),
             str(tmp_path / f"ready-{number}"), str(tmp_path / "go")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"ready-{n}").exists() for n in range(4)):
        assert time.monotonic() < deadline, "the racers did not start"
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outputs = [racer.communicate(timeout=120) for racer in racers]

    assert [racer.returncode for racer in racers] == [0] * 4, outputs
    prefix = str(cache / BIG_DB / "db" / BIG_DB)
    assert [out.strip() for out, _ in outputs] == [prefix] * 4
    assert len(staged_lines("".join(err for _, err in outputs))) == 1
    assert sorted(os.listdir(cache / BIG_DB)) == ["db", "lock", "staged.json"]
    marker = json.loads((cache / BIG_DB / "staged.json").read_text())
    assert [tuple(f) for f in marker["files"]] == staging.manifest(str(share), BIG_DB)
    assert "204,065 sequences" in db_info(prefix)


def test_a_changed_database_is_staged_again_and_old_readers_keep_reading(tmp_path, caplog,
                                                                         blast_available):
    share = share_of(tmp_path, SMALL_DB)
    cache = tmp_path / "cache"
    caplog.set_level(logging.INFO, "blast_core.blast.staging")
    prefix = staging.stage(str(share), SMALL_DB, str(cache))
    assert staging.stage(str(share), SMALL_DB, str(cache)) == prefix
    assert len(logged(caplog, "staged")) == 1
    old_sequences = (share / f"{SMALL_DB}.nsq").read_bytes()
    reader = open(f"{prefix}.nsq", "rb")  # held open across the restage

    # The share's database is replaced by another one under the same name.
    for file in staging.database_files(str(RRNA_DATA), "16SCore"):
        shutil.copy(RRNA_DATA / file, share / file.replace("16SCore", SMALL_DB))
    again = staging.stage(str(share), SMALL_DB, str(cache))

    assert again == prefix
    assert len(logged(caplog, "staged")) == 2 and "replacing an outdated copy" in caplog.text
    assert "5,681 sequences" not in db_info(prefix)
    assert db_info(prefix) == db_info(str(share / SMALL_DB))
    assert sorted(os.listdir(cache / SMALL_DB)) == ["db", "lock", "staged.json"]
    with reader:
        assert reader.read() == old_sequences


@pytest.mark.parametrize("leftover", ["temporary directory", "copy without marker",
                                      "marker with a cut copy"])
def test_what_a_crash_leaves_is_never_used_and_the_next_stage_completes(tmp_path, leftover,
                                                                        blast_available):
    share = share_of(tmp_path, SMALL_DB)
    cache = tmp_path / "cache"
    entry = cache / SMALL_DB
    prefix = staging.stage(str(share), SMALL_DB, str(cache))
    if leftover == "temporary directory":
        shutil.rmtree(entry)
        (entry / "tmp-dead1234").mkdir(parents=True)
        (entry / "tmp-dead1234" / f"{SMALL_DB}.nsq").write_bytes(b"half")
    elif leftover == "copy without marker":
        (entry / "staged.json").unlink()
        Path(f"{prefix}.nsq").write_bytes(b"half")
    else:
        os.truncate(f"{prefix}.nsq", 100)

    assert staging.stage(str(share), SMALL_DB, str(cache)) == prefix

    assert sorted(os.listdir(entry)) == ["db", "lock", "staged.json"]
    assert Path(f"{prefix}.nsq").read_bytes() == (share / f"{SMALL_DB}.nsq").read_bytes()
    assert "5,681 sequences" in db_info(prefix)


def test_a_process_killed_while_copying_leaves_no_database_in_use(tmp_path, blast_available):
    share = share_of(tmp_path, BIG_DB, link=True)
    cache = tmp_path / "cache"
    entry = cache / BIG_DB
    evict(share)
    (tmp_path / "go").touch()
    racer = subprocess.Popen([sys.executable, "-c", RACER, str(share), BIG_DB, str(cache),
                              str(tmp_path / "ready"), str(tmp_path / "go")],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not (entry.is_dir() and any(n.startswith("tmp-") for n in os.listdir(entry))):
        assert time.monotonic() < deadline and racer.poll() is None, "the copy did not start"
        time.sleep(0.0005)
    racer.send_signal(signal.SIGKILL)
    racer.communicate()

    assert racer.returncode == -signal.SIGKILL
    assert not (entry / "staged.json").exists() and not (entry / "db").exists()
    prefix = staging.stage(str(share), BIG_DB, str(cache))
    assert sorted(os.listdir(entry)) == ["db", "lock", "staged.json"]
    assert "204,065 sequences" in db_info(prefix)


def test_blastn_on_the_copy_finds_the_same_hits(tmp_path, blast_available):
    prefix = staging.stage(str(RRNA_DATA), SMALL_DB, str(tmp_path / "cache"), preload=True)
    query = sample_queries(SMALL_DB, 3, seed=21)
    (tmp_path / "query.fasta").write_text(query)
    staged = subprocess.run(["blastn", "-query", str(tmp_path / "query.fasta"), "-db", prefix,
                             "-outfmt", f"6 {' '.join(DEFAULT_COLUMNS)}"],
                            capture_output=True, text=True, check=True).stdout
    assert staged.strip()
    assert staged == direct_blastn(query, SMALL_DB, tmp_path)


def test_the_catalog_stages_or_pre_reads_once_per_process(tmp_path, caplog, blast_available):
    caplog.set_level(logging.INFO, "blast_core.blast.staging")
    staged = DatabaseCatalog(str(RRNA_DATA), "blastdbcmd", cache_dir=str(tmp_path / "cache"),
                             preload=True)
    shared = DatabaseCatalog(str(RRNA_DATA), "blastdbcmd", preload=True)
    for _ in range(3):
        assert staged.local_path("16SCore") == str(tmp_path / "cache" / "16SCore" / "db" / "16SCore")
        assert shared.local_path("16SCore") == str(RRNA_DATA / "16SCore")
    assert len(logged(caplog, "staged 16SCore")) == 1
    assert [m.split(":")[0] for m in logged(caplog, "pre-read")] == [
        f"pre-read 16SCore in {tmp_path / 'cache' / '16SCore' / 'db'}",
        f"pre-read 16SCore in {RRNA_DATA}"]
    assert staged.path("16SCore") == str(RRNA_DATA / "16SCore")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_database_that_does_not_fit_is_searched_on_the_share(tmp_path, caplog, blast_available):
    cache = tmp_path / "cache"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(cache)], check=True)
    try:
        caplog.set_level(logging.INFO, "blast_core.blast.staging")
        assert staging.stage(str(RRNA_DATA), SMALL_DB, str(cache)) == str(RRNA_DATA / SMALL_DB)
        assert "do not fit" in caplog.text
        assert sorted(os.listdir(cache / SMALL_DB)) == ["lock"]
    finally:
        subprocess.run(["umount", str(cache)], check=True)


def test_the_service_searches_the_staged_copy(azurite, blast_available, tmp_path, caplog):
    cache = tmp_path / "cache"
    service = bootstrap.build(Settings.from_env(service_env(
        azurite, BLAST_DB_CACHE_DIR=str(cache), BLAST_DB_PRELOAD="1")))
    service.ensure_storage()
    caplog.set_level(logging.INFO, "blast_core.blast.staging")
    try:
        for seed in (31, 32):
            query = sample_queries(SMALL_DB, 2, seed=seed)
            job = service.submit({"query": query, "database": SMALL_DB, "max_target_seqs": 20})
            service.handle(queued_message(service, job.id), 1)
            assert service.get(job.id).status == jobs.SUCCEEDED
            tsv = result_text(service, job.id, "tsv")
            assert tsv.strip()
            assert tsv == direct_blastn(query, SMALL_DB, tmp_path, "-max_target_seqs", "20")
    finally:
        service.transport.close()
    assert len(logged(caplog, f"staged {SMALL_DB}")) == 1
    assert len(logged(caplog, "pre-read")) == 1
    assert (cache / SMALL_DB / "staged.json").exists()


def test_several_staged_databases_are_searched_together(azurite, blast_available, tmp_path):
    # Each staged copy has its own directory: BLASTDB lists them all.
    cache = tmp_path / "cache"
    service = bootstrap.build(Settings.from_env(service_env(
        azurite, BLAST_DB_CACHE_DIR=str(cache))))
    service.ensure_storage()
    query = sample_queries("16SCore", 2, seed=33) + sample_queries("UniVec_Core", 2, seed=34)
    try:
        job = service.submit({"query": query, "database": ["16SCore", "UniVec_Core"]})
        service.handle(queued_message(service, job.id), 1)
        assert service.get(job.id).status == jobs.SUCCEEDED
        tsv = result_text(service, job.id, "tsv")
    finally:
        service.transport.close()
    assert tsv == direct_blastn(query, "16SCore UniVec_Core", tmp_path, "-max_target_seqs", "100")
    assert (cache / "16SCore" / "staged.json").exists()
    assert (cache / "UniVec_Core" / "staged.json").exists()


def test_the_settings_turn_staging_on_and_pre_reading_on():
    assert (Settings.from_env({}).db_cache_dir, Settings.from_env({}).db_preload) == ("", False)
    configured = Settings.from_env({"BLAST_DB_CACHE_DIR": "/tmp/c", "BLAST_DB_PRELOAD": "1"})
    assert (configured.db_cache_dir, configured.db_preload) == ("/tmp/c", True)
    with pytest.raises(SettingsError, match="BLAST_DB_PRELOAD must be '0' or '1'"):
        Settings.from_env({"BLAST_DB_PRELOAD": "yes"})
