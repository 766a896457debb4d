"""The OpenAPI document, and schemathesis against `serve --api-key` with all its checks, the
stateful phase included: generated requests, valid and invalid, must get the answers the
document promises (valid ones accepted, invalid ones refused, every status declared, no 5xx).

`serve` searches two tiny databases built here, one of each molecule, so that every program
has valid requests and the worker's BLAST runs take milliseconds."""

import random
import subprocess

import hypothesis.strategies as st
import jsonschema
import pytest
import requests
import schemathesis
from conftest import service_env, start_server
from hypothesis import HealthCheck, settings
from schemathesis.engine import events
from schemathesis.engine.run import PhaseName
from schemathesis.openapi.checks import UseAfterFree

from blast_core.api.routes import ROUTES
from blast_core.domain import client_input, hit_selection, job_request, jobs
from blast_core.domain.database import DatabaseInfo

API_KEY = "schemathesis-key"
KEY = {"x-functions-key": API_KEY}


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory, blast_available):
    rng = random.Random(11)
    directory = tmp_path_factory.mktemp("fuzz-dbs")
    for name, molecule, letters in (("fuzz-genes", "nucl", "ACGT"),
                                    ("fuzz-proteins", "prot", "ACDEFGHIKLMNPQRSTVWY")):
        fasta = directory / f"{name}.fa"
        fasta.write_text("".join(f">{name}-{i}\n{''.join(rng.choices(letters, k=300))}\n"
                                 for i in range(5)))
        subprocess.run(["makeblastdb", "-in", str(fasta), "-dbtype", molecule, "-out",
                        str(directory / name), "-title", name], check=True, capture_output=True)
    return directory


@pytest.fixture(scope="module")
def api(azurite, db_dir, tmp_path_factory):
    server = start_server(service_env(azurite, db_dir=db_dir),
                          tmp_path_factory.mktemp("fuzz") / "serve.log", workers=1,
                          extra=["--api-key", API_KEY])
    yield server.url
    server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log, log


# The statuses each operation can answer: its handler's, those `http.handle` maps exceptions to
# (InvalidRequest 400, JobNotFound 404, JobFinished and ResultNotReady 409, JobExpired 410,
# ResultPending 202, ToolError and wrong settings 503), the key check (401) and serve's body
# size check (413). Health answers 200 whatever it finds.
STATUSES = {
    "health": {"200"},
    "submit_job": {"202", "400", "401", "404", "409", "410", "413", "415", "503"},
    "new_upload": {"201", "401", "503"},
    "get_partial_results": {"200", "400", "401", "404", "409", "410", "503"},
    "list_jobs": {"200", "400", "401", "503"},
    "get_job": {"200", "400", "401", "404", "410", "503"},
    "cancel_job": {"200", "400", "401", "404", "409", "410", "503"},
    "get_result": {"200", "202", "206", "302", "400", "401", "404", "409", "410", "416", "503"},
    "get_hit_sequences": {"200", "202", "206", "302", "400", "401", "404", "409", "410", "416",
                          "503"},
    "list_databases": {"200", "401", "503"},
    "get_stats": {"200", "401", "503"},
}


def test_the_document_describes_the_routes_and_validates_as_the_api_does(api):
    document = requests.get(f"{api}/openapi.json").json()
    catalog = [DatabaseInfo(**d) for d in
               requests.get(f"{api}/databases", headers=KEY).json()["databases"]]
    assert document["components"]["schemas"]["JobRequest"] == job_request.request_schema(catalog)
    operations = {op["operationId"]: op for path in document["paths"].values()
                  for op in path.values()}
    assert {name: set(op["responses"]) for name, op in operations.items()} == STATUSES
    assert set(STATUSES) <= {r.name for r in ROUTES}
    assert document["servers"] == [{"url": api}]
    database = operations["submit_job"]["parameters"][0]
    assert database["name"] == "database"
    for names, valid in (("fuzz-genes", True), ("fuzz-genes fuzz-proteins", True),
                         ("fuzz-genes\tfuzz-genes", True), ("nope", False), ("../x", False)):
        assert jsonschema.Draft202012Validator(database["schema"]).is_valid(names) == valid


# FASTA cannot be said in JSON Schema: the alphabet depends on the program, a nucleotide
# query must be at least half A, C, G, T, U or N, a protein one of 20 letters or more at most
# 90 % of them, and there are limits on sizes. The document marks a query `"format": "fasta"`;
# here that format generates FASTA valid for every program: sequences of 1 to 19 letters (too
# short to be judged protein or nucleotide by their composition), headers and comment lines.
_RESIDUES = st.text(alphabet="ACGTNacgtn", min_size=1, max_size=19)
_HEADER = st.text(alphabet=st.characters(codec="ascii", exclude_characters="\r\n"), max_size=30)
_SEQUENCE = st.builds(lambda header, residues, comment: f"{comment}>{header}\n{residues}\n",
                      _HEADER, _RESIDUES, st.sampled_from(["", ";a comment\n"]))
schemathesis.openapi.format("fasta", st.one_of(
    _RESIDUES, st.lists(_SEQUENCE, min_size=1, max_size=3).map("".join)))


