"""The time limits of the platform and every limit derived from them, in one place.

The platform's numbers, with their sources (docs/reliability.md has the whole table):
- `SCALE_IN_GRACE`: on scale-in, a Premium plan instance gives a running function 60 minutes
  to finish ("Azure Functions Premium plan"; "Event-driven scaling in Azure Functions").
- `PLATFORM_UPDATE_GRACE`: during a platform update, 10 minutes (same pages).
- `FUNCTION_TIMEOUT`: host.json `functionTimeout` (tests/test_infra.py checks host.json holds
  it). Past it the host restarts the language worker, which kills every invocation running in
  it ("host.json reference for Azure Functions 2.x and later"). It equals the scale-in grace,
  so no invocation outlives the grace it is given.
- `LOCK_DURATION`: the queue's lock, 5 minutes, the longest Service Bus allows
  (infra/modules/servicebus.bicep); the host renews it up to `maxAutoLockRenewalDuration`,
  which host.json sets to `FUNCTION_TIMEOUT`, but never for a function that receives a batch
  of messages (the same reference: the setting "doesn't apply to functions receiving a batch
  of messages"; azure-sdk-for-net#27979). So the interactive lane's batch trigger takes on
  at most `BATCH_TRIGGER_SHARE` of a batch's work per invocation, and only jobs that small
  go to that lane: a batch is sized to take at most `PLATFORM_UPDATE_GRACE` at half the
  slowest search rate measured (`tuning.py`), so that share ends within the lock, less a
  minute for storage, even at that rate.
- `MESSAGE_TTL`: a message waits at most a day (`defaultMessageTimeToLive` P1D in the Bicep;
  every send asks for it too, so the Storage Queue keeps the same rule), then expires.
- `HTTP_RESPONSE_LIMIT`: an HTTP-triggered function answers within 230 s ("Azure Functions
  HTTP trigger": the load balancer's idle timeout), so no request formats results.

Derived: a batch must have stored its results `FINISH_RESERVE` before the function timeout, so
BLAST gets what is left of the invocation after staging and download, and at most
`BLAST_TIME_LIMIT`; and the sweep decides a job is stranded only when no message for it can
still be in the queue or in a worker's hands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

SCALE_IN_GRACE = 60 * 60
PLATFORM_UPDATE_GRACE = 10 * 60
FUNCTION_TIMEOUT = SCALE_IN_GRACE
LOCK_DURATION = 5 * 60
BATCH_TRIGGER_SHARE = (LOCK_DURATION - 60) / PLATFORM_UPDATE_GRACE
MESSAGE_TTL = 24 * 60 * 60
HTTP_RESPONSE_LIMIT = 230
MAX_RETRY_DELAY = 60  # seconds before a failed delivery is tried again, at most
FINISH_RESERVE = 5 * 60  # upload of a batch's archive and the record update, after BLAST;
#                          a quarter of a shorter function timeout (tests shrink it)
MIN_SEARCH_SECONDS = 30  # less left for BLAST in an invocation: try again in a new one
# A single-batch query this small travels inside its message: a Storage Queue message holds
# 64 KiB and a Service Bus one 256 KiB (Standard); JSON escaping (a newline is two bytes),
# the XML a Storage Queue wraps a message in and the rest of the message stay within the rest.
INLINE_QUERY_BYTES = 48_000
# A query file larger than this is uploaded straight to Blob storage by the command line and the
# web page (POST /api/uploads), not sent in a request body.
UPLOAD_ABOVE_BYTES = 8_000_000
STRANDED_MARGIN = 10 * 60  # clocks, sweeps and retries: added to every waiting bound

FUNCTION_TIMEOUT_OVERRIDE = "AzureFunctionsJobHost__functionTimeout"
_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)")


def timespan(seconds: float) -> str:
    """Seconds as a host.json timespan, `hh:mm:ss`."""
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def duration(seconds: float) -> str:
    """A duration for people: seconds below two minutes, then minutes, then hours."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} minutes" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"


def parse_timespan(text: str) -> float:
    """A host.json timespan (`hh:mm:ss` or `d.hh:mm:ss`, fractions of a second allowed)."""
    found = _TIMESPAN.fullmatch(text.strip())
    if not found:
        raise ValueError(f"not a timespan (hh:mm:ss): {text!r}")
    days, hours, minutes, seconds = found.groups()
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


@dataclass(frozen=True)
class RunLimits:
    """The limits one worker works under: the function timeout (host.json, or its app-setting
    override, which the Functions host applies too) and the BLAST time limit it leaves room
    for."""

    function_timeout: float
    blast_time_limit: float

    @classmethod
    def derive(cls, blast_time_limit: float, env: Mapping[str, str]) -> RunLimits:
        """Raises ValueError, naming the setting, when the limits cannot hold together."""
        override = env.get(FUNCTION_TIMEOUT_OVERRIDE, "").strip()
        function_timeout = parse_timespan(override) if override else FUNCTION_TIMEOUT
        if function_timeout > SCALE_IN_GRACE:
            raise ValueError(
                f"{FUNCTION_TIMEOUT_OVERRIDE} is {timespan(function_timeout)}, longer than the "
                f"{timespan(SCALE_IN_GRACE)} a Premium instance gives a running function on "
                "scale-in: a search could be killed without a word")
        limits = cls(function_timeout, blast_time_limit)
        most = function_timeout - limits.finish_reserve
        if blast_time_limit > most:
            raise ValueError(
                f"BLAST_TIME_LIMIT is {blast_time_limit:g} s; with functionTimeout "
                f"{timespan(function_timeout)} and {limits.finish_reserve:g} s kept for storing "
                f"results, a search may take at most {most:g} s")
        return limits

    @property
    def finish_reserve(self) -> float:
        return min(FINISH_RESERVE, self.function_timeout / 4)

    def search_seconds(self, invocation_seconds_so_far: float) -> float | None:
        """How long BLAST may run in an invocation that has already spent this long
        (staging, download): at most BLAST_TIME_LIMIT, and never past the point where its
        results could no longer be stored before the function timeout. None when too little
        is left for a search worth starting (`MIN_SEARCH_SECONDS`, or half the limit when
        that is shorter): a new invocation gets the whole time."""
        room = self.function_timeout - self.finish_reserve - invocation_seconds_so_far
        if room < min(MIN_SEARCH_SECONDS, self.blast_time_limit / 2):
            return None
        return min(self.blast_time_limit, room)

    @property
    def running_stale_after(self) -> float:
        """A job whose every unfinished batch is running, unchanged for this long, has lost
        them: each delivery ends within the function timeout, and a message whose worker died
        is back in the queue one lock duration later, where the next delivery changes the
        record."""
        return self.function_timeout + LOCK_DURATION + STRANDED_MARGIN

    @property
    def queued_stale_after(self) -> float:
        """A job unchanged for this long has no message left anywhere: the last one sent has
        expired (message time to live), even after waiting for a retry and running out its
        last invocation."""
        return MESSAGE_TTL + MAX_RETRY_DELAY + self.function_timeout + STRANDED_MARGIN
