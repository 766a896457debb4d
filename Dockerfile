# The function app with BLAST+ on PATH, for blastSource=container (see infra/README.md).
#
# mcr.microsoft.com/azure-functions/python:4-python3.12 is Debian 12 "bookworm": Azure Functions'
# image build (Azure/azure-functions-docker, host/4/python-build.yml) builds Python 3.12 from
# host/4/bookworm/python/python312, on dotnet/aspnet:8.0-bookworm-slim; the 3.11 image and
# older are Debian 11 "bullseye", whose LTS ended on 2026-08-31. The code deployment runs the
# same Python (linuxFxVersion Python|3.12 in infra/modules/functionapp.bicep).
#
# BLAST+ is bookworm's ncbi-blast+ package of the one release the service runs everywhere
# (blast_core/blast/version.py: the share path uploads NCBI's build of it, the tests run it), pinned
# below; tests/test_infra.py checks that these agree. If the base image moves to another Debian
# release the build stops at the check below instead of changing BLAST+ silently.
#
# checkov:skip=CKV_DOCKER_2:App Service probes the container itself (healthCheckPath /api/health in infra/modules/functionapp.bicep).
# checkov:skip=CKV_DOCKER_3:The Functions host image runs as root and listens on port 80, as App Service expects.
FROM mcr.microsoft.com/azure-functions/python:4-python3.12

ARG DEBIAN_CODENAME=bookworm
ARG NCBI_BLAST_DEBIAN_VERSION=2.12.0+ds-3+b1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN . /etc/os-release \
    && if [ "$VERSION_CODENAME" != "$DEBIAN_CODENAME" ]; then \
         echo "base image is Debian $VERSION_CODENAME, not $DEBIAN_CODENAME: set DEBIAN_CODENAME and NCBI_BLAST_DEBIAN_VERSION for it" >&2; exit 1; \
       fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends "ncbi-blast+=${NCBI_BLAST_DEBIAN_VERSION}" \
    && rm -rf /var/lib/apt/lists/* \
    && blastn -version | grep -x "blastn: ${NCBI_BLAST_DEBIAN_VERSION%%+*}+"

ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true

COPY requirements.txt requirements-client.txt requirements-server.txt /
RUN pip install --no-cache-dir -r /requirements.txt

COPY . /home/site/wwwroot
