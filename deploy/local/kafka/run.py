"""Entry point of the stand-in Kafka image: KAFKA_* variables into server.properties,
the log dir formatted on the first start, then the broker in the foreground.

Names map as in the apache/kafka image: the prefix goes, ``___`` becomes ``-``,
``__`` becomes ``_`` and ``_`` becomes ``.``; ``KAFKA_NODE_ID`` is ``node.id``.
``CLUSTER_ID`` names the cluster when the log dir is formatted.
"""

import os
import subprocess
import sys
from pathlib import Path

CONFIG = Path("/opt/kafka/config/server.properties")
LOG4J = "-Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties"
CLASSPATH = "/opt/kafka/libs/*"
NOT_PROPERTIES = {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_VERSION"}
DEFAULT_CLUSTER_ID = "5L6g3nShT-eMCtK--X86sw"


def property_name(variable: str) -> str:
    name = variable.removeprefix("KAFKA_").lower()
    return (
        name.replace("___", "\0")
        .replace("__", "\1")
        .replace("_", ".")
        .replace("\0", "-")
        .replace("\1", "_")
    )


def main() -> int:
    properties = {
        property_name(k): v
        for k, v in sorted(os.environ.items())
        if k.startswith("KAFKA_") and k not in NOT_PROPERTIES
    }
    properties.setdefault("log.dirs", "/var/lib/kafka/data")
    CONFIG.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
    log_dir = Path(properties["log.dirs"].split(",")[0])
    if not (log_dir / "meta.properties").exists():
        cluster_id = os.environ.get("CLUSTER_ID", DEFAULT_CLUSTER_ID)
        subprocess.run(
            [
                "java",
                LOG4J,
                "-cp",
                CLASSPATH,
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(CONFIG),
            ],
            check=True,
        )
    heap = os.environ.get("KAFKA_HEAP_OPTS", "-Xmx512m -Xms128m").split()
    os.execvp(  # noqa: S606 - the broker replaces this process, as in the apache/kafka image
        "java",
        [
            "java",
            *heap,
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            LOG4J,
            "-cp",
            CLASSPATH,
            "kafka.Kafka",
            str(CONFIG),
        ],
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
