#!/usr/bin/env bash
# Makes sure a Python virtual environment with openapi/requirements.txt
# exists at $1 (default target/python). Rebuilt from PyPI when missing or
# when the requirements changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/target/python}"
stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && cmp -s "$root/openapi/requirements.txt" "$stamp"; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/openapi/requirements.txt"
cp "$root/openapi/requirements.txt" "$stamp"
