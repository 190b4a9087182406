"""A worker process for cross-process tests: ``python -m tests.integration.staging_proc``.

``write SOURCE RESOURCE N`` stages N trades; ``read SOURCE RESOURCE GROUP N
--commit|--no-commit`` reads N records as a group member, commits each batch
only with ``--commit``, and prints the trade ids it read as JSON. The broker
comes from ``INGEST_KAFKA_BOOTSTRAP``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from foundation.config import KafkaSettings
from staging.kafka import KafkaStagingProvider
from staging.protocol import StagingContext
from staging.schemas import SchemaCatalog
from tests.helpers import trade_resource, trades


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["write", "read"])
    parser.add_argument("source")
    parser.add_argument("resource")
    parser.add_argument("--group", default="g")
    parser.add_argument("-n", type=int, required=True)
    parser.add_argument("--commit", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args()
    kafka = KafkaSettings(
        bootstrap=os.environ["INGEST_KAFKA_BOOTSTRAP"],
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    catalog = SchemaCatalog.default()
    resource = trade_resource(catalog, source=args.source, name=args.resource)
    provider = KafkaStagingProvider(kafka, catalog=catalog, max_record_bytes=1_000_000)
    context = StagingContext(source=args.source, resources=(resource,), group_id=args.group)
    with provider.allocate_session(context) as session:
        if args.action == "write":
            result = session.writer().write_batch(
                trades(args.n), checkpoint={"trade_id": 1_000_000 + args.n - 1}
            )
            print(json.dumps({"count": result.count}))
            return 0
        reader = session.reader()
        ids: list[int] = []
        deadline = time.monotonic() + 60
        while len(ids) < args.n and time.monotonic() < deadline:
            for batch in reader.iter_batches(100, poll_timeout_s=0.2, idle_timeout_s=1.0):
                ids.extend(r.record["trade_id"] for r in batch.records)
                if args.commit:
                    reader.commit(batch)
                if len(ids) >= args.n:
                    break
        print(json.dumps({"ids": ids, "committed": sum(reader.committed().values())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
