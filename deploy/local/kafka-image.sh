#!/usr/bin/env bash
# A stand-in for the apache/kafka image, built from the jars `ingest stack fetch`
# resolves from Maven Central (the version durable_ingest/apache_kafka/pom.xml
# pins), for machines that reach no container registry. Tagged as
# docker-compose.yml names it: docker.io/apache/kafka:<version>.
#
#   deploy/local/kafka-image.sh    # needs the base image (deploy/local/base-image.sh)
#
# A second run rebuilds from podman's layer cache. Exit codes: 0 built, 3 podman
# cannot work here (one line on stderr), 1 anything else.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"
PYTHON="${PYTHON:-$HERE/../../.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3

command -v podman >/dev/null 2>&1 || { echo "kafka-image: podman is not installed" >&2; exit 3; }
read -r VERSION LIBS < <("$PYTHON" -c '
from durable_ingest.apache_kafka.jars import kafka_jars
jars = kafka_jars()
print(jars.version, jars.libs)')
IMAGE="docker.io/apache/kafka:$VERSION"
CONTEXT="$(mktemp -d "${TMPDIR:-/tmp}/durable-ingest-kafka-image.XXXXXX")"
trap 'rm -rf "$CONTEXT"' EXIT
cp -r "$LIBS" "$CONTEXT/libs"
cp "$HERE/kafka/run.py" "$HERE/kafka/kafka-topics.sh" "$CONTEXT/"
cp "$HERE/../../durable_ingest/apache_kafka/log4j2.properties" "$CONTEXT/"
if ! podman build --network host --format docker -f "$HERE/kafka/Dockerfile" \
    -t "$IMAGE" "$CONTEXT" >"$CONTEXT.log" 2>&1; then
  tail -n 20 "$CONTEXT.log" >&2; rm -f "$CONTEXT.log"
  echo "kafka-image: building $IMAGE failed" >&2
  exit 1
fi
rm -f "$CONTEXT.log"
echo "built $IMAGE"
