#!/usr/bin/env bash
# Generates the Python client of the Segments API from openapi/openapi.json
# with openapi-python-client (from PyPI), as the package `segments_client`.
#
#   openapi/generate-sdk.sh [OUTPUT_DIR]      # default: target/sdk
#   PYTHONPATH=target/sdk python openapi/examples/quickstart.py
#
# Any generator warning (a schema it cannot represent) fails the script: a
# spec that generates a partial client is a broken spec.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/sdk}"
venv="${SEGMENTS_PYTHON_VENV:-$root/target/python}"
"$root/scripts/python-tools.sh" "$venv"
mkdir -p "$out"
"$venv/bin/openapi-python-client" generate \
  --path "$root/openapi/openapi.json" \
  --config "$root/openapi/sdk-config.yaml" \
  --meta none \
  --output-path "$out/segments_client" \
  --overwrite \
  --fail-on-warning
echo "generated $out/segments_client"
