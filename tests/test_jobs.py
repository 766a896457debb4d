"""Job request validation, ids and queue messages: pure functions."""

import math
from dataclasses import replace

import jsonschema
import pytest

from blast_core.api import views
from blast_core.domain import client_input, fasta, job_request, jobs
from blast_core.domain.database import DatabaseInfo
from blast_core.domain.limits import RunLimits

TIMES = jobs.BatchTimings(queued=1.0, staging=0.1, blast=2.0, transfer=0.5)
LIMITS = fasta.QueryLimits(max_bytes=100_000, max_sequences=10, max_letters=10_000,
                           max_header_chars=1000)
DATABASES = {d.name: d for d in (
    DatabaseInfo("16SCore", "16Score", "nucleotide", 1787, 142950),
    DatabaseInfo("proteins", "test proteins", "protein", 3, 300),
)}
QUERY = ">q1\nACGTACGTACGTAGCTAGCTAGCATCGATCGA\n"


def parse(payload):
    return job_request.parse_request(payload, LIMITS, DATABASES.get)


def errors_of(payload) -> dict[str, str]:
    with pytest.raises(client_input.InvalidRequest) as caught:
        parse(payload)
    return {e.field: e.reason for e in caught.value.errors}


def test_defaults_fill_in_the_optional_fields():
    request = parse({"query": QUERY, "database": "16SCore"})
    assert (request.program, request.task, request.evalue, request.max_target_seqs) == \
        ("blastn", "megablast", 10.0, 100)
    assert (request.queries, request.query_letters) == (1, 32)
    assert fasta.format_fasta(request.sequences) == QUERY


def test_headerless_sequences_are_named_by_their_place_in_the_whole_query():
    """So a name holds in whichever batch a sequence lands: the request is parsed once."""
    request = parse({"query": ">a\nACGTACGTAC\n>\nGGGGCCCCAA\n>\nTTTTAAAACC", "database": "16SCore"})
    assert [s.header for s in request.sequences] == ["a", "Query_2", "Query_3"]
    assert fasta.format_fasta(list(request.sequences[2:])).startswith(">Query_3\n")


def test_all_options_are_taken():
    request = parse({"query": QUERY, "database": "16SCore", "program": "blastn",
                     "task": "blastn-short", "evalue": 1e-5, "max_target_seqs": 5000})
    assert (request.task, request.evalue, request.max_target_seqs) == ("blastn-short", 1e-5, 5000)


@pytest.mark.parametrize("payload, field, reason", [
    ([], "body", "must be a JSON object"),
    ("text", "body", "must be a JSON object"),
    ({}, "query", "is required"),
    ({"query": QUERY}, "database", "is required, or subject sequences instead"),
    ({"query": "", "database": "16SCore"}, "query", "must not be empty"),
    ({"query": 5, "database": "16SCore"}, "query", "must be a string"),
    ({"query": ">x\nMKVLEEPQ\n", "database": "16SCore"}, "query", "looks like a protein"),
    ({"query": QUERY, "database": "nope"}, "database", "no database named 'nope'"),
    ({"query": QUERY, "database": "../etc/passwd"}, "database", "no paths"),
    ({"query": QUERY, "database": "/etc/passwd"}, "database", "no paths"),
    ({"query": QUERY, "database": "16SCore\x00"}, "database", "no paths"),
    ({"query": QUERY, "database": "proteins"}, "database", "is a protein database"),
    ({"query": QUERY, "database": "16SCore", "program": "blastz"}, "program", "is not one of"),
    ({"query": QUERY, "database": "16SCore", "task": "megablast -remote"}, "task",
     "'megablast -remote' is not a task of blastn; choose one of megablast, dc-megablast, "
     "blastn, blastn-short"),
    ({"query": QUERY, "database": "16SCore", "evalue": "1 -out /tmp/x"}, "evalue",
     "must be a number"),
    ({"query": QUERY, "database": "16SCore", "evalue": True}, "evalue", "must be a number"),
    ({"query": QUERY, "database": "16SCore", "evalue": -1}, "evalue", "must be above 0"),
    ({"query": QUERY, "database": "16SCore", "evalue": 0}, "evalue", "must be above 0"),
    ({"query": QUERY, "database": "16SCore", "max_target_seqs": 0}, "max_target_seqs",
     "at least 1 and at most 5000"),
    ({"query": QUERY, "database": "16SCore", "max_target_seqs": 1_000_000}, "max_target_seqs",
     "at least 1 and at most 5000"),
    ({"query": QUERY, "database": "16SCore", "max_target_seqs": 2.5}, "max_target_seqs",
     "must be a whole number"),
    ({"query": QUERY, "database": "16SCore", "outfmt": "6"}, "outfmt", "unknown field"),
])
def test_bad_requests_name_the_field_and_the_reason(payload, field, reason):
    errors = errors_of(payload)
    assert field in errors, errors
    assert reason in errors[field]


