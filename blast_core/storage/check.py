"""The start-up check of `serve`, `worker` and the operator commands: one request to each
storage service they use, without retries, so that storage that refuses them is one line
saying what to do, not a minute of retries and a traceback.

The line names the service and its endpoint (never a key: the endpoint loses any query, which
is where a SAS token would be), what went wrong, and what to do about it for the kind of
storage configured: the Azurite of `serve` itself, `UseDevelopmentStorage=true`, a connection
string, or an identity.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from blast_core.settings import STORAGE_CONNECTION, Settings
from blast_core.storage.clients import storage_client

# No retries, and bounded waits: the point is to fail fast and say why.
CLIENT_OPTIONS = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 15}
AZURITE_COMMAND = "npx azurite --silent --skipApiVersionCheck --disableTelemetry --location .azurite"


class StorageUnusable(RuntimeError):
    """The storage does not let this process start; the message says why and what to do."""


def check_storage(settings: Settings, own_azurite_log: Path | None = None) -> None:
    """Raise StorageUnusable unless the blob, table and (for the Storage Queue transport) queue
    service each answer a request. `own_azurite_log`: the storage is serve's own Azurite,
    whose output is there."""
    for service, endpoint, request in _requests(settings):
        try:
            request()
        except ResourceNotFoundError:
            pass  # reached and accepted; what is missing is created at start-up
        except Exception as error:
            raise StorageUnusable(_explain(settings, service, endpoint, error,
                                           own_azurite_log)) from None


def _requests(settings: Settings) -> list[tuple[str, str, Callable[[], object]]]:
    """(service, endpoint, a read-only request) for each storage service `settings` use."""
    from azure.data.tables import TableServiceClient
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueServiceClient

    connection = settings.connection(STORAGE_CONNECTION)
    kinds = {"blob": BlobServiceClient, "table": TableServiceClient}
    if settings.queue_transport == "storage":
        kinds["queue"] = QueueServiceClient
    clients = {service: storage_client(kind, connection, service, **CLIENT_OPTIONS)
               for service, kind in kinds.items()}
    requests = {
        "blob": lambda: clients["blob"].get_container_client(
            settings.results_container).get_container_properties(),
        "table": lambda: clients["table"].get_table_client(
            settings.jobs_table).get_entity("start-up check", "start-up check"),
        "queue": lambda: clients["queue"].get_queue_client(
            settings.queue_name).get_queue_properties(),
    }
    return [(service, _without_query(client.url), requests[service])
            for service, client in clients.items()]


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _explain(settings: Settings, service: str, endpoint: str, error: Exception,
             own_azurite_log: Path | None) -> str:
    problem, what = _problem(error)
    line = f"cannot use the storage: the {service} service at {endpoint} {what}; "
    connection = settings.connection(STORAGE_CONNECTION)
    if own_azurite_log is not None:
        return line + f"it is serve's own Azurite, whose output is in {own_azurite_log}"
    if connection.string.replace(" ", "").lower().startswith("usedevelopmentstorage=true"):
        return line + {
            "unreachable": f"start Azurite on its default ports ({AZURITE_COMMAND}), or unset "
                           f"{STORAGE_CONNECTION} and serve starts its own",
            "api-version": f"restart that Azurite with --skipApiVersionCheck ({AZURITE_COMMAND})",
            "credentials": "that Azurite does not have the well-known development account: "
                           f"start it without AZURITE_ACCOUNTS, or set {STORAGE_CONNECTION} to "
                           "its connection string",
        }.get(problem, f"see the log of that Azurite, or unset {STORAGE_CONNECTION} and serve "
                       "starts its own")
    if connection.string:
        return line + {
            "unreachable": f"check the endpoints in {STORAGE_CONNECTION} and that the storage "
                           f"they name runs (an Azurite: {AZURITE_COMMAND})",
            "api-version": "if it is Azurite, restart it with --skipApiVersionCheck",
            "credentials": f"the account key (or SAS) in {STORAGE_CONNECTION} is not one that "
                           "this account accepts: copy its connection string again",
        }.get(problem, f"check {STORAGE_CONNECTION}")
    setting = f"{STORAGE_CONNECTION}__{service}ServiceUri"
    return line + {
        "unreachable": f"check {setting}",
        "api-version": "if it is Azurite, restart it with --skipApiVersionCheck",
        "credentials": "the identity (DefaultAzureCredential: a managed identity, or `az login`) "
                       "needs the Storage Blob, Queue and Table Data Contributor roles there",
    }.get(problem, f"check {setting}")


def _problem(error: Exception) -> tuple[str, str]:
    """What kind of refusal this is, and the words for it."""
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        reason = re.search(r"\[Errno -?\d+\] ([^'\"]+)", str(error))
        return "unreachable", f"does not answer ({reason.group(1) if reason else type(error).__name__})"
    status = getattr(error, "status_code", None)
    code = getattr(error, "error_code", None) or type(error).__name__
    code = getattr(code, "value", code)  # the SDKs' error codes are enums of the codes' text
    if isinstance(error, HttpResponseError) and "API version" in str(error):
        request = getattr(error.response, "request", None)
        version = request.headers.get("x-ms-version") if request is not None else None
        return "api-version", f"refuses this storage SDK's API version ({version or 'unknown'})"
    if isinstance(error, ClientAuthenticationError) or status in (401, 403):
        return "credentials", f"refuses the credentials ({code})"
    return "other", f"refuses a first request (HTTP {status} {code})" if status else \
        f"fails a first request ({code})"
