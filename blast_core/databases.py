"""The BLAST databases found in the database directory, as `blastdbcmd` reports them."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from blast_core.process import run_tool

LIST_FORMAT = "%f\t%p\t%n\t%l\t%t"
_MOLECULES = {"Nucleotide": "nucleotide", "Protein": "protein"}


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    title: str
    molecule: str
    sequences: int
    letters: int

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "title": self.title, "molecule": self.molecule,
                "sequences": self.sequences, "letters": self.letters}


def parse_listing(output: str, db_dir: str) -> list[DatabaseInfo]:
    """Parse `blastdbcmd -list DIR -list_outfmt LIST_FORMAT` into databases named relative to DIR."""
    root = os.path.normpath(db_dir)
    found: dict[str, DatabaseInfo] = {}
    for line in output.splitlines():
        parts = line.split("\t", 4)
        if len(parts) != 5 or parts[1] not in _MOLECULES:
            continue
        path, molecule, sequences, letters, title = parts
        name = os.path.relpath(os.path.normpath(path), root)
        if name.startswith("..") or os.sep in name:
            continue
        found[name] = DatabaseInfo(name=name, title=title.strip(), molecule=_MOLECULES[molecule],
                                   sequences=int(sequences), letters=int(letters))
    return sorted(found.values(), key=lambda d: d.name.lower())


class DatabaseCatalog:
    """Lists databases with a short cache, so that new ones on the share appear within a minute."""

    def __init__(self, db_dir: str, blastdbcmd: str, ttl_seconds: float = 60.0):
        self.db_dir = db_dir
        self._blastdbcmd = blastdbcmd
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, list[DatabaseInfo]] | None = None

    def list(self) -> list[DatabaseInfo]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < self._ttl:
                return self._cached[1]
            databases = self._read()
            self._cached = (time.monotonic(), databases)
            return databases

    def find(self, name: str) -> DatabaseInfo | None:
        return next((d for d in self.list() if d.name == name), None)

    def path(self, name: str) -> str:
        return os.path.join(self.db_dir, name)

    def _read(self) -> list[DatabaseInfo]:
        if not os.path.isdir(self.db_dir):
            return []
        output = run_tool([self._blastdbcmd, "-list", self.db_dir,
                           "-list_outfmt", LIST_FORMAT], timeout=60)
        return parse_listing(output, self.db_dir)
