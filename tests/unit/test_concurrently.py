"""`concurrently.each`: results in order, and every call in the caller's context, which is
where OpenTelemetry keeps the current span (so a coalesced run's uploads stay in its trace)."""

import contextvars
import threading
import time

from blast_core.service import concurrently

CURRENT = contextvars.ContextVar("current", default="none")


def test_each_keeps_order_and_runs_every_call_in_the_callers_context():
    CURRENT.set("process batch")
    threads = set()

    def call(item: int) -> tuple[int, str]:
        threads.add(threading.get_ident())
        time.sleep(0.01)  # a round trip's wait, so that the calls overlap
        return item * 2, CURRENT.get()

    found = concurrently.each(call, list(range(20)))
    assert found == [(item * 2, "process batch") for item in range(20)]
    assert len(threads) > 1, "the calls ran on several threads"
    assert concurrently.each(call, []) == []
