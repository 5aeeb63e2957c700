#!/usr/bin/env bash
# Runs Segments' whole test suite against real services.
#
# Makes sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) are up:
# starts them when installed but stopped, installs them with apt-get when
# missing. Then runs every test of the workspace, and the live checks
# (schemathesis and the generated SDK against a running server). Each test
# creates its own uniquely named database and removes it, so a shared server
# is fine.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[test.sh]\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_up; then return; fi
  local installed_now=0
  if ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql
    installed_now=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
  pg_up || { log "PostgreSQL did not start"; exit 1; }
  if [ "$installed_now" = 1 ] && [ -z "${SEGMENTS_TEST_POSTGRES_URL:-}" ]; then
    # A fresh install asks for a password over TCP: give the test user one
    # rather than loosening the server's authentication.
    as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\""
    export SEGMENTS_TEST_POSTGRES_URL="postgres://postgres:postgres@127.0.0.1:5432/postgres"
  fi
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  if command -v redis-cli >/dev/null && redis_up; then return; fi
  command -v redis-server >/dev/null || apt_install redis-server
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/segments-test-redis.log
  for _ in $(seq 1 40); do redis_up && break; sleep 0.25; done
  redis_up || { log "Redis did not start"; exit 1; }
}

ensure_postgres
ensure_redis

if [ -z "${SEGMENTS_TEST_POSTGRES_URL:-}" ] \
  && ! psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc 'select 1' >/dev/null 2>&1; then
  log "cannot connect as postgres@127.0.0.1 without a password: set SEGMENTS_TEST_POSTGRES_URL"
  exit 1
fi

ensure_python() {
  if command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; then return; fi
  apt_install python3 python3-venv
}

ensure_python
command -v curl >/dev/null || apt_install curl

log "running the test suite"
cargo test --workspace --locked "$@"

# The service seen from outside: the fuzzer and the generated SDK against a
# running server, on both databases.
log "running the live checks"
scripts/live-checks.sh
