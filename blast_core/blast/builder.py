"""Build a BLAST database from FASTA and upload it to the Azure Files share of the app.

In Azure the database share is mounted at BLAST_DB_DIR, so a database uploaded into the
share's root is found by its name; one uploaded into a directory by `directory/name`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.identity import DefaultAzureCredential
from azure.storage.fileshare import ShareClient

DBTYPES = ("nucl", "prot")

# Database names end up in -db arguments, where BLAST splits at spaces.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class DatabaseBuildError(RuntimeError):
    """makeblastdb could not build the database."""


def build_database(
    fasta_path: str | Path,
    name: str,
    dbtype: str,
    title: str,
    out_dir: str | Path,
    makeblastdb: str = "makeblastdb",
) -> list[Path]:
    """Build database `name` from `fasta_path` in `out_dir` and return its files.

    Runs `makeblastdb -parse_seqids -blastdb_version 5`. `out_dir` must be empty or new
    (a temporary directory, typically): everything makeblastdb leaves there is the
    database, volumes and alias file included. The FASTA goes in on stdin and the database
    is written relative to `out_dir` because makeblastdb splits the values of `-in` and
    `-out` at spaces.
    """
    if dbtype not in DBTYPES:
        raise ValueError(f"dbtype must be one of {', '.join(DBTYPES)}, not {dbtype!r}")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"database name {name!r} must be letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise DatabaseBuildError(f"{out} is not empty")
    command = [
        makeblastdb, "-in", "-", "-dbtype", dbtype, "-out", name, "-title", title,
        "-parse_seqids", "-blastdb_version", "5",
    ]
    with Path(fasta_path).open("rb") as fasta:
        try:
            result = subprocess.run(
                command, stdin=fasta, cwd=out, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise DatabaseBuildError(f"{makeblastdb} not found: install BLAST+") from None
    if result.returncode != 0:
        message = result.stderr.strip() or result.stdout.strip()
        raise DatabaseBuildError(f"makeblastdb exited with {result.returncode}: {message}")
    files = sorted(path for path in out.iterdir() if path.is_file())
    if not files:
        raise DatabaseBuildError(f"makeblastdb wrote nothing into {out}")
    return files


def share_client(connection: str, share_name: str) -> ShareClient:
    """A client of `share_name` from a storage connection string or a file service URL.

    A URL that carries a SAS token is used as it is. A bare URL
    (`https://<account>.file.core.windows.net`) signs in with DefaultAzureCredential:
    Azure Files accepts tokens on its REST API only with the `backup` intent, which needs a
    role such as Storage File Data Privileged Contributor.
    """
    if connection.startswith("https://"):
        if "sig=" in connection:
            return ShareClient(connection, share_name)
        return ShareClient(
            connection, share_name, credential=DefaultAzureCredential(), token_intent="backup")
    return ShareClient.from_connection_string(connection, share_name)


def upload_database(
    files: Sequence[Path],
    share: ShareClient | str,
    share_name: str | None = None,
    directory: str = "",
) -> list[str]:
    """Upload `files` into `directory` of the share; return their paths in the share.

    `share` is a ShareClient, or a connection string or file service URL (see
    `share_client`) together with `share_name`. Missing directories are created and
    existing files overwritten in place: give a changed database a new name, or upload it
    while no job reads it.
    """
    if isinstance(share, str):
        if not share_name:
            raise ValueError("share_name is needed with a connection string or URL")
        with share_client(share, share_name) as client:
            return _upload(files, client, directory)
    return _upload(files, share, directory)


def _upload(files: Sequence[Path], client: ShareClient, directory: str) -> list[str]:
    parts = [part for part in directory.strip("/").split("/") if part]
    for depth in range(1, len(parts) + 1):
        with suppress(ResourceExistsError):
            client.get_directory_client("/".join(parts[:depth])).create_directory()
    prefix = "".join(f"{part}/" for part in parts)
    uploaded = []
    for path in files:
        target = prefix + path.name
        with path.open("rb") as data:
            client.get_file_client(target).upload_file(
                data, length=path.stat().st_size, max_concurrency=4)
        uploaded.append(target)
    return uploaded
