# The function app with BLAST+ on PATH, for blastSource=container (see infra/README.md).
#
# mcr.microsoft.com/azure-functions/python:4-python3.11 is Debian 11 "bullseye": the Functions
# host image copies python:3.11-slim-bullseye into dotnet/runtime-deps. BLAST+ therefore comes
# from bullseye's ncbi-blast+ package, pinned below (BLAST+ 2.11.0). If the base image moves to
# another Debian release the build stops at the check below instead of changing BLAST+ silently;
# then pick that release's version, e.g. --build-arg NCBI_BLAST_DEBIAN_VERSION=2.12.0+ds-3+b1
# and --build-arg DEBIAN_CODENAME=bookworm.
#
# checkov:skip=CKV_DOCKER_2:App Service probes the container itself (healthCheckPath /api/health in infra/modules/functionapp.bicep).
# checkov:skip=CKV_DOCKER_3:The Functions host image runs as root and listens on port 80, as App Service expects.
FROM mcr.microsoft.com/azure-functions/python:4-python3.11

ARG DEBIAN_CODENAME=bullseye
ARG NCBI_BLAST_DEBIAN_VERSION=2.11.0+ds-1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN . /etc/os-release \
    && if [ "$VERSION_CODENAME" != "$DEBIAN_CODENAME" ]; then \
         echo "base image is Debian $VERSION_CODENAME, not $DEBIAN_CODENAME: set DEBIAN_CODENAME and NCBI_BLAST_DEBIAN_VERSION for it" >&2; exit 1; \
       fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends "ncbi-blast+=${NCBI_BLAST_DEBIAN_VERSION}" \
    && rm -rf /var/lib/apt/lists/* \
    && blastn -version

ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true

COPY requirements.txt /
RUN pip install --no-cache-dir -r /requirements.txt

COPY . /home/site/wwwroot
