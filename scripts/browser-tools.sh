#!/usr/bin/env bash
# Makes sure the browser test can run: Debian's Chromium (installed with
# apt-get when missing) and playwright-core from npm in $1 (default
# target/browser). Prints the path of the playwright-core module.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$root/target/browser}"
version="1.64.1"
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
apt_install() {
  echo "installing Debian's $*" >&2
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 \
    || { $sudo_cmd apt-get update -q >&2 && $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; }
}
command -v chromium >/dev/null 2>&1 || apt_install chromium
command -v npm >/dev/null 2>&1 || apt_install nodejs npm
module="$dir/node_modules/playwright-core"
if [ "$(node -p "try { require('$module/package.json').version } catch { '' }")" != "$version" ]; then
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --silent "playwright-core@$version" >&2
fi
echo "$module"
