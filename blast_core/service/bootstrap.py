"""Building the service: the one place that names the concrete adapters (Azure Table, Blob
and queue clients, the BLAST+ database catalog)."""

from __future__ import annotations

import threading

from blast_core import telemetry
from blast_core.blast.databases import DatabaseCatalog
from blast_core.blast.search import BlastTools
from blast_core.service.core import BlastService
from blast_core.settings import STORAGE_CONNECTION, Settings
from blast_core.storage.blobs import AzureJobBlobs
from blast_core.storage.queues import connect
from blast_core.storage.records import JobRecords


def build(settings: Settings) -> BlastService:
    """The service on the storage and queue the settings name (nothing is connected yet)."""
    storage = settings.connection(STORAGE_CONNECTION)
    catalog = DatabaseCatalog(settings.db_dir,
                              BlastTools.from_settings(settings).path("blastdbcmd"),
                              cache_dir=settings.db_cache_dir, preload=settings.db_preload)
    return BlastService(settings, catalog, JobRecords.connect(storage, settings.jobs_table),
                        AzureJobBlobs.connect(storage, settings.results_container),
                        connect(settings))


_default: BlastService | None = None
_default_lock = threading.Lock()


def default_service() -> BlastService:
    """The process-wide service, built from the environment on first use, once even when
    several threads (concurrent invocations) ask at the same moment. SettingsError when the
    settings are wrong: it is raised again on the next call, until they are fixed."""
    global _default
    with _default_lock:
        if _default is None:
            settings = Settings.from_env()
            telemetry.configure(settings)
            service = build(settings)
            service.ensure_storage()
            _default = service
        return _default


def reset_default_service() -> None:
    """Forget the process-wide service (tests change the environment between apps)."""
    global _default
    with _default_lock:
        _default = None