def test_a_long_value_is_shown_by_its_start():
    assert errors_of({"query": QUERY, "database": "16SCore", "program": "p" * 1_000_000}) == {
        "program": f'"{"p" * 56}... is not one of blastn, blastp, blastx, tblastn, tblastx'}
    assert errors_of({"query": QUERY, "database": "16SCore", "task": "t" * 1_000_000}) == {
        "task": f"'{'t' * 56}... is not a task of blastn; choose one of megablast, "
                "dc-megablast, blastn, blastn-short"}


def test_every_bad_field_is_reported_at_once():
    errors = errors_of({"query": QUERY, "database": "16SCore", "evalue": "x",
                        "max_target_seqs": -3})
    assert set(errors) == {"evalue", "max_target_seqs"}


def test_not_a_number_evalue_is_refused():
    assert "evalue" in errors_of({"query": QUERY, "database": "16SCore", "evalue": math.inf})


def test_job_ids_sort_newest_first_and_are_recognised():
    older, newer = jobs.new_job_id(1_000_000), jobs.new_job_id(2_000_000)
    assert newer < older
    assert jobs.is_job_id(older) and len(older) == 19
    for bad in ("", "../x", older.upper(), older + "0", "g" * 19):
        assert not jobs.is_job_id(bad)


def test_job_lifecycle_records_attempts_and_outcome():
    request = parse({"query": QUERY, "database": "16SCore"})
    job = jobs.Job.submitted(jobs.new_job_id(), request)
    assert (job.status, job.attempts, job.batches, job.batch_states) == ("queued", 0, 1, ".")
    running = job.batch_started(0)
    assert (running.status, running.attempts, running.batch_states) == ("running", 1, "R")
    assert running.started_at and running.batch_unfinished(0)
    done = running.batch_finished(0, queries=1, hits=7, timings=TIMES)
    assert (done.status, done.hits, done.queries_done) == ("succeeded", 7, 1) and done.finished_at
    failed = running.batch_failed(0, "boom")
    assert (failed.status, failed.error, failed.batch_states) == ("failed", "boom", "F")


def test_a_job_of_batches_succeeds_with_its_last_batch_and_fails_with_any():
    job = jobs.Job.submitted(jobs.new_job_id(), parse({"query": QUERY, "database": "16SCore"}),
                             batches=3).batch_started(2)
    job = job.batch_finished(2, queries=4, hits=10, timings=TIMES).batch_started(0)
    job = job.batch_finished(0, queries=5, hits=1, timings=TIMES)
    assert (job.status, job.batches_done, job.queries_done, job.hits) == ("running", 2, 9, 11)
    assert views.job_view(job)["batches_done"] == 2 and "batch_states" not in views.job_view(job)
    done = job.batch_finished(1, queries=1, hits=0, timings=TIMES)
    assert done.status == "succeeded"
    made = done.format_ready("tsv", 0.25, 1234)
    assert made.format_state("tsv") == jobs.FormatState("ready", made.format_state("tsv").at,
                                                        size=1234)
    assert views.job_view(made)["formats"] == {"tsv": "ready"}
    timings = views.job_view(made)["timings"]
    assert {k: v for k, v in timings.items() if k != "total"} == {
        "queued": 3.0, "staging": 0.3, "blast": 6.0, "transfer": 1.5, "format": 0.25}
    assert timings["total"] >= 0 and views.job_view(job)["timings"]["total"] is None
    failed = job.batch_started(1).batch_failed(1, "BLAST rejected the search")
    assert failed.error == "batch 2 of 3: BLAST rejected the search"
    requeued = failed.requeued()
    assert (requeued.status, requeued.batch_states, requeued.unfinished_batches()) == \
        ("queued", "D.D", [1])
    assert not requeued.batch_unfinished(0) and requeued.batch_unfinished(1)


RUN_LIMITS = RunLimits.derive(2700, {})


def open_job(states: str) -> jobs.Job:
    job = jobs.Job.submitted(jobs.new_job_id(), parse({"query": QUERY, "database": "16SCore"}),
                             batches=len(states))
    return replace(job, status="running" if "R" in states or "D" in states else "queued",
                   batch_states=states)


