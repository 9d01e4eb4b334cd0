#!/usr/bin/env sh
# Install gitlab-ci-local into a project-local directory (default .tools/gcl), idempotently.
# 4.73.0 is pinned: it is the newest release that runs on Node 20 (4.74+ needs Node >= 22).
# Prints the path of the executable. Usage: scripts/install-gitlab-ci-local.sh [PREFIX]
set -eu

version=4.73.0
prefix=${1:-$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)/.tools/gcl}
bin="$prefix/node_modules/.bin/gitlab-ci-local"

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$version" ]; then
  echo "$bin"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "install-gitlab-ci-local: npm is not installed" >&2; exit 1; }
command -v rsync >/dev/null 2>&1 || echo "install-gitlab-ci-local: warning: rsync is missing; gitlab-ci-local needs it" >&2
mkdir -p "$prefix"
# --prefix keeps npm from walking up to a parent package.json.
npm install --silent --no-audit --no-fund --prefix "$prefix" "gitlab-ci-local@$version" >&2
"$bin" --version >/dev/null
echo "$bin"
