"""The README's quick start as a new user follows it: every command of its shell blocks, read
from the README at each run and run verbatim, in order, so that the two cannot drift apart.

`serve` keeps running, so it is started as if in a terminal of its own, waited for, and
stopped at the end with Ctrl-C, as the README says. The commands run in a copy of the clone
made of links to it, so that the files they write stay out of the clone; and serve's Azurite
keeps its data in a temporary folder (BLAST_AZURITE_DIR), not in the user's own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import ROOT, wait_until

from blast_core.storage.azurite import port_is_free

README = ROOT / "README.md"
SERVE = re.compile(r"-m blast_core serve\b")


def quick_start_commands() -> list[str]:
    """The commands of the ```sh blocks of the README's Quick start section, in order: a line
    ending in a backslash joined to the next, blank and comment lines left out."""
    section = README.read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, re.M | re.S)
    lines = "".join(blocks).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def linked_clone(target: Path) -> Path:
    target.mkdir()
    for entry in ROOT.iterdir():
        if entry.name != ".git":
            (target / entry.name).symlink_to(entry)
    return target


def installs_pending() -> list[str]:
    """The installs that `make setup` would run in the clone (a dry run). Run by this test,
    it would install into the clone's .venv and node_modules, which in a git worktree may be
    links to another clone's."""
    dry_run = subprocess.run(["make", "-n", "setup"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    return [line.strip() for line in dry_run.stdout.splitlines()
            if re.search(r"\bvenv\b|pip install|npm ci", line)]


def run_commands(commands: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run the commands in one shell, which stops at the first that fails; their standard
    output, or a failed test naming the command that failed and showing what it printed."""
    header = ["set -e -o pipefail", "trap 'echo \"README line $LINENO failed\" >&2' ERR"]
    done = subprocess.run(["bash", "-c", "\n".join([*header, *commands])], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        line = re.search(r"README line (\d+) failed", done.stderr)
        command = commands[int(line.group(1)) - len(header) - 1] if line else "?"
        pytest.fail(f"`{command}` failed with status {done.returncode}:\n"
                    f"{done.stdout}{done.stderr}")
    return done.stdout


def test_the_quick_start_works_as_written(blast_available, tmp_path):
    commands = quick_start_commands()
    serving = [index for index, command in enumerate(commands) if SERVE.search(command)]
    assert len(serving) == 1, f"the quick start should start serve once: {commands}"
    serve_command = commands[serving[0]].removesuffix("&").strip()
    before, after = commands[:serving[0]], commands[serving[0] + 1:]
    assert after, "the quick start should use serve once it runs"
    named_port = re.search(r"--port[ =](\d+)", serve_command)
    port = int(named_port.group(1)) if named_port else 7071
    if not port_is_free(port):
        pytest.fail(f"port {port} is in use, and the README's quick start serves there: stop "
                    f"what listens on it (`ss -ltnp 'sport = :{port}'`) and run this test again")

    pending = installs_pending()
    if pending:
        pytest.fail("`make setup` has not been run here, and this test should not be what "
                    f"installs things (it would run: {'; '.join(pending)}): run `make setup`")
    clone = linked_clone(tmp_path / "clone")
    env = {name: value for name, value in os.environ.items() if not name.startswith("BLAST_")}
    env["BLAST_AZURITE_DIR"] = str(tmp_path / "azurite")
    if before:
        run_commands(before, clone, env, timeout=900)

    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        serve = subprocess.Popen(["bash", "-c", serve_command], cwd=clone, env=env, stdout=out,
                                 stderr=out, start_new_session=True)  # as in a terminal
    api = f"http://127.0.0.1:{port}/api"
    try:
        def answers() -> bool:
            assert serve.poll() is None, f"`{serve_command}` exited:\n{log.read_text()}"
            try:
                return requests.get(f"{api}/health", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(answers, 60, f"`{serve_command}` to answer on port {port}")
        printed = run_commands(after, clone, env, timeout=300)

        jobs = requests.get(f"{api}/jobs", timeout=10).json()["jobs"]
        assert jobs, "the quick start should submit a search"
        for job in jobs:
            assert job["status"] == "succeeded" and job["hits"], job
            top_hit = requests.get(f"{api}/jobs/{job['id']}/results",
                                   params={"format": "tsv", "wait": "30"},
                                   timeout=60).text.splitlines()[0]
            assert top_hit in printed.splitlines(), "the quick start should fetch the hits"

        os.killpg(serve.pid, signal.SIGINT)  # Ctrl-C
        assert serve.wait(timeout=20) == 130
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()


def test_every_azurite_command_of_the_readme_suits_the_storage_sdk():
    """Without --skipApiVersionCheck, Azurite refuses the SDK's newer API versions; without
    --disableTelemetry, it sends usage data out."""
    commands = [line for line in README.read_text().splitlines()
                if re.match(r"\s*(npx )?azurite\b", line)]
    assert commands
    for command in commands:
        assert "--skipApiVersionCheck" in command and "--disableTelemetry" in command, command
