"""Settings: defaults, validation, connections, and no secret in their text."""

import pytest

from blast_core.settings import SETTINGS, Settings, SettingsError


def test_defaults():
    settings = Settings.from_env({})
    assert (settings.queue_transport, settings.queue_name, settings.time_limit,
            settings.max_deliveries) == ("servicebus", "blast-jobs", 2700, 5)


@pytest.mark.parametrize("env, message", [
    ({"BLAST_QUEUE_TRANSPORT": "kafka"}, "BLAST_QUEUE_TRANSPORT must be"),
    ({"BLAST_TIME_LIMIT": "soon"}, "BLAST_TIME_LIMIT must be a whole number"),
    ({"BLAST_THREADS": "0"}, "BLAST_THREADS must be at least 1"),
])
def test_bad_settings_are_named(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_every_bad_setting_is_named_at_once_and_the_time_limits_hold_together():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"BLAST_THREADS": "many", "BLAST_TIME_LIMIT": "4000",
                           "BLAST_CANCEL_CHECK_SECONDS": "nan", "BLAST_DB_PRELOAD": "yes"})
    assert raised.value.problems == [
        "BLAST_TIME_LIMIT is 4000 s; with functionTimeout 01:00:00 and 300 s kept for storing "
        "results, a search may take at most 3300 s",
        "BLAST_DB_PRELOAD must be '0' or '1', not 'yes'",
        "BLAST_THREADS must be a whole number, not 'many'",
        "BLAST_CANCEL_CHECK_SECONDS must be a number above 0, not 'nan'"]
    shrunk = Settings.from_env({"AzureFunctionsJobHost__functionTimeout": "00:10:00",
                                "BLAST_TIME_LIMIT": "400"})
    assert (shrunk.limits.function_timeout, shrunk.limits.blast_time_limit) == (600, 400)


def test_connections_by_string_or_identity():
    secret = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0"
    settings = Settings.from_env({"BLAST_STORAGE": secret,
                                  "BLAST_SERVICEBUS__fullyQualifiedNamespace": "ns.example"})
    assert settings.connection("BLAST_STORAGE").string == secret
    identity = settings.connection("BLAST_SERVICEBUS")
    assert (identity.string, identity.properties) == ("", {"fullyQualifiedNamespace": "ns.example"})
    assert "c2VjcmV0" not in repr(settings) + repr(settings.connection("BLAST_STORAGE"))
    with pytest.raises(SettingsError, match="BLAST_STORAGE__tableServiceUri is not set"):
        Settings.from_env({"BLAST_STORAGE__blobServiceUri": "x"}).connection(
            "BLAST_STORAGE").service_uri("table")
    with pytest.raises(SettingsError, match="BLAST_SERVICEBUS is not set"):
        Settings.from_env({}).connection("BLAST_SERVICEBUS")


def test_every_setting_is_documented_once():
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    assert all(s.description for s in SETTINGS)


def test_the_readme_settings_table_is_the_settings():
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme.splitlines()
            if line.startswith(("| `BLAST_", "| `APPLICATIONINSIGHTS_"))]
    assert [row.split("`")[1] for row in rows] == [s.name for s in SETTINGS]
    for row, setting in zip(rows, SETTINGS, strict=True):
        assert (f"`{setting.default}`" if setting.default else "(none)") in row
        assert row.endswith(f"| {setting.description} |"), f"{setting.name}: the README differs"


def test_identity_based_storage_clients_need_no_secret():
    from blast_core.storage.blobs import AzureJobBlobs
    from blast_core.storage.queues import StorageQueueTransport
    from blast_core.storage.records import JobRecords

    settings = Settings.from_env({
        "BLAST_STORAGE__blobServiceUri": "https://acct.blob.core.windows.net",
        "BLAST_STORAGE__tableServiceUri": "https://acct.table.core.windows.net",
        "BLAST_STORAGE__queueServiceUri": "https://acct.queue.core.windows.net"})
    connection = settings.connection("BLAST_STORAGE")
    results = AzureJobBlobs.connect(connection, "results")
    records = JobRecords.connect(connection, "jobs")
    queue = StorageQueueTransport.connect(settings, settings.queue_name)
    assert results._service.url.startswith("https://acct.blob.core.windows.net")
    assert records._table.url.startswith("https://acct.table.core.windows.net")
    assert queue.queue.url.startswith("https://acct.queue.core.windows.net")
    assert type(results._service.credential).__name__ == "DefaultAzureCredential"
