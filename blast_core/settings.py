"""Every setting the service reads, in one place.

Settings come from environment variables (app settings in Azure, `local.settings.json`
under `func start`, flags of `python -m blast_core serve`). `SETTINGS` is also the table
in the README and the list the deployment is checked against.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from blast_core.domain.limits import RunLimits


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    description: str


STORAGE_CONNECTION = "BLAST_STORAGE"
SERVICEBUS_CONNECTION = "BLAST_SERVICEBUS"
MONITOR_CONNECTION = "APPLICATIONINSIGHTS_CONNECTION_STRING"  # the name Azure Monitor reads

SETTINGS: tuple[Setting, ...] = (
    Setting("BLAST_DB_DIR", "/mounts/blastdb",
            "Directory holding the BLAST databases (in Azure: the Azure Files mount path)."),
    Setting("BLAST_BIN_DIR", "",
            "Directory holding `blastn`, `blast_formatter` and `blastdbcmd`; empty: found on PATH."),
    Setting("BLAST_DB_CACHE_DIR", "",
            "Directory on the instance's own disk into which a database is copied from "
            "`BLAST_DB_DIR` on first use, once per instance, and searched there by every later "
            "job; empty: databases are searched on `BLAST_DB_DIR`."),
    Setting("BLAST_DB_PRELOAD", "0",
            "`1`: each worker process reads a database's files once on first use (the staged "
            "copy, or `BLAST_DB_DIR` without a cache), so its first search finds them in the "
            "page cache."),
    Setting("BLAST_TIME_LIMIT", "2700",
            "Seconds one BLAST run may take before it is stopped and the job fails with that "
            "reason; at most the function timeout (host.json, 1 h) less 5 minutes kept for "
            "storing results, and less when staging and download took longer (docs/reliability.md, "
            "Time limits)."),
    Setting("BLAST_THREADS", "1", "`-num_threads` of each BLAST run."),
    Setting("BLAST_QUEUE_TRANSPORT", "servicebus",
            "`servicebus` (Azure Service Bus) or `storage` (Azure Storage Queue, runs on Azurite)."),
    Setting("BLAST_QUEUE_NAME", "blast-jobs",
            "The interactive lane's queue: jobs of at most BLAST_INTERACTIVE_LETTERS."),
    Setting("BLAST_BULK_QUEUE_NAME", "blast-jobs-bulk",
            "The bulk lane's queue: bigger jobs, so that they never hold up a quick search."),
    Setting("BLAST_INTERACTIVE_LETTERS", "20000",
            "Jobs of at most this many query letters (and at most 0.4 of a batch of their "
            "search) go to the interactive lane, bigger ones to the bulk lane; each lane has "
            "its own queue and workers."),
    Setting(SERVICEBUS_CONNECTION, "",
            "Service Bus connection string; or set `BLAST_SERVICEBUS__fullyQualifiedNamespace` "
            "to use the managed identity."),
    Setting(STORAGE_CONNECTION, "",
            "Storage connection string for results, job records and the Storage Queue; or set "
            "`BLAST_STORAGE__blobServiceUri`, `__tableServiceUri` and `__queueServiceUri` "
            "to use the managed identity."),
    Setting("BLAST_AZURITE_DIR", "~/.local/share/blast-service/azurite",
            "`serve` without storage settings: folder of the Azurite it starts and stops itself, "
            "holding its data, account key and ports, so that jobs, results and result links "
            "outlive a restart; one `serve` at a time per folder."),
    Setting("BLAST_RESULTS_CONTAINER", "blast-results", "Blob container for queries and results."),
    Setting("BLAST_JOBS_TABLE", "blastjobs", "Table holding the job records."),
    Setting("BLAST_MAX_DELIVERIES", "5",
            "Deliveries of one message before its job is marked failed and the message "
            "dead-lettered; keep equal to the queue's max delivery / dequeue count."),
    Setting("BLAST_VISIBILITY_TIMEOUT", "60",
            "Workers of `serve` and `worker`: seconds a received Storage Queue message stays "
            "hidden, renewed every third of it while BLAST runs (a Service Bus lock is renewed "
            "as often)."),
    Setting("BLAST_BATCH_LETTERS", "0",
            "Query letters per batch of a big job (each batch is one queue message); "
            "0: the program's default (blastn 500,000; blastp and tblastn 10,000; "
            "blastx and tblastx 20,000), and for blastn no more than its task is expected to "
            "search against the job's databases in 10 minutes (`blast_core/domain/tuning.py`)."),
    Setting("BLAST_COALESCE_MESSAGES", "16",
            "Workers of `serve` and `worker`: most messages received at once; batches among "
            "them that share a search run as one BLAST process, up to one batch's letters "
            "(under the Functions host, host.json `maxMessageBatchSize`). 1: no coalescing."),
    Setting("BLAST_RESULT_LINK_HOURS", "24",
            "Lifetime of read-only result links (SAS); never past the job's expiry."),
    Setting("BLAST_RETENTION_DAYS", "60",
            "Days a job's record, query and results are kept after submission; then the job "
            "answers 410 Gone and a clean-up deletes it (fractions allowed; 0: keep forever)."),
    Setting("BLAST_CLEANUP_SECONDS", "3600",
            "`serve` only: seconds between its clean-ups of expired jobs (in Azure a timer "
            "function runs hourly, and a lifecycle rule on the results container backs it up)."),
    Setting("BLAST_CANCEL_CHECK_SECONDS", "3",
            "Seconds between a worker's checks, while BLAST runs, of whether the job was "
            "cancelled; a cancelled job's BLAST is stopped within about this long."),
    Setting("BLAST_MAX_QUERY_BYTES", "10000000", "Largest accepted query, in bytes of FASTA."),
    Setting("BLAST_MAX_INLINE_RESULT_BYTES", "50000000",
            "Largest result sent in the body of `GET .../results`; a larger one answers `302` to "
            "a read-only link into Blob storage, so that no worker holds it whole."),
    Setting("BLAST_MAX_QUERIES", "25000", "Most sequences in one job."),
    Setting("BLAST_MAX_SEQUENCE_LETTERS", "1000000", "Longest accepted query sequence."),
    Setting("BLAST_MAX_SUBJECT_BYTES", "5000000",
            "Largest accepted `subject` (sequences searched instead of a database), in bytes of "
            "FASTA; also the longest subject sequence (a bacterial genome fits)."),
    Setting("BLAST_MAX_SUBJECTS", "1000", "Most `subject` sequences in one job."),
    Setting("BLAST_MAX_UPLOAD_BYTES", "5368709120",
            "Largest uploaded query (`POST /api/uploads`), in bytes of FASTA (5 GiB)."),
    Setting("BLAST_MAX_UPLOAD_QUERIES", "20000000", "Most sequences in one uploaded query."),
    Setting("BLAST_UPLOAD_LINK_MINUTES", "60",
            "Minutes an upload link (a write-only SAS for one blob) stays valid; a job can be "
            "made of the upload until an hour after that, and the upload is deleted once its "
            "job has split it, or once that time has passed."),
    Setting("BLAST_MAX_HEADER_CHARS", "10000",
            "Longest accepted FASTA header line of a query (the `>` line), in characters: room "
            "for any one record's description (GenBank, RefSeq, UniProt), not for a header "
            "used to carry data."),
    Setting("BLAST_PRICE_PER_CORE_SECOND", "0.00006",
            "Price of one core for one second, for the estimated cost in each job's run "
            "summary (CPU seconds of BLAST times this). The default assumes roughly $0.216 "
            "per core-hour, the same for EP1 (1 core), EP2 (2) and EP3 (4) since Elastic Premium "
            "bills per core; an estimate, not a quote: set it from the Azure Functions pricing "
            "page for your region."),
    Setting("BLAST_API_KEY", "",
            "`serve` only: when set, every route but health needs it in `x-functions-key` "
            "or `?code=` (in Azure, function keys do this)."),
    Setting(MONITOR_CONNECTION, "",
            "Application Insights connection string: when set, traces from submit through the "
            "worker's staging, BLAST, upload and formatting are exported there (see Operating); "
            "empty: nothing is exported."),
)

_DEFAULTS = {s.name: s.default for s in SETTINGS}


class SettingsError(ValueError):
    """Settings are missing or malformed; `problems` names each one. Reported where the
    settings are used and by /api/health, never at import: one bad setting must not take
    down every function."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def binding_transport(env: Mapping[str, str] | None = None) -> str:
    """The queue transport whose trigger `function_app.py` registers: the one setting the
    bindings need at import, read without failing (a bad value is reported with the rest)."""
    value = (os.environ if env is None else env).get("BLAST_QUEUE_TRANSPORT", "")
    return "storage" if value.strip().lower() == "storage" else "servicebus"


