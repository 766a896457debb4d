"""The operator's commands, which work on the storage and queue the settings name rather than
through the API: `serve`, `worker`, `dead-letters`, `clean-up`, `db upload`."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from blast_core.cli.parser import EXIT_INTERRUPTED
from blast_core.domain.messages import BULK, INTERACTIVE, LANES
from blast_core.logs import configure_logging
from blast_core.settings import STORAGE_CONNECTION, Settings, SettingsError

if TYPE_CHECKING:
    from blast_core.service.core import BlastService


# The queue of serve, worker and the operator commands, unless the settings name another. No
# storage default: serve without one starts its own Azurite, the others say what to set.
LOCAL_QUEUE_TRANSPORT = "storage"


PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where node_modules/ holds Azurite

# What the operator's commands need beyond the client: the `server` extra of the package.
SERVER_MODULES = ("azure.data.tables", "azure.storage.blob", "azure.servicebus", "waitress")


def missing_server_module() -> str | None:
    for module in SERVER_MODULES:
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is None:
            return module
    return None


def run_service(args: argparse.Namespace) -> int:
    configure_logging()
    if missing := missing_server_module():
        print(f"error: `{args.command}` runs the service, and {missing} is not installed: "
              "pip install 'blast-service[server]' (the client commands need only the package)",
              file=sys.stderr)
        return 2
    if args.command == "db":
        return upload_database(args)
    os.environ.setdefault("BLAST_QUEUE_TRANSPORT", LOCAL_QUEUE_TRANSPORT)
    if getattr(args, "db_dir", None):
        os.environ["BLAST_DB_DIR"] = os.path.abspath(args.db_dir)
    if getattr(args, "api_key", None):
        os.environ["BLAST_API_KEY"] = args.api_key
    if args.command == "serve":
        return serve_command(args)
    from blast_core.storage.check import StorageUnusable

    if args.command == "worker":
        stop_on_signals()  # before anything else, so a stop at start-up is one too
    try:
        settings = Settings.from_env()
        if not storage_configured(settings):
            raise SettingsError([
                f"{STORAGE_CONNECTION} is not set: `{args.command}` works on the storage it "
                "names (UseDevelopmentStorage=true: an Azurite you run on its default ports); "
                "the Azurite that `serve` starts for itself is for it and its --workers only"])
        service = start_service(settings)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except StorageUnusable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.command == "dead-letters":
        return dead_letters(service, args.requeue, args.json)
    if args.command == "clean-up":
        service.ensure_storage()
        print(f"deleted {service.clean_up()} expired job(s)")
        return 0
    from blast_core import telemetry

    telemetry.configure(settings)
    run_worker(service, args.lane, args.wake_fd)
    return 0


def storage_configured(settings: Settings) -> bool:
    try:
        settings.connection(STORAGE_CONNECTION)
    except SettingsError:
        return False
    return True


def start_service(settings: Settings, own_azurite_log: Path | None = None) -> BlastService:
    """The service on `settings`, once its storage has answered (StorageUnusable if not)."""
    from blast_core.service import bootstrap
    from blast_core.storage.check import check_storage

    check_storage(settings, own_azurite_log)
    return bootstrap.build(settings)


def serve_command(args: argparse.Namespace) -> int:
    """`serve`: with no storage configured, on an Azurite of its own that stops with it."""
    from blast_core import telemetry
    from blast_core.hosts.serve import CannotServe, StopSignals, serve
    from blast_core.storage.azurite import LocalStorageError, start_own_azurite
    from blast_core.storage.check import StorageUnusable

    stop = StopSignals()  # from here on, SIGINT and SIGTERM ask serve to stop, and it does
    own_azurite = None
    try:
        settings = Settings.from_env()
        if not storage_configured(settings):
            own_azurite = start_own_azurite(PROJECT_ROOT, Path(settings.azurite_dir))
            logging.getLogger("blast_core.hosts.serve").info(
                "no storage configured: serve's own Azurite keeps the jobs in %s",
                own_azurite.workdir)
            os.environ[STORAGE_CONNECTION] = own_azurite.connection_string  # workers inherit it
            settings = Settings.from_env()
        service = start_service(settings, own_azurite.log_path if own_azurite else None)
        telemetry.configure(settings)
        workers = args.workers if args.workers is not None else max(
            1, (os.cpu_count() or 1) // settings.threads)
        stopped_by = serve(service, args.host, args.port, max(0, workers), stop)
        # Ctrl-C: what shells report for a program stopped by SIGINT. SIGTERM, how service
        # managers ask a service to stop, is a clean stop.
        return {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: 0}.get(stopped_by, 1)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (LocalStorageError, StorageUnusable, CannotServe) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if own_azurite is not None:
            own_azurite.stop()  # after the workers, which serve has stopped


def dead_letters(service, requeue: bool, as_json: bool) -> int:
    if requeue:
        requeued, left = service.requeue_dead_letters()
        if as_json:
            print(json.dumps({"requeued": requeued, "left": left}))
        else:
            print(f"requeued {len(requeued)} job(s){': ' if requeued else ''}{' '.join(requeued)}")
            if left:
                print(f"left {left} message(s) that name no job", file=sys.stderr)
        return 0
    letters = service.dead_letters()
    if as_json:
        print(json.dumps([letter.__dict__ for letter in letters], indent=1))
    elif not letters:
        print("no dead letters")
    else:
        print(f"{'job':<20} {'status':<10} error")
        for letter in letters:
            print(f"{letter.job_id or '(unreadable)':<20} {letter.status or '-':<10} "
                  f"{letter.error or letter.reason}")
    return 0


def upload_database(args: argparse.Namespace) -> int:
    import tempfile

    from blast_core.blast.builder import DatabaseBuildError, build_database
    from blast_core.storage.share import upload_database as upload

    connection = args.connection or os.environ.get(STORAGE_CONNECTION, "")
    if not connection:
        print(f"error: give --connection or set {STORAGE_CONNECTION}", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="blastdb-") as workdir:
            files = build_database(args.fasta, args.name, args.dbtype, args.title or args.name,
                                   workdir)
            uploaded = upload(files, connection, args.share, args.directory)
    except (DatabaseBuildError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"uploaded {len(uploaded)} files of database {args.name} to share {args.share}")
    return 0


def stop_on_signals() -> None:
    """SIGINT and SIGTERM end this process at once, with status 130 and 0: the running BLAST
    dies with it (parent-death signal) and its message comes back after the visibility
    timeout. Raising SystemExit from the handler instead could land in a finaliser or in the
    interpreter's own shut-down, where it is printed as "Exception ignored" and lost."""

    def leave_now(signum: int, frame: object) -> None:
        os._exit(EXIT_INTERRUPTED if signum == signal.SIGINT else 0)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, leave_now)


def run_worker(service: BlastService, lane: str, wake_fd: int | None = None) -> None:
    """Work on one lane, or on both (`all`: one thread each, as the two triggers of a
    function app instance)."""
    from blast_core.hosts.worker import run_worker as work

    service.ensure_storage()
    settings = service.settings
    names = {INTERACTIVE: settings.queue_name, BULK: settings.bulk_queue_name}
    lanes = LANES if lane == "all" else (lane,)
    logging.getLogger("blast_core.hosts.worker").info(
        "worker %d listening on %s queue(s) %s", os.getpid(), settings.queue_transport,
        " and ".join(f"{names[name]} ({name})" for name in lanes))
    work(service, threading.Event(), wake_fd, None if lane == "all" else lane)
