"""`python -m blast_core` (installed as `blast-service`): run the service locally (`serve`,
`worker`, `clean-up`), or use a running one, local or in Azure, from a terminal (`submit`,
`status`, `cancel`, `results`, `recent`, `databases`, `sample`, `stats`)."""

from __future__ import annotations

from blast_core.cli.commands import run_client_command
from blast_core.cli.operator import run_service
from blast_core.cli.parser import CLIENT_COMMANDS, build_parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in CLIENT_COMMANDS:
        return run_client_command(parser, args)
    return run_service(args)
