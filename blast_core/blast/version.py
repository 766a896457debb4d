"""The BLAST+ release the service runs, stated once, and the release a machine actually has.

Every way of running the service uses this one release, so results do not depend on how it
was deployed:

- the container image (`Dockerfile`, blastSource container) installs Debian bookworm's
  `ncbi-blast+` package of it, `DEBIAN_PACKAGE_VERSION`, the default of its build argument;
- the code deployment (blastSource share) runs NCBI's Linux build of it from the database
  share, `NCBI_LINUX_TARBALL`, as `infra/README.md` tells operators to upload;
- the test suite runs Debian bookworm's package, the same build as the image.

The code relies on this release's behaviour (`-mt_mode 1` and the tasks and word sizes in
`domain/job_request.py` are BLAST+ 2.12). `tests/test_infra.py` checks that the Dockerfile and
`infra/README.md` name this release and that the `blastn` the tests run is it.
"""

from __future__ import annotations

import re
import subprocess

VERSION = "2.12.0"
# Debian bookworm's ncbi-blast+ of VERSION (`apt-cache policy ncbi-blast+` on bookworm).
DEBIAN_PACKAGE_VERSION = "2.12.0+ds-3+b1"
NCBI_LINUX_TARBALL = (f"https://ftp.ncbi.nlm.nih.gov/blast/executables/blast+/{VERSION}/"
                      f"ncbi-blast-{VERSION}+-x64-linux.tar.gz")

_VERSION_LINE = re.compile(r"^blastn: (\d+\.\d+\.\d+)\+", re.MULTILINE)


def installed_version(blastn: str = "blastn", timeout: float = 30.0) -> str | None:
    """The release of `blastn` (a path, or a name found on PATH) as `blastn -version` reports
    it ("blastn: 2.12.0+" gives "2.12.0"), or None when it does not run or says otherwise."""
    try:
        done = subprocess.run([blastn, "-version"], capture_output=True, text=True,
                              timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION_LINE.search(done.stdout)
    return match.group(1) if match else None
