"""Upload a BLAST database to the Azure Files share of the app.

In Azure the database share is mounted at BLAST_DB_DIR, so a database uploaded into the
share's root is found by its name; one uploaded into a directory by `directory/name`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.identity import DefaultAzureCredential
from azure.storage.fileshare import ShareClient


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
