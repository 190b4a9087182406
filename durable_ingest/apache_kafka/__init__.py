"""Apache Kafka as an engine of the stack: its jars, fetched once from Maven
Central (:mod:`.jars`), the layout of a loopback KRaft cluster (:mod:`.layout`,
pure) and the node processes (:mod:`.cluster`)."""

from durable_ingest.apache_kafka.cluster import KafkaCluster
from durable_ingest.apache_kafka.jars import KafkaJars, kafka_jars

__all__ = ["KafkaCluster", "KafkaJars", "kafka_jars"]
