"""Which hit sequences a researcher asks for (`GET /api/jobs/{id}/hits.fasta`): every subject
hit by one query, or the subjects named; each whole, or the region each alignment covers with
optional flanks. Ids are checked against the job's own hits, never passed on as given. Pure
logic: the hits come from the job's archives (`blast/hit_sequences.py`)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from blast_core.domain.client_input import FieldError, InvalidRequest, is_whole_number, number_from_text

WHOLE, ALIGNED = "whole", "aligned"
MAX_SUBJECTS = 500  # ids in one request
MAX_FLANK = 10_000  # letters either side of an aligned region
MAX_ID_CHARS = 200
MAX_SELECTIONS = 20  # selections made for one job, which bounds its record
_SEPARATORS = re.compile(r"[ ,]+")
_ID = re.compile(r"[!-~]{1,200}", re.ASCII)  # printable ASCII, no spaces: as BLAST writes ids


class UnknownHits(InvalidRequest):
    """A selection names ids that are not among the job's hits: no such hit (404)."""


@dataclass(frozen=True)
class Hit:
    """One alignment of a job: its query's id and subject's (as the tabular result writes
    them), where it lies on the subject (sstart, send: send < sstart on the minus strand), the
    subject's length, and the subject as blastdbcmd finds it (`entry`)."""

    query: str
    subject: str
    sstart: int
    send: int
    slen: int
    entry: str


@dataclass(frozen=True)
class Region:
    """Letters `start` to `end` (from 1, both included) of a subject; None: all of it."""

    entry: str
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class HitSelection:
    query: str | None
    subjects: tuple[str, ...]
    region: str = WHOLE
    flank: int = 0

    @property
    def digest(self) -> str:
        """Sixteen hex digits naming this selection: its result's key and its blobs'."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps({"query": self.query, "subjects": list(self.subjects),
                           "region": self.region, "flank": self.flank}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> HitSelection:
        data = json.loads(text)
        return cls(data["query"], tuple(data["subjects"]), data["region"], data["flank"])

    def matches(self, hit: Hit) -> bool:
        return hit.query == self.query if self.query is not None else hit.subject in self.subjects

    def regions(self, chosen: list[Hit]) -> list[Region]:
        """The regions to fetch of the hits that match (`matches`), in the order the job's
        results list them, each once; InvalidRequest when an id asked for matched none."""
        if self.query is not None:
            if not chosen:
                raise UnknownHits([FieldError("query", (
                    f"{self.query!r} is not a query of this job with hits; the ids are those in "
                    "the first column of its tsv result"))])
        else:
            missing = sorted(set(self.subjects) - {hit.subject for hit in chosen})
            if missing:
                raise UnknownHits([FieldError("subjects", (
                    f"{_shown(missing)} {'is' if len(missing) == 1 else 'are'} not a subject "
                    "hit by this job; the ids are those in the second column of its tsv "
                    "result"))])
        if self.region == WHOLE:
            return list(dict.fromkeys(Region(hit.entry) for hit in chosen))
        return list(dict.fromkeys(
            Region(hit.entry, max(1, min(hit.sstart, hit.send) - self.flank),
                   min(hit.slen, max(hit.sstart, hit.send) + self.flank)) for hit in chosen))


def parse_selection(params: Mapping[str, str]) -> HitSelection:
    """A request's selection from its parameters `query` or `subjects` (ids separated by
    commas or spaces), `region` and `flank`; InvalidRequest naming each bad one."""
    errors: list[FieldError] = []
    query, subjects = params.get("query"), _ids(params.get("subjects"), errors)
    if (query is None) == (subjects is None):
        errors.append(FieldError("query", "give query (a query's id) or subjects (subject ids), "
                                          "one of them"))
    elif query is not None and not _ID.fullmatch(query):
        errors.append(FieldError("query", "must be a query's id: printable characters without "
                                          f"spaces, at most {MAX_ID_CHARS}"))
    region = params.get("region", WHOLE)
    if region not in (WHOLE, ALIGNED):
        errors.append(FieldError("region", f"must be {WHOLE} or {ALIGNED}, not {_shown([region])}"))
    flank = number_from_text(params.get("flank", "0"))
    if not is_whole_number(flank) or not 0 <= flank <= MAX_FLANK:
        errors.append(FieldError("flank", f"must be a whole number from 0 to {MAX_FLANK}"))
    elif flank and region != ALIGNED:
        errors.append(FieldError("flank", "goes with region=aligned"))
    if errors:
        raise InvalidRequest(errors)
    return HitSelection(query, subjects or (), region, int(flank))


def _ids(text: str | None, errors: list[FieldError]) -> tuple[str, ...] | None:
    if text is None:
        return None
    ids = tuple(dict.fromkeys(name for name in _SEPARATORS.split(text) if name))
    if not ids:
        errors.append(FieldError("subjects", "must name at least one subject id"))
    elif len(ids) > MAX_SUBJECTS:
        errors.append(FieldError("subjects", f"names {len(ids)} ids; the limit is {MAX_SUBJECTS}"))
    elif not all(_ID.fullmatch(name) for name in ids):
        bad = next(name for name in ids if not _ID.fullmatch(name))
        errors.append(FieldError("subjects", f"{_shown([bad])} is not a subject id: printable "
                                             f"characters without spaces, at most {MAX_ID_CHARS}"))
    return ids


def _shown(names: list[str]) -> str:
    shown = ", ".join(repr(name if len(name) <= 40 else name[:37] + "...") for name in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")
