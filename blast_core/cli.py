"""`python -m blast_core`: run the service locally (`serve`, `worker`)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from blast_core.settings import STORAGE_CONNECTION, Settings, SettingsError

LOCAL_DEFAULTS = {
    "BLAST_QUEUE_TRANSPORT": "storage",
    STORAGE_CONNECTION: "UseDevelopmentStorage=true",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blast_core",
                                     description="BLAST search service, run locally.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API and run queue workers")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7071)
    serve.add_argument("--db-dir", help="database directory (setting BLAST_DB_DIR)")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes, each running one BLAST at a time (default 1)")
    serve.add_argument("--api-key", help="require this key on every route but health "
                                         "(setting BLAST_API_KEY)")
    worker = commands.add_parser("worker", help="run one queue worker in the foreground")
    worker.add_argument("--db-dir", help="database directory (setting BLAST_DB_DIR)")
    args = parser.parse_args(argv)

    configure_logging()
    for name, value in LOCAL_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if args.db_dir:
        os.environ["BLAST_DB_DIR"] = os.path.abspath(args.db_dir)
    if getattr(args, "api_key", None):
        os.environ["BLAST_API_KEY"] = args.api_key
    try:
        settings = Settings.from_env()
        from blast_core.service import BlastService

        service = BlastService.from_settings(settings)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from blast_core.server import serve as run_server

        run_server(service, args.host, args.port, max(0, args.workers))
    else:
        run_worker_until_signalled(service)
    return 0


def run_worker_until_signalled(service) -> None:
    from blast_core.worker import run_worker

    stop = threading.Event()

    def shut_down(signum: int, frame: object) -> None:
        # Leave at once: the running blastn is killed with us, and the message comes back.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, shut_down)
    service.ensure_storage()
    logging.getLogger("blast_core.worker").info("worker %d listening on %s queue %s",
                                                os.getpid(), service.settings.queue_transport,
                                                service.settings.queue_name)
    try:
        run_worker(service, stop)
    except KeyboardInterrupt:
        pass


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
