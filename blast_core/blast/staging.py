"""Database staging: copy a database from the mounted share to the instance's own disk once,
and search the copy.

BLAST memory-maps its database, so on an Azure Files share (tens of MB/s) a search on a new
instance pulls the pages it touches over the network, and pulls them again whenever the page
cache lets them go. A local copy is read from the share once per instance, in one sequential
pass, and every later job and worker process there reads local disk.

Workers race for the first copy: the winner takes the database's `flock`, copies into a
temporary directory, checks the sizes, renames the directory into place and only then writes
the completion marker, a manifest of the source files (names, sizes, modification times). The
others wait on the lock and find the marker; later calls see it without the lock. A crash
leaves at most a temporary directory, which the next stager removes. When the share's files
change (another manifest) the database is staged again; a process still reading the old copy
keeps its open files after the old directory is removed.

Layout of `<cache_dir>/<name>/`: `lock`, `staged.json` (the marker), `db/` (the copy), and
transient `tmp-*` and `old-*` entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator

log = logging.getLogger("blast_core.blast.staging")

LOCK = "lock"
MARKER = "staged.json"
COPY = "db"
_TRANSIENT = ("tmp-", "old-")
_ALIAS_EXTENSIONS = ("nal", "pal")

# (file name, size, modification time in ns) of each file of a database, sorted by name.
Manifest = list[tuple[str, int, int]]


class StagingError(RuntimeError):
    """The copy does not match the share (a file changed while it was copied); another
    attempt, with the message delivered again, may succeed."""


def database_files(directory: str, name: str) -> list[str]:
    """The file names of database `name`: its volumes (`name.00.nsq`) and alias file
    (`name.nal`) too, but never the files of another database whose name begins with this
    one (`SSURef_93.fasta.nsq` is not a file of `SSURef_93`). BLAST's own files are `.n??`
    (nucleotide) and `.p??` (protein); anything else beside them is not copied."""
    pattern = re.compile(rf"{re.escape(name)}(\.\d+)?\.[np][a-z]{{2}}")
    with os.scandir(directory) as entries:
        return sorted(e.name for e in entries if pattern.fullmatch(e.name) and e.is_file())


def manifest(directory: str, name: str) -> Manifest:
    """What the staged copy must match; a changed size or mtime on the share restages it."""
    found = []
    for file in database_files(directory, name):
        status = os.stat(os.path.join(directory, file))
        found.append((file, status.st_size, status.st_mtime_ns))
    return found


def stage(source_dir: str, name: str, cache_dir: str, preload: bool = False) -> str:
    """The path prefix to search database `name` at: its copy under `cache_dir`, made from
    `source_dir` by the first caller on this machine and reused by every later one.

    Falls back to the share (logged) when the database cannot be searched from a copy: an
    alias file naming files outside it, or too little free space. A database missing from
    the share is left for BLAST to report. `preload` reads the files once afterwards."""
    if not name or name in (".", "..") or "/" in name:
        raise ValueError(f"not a database name: {name!r}")
    entry = os.path.join(cache_dir, name)
    copy = os.path.join(entry, COPY)
    source = manifest(source_dir, name)
    if not source:
        return os.path.join(source_dir, name)
    directory = copy
    if not _is_current(entry, source_dir, source):
        os.makedirs(entry, exist_ok=True)
        with _locked(os.path.join(entry, LOCK)):
            source = manifest(source_dir, name)  # the share may have changed while we waited
            if not _is_current(entry, source_dir, source):
                reason = _unstageable(source_dir, name, entry, source)
                if reason:
                    log.warning("searching %s on the share, not staged: %s", name, reason)
                    directory = source_dir
                else:
                    _copy(source_dir, name, entry, source)
    if preload:
        read_once(directory, name)
    return os.path.join(directory, name)


def read_once(directory: str, name: str) -> int:
    """Read every file of a database once, so that the first search finds it in the page
    cache instead of faulting it in page by page (what ElasticBLAST does with `vmtouch`).
    Returns the bytes read."""
    started = time.monotonic()
    total = 0
    buffer = bytearray(1 << 20)
    for file in database_files(directory, name):
        with open(os.path.join(directory, file), "rb", buffering=0) as stream:
            while count := stream.readinto(buffer):
                total += count
    log.info("pre-read %s in %s: %d bytes in %.2f s", name, directory, total,
             time.monotonic() - started)
    return total


def _is_current(entry: str, source_dir: str, source: Manifest) -> bool:
    """Whether the marker describes exactly these source files and the copy has their sizes
    (a copy cut short by a machine crash has the wrong sizes even with a marker)."""
    try:
        with open(os.path.join(entry, MARKER)) as stream:
            recorded = json.load(stream)
    except (FileNotFoundError, ValueError):
        return False
    if recorded.get("source") != os.path.abspath(source_dir) or \
            [tuple(file) for file in recorded.get("files", ())] != source:
        return False
    try:
        return all(os.stat(os.path.join(entry, COPY, file)).st_size == size
                   for file, size, _ in source)
    except FileNotFoundError:
        return False


def _unstageable(source_dir: str, name: str, entry: str, source: Manifest) -> str | None:
    """Why this database cannot be searched from a copy, or None."""
    volume = re.compile(rf"{re.escape(name)}\.\d+")
    for file, _, _ in source:
        if file[-3:] not in _ALIAS_EXTENSIONS:
            continue
        with open(os.path.join(source_dir, file)) as alias:
            for line in alias:
                key, _, rest = line.strip().partition(" ")
                if not key.endswith("LIST"):  # TITLE, NSEQ, LENGTH, comments
                    continue
                try:
                    parts = shlex.split(rest)
                except ValueError:
                    parts = []
                if key != "DBLIST" or not parts or not all(volume.fullmatch(p) for p in parts):
                    return f"{file} names files outside the database: {line.strip()!r}"
    needed = sum(size for _, size, _ in source)
    free = shutil.disk_usage(entry).free
    if needed > free:
        return f"{needed} bytes do not fit in {entry} ({free} free)"
    return None


def _copy(source_dir: str, name: str, entry: str, source: Manifest) -> None:
    """Copy, verify, swap into place, then mark complete; the caller holds the lock."""
    for leftover in os.listdir(entry):  # of stagers that died: nobody else holds the lock
        if leftover.startswith(_TRANSIENT):
            _remove(os.path.join(entry, leftover))
    started = time.monotonic()
    copy = os.path.join(entry, COPY)
    temporary = tempfile.mkdtemp(prefix="tmp-", dir=entry)
    try:
        for file, _, _ in source:
            shutil.copyfile(os.path.join(source_dir, file), os.path.join(temporary, file))
        wrong = [file for file, size, _ in source
                 if os.stat(os.path.join(temporary, file)).st_size != size]
        if wrong or manifest(source_dir, name) != source:
            raise StagingError(f"{name} changed on {source_dir} while it was copied "
                               f"({', '.join(wrong) or 'file list or times'})")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(entry, MARKER))  # the old copy is no longer the database
        old = None
        if os.path.isdir(copy):
            old = os.path.join(entry, f"old-{os.getpid()}-{secrets.token_hex(4)}")
            os.rename(copy, old)
        os.rename(temporary, copy)
    except BaseException:
        _remove(temporary)
        raise
    seconds = time.monotonic() - started
    size = sum(size for _, size, _ in source)
    _write_atomically(entry, MARKER, {
        "source": os.path.abspath(source_dir), "files": source, "bytes": size,
        "seconds": round(seconds, 3), "staged_at": time.time(), "pid": os.getpid()})
    if old:
        _remove(old)
    log.info("staged %s from %s%s: %d files, %d bytes in %.2f s", name, source_dir,
             ", replacing an outdated copy" if old else "", len(source), size, seconds)


def _write_atomically(directory: str, file: str, content: object) -> None:
    """Readers that do not take the lock see the old marker, or none, or the whole new one."""
    temporary = os.path.join(directory, f"tmp-{file}-{os.getpid()}")
    with open(temporary, "w") as stream:
        json.dump(content, stream)
    os.replace(temporary, os.path.join(directory, file))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """An exclusive `flock` between processes (and threads, each with its own descriptor);
    the kernel releases it when its holder dies, even by SIGKILL."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