@pytest.mark.parametrize("states, unchanged, stranded", [
    ("R", RUN_LIMITS.running_stale_after - 1, False),   # its delivery may still be running
    ("R", RUN_LIMITS.running_stale_after + 1, True),    # no delivery runs that long
    ("DR", RUN_LIMITS.running_stale_after + 1, True),
    ("R.", RUN_LIMITS.running_stale_after + 1, False),  # a batch may still wait in the queue
    ("R.", RUN_LIMITS.queued_stale_after + 1, True),    # no message waits that long
    (".", RUN_LIMITS.queued_stale_after - 1, False),
    (".", RUN_LIMITS.queued_stale_after + 1, True),
    ("DD", RUN_LIMITS.queued_stale_after + 1, False),   # nothing left to run
])
def test_a_job_is_stranded_only_when_no_message_for_it_can_still_arrive(states, unchanged,
                                                                        stranded):
    reason = jobs.stranded_reason(open_job(states), unchanged, RUN_LIMITS)
    assert (reason is not None) == stranded, reason
    if reason:
        assert reason.startswith("stranded: ")


def test_the_limits_hold_together_and_name_the_setting_that_breaks_them():
    assert (RUN_LIMITS.function_timeout, RUN_LIMITS.blast_time_limit) == (3600, 2700)
    assert RUN_LIMITS.search_seconds(0) == 2700
    assert RUN_LIMITS.search_seconds(1000) == 3600 - 300 - 1000  # staging took long
    assert RUN_LIMITS.search_seconds(3600 - 300 - 10) is None  # start again, with time
    with pytest.raises(ValueError, match=r"BLAST_TIME_LIMIT is 4800 s.*at most 3300 s"):
        RunLimits.derive(4800, {})
    with pytest.raises(ValueError, match="longer than the 01:00:00 a Premium instance gives"):
        RunLimits.derive(600, {"AzureFunctionsJobHost__functionTimeout": "02:00:00"})
    shrunk = RunLimits.derive(20, {"AzureFunctionsJobHost__functionTimeout": "00:00:40"})
    assert (shrunk.function_timeout, shrunk.finish_reserve) == (40, 10)


# Numbers: finite, whatever the entrance


@pytest.mark.parametrize("literal, shown", [
    ("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e400", "Infinity"),
    ("-1e999", "-Infinity")])
@pytest.mark.parametrize("field", job_request.NUMERIC_FIELDS)
def test_json_numbers_that_are_not_finite_are_refused_by_field(field, literal, shown):
    payload = client_input.read_json(f'{{"query": ">q\\nACGT", "database": "16SCore", "{field}": '
                                     f'{literal}}}')
    assert errors_of(payload) == {field: f"must be a finite number, not {shown}"}


def test_a_json_integer_of_thousands_of_digits_is_out_of_range_not_an_error():
    # Python's int() refuses more than 4,300 digits with ValueError; json.loads uses it.
    payload = client_input.read_json(f'{{"query": ">q\\nACGT", "database": "16SCore", '
                                     f'"max_target_seqs": {"9" * 5000}, "word_size": {"1" * 300}}}')
    assert errors_of(payload) == {
        "max_target_seqs": "must be a finite number, not Infinity",
        "word_size": "must be from 4 to 1000 for task megablast, not 1.1111111111111112e+299"}


@pytest.mark.parametrize("text, number", [
    ("10", 10), (" 7 ", 7), ("+5", 5), ("-2", -2), ("1e-5", 1e-5), ("2.5", 2.5), (".5", 0.5),
    ("1E3", 1000.0), ("1e-400", 0.0), ("9" * 25, 1e25),
    ("nan", "nan"), ("NaN", "NaN"), ("inf", "inf"), ("-Infinity", "-Infinity"),
    ("1e999", "1e999"), ("1_000", "1_000"), ("\u0661\u0662", "\u0661\u0662"), ("\u00b2", "\u00b2"),
    ("0x10", "0x10"), ("", ""), ("1 2", "1 2"), ("9" * 5000, "9" * 5000)])
def test_a_text_parameter_is_a_number_only_in_ascii_decimal_and_finite(text, number):
    assert client_input.number_from_text(text) == number
    assert type(client_input.number_from_text(text)) is type(number)


def test_every_numeric_field_refuses_what_is_no_finite_number_in_text():
    errors = errors_of({"query": QUERY, "database": "16SCore",
                        **{field: client_input.number_from_text("nan")
                           for field in job_request.NUMERIC_FIELDS}})
    assert errors == {field: 'must be a number, not "nan"' if field == "evalue"
                      else 'must be a whole number, not "nan"' for field in job_request.NUMERIC_FIELDS}


@pytest.mark.parametrize("body, field", [
    (r'{"query": ">\ud800\nACGT", "database": "16SCore"}', "query"),
    (r'{"query": "ACGT\udfff", "database": "16SCore"}', "query"),
    (r'{"query": "ACGT", "database": ["16SCore", "\udc00"]}', "database"),
])
def test_a_lone_surrogate_is_no_text(body, field):
    # json.loads makes one of "\ud800"; encoding it (for its size, for storage) would raise.
    assert field in errors_of(client_input.read_json(body))


