"""Downloads of results: the single byte range of a `Range` header (RFC 9110, 14), gzip for
a client that accepts it, and the command line's progress while it writes a result."""

from __future__ import annotations

import gzip
import io

import pytest

from blast_core.api import compression
from blast_core.cli.output import DownloadProgress
from blast_core.domain import byte_ranges
from blast_core.domain.byte_ranges import RangeNotSatisfiable, RangeSpec


@pytest.mark.parametrize(("header", "size", "span"), [
    ("bytes=0-99", 1000, (0, 99)),
    ("bytes=100-", 1000, (100, 999)),
    ("bytes=-100", 1000, (900, 999)),
    ("bytes=-5000", 1000, (0, 999)),
    ("bytes=990-2000", 1000, (990, 999)),
    (" bytes = 5 - 6 ", 1000, (5, 6)),
])
def test_a_single_range_is_the_bytes_it_names_cut_to_the_end(header, size, span):
    resolved = byte_ranges.resolve(byte_ranges.parse(header), size)
    assert (resolved.start, resolved.end) == span
    assert resolved.content_range() == f"bytes {span[0]}-{span[1]}/{size}"
    assert resolved.length == span[1] - span[0] + 1


@pytest.mark.parametrize("header", [
    "", "bytes=", "bytes=5", "items=0-5", "bytes=0-5,10-20", "bytes=9-3", "bytes=a-b",
    "bytes=" + "9" * 20 + "-", "bytes=\u0661-", "bytes=--5"])
def test_a_header_that_is_no_single_byte_range_is_ignored(header):
    assert byte_ranges.parse(header) is None, "RFC 9110 lets a server send the whole instead"


@pytest.mark.parametrize(("spec", "size"), [
    (RangeSpec(1000), 1000), (RangeSpec(5000, 6000), 1000), (RangeSpec(None, suffix=0), 1000),
    (RangeSpec(0), 0), (RangeSpec(None, suffix=10), 0)])
def test_a_range_with_no_byte_in_the_content_is_not_satisfiable(spec, size):
    with pytest.raises(RangeNotSatisfiable) as refused:
        byte_ranges.resolve(spec, size)
    assert refused.value.size == size


@pytest.mark.parametrize(("header", "accepted"), [
    ("gzip", True), ("gzip, deflate, br", True), ("deflate, gzip;q=0.5", True), ("*", True),
    ("x-gzip", True), ("GZIP", True), ("", False), ("identity", False), ("deflate, br", False),
    ("gzip;q=0", False), ("*;q=0", False), ("gzip;q=0, *", False), ("*, gzip;q=0.0", False),
    ("gzip;q=nope", False)])
def test_gzip_is_used_only_where_the_client_accepts_it(header, accepted):
    assert compression.accepts_gzip(header) is accepted


def test_chunks_are_compressed_as_they_stream_and_decompress_to_the_same_bytes():
    chunks = [b"q1\tsubject\t99.5\n" * 1000 for _ in range(20)] + [b""]
    compressed = list(compression.gzipped(iter(chunks)))
    assert len(compressed) > 1 and gzip.decompress(b"".join(compressed)) == b"".join(chunks)
    assert gzip.decompress(b"".join(compression.gzipped([]))) == b"", "an empty result too"
    fast = b"".join(compression.gzipped(iter(chunks), 1))
    assert gzip.decompress(fast) == b"".join(chunks)
    assert compression.level_for("text/tab-separated-values; charset=utf-8") == 1
    assert compression.level_for("application/json") == compression.GZIP_LEVEL


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_download_bar_fills_with_the_bytes_written_at_most_ten_times_a_second():
    now = [0.0]
    screen = Terminal()
    progress = DownloadProgress(screen, 4_000_000, clock=lambda: now[0])
    progress.add(1_000_000)
    progress.add(1_000_000)  # within a tenth of a second: not redrawn
    now[0] = 0.5
    progress.add(1_000_000)
    progress.add(1_000_000)
    progress.end()
    assert screen.getvalue().split("\r")[1:] == [
        f"[{'#' * 7}{'.' * 23}] 1.0 MB of 4.0 MB",
        f"[{'#' * 22}{'.' * 8}] 3.0 MB of 4.0 MB",
        f"[{'#' * 30}] 4.0 MB of 4.0 MB\n"]


def test_without_a_total_the_bytes_are_counted_and_a_pipe_gets_nothing():
    screen = Terminal()
    progress = DownloadProgress(screen, None)
    progress.add(2_500_000)
    progress.end()
    assert screen.getvalue() == "\r2.5 MB written\r2.5 MB written\n"
    piped = io.StringIO()
    quiet = DownloadProgress(piped, 100)
    quiet.add(100)
    quiet.end()
    assert piped.getvalue() == ""