class _Reader:
    """Reads settings by kind, noting each that is wrong (and going on with its default)."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str) -> str:
        return self.env.get(name, "").strip() or _DEFAULTS[name]

    def number(self, name: str, minimum: int = 1) -> int:
        raw = self.text(name)
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name} must be a whole number, not {raw!r}")
            return int(_DEFAULTS[name])
        if value < minimum:
            self.problems.append(f"{name} must be at least {minimum}, not {value}")
        return value

    def decimal(self, name: str, above_zero: bool = False) -> float:
        raw = self.text(name)
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (0 < value if above_zero else 0 <= value) or not math.isfinite(value):
            bound = "above 0" if above_zero else "of at least 0"
            self.problems.append(f"{name} must be a number {bound}, not {raw!r}")
            return float(_DEFAULTS[name])
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name).lower()
        if value not in allowed:
            self.problems.append(
                f"{name} must be {' or '.join(map(repr, allowed))}, not {value!r}")
            return _DEFAULTS[name]
        return value


@dataclass(frozen=True)
class Settings:
    db_dir: str
    bin_dir: str
    db_cache_dir: str
    db_preload: bool
    time_limit: int
    threads: int
    queue_transport: str
    queue_name: str
    bulk_queue_name: str
    interactive_letters: int
    azurite_dir: str
    results_container: str
    jobs_table: str
    max_deliveries: int
    visibility_timeout: int
    batch_letters: int
    coalesce_messages: int
    result_link_hours: int
    retention_days: float
    cleanup_seconds: int
    cancel_check_seconds: float
    max_query_bytes: int
    max_queries: int
    max_sequence_letters: int
    max_inline_result_bytes: int
    max_subject_bytes: int
    max_subjects: int
    max_upload_bytes: int
    max_upload_queries: int
    upload_link_minutes: int
    max_header_chars: int
    price_per_core_second: float
    limits: RunLimits
    api_key: str = field(repr=False)
    monitor_connection: str = field(repr=False)
    env: Mapping[str, str] = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every setting, checked; SettingsError names every one that is wrong."""
        env = dict(os.environ if env is None else env)
        read = _Reader(env)
        text, number, decimal, choice = read.text, read.number, read.decimal, read.choice
        time_limit = number("BLAST_TIME_LIMIT")
        try:
            limits = RunLimits.derive(time_limit, env)
        except ValueError as error:
            read.problems.append(str(error))
            limits = RunLimits.derive(int(_DEFAULTS["BLAST_TIME_LIMIT"]), {})
        settings = cls(
            db_dir=text("BLAST_DB_DIR"),
            bin_dir=text("BLAST_BIN_DIR"),
            db_cache_dir=text("BLAST_DB_CACHE_DIR"),
            db_preload=choice("BLAST_DB_PRELOAD", ("0", "1")) == "1",
            time_limit=time_limit,
            threads=number("BLAST_THREADS"),
            queue_transport=choice("BLAST_QUEUE_TRANSPORT", ("servicebus", "storage")),
            queue_name=text("BLAST_QUEUE_NAME"),
            bulk_queue_name=text("BLAST_BULK_QUEUE_NAME"),
            interactive_letters=number("BLAST_INTERACTIVE_LETTERS", minimum=0),
            azurite_dir=os.path.expanduser(text("BLAST_AZURITE_DIR")),
            results_container=text("BLAST_RESULTS_CONTAINER"),
            jobs_table=text("BLAST_JOBS_TABLE"),
            max_deliveries=number("BLAST_MAX_DELIVERIES"),
            visibility_timeout=number("BLAST_VISIBILITY_TIMEOUT", minimum=3),
            batch_letters=number("BLAST_BATCH_LETTERS", minimum=0),
            coalesce_messages=number("BLAST_COALESCE_MESSAGES"),
            result_link_hours=number("BLAST_RESULT_LINK_HOURS"),
            retention_days=decimal("BLAST_RETENTION_DAYS"),
            cleanup_seconds=number("BLAST_CLEANUP_SECONDS"),
            cancel_check_seconds=decimal("BLAST_CANCEL_CHECK_SECONDS", above_zero=True),
            max_query_bytes=number("BLAST_MAX_QUERY_BYTES"),
            max_queries=number("BLAST_MAX_QUERIES"),
            max_sequence_letters=number("BLAST_MAX_SEQUENCE_LETTERS"),
            max_inline_result_bytes=number("BLAST_MAX_INLINE_RESULT_BYTES"),
            max_subject_bytes=number("BLAST_MAX_SUBJECT_BYTES"),
            max_subjects=number("BLAST_MAX_SUBJECTS"),
            max_upload_bytes=number("BLAST_MAX_UPLOAD_BYTES"),
            max_upload_queries=number("BLAST_MAX_UPLOAD_QUERIES"),
            upload_link_minutes=number("BLAST_UPLOAD_LINK_MINUTES"),
            max_header_chars=number("BLAST_MAX_HEADER_CHARS"),
            price_per_core_second=decimal("BLAST_PRICE_PER_CORE_SECOND"),
            limits=limits,
            api_key=env.get("BLAST_API_KEY", ""),
            monitor_connection=env.get(MONITOR_CONNECTION, "").strip(),
            env=env,
        )
        if read.problems:
            raise SettingsError(read.problems)
        return settings

    @property
    def max_request_bytes(self) -> int:
        """Largest request body: twice the largest query and subject, room for JSON's
        escapes (each newline of a FASTA text is two bytes there)."""
        return 2 * (self.max_query_bytes + self.max_subject_bytes)

    def connection(self, name: str) -> Connection:
        """The connection named `name`: a connection string, or service URIs for an identity."""
        string = self.env.get(name, "").strip()
        prefix = f"{name}__"
        properties = {k[len(prefix):]: v for k, v in self.env.items() if k.startswith(prefix) and v}
        if not string and not properties:
            raise SettingsError([
                f"{name} is not set: give a connection string, or {name}__<property> "
                "settings for an identity-based connection"])
        return Connection(name=name, string=string, properties=properties)


@dataclass(frozen=True)
class Connection:
    name: str
    string: str = field(repr=False)
    properties: Mapping[str, str]

    def service_uri(self, service: str) -> str:
        """`service` is `blob`, `table` or `queue` (identity-based connections only)."""
        uri = self.properties.get(f"{service}ServiceUri")
        if not uri:
            raise SettingsError([f"{self.name}__{service}ServiceUri is not set"])
        return uri

