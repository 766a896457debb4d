"""The operator's commands, run as a user runs them: `dead-letters` and `clean-up` against
Azurite, and `db upload` up to the Azure Files boundary (Azurite has no Files service)."""

import json
import os
import subprocess
import sys
import time

from conftest import ROOT, SMALL_DB, sample_queries, service_env

from blast_core.domain import jobs, messages
from blast_core.service import bootstrap
from blast_core.settings import Settings


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blast_core", *args], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, **env}, timeout=120)


def test_dead_letters_are_listed_and_requeued_from_the_command_line(azurite, blast_available):
    env = service_env(azurite)
    service = bootstrap.build(Settings.from_env(env))
    service.ensure_storage()
    job = service.submit({"query": sample_queries(SMALL_DB, 1, seed=61), "database": SMALL_DB})
    delivery = service.transport.receive()
    delivery.dead_letter("simulated give-up")
    service.transport.lane(messages.INTERACTIVE).poison.send_message("garbage")

    listed = run("dead-letters", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert sorted((d["job_id"] or "", d["status"] or "") for d in json.loads(listed.stdout)) == \
        sorted([("", ""), (job.id, "queued")])
    table = run("dead-letters", env=env)
    assert job.id in table.stdout and "(unreadable)" in table.stdout

    requeued = run("dead-letters", "--requeue", "--json", env=env)
    assert json.loads(requeued.stdout) == {"requeued": [job.id], "left": 1}
    resent = service.transport.receive()
    assert messages.decode(resent.body) == messages.decode(delivery.body), \
        "the same message again, its query in it"


def test_clean_up_deletes_the_expired_jobs_now(azurite, blast_available):
    env = service_env(azurite, BLAST_RETENTION_DAYS="0.5")
    service = bootstrap.build(Settings.from_env(env))
    service.ensure_storage()
    young = service.submit({"query": sample_queries(SMALL_DB, 1, seed=62), "database": SMALL_DB})
    request = service.validate({"query": ">q\nACGTACGTACGTACGTACGT", "database": SMALL_DB})
    old = jobs.Job.submitted(jobs.new_job_id(int(time.time() * 1000) - 86_400_000), request)
    service.records.create(old)
    cleaned = run("clean-up", env=env)
    assert (cleaned.returncode, cleaned.stdout) == (0, "deleted 1 expired job(s)\n")
    assert service.records.get(old.id) is None and service.get(young.id).status == "queued"
    assert run("clean-up", env=env).stdout == "deleted 0 expired job(s)\n"


def test_db_upload_needs_a_connection_and_reports_build_errors(tmp_path):
    env = {"BLAST_STORAGE": ""}
    missing = run("db", "upload", "x.fa", "--name", "x", "--type", "nucl", "--share", "s",
                  env=env)
    assert missing.returncode == 2 and "BLAST_STORAGE" in missing.stderr
    (tmp_path / "bad.fa").write_text("this is not fasta\n")
    failed = run("db", "upload", str(tmp_path / "bad.fa"), "--name", "bad", "--type", "nucl",
                 "--share", "s", "--connection", "UseDevelopmentStorage=true", env=env)
    assert failed.returncode == 1 and failed.stderr.startswith("error: ")
