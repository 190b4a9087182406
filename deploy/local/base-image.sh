#!/usr/bin/env bash
# A stand-in for the python:3.11-slim base image, built from Debian's packages,
# for machines that reach no container registry (see deploy/README.md).
#
#   deploy/local/base-image.sh            # build it once; a second run does nothing
#   deploy/local/base-image.sh --check    # only say whether podman and debootstrap work
#
# It runs debootstrap (Debian bookworm, minbase, with python3, venv, pip and CA
# certificates), links python and pip into /usr/local/bin, removes
# EXTERNALLY-MANAGED (python:3.11-slim has none), copies this machine's CA
# bundle in (pip inside a build then trusts what this machine trusts), and
# imports the tree as docker.io/library/python:3.11-slim, the name
# deploy/Dockerfile starts FROM. Exit codes: 0 done (or already there),
# 3 podman or debootstrap cannot work here (one line on stderr says why),
# 1 anything else.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"
IMAGE="${BASE_IMAGE:-docker.io/library/python:3.11-slim}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

refuse() { echo "base-image: $*" >&2; exit 3; }

command -v podman >/dev/null 2>&1 || refuse "podman is not installed (Debian: apt-get install podman runc)"
command -v runc >/dev/null 2>&1 || refuse "runc is not installed (Debian: apt-get install runc)"
info="$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>&1)" \
  || refuse "podman does not work here: $(printf '%s' "$info" | tail -n 1)"
if [ "${1:-}" = "--check" ]; then
  command -v debootstrap >/dev/null 2>&1 || refuse "debootstrap is not installed (Debian: apt-get install debootstrap)"
  echo "podman works (runtime $info)"
  exit 0
fi

if podman image exists "$IMAGE"; then
  echo "$IMAGE is already there"
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || refuse "debootstrap is not installed (Debian: apt-get install debootstrap)"
[ "$(id -u)" -eq 0 ] || refuse "debootstrap needs root"

ROOTFS="$(mktemp -d "${TMPDIR:-/tmp}/durable-ingest-rootfs.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap $SUITE into $ROOTFS (about a minute)..."
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
  || { tail -n 5 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; echo "base-image: debootstrap failed" >&2; exit 1; }
rm -f "$ROOTFS.log"
mkdir -p "$ROOTFS/usr/local/bin"
ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/python"
ln -sf /usr/bin/pip3 "$ROOTFS/usr/local/bin/pip"
rm -f "$ROOTFS"/usr/lib/python3.*/EXTERNALLY-MANAGED
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
fi
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
tar -C "$ROOTFS" -c . | podman import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --quiet - "$IMAGE" >/dev/null
echo "built $IMAGE"
