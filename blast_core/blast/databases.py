"""The BLAST databases found in the database directory, as `blastdbcmd` reports them."""

from __future__ import annotations

import os
import threading
import time

from blast_core.blast import staging
from blast_core.blast.programs import run_tool
from blast_core.domain.database import DatabaseInfo

LIST_FORMAT = "%f\t%p\t%n\t%l\t%t"
_MOLECULES = {"Nucleotide": "nucleotide", "Protein": "protein"}


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
    """Lists databases with a short cache, so that new ones on the share appear within a minute,
    and says where a search reads each one (`local_path`)."""

    def __init__(self, db_dir: str, blastdbcmd: str, ttl_seconds: float = 60.0,
                 cache_dir: str = "", preload: bool = False):
        self.db_dir = db_dir
        self._blastdbcmd = blastdbcmd
        self._ttl = ttl_seconds
        self._cache_dir = cache_dir
        self._preload = preload
        self._lock = threading.Lock()
        self._cached: tuple[float, list[DatabaseInfo]] | None = None
        self._local_lock = threading.Lock()
        self._local: dict[str, tuple[float, str]] = {}
        self._local_locks: dict[str, threading.Lock] = {}

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

    def local_path(self, name: str) -> str:
        """Where a search reads database `name`: its copy staged on this instance's disk when
        a cache directory is set, else the share. Checked against the share at most once per
        TTL in this process (a check lists the share), and pre-read on first use when asked."""
        with self._local_lock:
            lock = self._local_locks.setdefault(name, threading.Lock())
        with lock:
            known = self._local.get(name)
            if known and time.monotonic() - known[0] < self._ttl:
                return known[1]
            preload = self._preload and known is None
            if self._cache_dir:
                path = staging.stage(self.db_dir, name, self._cache_dir, preload=preload)
            else:
                if preload:
                    staging.read_once(self.db_dir, name)
                path = self.path(name)
            self._local[name] = (time.monotonic(), path)
            return path

    def _read(self) -> list[DatabaseInfo]:
        if not os.path.isdir(self.db_dir):
            return []
        output = run_tool([self._blastdbcmd, "-list", self.db_dir,
                           "-list_outfmt", LIST_FORMAT], timeout=60)
        return parse_listing(output, self.db_dir)