def test_a_surrogate_pair_is_a_character():
    request = parse(client_input.read_json(r'{"query": ">q \ud83d\ude00\nACGTACGT", '
                                           r'"database": "16SCore"}'))
    assert fasta.format_fasta(request.sequences) == ">q \U0001f600\nACGTACGT\n"


# JSON nesting, bounded without recursion


def test_json_nested_deeper_than_the_limit_is_refused_before_parsing():
    with pytest.raises(client_input.InvalidRequest) as caught:
        client_input.read_json("[" * 100_000 + "]" * 100_000)
    assert [(e.field, e.reason) for e in caught.value.errors] == [
        ("body", f"nests 100000 levels deep; the limit is {client_input.MAX_JSON_DEPTH}")]
    assert client_input.read_json("[" * client_input.MAX_JSON_DEPTH + "]" * client_input.MAX_JSON_DEPTH)


@pytest.mark.parametrize("text, depth", [
    ("{}", 1), ('{"a": [1, {"b": []}]}', 4), ('{"q": "[[[[{{{{"}', 1), (r'["\"[[", "]"]', 1),
    (r'["a\\", ["b"]]', 2), ('"[[[', 0), ('["open ' + "[" * 50, 1), ("]]][[", 0), ("1", 0)])
def test_json_depth_skips_strings_and_their_escapes(text, depth):
    assert client_input.json_depth(text) == depth


def test_invalid_json_names_the_body():
    with pytest.raises(client_input.InvalidRequest, match="body: is not valid JSON: Expecting"):
        client_input.read_json('{"query": ')


# The rules between fields are in the schema itself: what validates is what the document says.

PROTEIN_QUERY = ">p\nMKVLAAGIVALLLAAGCSSEQ\n"


@pytest.mark.parametrize("payload, errors", [
    ({"program": "tblastx", "task": "megablast"},
     {"task": "'megablast' is not a task of tblastx; choose one of tblastx"}),
    ({"task": "blastp"},
     {"task": "'blastp' is not a task of blastn; choose one of megablast, dc-megablast, blastn, "
              "blastn-short"}),
    ({"task": "dc-megablast", "word_size": 28},
     {"word_size": "must be from 11 to 12 for task dc-megablast, not 28"}),
    ({"word_size": 3}, {"word_size": "must be from 4 to 1000 for task megablast, not 3"}),
    ({"program": "tblastx", "word_size": 6},
     {"word_size": "must be from 2 to 5 for task tblastx, not 6"}),
    ({"program": "blastx", "task": "blastx-fast", "word_size": 2000},
     {"word_size": "must be from 2 to 7 for task blastx-fast, not 2000"}),
    ({"program": "", "task": "megablast", "word_size": 2},
     {"program": '"" is not one of blastn, blastp, blastx, tblastn, tblastx',
      "word_size": "must be from 4 to 1000 for task megablast, not 2"}),
])
def test_tasks_and_word_sizes_follow_the_program_and_task(payload, errors):
    assert errors_of({"query": QUERY, "database": "16SCore", **payload}) == errors


def test_a_default_task_brings_its_word_sizes():
    request = parse({"query": PROTEIN_QUERY, "database": "proteins", "program": "blastp",
                     "word_size": 7})
    assert (request.task, request.word_size) == ("blastp", 7)
    assert errors_of({"query": PROTEIN_QUERY, "database": "proteins", "program": "blastp",
                      "word_size": 8}) == {"word_size": "must be from 2 to 7 for task blastp, "
                                                        "not 8"}


def test_the_served_schema_names_the_databases_each_program_may_search():
    schema = job_request.request_schema(list(DATABASES.values()))
    validator = jsonschema.Draft202012Validator(schema)
    assert job_request.JOB_REQUEST_SCHEMA == job_request.request_schema()
    assert validator.is_valid({"query": QUERY, "database": ["16SCore"]})
    assert validator.is_valid({"query": PROTEIN_QUERY, "database": "proteins",
                               "program": "blastx"})
    for wrong in ({"query": QUERY, "database": "nope"},
                  {"query": QUERY, "database": "proteins"},
                  {"query": QUERY, "database": ["16SCore", "proteins"]},
                  {"query": PROTEIN_QUERY, "database": "16SCore", "program": "blastp"}):
        assert not validator.is_valid(wrong), wrong
    no_protein = jsonschema.Draft202012Validator(job_request.request_schema([DATABASES["16SCore"]]))
    assert not no_protein.is_valid({"query": PROTEIN_QUERY, "database": "16SCore",
                                    "program": "blastp"})
