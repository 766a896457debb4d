"""Choosing hit sequences: the parameters read and refused by name, the regions of the hits
chosen (clipped to the subject, each once, in the results' order), ids checked against the
job's hits, and how an archive's Seq-ids name blastdbcmd entries."""

from __future__ import annotations

import pytest

from blast_core.blast.hit_sequences import entry_of
from blast_core.domain.client_input import InvalidRequest
from blast_core.domain.hit_selection import Hit, HitSelection, Region, UnknownHits, parse_selection

HITS = [Hit("q1", "s1", 10, 60, 100, "gnl|BL_ORD_ID|4"),
        Hit("q1", "s1", 90, 80, 100, "gnl|BL_ORD_ID|4"),  # minus strand
        Hit("q1", "s2", 5, 20, 30, "gnl|BL_ORD_ID|7"),
        Hit("q2", "s2", 5, 20, 30, "gnl|BL_ORD_ID|7")]


def test_a_query_gets_each_of_its_subjects_once_in_order():
    selection = parse_selection({"query": "q1"})
    chosen = [hit for hit in HITS if selection.matches(hit)]
    assert selection.regions(chosen) == [Region("gnl|BL_ORD_ID|4"), Region("gnl|BL_ORD_ID|7")]


def test_aligned_regions_take_their_flanks_within_the_subject():
    selection = parse_selection({"subjects": "s1, s2", "region": "aligned", "flank": "15"})
    chosen = [hit for hit in HITS if selection.matches(hit)]
    assert selection.regions(chosen) == [Region("gnl|BL_ORD_ID|4", 1, 75),
                                         Region("gnl|BL_ORD_ID|4", 65, 100),
                                         Region("gnl|BL_ORD_ID|7", 1, 30)]


def test_ids_not_among_the_hits_are_unknown_by_name():
    selection = parse_selection({"subjects": "s2,zz,aa"})
    with pytest.raises(UnknownHits) as unknown:
        selection.regions([hit for hit in HITS if selection.matches(hit)])
    [error] = unknown.value.errors
    assert (error.field, error.reason.split(";")[0]) == (
        "subjects", "'aa', 'zz' are not a subject hit by this job")
    with pytest.raises(UnknownHits, match="'q3' is not a query of this job with hits"):
        parse_selection({"query": "q3"}).regions([])


def test_a_selection_is_named_by_its_content():
    one = parse_selection({"subjects": "s1,s2"})
    assert one.digest == parse_selection({"subjects": "s1 s2 s1"}).digest
    assert one.digest != parse_selection({"subjects": "s2,s1"}).digest, "order is kept"
    assert HitSelection.from_json(one.to_json()) == one
    assert len(one.digest) == 16


@pytest.mark.parametrize(("params", "field"), [
    ({}, "query"), ({"query": "a", "subjects": "b"}, "query"), ({"query": ""}, "query"),
    ({"query": "a\tb"}, "query"), ({"subjects": " , "}, "subjects"),
    ({"subjects": "x" * 201}, "subjects"), ({"query": "a", "region": "ALIGNED"}, "region"),
    ({"query": "a", "region": "aligned", "flank": "-1"}, "flank"),
    ({"query": "a", "region": "aligned", "flank": "nan"}, "flank"),
    ({"query": "a", "flank": "3"}, "flank")])
def test_bad_parameters_are_refused_by_name(params, field):
    with pytest.raises(InvalidRequest) as refused:
        parse_selection(params)
    assert field in [error.field for error in refused.value.errors]
    assert not isinstance(refused.value, UnknownHits)


@pytest.mark.parametrize(("seq_id", "entry"), [
    ('general { db "BL_ORD_ID", tag id 1800 }', "gnl|BL_ORD_ID|1800"),
    ('general { db "uv", tag str "X65312.3:2209-2303" }', "gnl|uv|X65312.3:2209-2303"),
    ('local str "prot5"', "lcl|prot5"),
    ('local str "Subject_3"', "lcl|Subject_3"),
    ("gi 15896971", "gi|15896971"),
    ('genbank { accession "AB078897", version 2 }', "AB078897.2"),
    ('other { accession "NR_024570", version 1 }', "NR_024570.1"),
    ('swissprot { name "INS_HUMAN", accession "P01308", release "reviewed", version 1 }',
     "P01308.1"),
])
def test_archive_seq_ids_name_blastdbcmd_entries(seq_id, entry):
    assert entry_of(seq_id) == entry


def test_a_seq_id_blastdbcmd_cannot_look_up_is_said_so():
    with pytest.raises(ValueError, match="cannot look up"):
        entry_of('pdb { mol "1ABC", chain-id "A" }')
