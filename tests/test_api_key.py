"""`serve --api-key`: every route but health needs the key, as function keys do in Azure."""

import pytest
import requests
from conftest import service_env, start_server


@pytest.fixture(scope="module")
def locked(azurite, blast_available, tmp_path_factory):
    server = start_server(service_env(azurite), tmp_path_factory.mktemp("key") / "serve.log",
                          workers=0, extra=["--api-key", "s3cret-key"])
    yield server.url
    server.stop()


def test_requests_without_the_key_are_refused(locked):
    for path in ("jobs", "databases", f"jobs/{'a' * 19}"):
        response = requests.get(f"{locked}/{path}")
        assert response.status_code == 401
        assert "s3cret" not in response.text
    assert requests.get(f"{locked}/databases", headers={"x-functions-key": "wrong"}).status_code \
        == 401


def test_the_key_opens_every_route_and_health_is_open(locked):
    assert requests.get(f"{locked}/health").status_code == 200
    assert requests.get(f"{locked}/databases", headers={"x-functions-key": "s3cret-key"}).ok
    assert requests.get(f"{locked}/jobs", params={"code": "s3cret-key"}).ok
