"""Decode staged records with nothing of durable-ingest: confluent-kafka, fastavro, schemas/.

Run as ``python tests/integration/plain_consumer.py BOOTSTRAP TOPIC N SCHEMAS_DIR``;
prints one JSON line per record. This is the recipe of docs/wire-format.md.
"""

from __future__ import annotations

import io
import json
import pathlib
import sys
import uuid

import fastavro
from confluent_kafka import Consumer
from fastavro.schema import fingerprint, to_parsing_canonical_form


def main() -> int:
    bootstrap, topic, count, schemas_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if "durable_ingest" in sys.modules or "staging" in sys.modules:
        raise SystemExit("this consumer must not import durable-ingest")
    by_fingerprint = {}
    for path in pathlib.Path(schemas_dir).rglob("*.avsc"):
        parsed = fastavro.parse_schema(json.loads(path.read_text()))
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
        by_fingerprint[fp] = parsed
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"plain-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    try:
        while seen < count:
            message = consumer.poll(30)
            if message is None:
                raise SystemExit(f"timed out after {seen} records")
            if message.error():
                continue
            value = message.value()
            assert value[:2] == b"\xc3\x01", "not Avro single-object encoding"
            schema = by_fingerprint[value[2:10]]
            record = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, None)
            headers = {k: v.decode() for k, v in message.headers() or []}
            print(
                json.dumps(
                    {
                        "partition": message.partition(),
                        "offset": message.offset(),
                        "key": message.key().decode(),
                        "headers": headers,
                        "record": record,
                    },
                    default=str,
                )
            )
            seen += 1
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
