"""The package as a user installs it: a wheel built from the project, installed in fresh virtual
environments, the command-line client alone (no Azure stack) and the service with its page."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
import requests
from conftest import ROOT, SMALL_DB, free_port, sample_queries, service_env, start_server

pytestmark = pytest.mark.slow
PACKAGED = ("pyproject.toml", "README.md", "requirements-client.txt", "requirements-server.txt")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the project's files, so that the build leaves nothing behind."""
    source = tmp_path_factory.mktemp("source")
    for name in PACKAGED:
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "blast_core", source / "blast_core",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(out), str(source)], check=True, timeout=600)
    [built] = out.glob("blast_service-*.whl")
    return built


def installed(target: Path, requirement: str) -> Path:
    """A fresh virtual environment with `requirement` installed; its bin directory."""
    venv.create(target, with_pip=True)
    bin_dir = target / "bin"
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", requirement], check=True, timeout=900)
    return bin_dir


def test_the_client_alone_installs_without_the_azure_stack_and_talks_to_the_service(
        wheel, azurite, blast_available, tmp_path):
    bin_dir = installed(tmp_path / "client", str(wheel))
    no_azure = subprocess.run([str(bin_dir / "python"), "-c", "import azure"],
                              capture_output=True, text=True)
    assert no_azure.returncode != 0, "the client needs none of the Azure SDK"
    refused = subprocess.run([str(bin_dir / "blast-service"), "serve"], capture_output=True,
                             text=True, timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert refused.returncode == 2
    assert "pip install 'blast-service[server]'" in refused.stderr, refused.stderr
    server = start_server(service_env(azurite), tmp_path / "serve.log", workers=1)
    try:
        listed = subprocess.run([str(bin_dir / "blast-service"), "databases", "--url", server.url],
                                capture_output=True, text=True, timeout=60,
                                cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
        assert listed.returncode == 0, listed.stderr
        assert SMALL_DB in listed.stdout
        query = tmp_path / "q.fa"
        query.write_text(sample_queries(SMALL_DB, 1, seed=71))
        done = subprocess.run([str(bin_dir / "blast-service"), "submit", str(query), "--database",
                               SMALL_DB, "--wait", "--url", server.url],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "hits for 1 queries" in done.stdout
    finally:
        server.stop()


def test_the_service_installs_with_its_page_and_serves_it(wheel, azurite, blast_available,
                                                          tmp_path):
    bin_dir = installed(tmp_path / "server", f"{wheel}[server]")
    port = free_port()
    env = {**os.environ, **service_env(azurite), "PYTHONPATH": ""}
    with open(tmp_path / "serve.log", "wb") as log:
        serve = subprocess.Popen([str(bin_dir / "blast-service"), "serve", "--port", str(port),
                                  "--workers", "0"], cwd=tmp_path, env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/api"
        for _ in range(300):
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        page = requests.get(f"{url}/ui", timeout=10)
        assert page.status_code == 200 and "<script" in page.text
        script = requests.get(f"{url}/ui/static/app.js", timeout=10)
        assert script.status_code == 200 and "function isActive" in script.text
        found = subprocess.run([str(bin_dir / "python"), "-c",
                                "import blast_core, sys; print(blast_core.__file__)"],
                               capture_output=True, text=True, cwd=tmp_path,
                               env={**os.environ, "PYTHONPATH": ""})
        assert str(tmp_path / "server") in found.stdout, "the installed package answered"
    finally:
        serve.terminate()
        serve.wait(timeout=30)
