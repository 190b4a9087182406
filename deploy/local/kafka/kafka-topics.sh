#!/bin/sh
# kafka-topics.sh of the stand-in image: Apache Kafka's own TopicCommand.
exec java -Xmx128m -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties \
  -cp '/opt/kafka/libs/*' org.apache.kafka.tools.TopicCommand "$@"
