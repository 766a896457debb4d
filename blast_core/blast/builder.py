"""Build a BLAST database from FASTA with makeblastdb (`storage/share.py` uploads it to the
app's Azure Files share)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

DBTYPES = ("nucl", "prot")

# Database names end up in -db arguments, where BLAST splits at spaces.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class DatabaseBuildError(RuntimeError):
    """makeblastdb could not build the database."""


def build_database(
    fasta_path: str | Path,
    name: str,
    dbtype: str,
    title: str,
    out_dir: str | Path,
    makeblastdb: str = "makeblastdb",
) -> list[Path]:
    """Build database `name` from `fasta_path` in `out_dir` and return its files.

    Runs `makeblastdb -parse_seqids -blastdb_version 5`. `out_dir` must be empty or new
    (a temporary directory, typically): everything makeblastdb leaves there is the
    database, volumes and alias file included. The FASTA goes in on stdin and the database
    is written relative to `out_dir` because makeblastdb splits the values of `-in` and
    `-out` at spaces.
    """
    if dbtype not in DBTYPES:
        raise ValueError(f"dbtype must be one of {', '.join(DBTYPES)}, not {dbtype!r}")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"database name {name!r} must be letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise DatabaseBuildError(f"{out} is not empty")
    command = [
        makeblastdb, "-in", "-", "-dbtype", dbtype, "-out", name, "-title", title,
        "-parse_seqids", "-blastdb_version", "5",
    ]
    with Path(fasta_path).open("rb") as fasta:
        try:
            result = subprocess.run(
                command, stdin=fasta, cwd=out, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise DatabaseBuildError(f"{makeblastdb} not found: install BLAST+") from None
    if result.returncode != 0:
        message = result.stderr.strip() or result.stdout.strip()
        raise DatabaseBuildError(f"makeblastdb exited with {result.returncode}: {message}")
    files = sorted(path for path in out.iterdir() if path.is_file())
    if not files:
        raise DatabaseBuildError(f"makeblastdb wrote nothing into {out}")
    return files
