"""An Azure SDK client from a connection of the settings: by its connection string, or by the
service URI of an identity-based connection and the managed identity (DefaultAzureCredential:
the app's identity in Azure, a developer's login locally)."""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from blast_core.settings import Connection

Client = TypeVar("Client")


def storage_client(kind: type[Client], connection: Connection, service: str, *args: Any,
                   **options: Any) -> Client:
    """A Storage client of `kind` (a Blob, Table or Queue service or queue client) for
    `service` (`blob`, `table`, `queue`); `args` follow the account, as the SDK takes them."""
    if connection.string:
        return kind.from_connection_string(connection.string, *args, **options)
    return kind(connection.service_uri(service), *args, credential=credential(), **options)


@functools.cache
def credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
