"""The OpenAPI document, and schemathesis against `serve`: generated requests, valid and
invalid, must never get a 5xx nor a response that breaks the document."""

import pytest
import requests
import schemathesis
from conftest import service_env, start_server
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from blast_core import openapi
from blast_core.routes import ROUTES

API_KEY = "schemathesis-key"


@pytest.fixture(scope="module")
def api(azurite, blast_available, tmp_path_factory):
    server = start_server(service_env(azurite), tmp_path_factory.mktemp("fuzz") / "serve.log",
                          workers=1, extra=["--api-key", API_KEY])
    yield server.url
    server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log, log


@pytest.fixture(scope="module")
def api_schema(api):
    return schemathesis.openapi.from_url(f"{api}/openapi.json")


def test_the_document_describes_the_routes_and_validates_as_the_api_does(api):
    document = requests.get(f"{api}/openapi.json").json()
    assert document["components"]["schemas"]["JobRequest"] is openapi.jobs.JOB_REQUEST_SCHEMA \
        or document["components"]["schemas"]["JobRequest"] == openapi.jobs.JOB_REQUEST_SCHEMA
    operations = {op["operationId"] for path in document["paths"].values() for op in path.values()}
    documented = {"health", "submit_job", "list_jobs", "get_job", "cancel_job", "get_result",
                  "list_databases", "get_stats"}
    assert operations == documented
    assert documented <= {r.name for r in ROUTES}
    assert document["servers"] == [{"url": api}]


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_never_break_the_api(case):
    # A schema-valid request may still be refused: FASTA validity and database existence are
    # checked beyond what JSON Schema can say, so positive data may get a documented 400.
    case.call_and_validate(headers={"x-functions-key": API_KEY},
                           excluded_checks=[positive_data_acceptance])
