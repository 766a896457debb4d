"""Scanning ASN.1 value notation as text, as BLAST+ writes it: blocks `{...}` with balanced
braces, their comma-separated items, the words labelling an item, string values.

Strings are skipped wherever braces or commas are looked for: `"..."` (`""` is an escaped
quote; a newline in one is a line wrap, not part of the value) and hex or bit strings `'...'H`.
Offsets are into the one text scanned, so that callers can cut and rewrite it in place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["Item", "block_end", "children", "decode", "index_blocks", "items", "label", "named", "with_items"]

_SCAN = re.compile(r"[{}\"']")
_ITEM_SCAN = re.compile(r"[{},\"']")


class Item(NamedTuple):
    """One comma-separated item of an ASN.1 block: text[start:end], whitespace stripped; its
    first top-level block is text[brace:brace_end + 1] (brace -1 when it has none)."""

    start: int
    end: int
    brace: int
    brace_end: int


def _string_end(text: str, quote: int) -> int:
    """Index just past the string opening at `quote`: `"..."` (`""` is an escaped quote) or a
    hex or bit string `'...'H`."""
    if text[quote] == "'":
        close = text.find("'", quote + 1)
        if close < 0:
            raise ValueError(f"unterminated hex string at offset {quote}")
        return close + 1
    position = quote + 1
    while True:
        close = text.find('"', position)
        if close < 0:
            raise ValueError(f"unterminated string at offset {quote}")
        if text.startswith('"', close + 1):
            position = close + 2
        else:
            return close + 1


def index_blocks(text: str, brace: int, depth: int) -> tuple[int, dict[int, int]]:
    """The index of the `}` closing the `{` at `brace`, and where each block in it closes down
    to `depth` levels (the block itself is level 1): one pass, skipping strings."""
    ends: dict[int, int] = {}
    opened: list[int] = []
    skip = brace
    for found in _SCAN.finditer(text, brace):
        at = found.start()
        if at < skip:
            continue  # in a string
        char = found.group()
        if char == "{":
            opened.append(at)
        elif char == "}":
            start = opened.pop()
            if len(opened) < depth:
                ends[start] = at
            if not opened:
                return at, ends
        else:
            skip = _string_end(text, at)
    raise ValueError(f"unbalanced braces: the block at offset {brace} is not closed")


def block_end(text: str, brace: int, ends: dict[int, int] | None = None) -> int:
    """Index of the `}` closing the `{` at `brace`, from `ends` (of `index_blocks`) if there."""
    if ends is not None and brace in ends:
        return ends[brace]
    return index_blocks(text, brace, 0)[0]


def items(text: str, brace: int, close: int, ends: dict[int, int] | None = None) -> list[Item]:
    """The comma-separated items of the block text[brace:close + 1]."""
    found_items: list[Item] = []
    start, first, first_end, position = brace + 1, -1, -1, brace + 1
    while True:
        found = _ITEM_SCAN.search(text, position, close + 1)
        if found is None:
            raise ValueError(f"unbalanced braces in the block at offset {brace}")
        at = found.start()
        char = text[at]
        if char == "{":
            end = block_end(text, at, ends)
            if first < 0:
                first, first_end = at, end
            position = end + 1
        elif char in "\"'":
            position = _string_end(text, at)
        else:
            if char == "}" and at != close:
                raise ValueError(f"unbalanced braces in the block at offset {brace}")
            begin, end = start, at
            while begin < end and text[begin].isspace():
                begin += 1
            while end > begin and text[end - 1].isspace():
                end -= 1
            if begin < end:
                found_items.append(Item(begin, end, first, first_end))
            elif char == ",":
                raise ValueError(f"empty item in the block at offset {brace}")
            if char == "}":
                return found_items
            start, first, first_end, position = at + 1, -1, -1, at + 1


def children(text: str, item: Item, what: str, ends: dict[int, int] | None = None) -> list[Item]:
    """The items of an item's block; `what` names the item in the error when it has none."""
    if item.brace < 0:
        raise ValueError(f"{what} is not a block")
    return items(text, item.brace, item.brace_end, ends)


def with_items(text: str, block: Item, entries: list[Item], pieces: list[str]) -> str:
    """The block of `block` (from its `{` to its `}`) with `pieces` for its items `entries`,
    laid out as they are."""
    if not entries:
        return text[block.brace:block.brace_end + 1]
    head = text[block.brace:entries[0].start]
    separator = (text[entries[0].end:entries[1].start] if len(entries) > 1 else
                 "," + head[1:])
    tail = text[entries[-1].end:block.brace_end + 1]
    if not pieces:
        return "{" + tail
    return head + separator.join(pieces) + tail


def label(text: str, item: Item) -> list[str]:
    """The words before an item's block (`body queue-search`), or all its words when it has none."""
    return text[item.start:item.brace if item.brace >= 0 else item.end].split()


def named(text: str, candidates: Iterable[Item], name: str) -> Item | None:
    """The first of `candidates` whose label begins with `name`."""
    for item in candidates:
        words = label(text, item)
        if words and words[0] == name:
            return item
    return None


def decode(raw: str) -> str:
    """The value of an ASN.1 string's raw text (between its quotes)."""
    return raw.replace("\r", "").replace("\n", "").replace('""', '"')
