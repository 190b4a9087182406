#!/usr/bin/env bash
# Build every image the container tests and docker-compose.yml use, with podman, on a
# machine that reaches no container registry:
#
#   deploy/local/build-images.sh
#
#   docker.io/library/python:3.11-slim   the stand-in base image (base-image.sh, once)
#   docker.io/apache/kafka:<version>     Apache Kafka from its Maven jars (kafka-image.sh)
#   localhost/durable-ingest:latest      deploy/Dockerfile, the default target
#   localhost/durable-ingest:embedded    deploy/Dockerfile, target "embedded" (with chDB)
#
# Idempotent: the base image is made once, the rest come from podman's layer cache
# when nothing changed. Exit codes: 0 built, 3 podman or debootstrap cannot work here
# (one line on stderr says why), 1 anything else.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"

"$HERE/base-image.sh"
"$HERE/kafka-image.sh"
build() {
  local tag="$1"; shift
  local log; log="$(mktemp)"
  if ! podman build --network host --format docker -f "$ROOT/deploy/Dockerfile" \
      -t "$tag" "$@" "$ROOT" >"$log" 2>&1; then
    tail -n 20 "$log" >&2; rm -f "$log"
    echo "build-images: building $tag failed" >&2
    exit 1
  fi
  rm -f "$log"
  echo "built $tag"
}
build localhost/durable-ingest:latest
build localhost/durable-ingest:embedded --target embedded
