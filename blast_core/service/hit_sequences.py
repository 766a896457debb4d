"""A worker's part of `GET /api/jobs/{id}/hits.fasta`: the hits of a job read from its batches'
archives, those a selection asks for checked and chosen, and their sequences written as FASTA,
from the job's databases (staged here) or its own subject sequences."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from blast_core.blast import hit_sequences, search
from blast_core.domain.hit_selection import Hit, HitSelection
from blast_core.domain.jobs import Job
from blast_core.storage.ports import SUBJECT_BLOB, archive_blob, selection_blob

if TYPE_CHECKING:
    from blast_core.service.core import BlastService

_TABLE = search.OutputFormat("tsv", f"6 {' '.join(hit_sequences.TABLE_COLUMNS)}", "tsv",
                             "text/tab-separated-values")


def write(service: BlastService, job: Job, selection: str, workdir: str, out_path: str) -> None:
    """The FASTA of the hits that selection `selection` (a digest) asks for, at `out_path`;
    InvalidRequest when an id it names is not among the job's hits. One batch's archive at a
    time: only the hits chosen are kept."""
    chosen_by = HitSelection.from_json(service.blobs.get_text(job.id, selection_blob(selection)))
    chosen: list[Hit] = []
    for number in range(job.batches):
        archive = os.path.join(workdir, archive_blob(number))
        service.blobs.download(job.id, archive_blob(number), archive)
        table = os.path.join(workdir, f"hits-{number}.tsv")
        search.format_archive(service.tools, archive, _TABLE, service.settings.db_dir, table)
        with open(archive) as archive_text, open(table) as table_text:
            hits = hit_sequences.hits_of(archive_text.read(), table_text.read())
        chosen += filter(chosen_by.matches, hits)
        os.unlink(archive)
    regions = chosen_by.regions(chosen)
    if job.searches_subject:
        hit_sequences.cut_subjects(service.blobs.get_text(job.id, SUBJECT_BLOB), regions,
                                   out_path)
    else:
        hit_sequences.fetch(service.tools, regions, [service.catalog.local_path(name)
                                                     for name in job.databases], workdir, out_path)
