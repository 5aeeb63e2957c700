#!/usr/bin/env bash
# Generates the TypeScript client of the Segments API from
# openapi/openapi.json with @hey-api/openapi-ts (from npm, into target/), and
# compiles it with openapi/examples/quickstart.ts under `tsc --strict`.
#
#   openapi/generate-ts-sdk.sh [OUTPUT_DIR]      # default: target/ts-sdk
#   SEGMENTS_URL=… SEGMENTS_API_KEY=seg_… node target/ts-sdk/dist/quickstart.js
#
# A generator warning or a compiler error fails the script: a spec that
# generates a partial or mistyped client is a broken spec. Needs Node.js
# ≥ 20.19 (Debian's `nodejs`, installed with apt-get when missing).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/target/ts-sdk}"
tools="${SEGMENTS_TS_TOOLS:-$root/target/typescript}"
generator="0.94.5"   # the last release that runs on Node 20
compiler="5.9.3"

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
if ! command -v npm >/dev/null 2>&1; then
  echo "installing Debian's nodejs and npm" >&2
  $sudo_cmd apt-get update -q >&2
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >&2
fi
installed() { node -p "try { require('$tools/node_modules/$1/package.json').version } catch { '' }"; }
if [ "$(installed @hey-api/openapi-ts)" != "$generator" ] || [ "$(installed typescript)" != "$compiler" ]; then
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --silent \
    "@hey-api/openapi-ts@$generator" "typescript@$compiler" >&2
fi

rm -rf "$out"
mkdir -p "$out/src"
log="$out/generate.log"
"$tools/node_modules/.bin/openapi-ts" \
  --input "$root/openapi/openapi.json" \
  --output "$out/src/client" \
  --client @hey-api/client-fetch \
  --no-log-file >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
if grep -Eiq 'warn|error' "$log"; then
  cat "$log" >&2
  echo "openapi-ts warned: the spec does not generate cleanly" >&2
  exit 1
fi
cp "$root/openapi/examples/quickstart.ts" "$out/src/"
cat >"$out/tsconfig.json" <<'JSON'
{
  "compilerOptions": {
    "target": "ES2022",
    "lib": ["ES2022", "DOM", "DOM.Iterable"],
    "module": "commonjs",
    "moduleResolution": "node10",
    "types": [],
    "strict": true,
    "noUnusedLocals": true,
    "noImplicitReturns": true,
    "skipLibCheck": false,
    "outDir": "dist",
    "rootDir": "src"
  },
  "include": ["src"]
}
JSON
# `process` and `node:crypto` without @types/node: the example declares
# the little of Node it uses.
cat >"$out/src/node.d.ts" <<'TS'
declare const process: { env: Record<string, string | undefined>; exit(code: number): never };
declare module "node:crypto" { export function randomUUID(): string; }
TS
(cd "$out" && "$tools/node_modules/.bin/tsc" --project tsconfig.json)
echo "generated and compiled $out"
