"""Storage calls for the batches of one BLAST run, made at once: each is a round trip of a
few milliseconds that waits on the network, and Azure Storage serves them in parallel. Also
the batches of a result, each formatted by a blast_formatter process of its own."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MOST_AT_ONCE = 8


def each(function: Callable[[Item], Result], items: Sequence[Item],
         at_once: int = MOST_AT_ONCE) -> list[Result]:
    """`function` of every item, in order, on up to `at_once` threads, each call in a copy of
    the caller's context (so that its trace spans are children of the caller's). `function`
    handles its own errors: the first one it raises is raised here."""
    if len(items) <= 1 or at_once <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(at_once, len(items))) as pool:
        calls = [pool.submit(contextvars.copy_context().run, function, item) for item in items]
        return [call.result() for call in calls]
