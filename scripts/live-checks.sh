#!/usr/bin/env bash
# Checks the running service from the outside, on SQLite and on PostgreSQL:
#  1. schemathesis runs every check on every operation of the server's
#     /openapi.json, in every phase (stateful included): no 5xx; every
#     status, content type, header and body as the spec says; invalid
#     requests refused, 405 for undeclared methods, no ignored auth, no
#     use after delete (exceptions, each with its reason, in
#     scripts/schemathesis.toml and below);
#  2. the clients generated from openapi/openapi.json in two ecosystems —
#     Python (openapi-python-client) and TypeScript (@hey-api/openapi-ts,
#     compiled by tsc --strict) — run their quickstart examples
#     (openapi/examples/) against the server;
#  3. Swagger UI in headless Chromium (once, on SQLite): "Try it out" on an
#     operation sends that operation (tests/browser/swagger-ui.cjs).
#
# Uses the `segments` binary the test suite built (target/debug/segments),
# a database and a Redis key prefix of its own, removed afterwards.
# FUZZ_EXAMPLES (default 60) sets schemathesis's examples per operation;
# FUZZ_SEED (default 1) makes a run repeatable.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/debug/segments"
venv="$target/python"
log() { printf '\033[1m[live-checks]\033[0m %s\n' "$*" >&2; }

[ -x "$bin" ] || { log "$bin is missing: run the test suite (cargo test --workspace) first"; exit 1; }
log "preparing Python tools"
scripts/python-tools.sh "$venv"
openapi/generate-sdk.sh "$target/sdk" >/dev/null
log "generating and compiling the TypeScript client"
openapi/generate-ts-sdk.sh "$target/ts-sdk" >/dev/null
log "preparing the browser"
playwright="$(scripts/browser-tools.sh "$target/browser")"

run_id="$(date +%s)_$$"
work="$(mktemp -d)"
pg_admin="${SEGMENTS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_db="segments_live_$run_id"
server=""

cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  psql "$pg_admin" -qc "DROP DATABASE IF EXISTS \"$pg_db\" WITH (FORCE)" >/dev/null 2>&1 || true
  for prefix in "segments-live-sqlite-$run_id" "segments-live-postgres-$run_id"; do
    redis-cli --scan --pattern "$prefix*" | xargs -r redis-cli DEL >/dev/null
    redis-cli ZREM core:apalis:queues:list "${prefix}_jobs:workers" >/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

check() {
  local backend="$1" database_url="$2"
  local port; port="$(free_port)"
  export SEGMENTS__DATABASE__URL="$database_url"
  export SEGMENTS__REDIS__PREFIX="segments-live-$backend-$run_id"
  export SEGMENTS__HTTP__BIND="127.0.0.1:$port"
  # The fuzzer sends thousands of requests with one key.
  export SEGMENTS__HTTP__RATE_LIMIT_PER_SECOND=0
  export RUST_LOG="${RUST_LOG:-error}"
  local key
  key="$("$bin" workspace create "live checks" | grep -o 'seg_[0-9a-f]*')"
  "$bin" serve >"$work/$backend.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/$backend.log"; log "$backend: server not ready"; exit 1; }

  log "$backend: schemathesis"
  # From the scratch directory: schemathesis keeps its state in the cwd.
  (cd "$work" && SEGMENTS_ROOT="$root" "$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" \
    run "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer $key" \
    --max-examples "${FUZZ_EXAMPLES:-60}" \
    --seed "${FUZZ_SEED:-1}" \
    --no-color)

  log "$backend: generated SDK examples"
  SEGMENTS_URL="http://127.0.0.1:$port" SEGMENTS_API_KEY="$key" PYTHONPATH="$target/sdk" \
    "$venv/bin/python" openapi/examples/quickstart.py
  SEGMENTS_URL="http://127.0.0.1:$port" SEGMENTS_API_KEY="$key" \
    node "$target/ts-sdk/dist/quickstart.js"

  if [ "$backend" = sqlite ]; then
    log "$backend: Swagger UI in Chromium"
    PLAYWRIGHT_CORE="$playwright" node tests/browser/swagger-ui.cjs "http://127.0.0.1:$port" "$key"
  fi

  kill -TERM "$server"
  wait "$server" || { cat "$work/$backend.log"; log "$backend: server did not stop cleanly"; exit 1; }
  server=""
}

check sqlite "sqlite://$work/live.db"
psql "$pg_admin" -qc "CREATE DATABASE \"$pg_db\"" >/dev/null
check postgres "${pg_admin%/*}/$pg_db"
log "all live checks passed"
