#!/usr/bin/env bash
# Install the system tools the test suite drives for real (registry, podman, buildah, Chromium, ...).
# As root it installs what is missing with apt; otherwise it names what is missing. Under CI=true a
# missing tool is an error, so that no test can quietly skip.
set -euo pipefail

# command -> Debian package
declare -A TOOLS=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [podman]=podman
  [buildah]=buildah
  [runc]=runc
  [catatonit]=catatonit
  [conmon]=conmon
  [shellcheck]=shellcheck
  [chromium]=chromium
  [rsync]=rsync
  [wrk]=wrk
  [git]=git
  [node]=nodejs
  [npm]=npm
  [psql]=postgresql-client
  # Ceph RGW: a real S3 server with bucket notifications (tests/infra/ceph.py)
  [ceph-mon]=ceph-mon
  [ceph-osd]=ceph-osd
  [radosgw]=radosgw
  [ceph]=ceph-common
)

missing=()
for tool in "${!TOOLS[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${TOOLS[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" fuse-overlayfs uidmap >/dev/null
  exit 0
fi

echo "missing system tools (Debian packages): ${missing[*]}" >&2
echo "install them with: sudo apt-get install ${missing[*]}" >&2
if [ "${CI:-}" = "true" ]; then
  exit 1
fi