@schemathesis.hook
def filter_case(context, case) -> bool:
    """OpenAPI cannot tie query parameters to a body's media type, nor to each other: the
    query-string options of POST /jobs are the fields of a text/plain submission, refused
    beside a JSON body, and together with the FASTA body they must make a valid JobRequest (a
    database of the program's molecule, a task of the program, a word size of the task); a
    result's columns go with its format (`_valid_columns`); hit sequences take a query or
    subjects (`_valid_selection`). Valid requests generated here are held to those rules."""
    if not case.meta.generation.mode.is_positive:
        return True
    if case.operation.label == "GET /jobs/{job_id}/results":
        return _valid_columns(dict(case.query or {}))
    if case.operation.label == "GET /jobs/{job_id}/hits.fasta":
        return _valid_selection(dict(case.query or {}))
    if case.operation.label != "POST /jobs":
        return True
    options = dict(case.query or {})
    if case.media_type == "application/json":
        return not options
    payload = {name: client_input.number_from_text(str(value)) if name in job_request.NUMERIC_FIELDS
               else value for name, value in options.items()}
    names = str(payload.get("database", "")).split()
    payload["database"] = names[0] if len(names) == 1 else names
    payload["query"] = case.body
    return jsonschema.Draft202012Validator(
        case.operation.schema.raw_schema["components"]["schemas"]["JobRequest"]).is_valid(payload)


def _valid_columns(params: dict) -> bool:
    """A result's `columns` go with `format=tsv` only, and name no column twice: rules that
    OpenAPI cannot state (its pattern holds the names and separators)."""
    if "columns" not in params:
        return True
    names = [name for name in str(params["columns"]).replace(",", " ").split(" ") if name]
    return params.get("format", "tsv") == "tsv" and len(names) == len(set(names))


def _valid_selection(params: dict) -> bool:
    """Hit sequences: `query` or `subjects`, one of them, at most MAX_SUBJECTS ids; `flank`
    with `region=aligned` only."""
    subjects = [name for name in str(params.get("subjects", "")).replace(",", " ").split(" ")
                if name]
    flank = params.get("flank", 0) not in (0, "0")
    return (("query" in params) != ("subjects" in params)
            and len(set(subjects)) <= hit_selection.MAX_SUBJECTS
            and (not flank or params.get("region") == hit_selection.ALIGNED))


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """DELETE /jobs/{id} cancels a job: the job stays, `cancelled`, readable until it expires,
    as the API documents; use_after_free expects what a DELETE answered 2xx for to be gone
    (404). Only that answer is let through: a job read after a cancel must show `cancelled`,
    and any other read of it (its results) that succeeds still fails the check."""
    return not (isinstance(failure, UseAfterFree) and case.operation.label == "GET /jobs/{job_id}"
                and response.json().get("status") == jobs.CANCELLED)


# Schemathesis' own expected statuses, and 410: a well-formed id of a job past its retention
# period answers 410 Gone, its job deleted, as an unknown one answers 404; and 416: a
# well-formed Range past the end of the result asked for (an empty one has no byte at all).
CHECKS = {"checks": {
    "positive_data_acceptance": {"expected-statuses": [
        "2xx", "3xx", "401", "403", "404", "409", "410", "416", "429", "5xx"]},
    "negative_data_rejection": {"expected-statuses": [
        "400", "401", "403", "404", "405", "406", "409", "410", "415", "422", "428", "429",
        "5xx"]}}}


@pytest.fixture(scope="module")
def api_schema(api):
    return schemathesis.openapi.from_url(f"{api}/openapi.json",
                                         config=schemathesis.Config.from_dict(CHECKS))


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_get_the_answers_the_document_promises(case):
    case.call_and_validate(headers=KEY)


STATEFUL_SCENARIOS = 100  # at least, over as many engine runs as it takes (at most 10)


@pytest.mark.slow
def test_sequences_of_requests_get_the_answers_the_document_promises(api):
    """The stateful phase, as `schemathesis run` runs it: scenarios that follow the links
    schemathesis infers (a submitted job's id to its reads, results and cancel).

    It runs in schemathesis' engine rather than as a Hypothesis state machine: the worker runs
    the jobs meanwhile, so a scenario never runs the same way twice, which Hypothesis takes for
    a flaky test (FlakyStrategyDefinition) and the engine for the end of a run. A run can end
    that way after a few dozen scenarios, so runs repeat until enough scenarios have run."""
    config = schemathesis.Config.from_dict({
        **CHECKS, "headers": KEY, "phases": {
            "examples": {"enabled": False}, "coverage": {"enabled": False},
            "fuzzing": {"enabled": False},
            "stateful": {"max-steps": 8, "generation": {"max-examples": 50}}}})
    found, scenarios = [], 0
    for _ in range(10):
        loaded = schemathesis.openapi.from_url(f"{api}/openapi.json", config=config)
        for event in schemathesis.engine.from_schema(loaded).execute():
            if isinstance(event, events.ScenarioFinished):
                scenarios += event.phase == PhaseName.STATEFUL_TESTING
                found += [f"{check.name}: {check.failure_info.failure.title}\n"
                          f"{check.failure_info.code_sample}"
                          for checks in event.recorder.checks.values() for check in checks
                          if check.failure_info]
            elif isinstance(event, events.NonFatalError):
                found.append(f"{event.label}: {event.info.format()}")
            elif isinstance(event, events.FatalError):
                raise event.exception
        if found or scenarios >= STATEFUL_SCENARIOS:
            break
    assert not found, "\n\n".join(found)
    assert scenarios >= STATEFUL_SCENARIOS
