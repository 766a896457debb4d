"""A tabular result's columns: only BLAST+'s `-outfmt 6` specifiers, one key per set of
columns (the default set is plain `tsv`, made once), a message id short enough for Service
Bus, and a bound on how many sets one job may have made."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from blast_core.blast import search
from blast_core.domain import messages, tabular
from blast_core.domain.client_input import InvalidRequest
from blast_core.domain.jobs import SUCCEEDED, utc_now
from blast_core.service.errors import ResultPending
from blast_core.storage.ports import result_blob


def reason(value) -> str:
    with pytest.raises(InvalidRequest) as refused:
        tabular.parse_columns(value)
    [error] = refused.value.errors
    assert error.field == "columns"
    return error.reason


def test_columns_are_read_from_commas_spaces_or_a_list_in_their_order():
    assert tabular.parse_columns("qseqid,sseqid qcovs, stitle") == (
        "qseqid", "sseqid", "qcovs", "stitle")
    assert tabular.parse_columns(" qcovhsp , slen ") == ("qcovhsp", "slen")
    assert tabular.parse_columns(["evalue", "qseqid"]) == ("evalue", "qseqid")


@pytest.mark.parametrize(("value", "expected"), [
    ("", "must name at least one column"),
    (" , ", "must name at least one column"),
    ([], "must name at least one column"),
    (["qseqid", 3], "must be a list of column names"),
    ("qseqid,std", "'std' is not a column; choose from qseqid, qgi,"),
    ("qseqid;rm -rf /", "'qseqid;rm' is not a column"),
    ("QSEQID", "'QSEQID' is not a column"),
    ("qseqid\tsseqid", "'qseqid\\tsseqid' is not a column"),
    ("x" * 500, "'" + "x" * 37 + "...' is not a column"),
    ("qseqid sseqid qseqid evalue sseqid", "names qseqid, sseqid more than once"),
])
def test_anything_but_known_distinct_specifiers_is_refused_by_name(value, expected):
    assert reason(value).startswith(expected)


def test_every_column_is_one_that_this_blast_plus_documents():
    """The whitelist is BLAST+'s own list: each name appears in `blastn -help` as a format
    specifier (skipped where BLAST+ is not installed, as in a unit-only run)."""
    try:
        help_text = subprocess.run(["blastn", "-help"], capture_output=True, text=True,
                                   check=True).stdout
    except FileNotFoundError:
        pytest.skip("no blastn here")
    tabular_part = help_text.split("The supported format specifier for option 17")[0]
    documented = {line.split()[0] for line in tabular_part.splitlines() if " means " in line}
    assert set(tabular.COLUMNS) == documented


def test_the_default_columns_are_plain_tsv_and_any_other_set_has_a_key_of_its_own():
    assert tabular.result_key(tabular.DEFAULT_COLUMNS) == "tsv"
    assert tabular.result_key(None) == "tsv"
    key = tabular.result_key(("qseqid", "qcovs"))
    assert key == "tsv:qseqid,qcovs" and tabular.is_column_set(key)
    assert tabular.columns_of(key) == ("qseqid", "qcovs")
    assert tabular.columns_of("tsv") == tabular.DEFAULT_COLUMNS
    assert tabular.result_key(("qcovs", "qseqid")) != key, "the order is the user's"


def test_a_key_names_its_format_its_blast_options_and_its_blob():
    plain = search.output_format("tsv")
    assert (plain.key, plain.stored_as, plain.outfmt.split()[1:]) == (
        "tsv", "tsv", list(tabular.DEFAULT_COLUMNS))
    chosen = search.output_format("tsv:qseqid,stitle,qcovs")
    assert (chosen.name, chosen.key, chosen.extension) == ("tsv", "tsv:qseqid,stitle,qcovs", "tsv")
    assert chosen.outfmt == "6 qseqid stitle qcovs"
    assert result_blob(chosen.stored_as) == "result.qseqid-stitle-qcovs.tsv"
    assert search.output_format("json").key == "json"
    for bad in ("tsv:", "tsv:nope", "json:qseqid", "csv", "tsv:qseqid,qseqid"):
        with pytest.raises(KeyError):
            search.output_format(bad)


def test_a_column_set_message_round_trips_with_an_id_service_bus_takes():
    every = tabular.result_key(tuple(tabular.COLUMNS))
    message = messages.format_message("0" * 19, every)
    assert messages.decode(message.encode()) == message
    assert len(message.first_id) <= 128 and len(message.resend_id()) <= 128
    other = messages.format_message("0" * 19, tabular.result_key(("qseqid", "qcovs")))
    assert other.first_id != message.first_id
    assert messages.format_message("0" * 19, "tsv").first_id == f"{'0' * 19}-format-tsv"
    for bad in ("tsv:qseqid;rm", "tsv:QSEQID", "TSV", "tsv:" + "a" * 1001):
        with pytest.raises(messages.MalformedMessage):
            messages.decode(messages.Message("0" * 19, format=bad).encode())


def test_a_job_has_at_most_its_bound_of_column_sets_made(world):
    job = world.add_job(status=SUCCEEDED, batches=1, finished_at=utc_now())
    sets = [tabular.result_key((name, "evalue")) for name in list(tabular.COLUMNS)[:11]]
    for key in sets[:tabular.MAX_COLUMN_SETS]:
        with pytest.raises(ResultPending):
            world.service.result(job.id, key)
    with pytest.raises(ResultPending):  # the default set is no column set
        world.service.result(job.id, "tsv")
    sent = len(world.transport.sent)
    with pytest.raises(InvalidRequest, match="has 10 sets of columns made") as refused:
        world.service.result(job.id, sets[-1])
    assert refused.value.errors[0].field == "columns"
    assert "qseqid,evalue" in str(refused.value)
    assert len(world.transport.sent) == sent, "nothing queued for the refused set"
    with pytest.raises(ResultPending):  # a set already asked for is still served
        world.service.result(job.id, sets[0])


def test_the_readme_lists_every_column_with_its_meaning():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    listed = dict(re.findall(r"^\| `([a-z]+)` \| (.+?)(?: \(default\))? \|$", readme, re.MULTILINE))
    assert {name: listed.get(name) for name in tabular.COLUMNS} == tabular.COLUMNS
