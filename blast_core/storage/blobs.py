"""Queries and results in Azure Blob storage, under `<job id>/` in one container."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import (
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    generate_blob_sas,
)

from blast_core.settings import Connection
from blast_core.storage.clients import storage_client
from blast_core.storage.ports import BlobChanged, StoredBlob


class AzureJobBlobs:
    def __init__(self, service: BlobServiceClient, container: str):
        self._service = service
        self._container = service.get_container_client(container)

    @classmethod
    def connect(cls, connection: Connection, container: str) -> AzureJobBlobs:
        return cls(storage_client(BlobServiceClient, connection, "blob"), container)

    def ensure(self) -> None:
        try:
            self._container.create_container()
        except ResourceExistsError:
            pass

    def put_text(self, job_id: str, name: str, text: str, content_type: str) -> None:
        self._container.upload_blob(f"{job_id}/{name}", text.encode(), overwrite=True,
                                    content_settings=ContentSettings(content_type=content_type))

    def put_file(self, job_id: str, name: str, path: str, content_type: str) -> None:
        with open(path, "rb") as data:
            self._container.upload_blob(f"{job_id}/{name}", data, overwrite=True,
                                        content_settings=ContentSettings(content_type=content_type))

    def get_text(self, job_id: str, name: str) -> str:
        return self._container.download_blob(f"{job_id}/{name}").readall().decode()

    def download(self, job_id: str, name: str, path: str) -> None:
        with open(path, "wb") as out:
            self._container.download_blob(f"{job_id}/{name}").readinto(out)

    def exists(self, job_id: str, name: str) -> bool:
        return self._container.get_blob_client(f"{job_id}/{name}").exists()

    def stream(self, job_id: str, name: str, offset: int = 0, length: int | None = None,
               etag: str | None = None) -> Iterator[bytes] | None:
        """The blob's content in chunks, never whole in memory, from byte `offset` on (`length`
        bytes of it, or to the end), or None when it does not exist; with `etag`, only that
        version of it (BlobChanged when it was written since)."""
        condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag \
            else {}
        try:
            downloader = self._container.download_blob(  # no range: an empty blob has none
                f"{job_id}/{name}", offset=offset if offset or length is not None else None,
                length=length, **condition)
        except ResourceNotFoundError:
            return None
        except ResourceModifiedError:  # Azurite says so of a blob that is gone, too
            if not self.exists(job_id, name):
                return None
            raise BlobChanged(f"{job_id}/{name}") from None
        return _unchanged(downloader.chunks(), f"{job_id}/{name}")

    def properties(self, job_id: str, name: str) -> StoredBlob | None:
        """Its size and version, or None when it does not exist."""
        try:
            found = self._container.get_blob_client(f"{job_id}/{name}").get_blob_properties()
        except ResourceNotFoundError:
            return None
        return StoredBlob(found.size, found.etag)

    def names(self, job_id: str) -> list[str]:
        return [blob.name.split("/", 1)[1]
                for blob in self._container.list_blobs(name_starts_with=f"{job_id}/")]

    def delete(self, job_id: str, name: str) -> None:
        """Delete one blob of a job, if it exists."""
        try:
            self._container.delete_blob(f"{job_id}/{name}")
        except ResourceNotFoundError:
            pass

    def delete_job(self, job_id: str) -> None:
        """Delete every blob of a job (none is fine)."""
        for blob in self._container.list_blobs(name_starts_with=f"{job_id}/"):
            self.delete(job_id, blob.name.split("/", 1)[1])

    def origin(self) -> str:
        """The scheme, host and port of the blob endpoint, which links point to."""
        parts = urlsplit(self._service.url)
        return f"{parts.scheme}://{parts.netloc}"

    def read_link(self, job_id: str, name: str, expiry: datetime) -> str:
        """A read-only link that expires at `expiry` (`_link`)."""
        return self._link(job_id, name, expiry, BlobSasPermissions(read=True))

    def write_link(self, job_id: str, name: str, expiry: datetime) -> str:
        """A link that can create and write this one block blob (Put Blob, Put Block, Put
        Block List) until `expiry`, and nothing else: no read, no list, no delete."""
        return self._link(job_id, name, expiry, BlobSasPermissions(create=True, write=True))

    def _link(self, job_id: str, name: str, expiry: datetime,
              permission: BlobSasPermissions) -> str:
        """A service SAS for one blob: signed with the account key when the connection has one
        (Azurite), else with a user delegation key (managed identity; Azure caps those at 7
        days)."""
        now = datetime.now(UTC)
        account_key = getattr(self._service.credential, "account_key", None)
        if account_key:
            signing = {"account_key": account_key}
        else:
            expiry = min(expiry, now + timedelta(days=7))
            signing = {"user_delegation_key": self._service.get_user_delegation_key(
                now - timedelta(minutes=5), expiry)}
        blob = self._container.get_blob_client(f"{job_id}/{name}")
        sas = generate_blob_sas(
            account_name=self._service.account_name, container_name=self._container.container_name,
            blob_name=blob.blob_name, permission=permission, expiry=expiry,
            start=now - timedelta(minutes=5), **signing)
        return f"{blob.url}?{sas}"


def _unchanged(chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
    """The chunks of a conditional download: one written meanwhile raises BlobChanged."""
    try:
        yield from chunks
    except ResourceModifiedError:
        raise BlobChanged(name) from None
