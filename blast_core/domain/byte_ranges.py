"""A download's part: the single byte range of an HTTP `Range` header (RFC 9110, section
14), resolved against the size of what is asked for. Pure logic."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SINGLE = re.compile(r"bytes=(\d{1,19})-(\d{0,19})|bytes=-(\d{1,19})", re.ASCII)


@dataclass(frozen=True)
class RangeSpec:
    """`bytes=first-last`, `bytes=first-` (last None) or `bytes=-suffix` (first None)."""

    first: int | None
    last: int | None = None
    suffix: int | None = None


@dataclass(frozen=True)
class ByteSpan:
    """Bytes `start` to `end`, both included, of `size`."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


class RangeNotSatisfiable(Exception):
    """A range outside the content: answered 416 with the content's size."""

    def __init__(self, size: int):
        super().__init__(f"no byte of the range is within the {size} bytes")
        self.size = size


def parse(header: str) -> RangeSpec | None:
    """The range a `Range` header asks for; None for a header to ignore, as RFC 9110 lets a
    server: absent, not a byte range, several ranges, or a last byte before the first."""
    found = _SINGLE.fullmatch(header.strip().replace(" ", ""))
    if not found:
        return None
    first, last, suffix = found.groups()
    if suffix is not None:
        return RangeSpec(None, suffix=int(suffix))
    if last and int(last) < int(first):
        return None
    return RangeSpec(int(first), int(last) if last else None)


def resolve(spec: RangeSpec, size: int) -> ByteSpan:
    """The bytes of `size` that `spec` covers, a last byte beyond the end cut to the end;
    RangeNotSatisfiable when none are (RFC 9110, 14.1.2)."""
    if spec.first is None:
        if not spec.suffix or not size:
            raise RangeNotSatisfiable(size)
        return ByteSpan(max(size - spec.suffix, 0), size - 1, size)
    if spec.first >= size:
        raise RangeNotSatisfiable(size)
    last = size - 1 if spec.last is None else min(spec.last, size - 1)
    return ByteSpan(spec.first, last, size)
