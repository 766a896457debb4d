#!/usr/bin/env bash
# Offline checks of the deployment, run by `make test`:
#   1. every checkov skip carries a reason;
#   2. every .bicep file under infra/ parses (pycep-parser; checkov silently skips files it
#      cannot parse, so this comes first);
#   3. checkov passes on infra/ (Bicep) and on the Dockerfile.
# Tools live in .venv-infra, apart from the app's .venv (checkov pins many packages). The
# first run installs infra/requirements-check.txt from the package index; later runs need no
# network until that file changes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv="$root/.venv-infra"
requirements="infra/requirements-check.txt"
stamp="$venv/requirements.sha256"
wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/checkov" || ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
  echo "infra/check.sh: installing $requirements into .venv-infra"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$wanted" >"$stamp"
fi

echo "infra/check.sh: skip reasons"
# A skip is `checkov:skip=ID:reason`; checkov itself accepts one without a reason.
unexplained="$(
  {
    grep -rnH --include='*.bicep' 'checkov:skip=' infra || true
    grep -nH 'checkov:skip=' Dockerfile || true
  } | grep -vE 'checkov:skip=[A-Z0-9_]+:[[:space:]]*[^[:space:]]' || true
  grep -nHE '^[[:space:]]*-[[:space:]]*CKV' infra/.checkov.yaml | grep -v '#' || true
)"
if [[ -n "$unexplained" ]]; then
  echo "checkov skips without a reason:" >&2
  echo "$unexplained" >&2
  exit 1
fi

echo "infra/check.sh: parsing Bicep"
"$venv/bin/python" - infra <<'PY'
import sys
from pathlib import Path

from pycep import BicepParser

parser = BicepParser()
files = sorted(Path(sys.argv[1]).rglob("*.bicep"))
if not files:
    sys.exit(f"no .bicep files under {sys.argv[1]}")
failed = 0
for path in files:
    try:
        parser.parse(file_path=path)
    except Exception as error:  # lark raises several unrelated types for syntax errors
        failed += 1
        # The first line says where; the rest lists every token lark expected.
        print(f"{path}: {type(error).__name__}: {str(error).splitlines()[0]}", file=sys.stderr)
print(f"{len(files) - failed} of {len(files)} Bicep files parse")
sys.exit(1 if failed else 0)
PY

echo "infra/check.sh: checkov"
"$venv/bin/checkov" --config-file infra/.checkov.yaml --framework bicep -d infra
"$venv/bin/checkov" --config-file infra/.checkov.yaml --framework dockerfile -f Dockerfile
