"""What the client commands print for people: a progress bar and aligned tables."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from blast_core.domain.jobs import FINAL_STATUSES


class Progress:
    """A progress bar of the queries done, redrawn in place on a terminal; elsewhere (a log, a
    pipe) one line each time the status or the count changes."""

    WIDTH = 30

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.live = stream.isatty()
        self.last = ("", -1)
        self.ticks = 0

    def show(self, job: dict[str, Any], elapsed: float) -> None:
        total, status = job["queries"], job["status"]
        # A service from before batching reports no queries_done: all are done on success.
        done = job.get("queries_done", total if status == "succeeded" else 0)
        counts = f"{done}/{total} queries"
        if status == "validating":  # its upload is being checked and split into batches
            size = job.get("upload_bytes", 0)
            counts = (f"checking the {megabytes(size)} upload: "
                      f"{100 * job.get('upload_checked', 0) // max(size, 1)}%")
        elif job.get("batches", 1) > 1:
            counts += f", {job['batches_done']}/{job['batches']} batches"
        if self.live:
            filled = self.WIDTH * done // max(total, 1)
            spinner = " " if status in FINAL_STATUSES else "|/-\\"[self.ticks % 4]
            self.ticks += 1
            self.stream.write(f"\r{spinner} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                              f"{counts}  {status:<9}  {elapsed:5.1f} s")
        elif (status, done) != self.last:
            self.stream.write(f"job {job['id']} {status}: {counts} after {elapsed:.1f} s\n")
        self.last = (status, done)
        self.stream.flush()

    def end(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()


class DownloadProgress:
    """A result being written to a file (or a query uploaded: `verb`): a bar of the bytes
    done when their total is known, else their count, redrawn in place at most ten times a
    second, on a terminal only (a log or a pipe gets nothing)."""

    WIDTH = 30

    def __init__(self, stream: TextIO, total: int | None,
                 clock: Callable[[], float] = time.monotonic, verb: str = "written"):
        self.stream, self.total, self.clock, self.verb = stream, total, clock, verb
        self.live = stream.isatty()
        self.done = 0
        self.drawn_at = -1.0

    def add(self, count: int) -> None:
        self.done += count
        if self.live and self.clock() - self.drawn_at >= 0.1:
            self._draw()

    def end(self) -> None:
        if self.live:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        self.drawn_at = self.clock()
        if self.total:
            filled = self.WIDTH * min(self.done, self.total) // self.total
            shown = (f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {megabytes(self.done)} of "
                     f"{megabytes(self.total)}")
        else:
            shown = f"{megabytes(self.done)} {self.verb}"
        self.stream.write(f"\r{shown}")
        self.stream.flush()


def megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def table(rows: list[list[str]], numeric: tuple[int, ...] = ()) -> str:
    """Aligned columns, those at the `numeric` indexes to the right."""
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    return "\n".join(
        "  ".join(cell.rjust(width) if index in numeric else cell.ljust(width)
                  for index, (cell, width) in enumerate(zip(row, widths, strict=True))).rstrip()
        for row in rows)
